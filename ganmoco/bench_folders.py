"""Folder throughput: `python -m ganmoco.bench_folders --photos DIR [--count 64] [--side 1024] [--json]`.

Stylizes (and x2-upscales) `--count` photos of DIR, resized to `--side` on the longer side: by a loop of one
`ganmoco` call per photo (what a shell loop does: the model loads every time), by one `ganmoco` call over the
folder (one photo a forward, then `--batch-size` 4, then with 1 thread), and by the same under `accelerate
launch` with 2 processes on the CPU (1 thread each). The 2-process outputs are compared pixel for pixel with the
one-process run at 1 thread (the same arithmetic: identical) and at 2 threads (float sums in another order).
Every way runs as real processes from the command line and writes real files; the table gives seconds, photos
a minute and the speed-up over the loop, and checks that each way wrote every output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .images import find_images
from .pipeline import DEFAULT_MODEL

STYLE = DEFAULT_MODEL.parent / "examples" / "van_gogh_starry_night.jpg"


def prepare(photos: Path, count: int, side: int, folder: Path) -> list[Path]:
    paths, _ = find_images(photos)
    if len(paths) < count:
        raise SystemExit(f"error: {photos} holds {len(paths)} readable photos, fewer than --count {count}")
    made = []
    for i, path in enumerate(paths[:count]):
        image = Image.open(path).convert("RGB")
        image.thumbnail((side, side), Image.LANCZOS)
        made.append(folder / f"{i:03d}.jpg")
        image.save(made[-1], quality=95)
    return made


def _run(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:6])} ... failed: {result.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def measure(task: str, photos: list[Path], workdir: Path, processes=(1, 2), batch_sizes=(1, 4)) -> list[dict]:
    """Seconds for each way of doing `task` ("stylize" or "upscale") over `photos` (outputs as PNG, so that
    they can be compared pixel for pixel)."""
    cli = [sys.executable, "-m", "ganmoco"]
    options = ["--style", str(STYLE)] if task == "stylize" else ["--scale", "2"]
    options += ["--format", "png"]
    folder = str(photos[0].parent)
    loop = workdir / f"{task}-loop"
    loop.mkdir()
    seconds = sum(_run([*cli, task, str(p), *options, "--out", str(loop / f"{p.stem}.png")]) for p in photos)
    rows = [{"task": task, "way": "a loop of single calls", "seconds": seconds, "out": loop}]
    last = batch_sizes[-1]
    ways = [(1, b, None) for b in batch_sizes] + [(1, last, "1")] + [(n, last, None) for n in processes if n > 1]
    for count, batch, threads in ways:
        out = workdir / f"{task}-{count}-{batch}-{threads}"
        args = [task, folder, *options, "--out", str(out), "--batch-size", str(batch)]
        env = {"OMP_NUM_THREADS": threads} if threads else None
        if count == 1:
            command = [*cli, *args]
            way = f"one call over the folder, batch {batch}" + (", 1 thread" if threads else "")
        else:  # torch's launcher gives each process 1 thread
            command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes"]
            command += [str(count), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
            command += ["-m", "ganmoco", *args]
            env, way = {"ACCELERATE_USE_CPU": "true"}, f"accelerate launch, {count} processes, batch {batch}"
        rows.append({"task": task, "way": way, "seconds": _run(command, env), "out": out})
    default = next(row["out"] for row in rows if row["way"] == f"one call over the folder, batch {last}")
    single = next(row["out"] for row in rows if row["way"].endswith(", 1 thread"))
    for row in rows:
        if row["way"].startswith("accelerate"):  # against one process with as many threads as each of these
            row["identical_to_one_process_1_thread"] = all(
                np.array_equal(_pixels(path), _pixels(single / path.name)) for path in row["out"].iterdir()
            )
            row["max_levels_from_2_threads"] = max(
                int(np.abs(_pixels(path) - _pixels(default / path.name)).max()) for path in row["out"].iterdir()
            )
        row["outputs"] = len(list(row.pop("out").iterdir()))
        row["photos_per_min"] = 60 * len(photos) / row["seconds"]
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
    return rows


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def table(rows: list[dict], count: int, side: int) -> str:
    lines = [
        f"{count} photos, {side} px on the longer side",
        "| task | way | seconds | photos / min | speed-up | outputs | pixels vs one process (1 thread / 2) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        same = "-"
        if "identical_to_one_process_1_thread" in r:
            identical = "identical" if r["identical_to_one_process_1_thread"] else "DIFFERENT"
            same = f"{identical} / max {r['max_levels_from_2_threads']} level(s)"
        lines.append(
            f"| {r['task']} | {r['way']} | {r['seconds']:.1f} | {r['photos_per_min']:.1f} | "
            f"{r['speedup']:.1f}x | {r['outputs']} | {same} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ganmoco.bench_folders", description=__doc__.splitlines()[0])
    p.add_argument("--photos", required=True, help="a folder of photos (the first --count are used)")
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--side", type=int, default=1024, help="the photos' longer side")
    p.add_argument("--tasks", nargs="+", choices=("stylize", "upscale"), default=["stylize", "upscale"])
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts of the folder call")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4], help="--batch-size of the folder call")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "photos").mkdir()
        photos = prepare(Path(args.photos), args.count, args.side, workdir / "photos")
        rows = [row for task in args.tasks for row in measure(task, photos, workdir, args.processes, args.batch_sizes)]
    print(json.dumps(rows, indent=1) if args.json else table(rows, args.count, args.side))
    ok = all(r["outputs"] == args.count and r.get("identical_to_one_process_1_thread", True) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

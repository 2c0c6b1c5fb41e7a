"""Copy a training run's pipeline into a compact folder: weights as fp16 safetensors, the presets, the model
card and licences. What records the run (`training_args.json`, the training log, the last sample grid, a grid of
the bundled examples and a strength strip, one photo from strength 0 to 1) goes to `--records`, outside the
installed package.

    python train/ship_model.py --run out/ --dst ganmoco/assets/default-model [--log train.log] \
        [--records docs/default-model]

fp16 halves the size; `GanMocoPipeline.from_pretrained` loads it back as fp32. The script reports how far
the fp16 pipeline's output moves from the fp32 one on the bundled example images (8-bit levels).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ganmoco.pipeline import to_fp16

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "ganmoco" / "assets" / "examples"
# The filter presets shipped with the default model: name -> (bundled style images, blend weights)
PRESETS = {
    "starry-night": (["van_gogh_starry_night"], None),
    "night-cafe": (["van_gogh_night_cafe"], None),
    "bridge": (["van_gogh_bridge"], None),
    "church-auvers": (["van_gogh_church_auvers"], None),
    "starry-cafe": (["van_gogh_starry_night", "van_gogh_night_cafe"], [0.5, 0.5]),
}


def clean_log(text: str) -> str:
    """Keep the last state of each progress-bar line (tqdm rewrites lines with carriage returns)."""
    lines = [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    kept = [line for line in lines if line.strip()]
    # one progress line every 50 steps is enough to read the run
    out = []
    for line in kept:
        step = re.search(r"\| *(\d+)/(\d+) \[", line)
        if step and int(step.group(1)) % 50 and step.group(1) != step.group(2):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def grid(pipe, path: Path, side: int = 256) -> None:
    """Contents (rows) x styles (columns) of the bundled examples; the first row shows the styles."""
    from PIL import Image

    contents = [EXAMPLES / f"{n}.jpg" for n in ("castle_chambord", "bird_owl", "castle_neuschwanstein")]
    styles = sorted(EXAMPLES.glob("van_gogh_*.jpg"))

    def thumb(image):
        image = image.convert("RGB")
        image.thumbnail((side, side))
        return image

    sheet = Image.new("RGB", ((len(styles) + 1) * side, (len(contents) + 1) * side), "white")
    for j, style in enumerate(styles):
        sheet.paste(thumb(Image.open(style)), ((j + 1) * side, 0))
    for i, content in enumerate(contents):
        photo = Image.open(content)
        sheet.paste(thumb(photo), (0, (i + 1) * side))
        for j, style in enumerate(styles):
            sheet.paste(thumb(pipe.stylize(photo, style)), ((j + 1) * side, (i + 1) * side))
    sheet.save(path, quality=88)


def strength_strip(pipe, path: Path, side: int = 256) -> list[float]:
    """One photo at strengths 0, 0.25, ..., 1 side by side; returns each one's PSNR to the photo (dB), which
    must fall as the strength grows."""
    from PIL import Image

    photo = Image.open(EXAMPLES / "castle_chenonceau.jpg").convert("RGB")
    style = EXAMPLES / "van_gogh_starry_night.jpg"
    strengths = (0.0, 0.25, 0.5, 0.75, 1.0)
    outs = [pipe.stylize(photo, style, strength=s) for s in strengths]
    psnr = []
    for out in outs:
        mse = float(np.mean((np.asarray(out, np.float64) - np.asarray(photo, np.float64)) ** 2))
        psnr.append(round(10 * np.log10(255**2 / mse), 2) if mse > 0 else float("inf"))
    thumbs = [o.resize((side, round(side * photo.height / photo.width))) for o in outs]
    sheet = Image.new("RGB", (side * len(thumbs), thumbs[0].height), "white")
    for i, t in enumerate(thumbs):
        sheet.paste(t, (i * side, 0))
    sheet.save(path, quality=88)
    return psnr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the --output_dir of a finished training run")
    p.add_argument("--dst", required=True)
    p.add_argument("--log", help="the run's console log, cleaned into train_log.txt")
    p.add_argument("--extra", nargs="*", default=[], help="more files to ship beside the model card")
    p.add_argument(
        "--records",
        default=str(REPO / "docs" / "default-model"),
        help="where the run's arguments, log, samples and grids go (default: docs/default-model)",
    )
    args = p.parse_args(argv)
    run, dst, records = Path(args.run), Path(args.dst), Path(args.records)
    records.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copy(run / "model_index.json", dst)
    for component in ("generator", "style_encoder"):
        (dst / component).mkdir()
        shutil.copy(run / component / "config.json", dst / component)
        to_fp16(
            run / component / "diffusion_pytorch_model.safetensors",
            dst / component / "diffusion_pytorch_model.safetensors",
        )
    shutil.copy(run / "README.md", dst)
    shutil.copy(run / "training_args.json", records)
    for name in args.extra:  # e.g. the NOTICE and LICENSES.md of the weights and data it was trained from
        shutil.copy(name, dst)
    samples = sorted((run / "samples").glob("*.png"))
    if samples:
        (records / "samples").mkdir(exist_ok=True)
        shutil.copy(samples[-1], records / "samples" / samples[-1].name)
    if args.log:
        (records / "train_log.txt").write_text(clean_log(Path(args.log).read_text(errors="replace")))

    from ganmoco import GanMocoPipeline

    full, half = GanMocoPipeline.from_pretrained(run), GanMocoPipeline.from_pretrained(dst)
    worst = 0
    with torch.inference_mode():
        for content in sorted(EXAMPLES.glob("bird_*.jpg"))[:2]:
            a = np.asarray(full.stylize(content, EXAMPLES / "van_gogh_starry_night.jpg"), np.int16)
            b = np.asarray(half.stylize(content, EXAMPLES / "van_gogh_starry_night.jpg"), np.int16)
            worst = max(worst, int(np.abs(a - b).max()))
    for name, (styles, weights) in PRESETS.items():  # codes of this model's style space
        half.save_preset(name, [EXAMPLES / f"{s}.jpg" for s in styles], weights, folder=dst / "presets")
    grid(half, records / "grid.jpg")
    psnr = strength_strip(half, records / "strength.jpg")
    print("strength 0, 0.25, 0.5, 0.75, 1: PSNR to the photo " + ", ".join(f"{p} dB" for p in psnr))
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"{dst}: {size / 2**20:.1f} MiB; fp16 vs fp32 output: max {worst} levels of 255")


if __name__ == "__main__":
    main()

"""Build an offline training corpus from Debian packages: photos in content/, paintings and textures in style/,
a held-out split in heldout/ (never trained on), LICENSES.md.

    python train/data/fetch.py --out corpus/

Downloads `gcompris-qt-data`, `opencv-doc` and `krita-data` with `apt-get download` (no root needed), unpacks
them with `dpkg-deb -x`, reads the gcompris photos out of their Qt resource bundles, puts the gcompris
masterpieces back together from their puzzle pieces, keeps each image's licence from the package's own README /
copyright file, drops duplicates (same pixels) and writes PNGs.

Held out by kind: other schools than the training paintings (impressionism, abstraction), Japanese prints,
textures, and photos of several kinds; `heldout/dev/` (3 photos x 3 styles) chooses between checkpoints,
`heldout/eval/` (8 x 6) is only measured. With `--large`, `heldout/large/content/` gets 8 photos at the sizes
cameras give (2560 x 1600, from `plasma-workspace-wallpapers`, 94 MB), all held out: the photo-size section of
`ganmoco eval --sizes` and its 1:1 crops. Never add the evaluation-only packages (mate-backgrounds,
lomiri-wallpapers-*, ukui-wallpapers, darknet) here.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import tempfile
from pathlib import Path

from PIL import Image
from rcc import read_rcc

GCOMPRIS_PHOTO_BUNDLES = ("explore_monuments", "explore_world_animals", "explore_farm_animals", "details")
OPENCV_PHOTOS = (
    "fruits.jpg",
    "baboon.jpg",
    "home.jpg",
    "HappyFish.jpg",
    "orange.jpg",
    "building.jpg",
    "butterfly.jpg",
    "squirrel_cls.jpg",
    "apple.jpg",
    "aero1.jpg",
    "graf1.png",
    "leuvenA.jpg",
    "messi5.jpg",
    "stuff.jpg",
    "smarties.png",
    "ela_original.jpg",
    "lena.jpg",
    "board.jpg",
)
OPENCV_PAINTINGS = ("starry_night.jpg",)
OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (opencv-doc, Debian copyright file, Files: *)"
MIN_SIDE = 256
# Krita's textures with structure at the 512 px scale (its other patterns are flat, tiny dithers or alpha masks)
KRITA_TEXTURES = (
    "01_canvas.png", "02_rough-canvas.png", "04_paper-C-grain.png", "06_hard-grain.png", "08_bump-relief.png",
    "09_drawed_crosshatched.png", "09b_drawed-CrossedLines.png", "10_drawed_dotted.png", "11_drawed_furry.png",
    "12_drawed_vertical.png", "13_drawed_swirl.png", "14_texture-rock.png", "15_texture-rockB.png",
    "16_texture-woody.png", "17_texture-melt.png", "18_texture-bark.png", "18b_WaveFlex.png",
    "19_texture-crackle.png", "20_texture-vegetal.png", "21_texture-chainmail.png", "22_texture-reptile.png",
    "26_brush-marks.png", "Abstract_lines.png", "Maze_lines.png", "Rough_Wall_With_Impasto.png",
)  # fmt: skip
KRITA_LICENCE = "GPL-2+ / LGPL (krita-data, Debian copyright file, Files: *)"
GCOMPRIS_PAINTINGS_LICENCE = "GPL-3.0-or-later (gcompris-qt-data paintings README: WebMuseum, public-domain works)"
# Held out of training, by kind: impressionism, abstraction, Japanese prints, textures; photos of several kinds
HELDOUT_STYLES = (
    "gcompris-paintings-renoir-moulin_de_la", "gcompris-paintings-cassat_summertime",
    "gcompris-paintings-bazille_rampart", "gcompris-paintings-renoir-filles", "gcompris-paintings-kandinky",
    "gcompris-paintings-GreatWave", "gcompris-paintings-HokusaiPoppies", "krita-21_texture-chainmail",
    "krita-Maze_lines",
)  # fmt: skip
# the part of the held-out images that chooses between checkpoints; the rest is only measured
HELDOUT_DEV = (
    "opencv-baboon", "gcompris-explore_world_animals-giraffe", "opencv-home",
    "gcompris-paintings-kandinky", "gcompris-paintings-GreatWave", "krita-Maze_lines",
)  # fmt: skip
HELDOUT_CONTENT = (
    "opencv-baboon", "opencv-fruits", "opencv-building", "opencv-butterfly", "opencv-home",
    "gcompris-explore_monuments-tajMahal", "gcompris-details-TajMahal", "gcompris-explore_world_animals-giraffe",
    "gcompris-explore_farm_animals-horse", "gcompris-explore_monuments-greatWallofChina",
    "gcompris-explore_world_animals-panda",
)  # fmt: skip

# photographs among the KDE wallpapers (the others are renders and drawings), each at its largest size
PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut", "Path",
)  # fmt: skip


def unpack(package: str, work: Path) -> Path:
    """apt-get download + dpkg-deb -x into work/package; returns the unpacked root."""
    root = work / package
    if root.is_dir():
        return root
    subprocess.run(["apt-get", "download", package], cwd=work, check=True, stdout=subprocess.DEVNULL)
    deb = sorted(work.glob(f"{package}_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def readme_licences(text: str) -> dict[str, tuple[str, str]]:
    """gcompris README blocks (Copyright / License / Files / Comment) -> {file name: (licence, note)}."""
    found = {}
    for block in re.split(r"\n\s*\n", text):
        licence = re.search(r"^License:\s*(.+)$", block, re.M)
        if not licence:
            continue
        comment = re.search(r"^(?:Comment|Source):\s*(.+)$", block, re.M)
        note = comment.group(1).strip() if comment else ""
        for name in re.findall(r"([\w\-.()/]+\.webp)", block):
            found[Path(name).name] = (licence.group(1).strip(), note)
    return found


def gcompris_images(root: Path):
    """Yield (name, bytes, licence, note, is_painting) from the photo bundles of gcompris-qt-data."""
    rcc_dir = root / "usr/share/gcompris-qt/rcc"
    for bundle in GCOMPRIS_PHOTO_BUNDLES:
        files = dict(read_rcc(rcc_dir / f"{bundle}.rcc"))
        licences = {}
        for path, data in files.items():
            if path.endswith("README"):
                licences |= readme_licences(data.decode("utf-8", "replace"))
        for path, data in files.items():
            name = Path(path).name
            if not name.endswith(".webp"):
                continue
            if bundle == "details" and not name.endswith("_background.webp"):
                continue  # the other "details" files are small puzzle pieces of the background
            licence, note = licences.get(name, ("see the gcompris-qt-data README of " + bundle, ""))
            yield f"gcompris-{bundle}-{name}", data, licence, note, "painting" in note.lower()


def gcompris_paintings(root: Path):
    """Yield (name, bytes, licence, note, True) for the masterpieces of the "paintings" activity, each put back
    together from its puzzle pieces (the board files give each piece's centre as a fraction of the board)."""
    files = dict(read_rcc(root / "usr/share/gcompris-qt/rcc/paintings.rcc"))
    prefix = "/gcompris/src/activities/paintings/resource/"
    for path, data in sorted(files.items()):
        if "/board/" not in path:
            continue
        text = data.decode("utf-8", "replace")
        title = re.search(r'qsTr\("(.*)"\)', text)
        width = int(re.search(r'"width":\s*(\d+)', text).group(1))
        height = int(re.search(r'"height":\s*(\d+)', text).group(1))
        pieces = re.findall(r'"pixmapfile" : "(image/[^"]+\.webp)",\s*"x" : "([\d.]+)",\s*"y" : "([\d.]+)"', text)
        canvas = Image.new("RGBA", (width, height))
        for name, x, y in pieces:
            piece = Image.open(io.BytesIO(files[prefix + name])).convert("RGBA")
            left, top = round(float(x) * width - piece.width / 2), round(float(y) * height - piece.height / 2)
            canvas.alpha_composite(piece, (max(left, 0), max(top, 0)))
        box = canvas.getchannel("A").point(lambda a: 255 if a > 250 else 0).getbbox()
        out = io.BytesIO()
        canvas.crop(box).convert("RGB").save(out, "PNG")
        stem = Path(pieces[0][0]).stem.rsplit("_", 1)[0]
        note = title.group(1) if title else ""
        yield f"gcompris-paintings-{stem}", out.getvalue(), GCOMPRIS_PAINTINGS_LICENCE, note, True


def krita_textures(root: Path):
    """Yield the textures, tiled to at least 2 x MIN_SIDE so that a crop shows their repeat."""
    folder = root / "usr/share/krita/patterns"
    for name in KRITA_TEXTURES:
        path = folder / name
        if not path.is_file():
            continue
        tile = Image.open(path).convert("RGB")
        reps = -(-2 * MIN_SIDE // min(tile.size))
        sheet = Image.new("RGB", (tile.width * reps, tile.height * reps))
        for i in range(reps):
            for j in range(reps):
                sheet.paste(tile, (i * tile.width, j * tile.height))
        out = io.BytesIO()
        sheet.save(out, "PNG")
        yield f"krita-{Path(name).stem}", out.getvalue(), KRITA_LICENCE, "texture", True


def opencv_images(root: Path):
    data_dir = root / "usr/share/doc/opencv-doc/examples/data"
    for name in OPENCV_PHOTOS + OPENCV_PAINTINGS:
        path = data_dir / name
        if path.is_file():
            yield f"opencv-{name}", path.read_bytes(), OPENCV_LICENCE, "", name in OPENCV_PAINTINGS


def plasma_photos(root: Path):
    """The PLASMA_PHOTOS at their largest size, with the licence and author of each one's metadata.json."""
    import json

    for name in PLASMA_PHOTOS:
        folder = root / "usr/share/wallpapers" / name
        meta = json.loads((folder / "metadata.json").read_text())
        plugin = meta.get("KPlugin", meta)
        authors = ", ".join(a.get("Name", "") for a in plugin.get("Authors", []))
        largest = max((folder / "contents/images").iterdir(), key=lambda p: p.stat().st_size)
        yield f"plasma-{name}", largest.read_bytes(), plugin.get("License", "see copyright"), authors, False


def build_large(out: Path, work: Path) -> int:
    """heldout/large/content/: the PLASMA_PHOTOS as PNGs; their rows are added to LICENSES.md."""
    folder = out / "heldout/large/content"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, data, licence, authors, _ in plasma_photos(unpack("plasma-workspace-wallpapers", work)):
        Image.open(io.BytesIO(data)).convert("RGB").save(folder / f"{name}.png")
        rows.append(f"| heldout/large/content/{name}.png | plasma-workspace-wallpapers | {licence} | {authors} |")
    licences = out / "LICENSES.md"
    kept = [line for line in licences.read_text().splitlines() if "heldout/large/" not in line]
    licences.write_text("\n".join(kept + sorted(rows)) + "\n")
    return len(rows)


def build(out: Path, work: Path) -> dict[str, int]:
    sources = [
        ("gcompris-qt-data", gcompris_images),
        ("gcompris-qt-data", gcompris_paintings),
        ("opencv-doc", opencv_images),
        ("krita-data", krita_textures),
    ]
    seen, rows = set(), []
    counts = {"content": 0, "style": 0, "heldout_content": 0, "heldout_style": 0, "duplicates": 0, "too_small": 0}
    held = [f"heldout/{part}/{kind}" for part in ("dev", "eval") for kind in ("content", "style")]
    for kind in ("content", "style", *held):
        (out / kind).mkdir(parents=True, exist_ok=True)
    for package, reader in sources:
        root = unpack(package, work)
        for name, data, licence, note, is_painting in reader(root):
            image = Image.open(io.BytesIO(data)).convert("RGB")
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            if digest in seen:
                counts["duplicates"] += 1
                continue
            seen.add(digest)
            if min(image.size) < MIN_SIDE:
                counts["too_small"] += 1
                continue
            kind = "style" if is_painting else "content"
            stem = Path(name).stem.removesuffix("_background")
            held_out = stem in (HELDOUT_STYLES if is_painting else HELDOUT_CONTENT)
            if held_out:
                kind = f"heldout/{'dev' if stem in HELDOUT_DEV else 'eval'}/{kind}"
            target = out / kind / (Path(name).stem + ".png")
            image.save(target)
            counts[f"heldout_{kind.rsplit('/', 1)[1]}" if held_out else kind] += 1
            rows.append(f"| {kind}/{target.name} | {package} | {licence} | {note} |")
    licences = [
        "# Licences of the corpus images",
        "",
        "Built by `train/data/fetch.py` from Debian packages; each image keeps its package's licence.",
        "",
        "| file | package | licence | note |",
        "| --- | --- | --- | --- |",
        *sorted(rows),
    ]
    (out / "LICENSES.md").write_text("\n".join(licences) + "\n")
    return counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="corpus", help="output folder (content/, style/, LICENSES.md)")
    p.add_argument("--work", help="folder for the downloaded packages (default: a temporary folder)")
    p.add_argument("--large", action="store_true", help="also heldout/large/content/: 8 photos at 2560 px (94 MB)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        counts = build(Path(args.out), work)
        if args.large:
            counts["heldout_large"] = build_large(Path(args.out), work)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()

"""Build an offline training corpus from Debian packages: photos in content/, paintings in style/, LICENSES.md.

    python train/data/fetch.py --out corpus/

Downloads `gcompris-qt-data` and `opencv-doc` with `apt-get download` (no root needed), unpacks them with
`dpkg-deb -x`, reads the gcompris photos out of their Qt resource bundles, keeps each image's licence from
the package's own README / copyright file, drops duplicates (same pixels) and writes PNGs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rcc import read_rcc  # noqa: E402

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


def opencv_images(root: Path):
    data_dir = root / "usr/share/doc/opencv-doc/examples/data"
    for name in OPENCV_PHOTOS + OPENCV_PAINTINGS:
        path = data_dir / name
        if path.is_file():
            yield f"opencv-{name}", path.read_bytes(), OPENCV_LICENCE, "", name in OPENCV_PAINTINGS


def build(out: Path, work: Path) -> dict[str, int]:
    sources = [("gcompris-qt-data", gcompris_images), ("opencv-doc", opencv_images)]
    seen, rows, counts = set(), [], {"content": 0, "style": 0, "duplicates": 0, "too_small": 0}
    for kind in ("content", "style"):
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
            target = out / kind / (Path(name).stem + ".png")
            image.save(target)
            counts[kind] += 1
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
    args = p.parse_args(argv)
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        counts = build(Path(args.out), Path(args.work))
    else:
        with tempfile.TemporaryDirectory() as work:
            counts = build(Path(args.out), Path(work))
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()

"""Mutated real image files: every one either loads or fails with ImageError, quickly, leaving no output."""

import io
import random
import time

import pytest
from PIL import Image

from ganmoco.images import ImageError, load_image

from .conftest import assert_one_error_line, run_cli

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def _seeds(examples) -> list[bytes]:
    image = Image.open(examples / "bird_owl.jpg").convert("RGB").resize((64, 48))
    seeds = []
    for fmt in FORMATS:
        buf = io.BytesIO()
        (image.convert("P") if fmt == "GIF" else image).save(buf, format=fmt)
        seeds.append(buf.getvalue())
    return seeds


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        pos = rng.randrange(len(data))
        if kind < 0.5:
            data[pos] = rng.randrange(256)  # flip a byte
        elif kind < 0.7:
            del data[pos : pos + rng.randint(1, 64)]  # cut a run
        elif kind < 0.85:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))  # insert junk
        else:
            data = data[: max(1, pos)]  # truncate
        data = data or bytearray(b"\0")
    return bytes(data)


def test_mutated_images_load_or_fail_cleanly(examples):
    rng = random.Random(1234)
    seeds = _seeds(examples)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(600):
        data = _mutate(rng.choice(seeds), rng)
        start = time.perf_counter()
        try:
            image = load_image(data)
            assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
            outcomes["loaded"] += 1
        except ImageError as err:
            assert str(err) and "\n" not in str(err)
            outcomes["refused"] += 1
        assert time.perf_counter() - start < 5.0
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0, outcomes


@pytest.mark.parametrize("index", range(6))
def test_cli_on_mutated_files_leaves_no_output(examples, tiny_pipeline_dir, tmp_path, index):
    rng = random.Random(index)
    data = _mutate(_seeds(examples)[index % len(FORMATS)], rng)
    bad = tmp_path / f"input.{FORMATS[index % len(FORMATS)].lower()}"
    bad.write_bytes(data)
    out = tmp_path / "out.png"
    r = run_cli(
        "stylize",
        str(bad),
        "--style",
        str(examples / "van_gogh_bridge.jpg"),
        "--model",
        str(tiny_pipeline_dir),
        "--out",
        str(out),
    )
    assert r.returncode in (0, 2), r.stderr
    if r.returncode == 2:
        assert_one_error_line(r)
        assert not out.exists()
    else:
        assert Image.open(out).size == load_image(bad).size
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

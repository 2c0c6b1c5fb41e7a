import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ganmoco.data import synthetic_bracket, synthetic_fusion_pair
from ganmoco.images import ImageError, ImageWarning, load_image
from ganmoco.pixels import load_mask, to_pil, to_tensor


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "RGB", "YCbCr", "I"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new("RGB", (7, 5), (200, 100, 50)).convert(mode)
    out = load_image(image)
    assert out.mode == "RGB" and out.size == (7, 5)


def test_palette_with_transparency_composites_over_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    image.info["transparency"] = 0
    with pytest.warns(ImageWarning, match="transparent pixels"):
        out = load_image(Image.open(io.BytesIO(_png_bytes(image))))
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_rgba_alpha_composites_over_white_with_a_word():
    image = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    with pytest.warns(ImageWarning, match="transparent pixels; they are put on white"):
        assert load_image(image).getpixel((1, 1)) == (255, 255, 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an alpha channel that is opaque everywhere changes nothing: no word
        assert load_image(Image.new("RGBA", (2, 2), (9, 9, 9, 255))).getpixel((0, 0)) == (9, 9, 9)


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(arr, "I;16")
    values = [p[0] for p in load_image(image).getdata()]
    assert values == [0, 128, 255]


def test_float_image_is_scaled_into_range():
    arr = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    values = [p[0] for p in load_image(Image.fromarray(arr, "F")).getdata()]
    assert values == [0, 128, 255]
    wide = np.array([[-10.0, 0.0, 10.0]], dtype=np.float32)  # outside [0, 1]: min-max, not white
    values = [p[0] for p in load_image(Image.fromarray(wide, "F")).getdata()]
    assert values == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, _ = load_image(path).getpixel((4, 4))
    assert r > 200 and g < 50


def test_not_an_image_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")


def test_truncated_file_is_a_clear_error(examples, tmp_path):
    data = (examples / "bird_owl.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that claims to be width x height (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(60000, 60000))
    with pytest.raises(ImageError, match="pixels|too large"):
        load_image(path)


def test_pixel_convention_round_trip(examples):
    image = load_image(examples / "bird_duck.jpg")
    x = to_tensor(image)
    assert x.shape == (1, 3, image.height, image.width) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert np.array_equal(np.asarray(to_pil(x)), np.asarray(image))


def test_numpy_arrays_are_accepted():
    assert load_image(np.zeros((3, 4), dtype=np.uint8)).size == (4, 3)
    assert load_image(np.ones((3, 4, 3), dtype=np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((3, 4, 5)))


def test_mask_is_resized_and_scaled():
    mask = load_mask(Image.new("L", (10, 10), 255), (4, 2))
    assert mask.shape == (1, 1, 2, 4) and torch.allclose(mask, torch.ones_like(mask))
    # against its photo: the same size or a scaled copy of that shape; another shape is refused
    assert load_mask(Image.new("L", (320, 240), 255), (80, 60), photo=(640, 480)).shape == (1, 1, 60, 80)
    assert load_mask(Image.new("L", (641, 480), 255), (80, 60), photo=(640, 480)).shape == (1, 1, 60, 80)
    with pytest.raises(ImageError, match="the mask is 300x300 but the photo 640x480"):
        load_mask(Image.new("L", (300, 300), 255), (80, 60), photo=(640, 480))


@pytest.mark.parametrize("shape", ["half", "disc", "depth"])
def test_synthetic_focus_pairs_are_complementary(shape):
    x = torch.rand(3, 64, 80) * 2 - 1
    pair = synthetic_fusion_pair(x, "multi-focus", np.random.default_rng(0), shape=shape)
    assert pair.shape == (2, 3, 64, 80)
    error = (pair - x).abs().mean(1)  # (2, H, W): where each source is out of focus
    # every source is blurred somewhere, and somewhere one of them is sharp
    assert (error > 0.05).flatten(1).any(1).all()
    assert (error.amin(0) < 1e-3).float().mean() > 0.15
    if shape != "depth":  # a sharp region and its complement: one source is right at almost every pixel
        assert (error.amin(0) < 0.02).float().mean() > 0.6


def test_synthetic_pairs_degrade_like_real_stacks():
    x = torch.rand(3, 48, 48) * 2 - 1
    clean = synthetic_fusion_pair(x, "multi-exposure", np.random.default_rng(1))
    assert clean[0].mean() < x.mean() < clean[1].mean()  # under- and over-exposed
    degraded = [
        synthetic_fusion_pair(x, "multi-exposure", np.random.default_rng(seed), degrade=True) for seed in range(8)
    ]
    levels = (degraded[0] + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # 8-bit, like a camera's JPEG
    # half the time the second frame is 1-2 px off: it no longer lines up with the clean bracket
    shifted = [
        not torch.allclose(d[1], c[1], atol=0.1)
        for d, c in zip(
            degraded,
            [synthetic_fusion_pair(x, "multi-exposure", np.random.default_rng(seed)) for seed in range(8)],
            strict=True,
        )
    ]
    assert 0 < sum(shifted) < 8
    with pytest.raises(ValueError, match="shape"):
        synthetic_fusion_pair(x, "multi-focus", np.random.default_rng(0), shape="ring")


def test_synthetic_brackets_hold_the_scene_together_not_one_by_one(examples):
    """A bracket of a scene with more range than one shot: the shots are exposures stops apart, and each region
    of the photo is right in some shot, not in any single one."""
    x = to_tensor(load_image(examples / "castle_chambord.jpg").resize((128, 96)))[0]
    ratios = []
    for seed in range(8):
        bracket = synthetic_bracket(x, 3, np.random.default_rng(seed))
        assert bracket.shape == (3, 3, 96, 128) and bracket.abs().max() <= 1
        linear = ((bracket + 1) / 2).pow(2.2).mean((1, 2, 3))
        assert linear.max() / linear.min() > 1.5  # exposures apart, after clipping at white
        error = (bracket - x).abs().mean(1)  # (3, H, W)
        # the best shot per pixel against the best single shot
        ratios.append(float(error.amin(0).mean() / error.mean((1, 2)).min()))
        assert ratios[-1] < 1
        assert torch.equal(bracket, synthetic_bracket(x, 3, np.random.default_rng(seed)))  # the rng decides
    assert np.mean(ratios) < 0.7 and min(ratios) < 0.5
    shots = synthetic_bracket(x, 4, np.random.default_rng(0), degrade=True)
    assert shots.shape == (4, 3, 96, 128)
    assert torch.allclose((shots + 1) * 127.5, ((shots + 1) * 127.5).round(), atol=1e-3)  # 8-bit
    with pytest.raises(ValueError, match="at least 2 frames"):
        synthetic_bracket(x, 1, np.random.default_rng(0))

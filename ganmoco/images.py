"""Reading what a user hands us as an image: `load_image` returns an upright RGB PIL image or raises
`ImageError` with one sentence. Pillow and numpy only (no torch), so that the command line can check its
inputs before the heavy imports.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's decompression-bomb guard stays on; its warning threshold is treated as an error too, so a
# hostile file is refused before it is decoded.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

ImageInput = str | os.PathLike | Image.Image | bytes | np.ndarray
# What Pillow's decoders raise on malformed data (IndexError, for one, found by tests/test_fuzz.py).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, ZeroDivisionError, struct.error)


class ImageError(ValueError):
    """An input that is not a usable image; the message is one sentence for the user."""


def _describe(src) -> str:
    if isinstance(src, str | os.PathLike):
        return f"'{os.fspath(src)}'"
    return f"the {type(src).__name__} input"


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a float or wide-integer image into 0..255 by its own range, never clipping it to white."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = arr
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = arr / 257.0
    else:
        scaled = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _float_to_uint8(np.asarray(image))
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class ImageWarning(UserWarning):
    """Something about an input image that ganmoco changed on reading it (transparency put on white)."""


def _has_transparency(image: Image.Image) -> bool:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA", "La", "RGBa"):
        return False
    return image.getchannel("A").getextrema()[0] < 255


def load_image(src: ImageInput, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open a path, bytes, numpy array or PIL image as an upright RGB PIL image.

    Handles every Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, 1, ...), EXIF orientation and animated
    files (first frame). Raises `ImageError` for anything that is not a readable image or is too large.
    """
    if isinstance(src, np.ndarray):
        return _from_array(src)
    what = _describe(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(src, Image.Image):
                image = src
            elif isinstance(src, bytes | bytearray):
                image = Image.open(io.BytesIO(src))
            elif isinstance(src, str | os.PathLike):
                path = Path(src)
                if not path.is_file():
                    raise ImageError(f"{what} does not exist or is not a file")
                if path.stat().st_size == 0:
                    raise ImageError(f"{what} is an empty file, not an image")
                image = Image.open(path)
            else:
                raise ImageError(f"expected an image path, bytes, array or PIL image, got {type(src).__name__}")
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageError(f"{what} has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageError(
                    f"{what} is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}"
                )
            if getattr(image, "is_animated", False):
                image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            if _has_transparency(image):
                warnings.warn(f"{what} has transparent pixels; they are put on white", ImageWarning, stacklevel=2)
            return to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{what} is too large to decode safely ({err})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image file Pillow can read") from None
    except DECODE_ERRORS as err:
        raise ImageError(f"{what} is corrupt or truncated ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = _float_to_uint8(arr)
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], "L").convert("RGB")
    return to_rgb(Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB"))


def find_images(root: str | os.PathLike, log=print) -> tuple[list[Path], int]:
    """Readable image files under `root` (recursively, sorted). Unreadable ones are skipped with one warning
    line each; returns (paths, number skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    found, skipped = [], 0
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image.verify()
            found.append(path)
        except (*DECODE_ERRORS, Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            skipped += 1
            log(f"warning: skipping unreadable image {path}: {_first_line(err)}")
    return found, skipped

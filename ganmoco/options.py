"""The checks of the pipeline's options, and where a model's presets are, without torch: the pipeline validates
its arguments with these, and the command line runs the same checks before it imports torch and loads a model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .images import MAX_IMAGE_PIXELS, ImageError
from .weights import cache_dir

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default-model"
MIN_CONTENT_SIDE = 16  # a photo to paint: below this (a 1x1, a 200000x8 strip) no stroke fits
MIN_STYLE_SIDE = 32  # a style image must show some strokes: a 1x1 or an 8-px strip has no style to give
MASK_SHAPE_TOLERANCE = 0.02  # a mask may be a scaled copy of the photo's shape, within 2 %
PAINT_SIDE = 512  # a larger photo is laid out at this longer side, then painted finer level by level up to its own
MIN_PAINT_SIDE = 128  # below this a picture has too few strokes to lay out a painting
MIN_LEVEL_SIDE = 64  # the coarsest level's shorter side (a long strip's layout is not a line of pixels)


def paintable(size: tuple[int, int]) -> None:
    """A photo to stylize: at least MIN_CONTENT_SIDE on its shorter side."""
    if min(size) < MIN_CONTENT_SIDE:
        raise ImageError(
            f"a photo to stylize must be at least {MIN_CONTENT_SIDE} px on its shorter side, got {size[0]}x{size[1]}"
        )


def style_image(size: tuple[int, int]) -> None:
    """A style image: at least MIN_STYLE_SIDE on its shorter side."""
    if min(size) < MIN_STYLE_SIDE:
        raise ImageError(
            f"a style image must be at least {MIN_STYLE_SIDE} px on its shorter side to carry a style, "
            f"got {size[0]}x{size[1]}"
        )


def mask_fits(mask: tuple[int, int], photo: tuple[int, int]) -> None:
    """A mask of the photo's size, or a scaled copy of its shape."""
    if abs(math.log((mask[0] * photo[1]) / (mask[1] * photo[0]))) > MASK_SHAPE_TOLERANCE:
        raise ImageError(
            f"the mask is {mask[0]}x{mask[1]} but the photo {photo[0]}x{photo[1]}: give a mask of the photo's size "
            "(or a scaled copy of that shape)"
        )


def _number(value) -> float:
    """`value` as a float; NaN (which every range check refuses) when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def style_scale(value) -> float | str:
    """How large a style's strokes are painted: "auto" or a number in [0.25, 4]."""
    if value == "auto":
        return value
    if not 0.25 <= _number(value) <= 4.0:
        raise ValueError(f'style_scale must be "auto" or a number in [0.25, 4], got {value!r}')
    return _number(value)


def paint_side(value) -> int | None:
    """The longer side at which a photo's painting is laid out: a whole number of at least MIN_PAINT_SIDE, or
    None / "full" (painted at the photo's own size: strokes a fixed number of pixels, whatever the size)."""
    if value is None or value == "full":
        return None
    number = _number(value)
    if not (number >= MIN_PAINT_SIDE and number == int(number)):
        raise ValueError(f'paint_side must be "full" or a whole number of at least {MIN_PAINT_SIDE}, got {value!r}')
    return int(number)


def paint_levels(size: tuple[int, int], side: int | None) -> list[tuple[int, int]]:
    """The (height, width) of each level a photo of `size` (width, height) is painted at, coarsest first and the
    photo's own size last: `side` on the longer side (with the shorter at least MIN_LEVEL_SIDE), then twice that
    and so on. One level, the photo itself, when it is no larger than `side` or `side` is None."""
    width, height = size
    if side is None or max(width, height) <= side:
        return [(height, width)]
    scale = max(side / max(width, height), MIN_LEVEL_SIDE / min(width, height))
    levels = []
    while scale < 1.0:
        levels.append((max(1, round(height * scale)), max(1, round(width * scale))))
        scale *= 2
    return [*levels, (height, width)]


def strength(value) -> float:
    if not 0.0 <= _number(value) <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {value!r}")
    return _number(value)


def blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """One weight per style, non-negative with a positive sum -> the weights summing to 1 (None: equal)."""
    if weights is None:
        return [1.0 / count] * count
    values = [float(v) for v in weights]
    if len(values) != count:
        raise ValueError(f"got {len(values)} weights for {count} styles")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"style weights must be non-negative with a positive sum, got {values}")
    return [v / sum(values) for v in values]


def below_one(name: str, value) -> float:
    """A momentum-like option in [0, 1): 1 would never let a new frame in."""
    if not 0.0 <= _number(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return _number(value)


def denoise(value) -> float:
    """The upscaler's denoise strength: None (0) or a number from 0 to 1."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"denoise must be a number from 0 to 1, got {value!r}")
    return float(value)


def upscaled_size(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The output size of upscaling an image of `size` by `scale`, refused above MAX_IMAGE_PIXELS."""
    width, height = size[0] * scale, size[1] * scale
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"upscaling {size[0]}x{size[1]} by {scale} would give {width}x{height} "
            f"({width * height / 1e6:.0f} MP), above the {MAX_IMAGE_PIXELS / 1e6:.0f} MP limit"
        )
    return width, height


def tile(value):
    """None (automatic), False (never) or a tile side of at least 64 pixels."""
    if value is not None and value is not False and (isinstance(value, bool) or int(value) < 64):
        raise ValueError(f"tile must be at least 64 pixels, got {value!r}")
    return value


def preset_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"a preset name uses letters, digits, '-' and '_' only, got {name!r}")
    return name


def user_presets(model: str | Path) -> Path | None:
    """Where presets saved for the bundled model (its folder `model`) go: the user's cache (the package folder may
    be read-only and is replaced on reinstall). Other models keep theirs in their own folder: None."""
    if Path(model).resolve() == DEFAULT_MODEL.resolve():
        return cache_dir() / "presets" / "default-model"
    return None


def presets(model: str | Path | None) -> dict[str, Path]:
    """Preset name -> file of a local model folder (None: the bundled model): its `presets/`, then (for the bundled
    model) the user's own."""
    folder = DEFAULT_MODEL if model is None else Path(model)
    found = {}
    for place in (folder / "presets", user_presets(folder)):
        if place is not None and place.is_dir():
            found |= {p.stem: p for p in sorted(place.glob("*.safetensors"))}
    return found

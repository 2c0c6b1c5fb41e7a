"""Image loading and the one pixel convention.

Every tensor image in ganmoco is float32, RGB, NCHW, with values in [-1, 1]. Everything a user hands us
goes through `load_image`, which either returns an RGB PIL image or raises `ImageError` with one sentence.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .models.generator import FUSION_TASKS

# Pillow's decompression-bomb guard stays on; its warning threshold is treated as an error too, so a
# hostile file is refused before it is decoded.
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


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (1, 3, H, W) float32 in [-1, 1]."""
    arr = np.asarray(to_rgb(image), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).div(127.5).sub(1.0).contiguous()


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> RGB PIL image."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"to_pil takes one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    arr = tensor.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def load_mask(src: ImageInput, size: tuple[int, int]) -> torch.Tensor:
    """A mask image -> (1, 1, H, W) float in [0, 1] at `size` (width, height); white selects."""
    image = load_image(src).convert("L").resize(size, Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


# -- training data -----------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


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


def split_train_val(paths: list[Path], val_count: int, seed: int) -> tuple[list[Path], list[Path]]:
    """A seeded split: `val_count` paths held out for validation, the rest for training."""
    if val_count <= 0:
        return list(paths), []
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(order[:val_count])
    held = set(val)
    return [p for i, p in enumerate(paths) if i not in held], [paths[i] for i in val]


def random_crop(image: Image.Image, resolution: int, rng: np.random.Generator, scale=(0.5, 1.0)) -> torch.Tensor:
    """A random square crop covering `scale` of the shorter side, resized to `resolution`, random h-flip."""
    short = min(image.size)
    side = max(1, int(short * rng.uniform(*scale)))
    left = int(rng.integers(0, image.width - side + 1))
    top = int(rng.integers(0, image.height - side + 1))
    crop = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(crop)[0]


def colour_jitter(x: torch.Tensor, rng: np.random.Generator, amount: float = 0.1) -> torch.Tensor:
    """Small brightness / contrast / saturation changes: more views of a scarce style image."""
    brightness = rng.uniform(-amount, amount)
    contrast = rng.uniform(1 - amount, 1 + amount)
    saturation = rng.uniform(1 - amount, 1 + amount)
    gray = x.mean(0, keepdim=True)
    x = gray + (x - gray) * saturation
    x = x.mean() + (x - x.mean()) * contrast + brightness
    return x.clamp(-1, 1)


class ImageDataset(torch.utils.data.Dataset):
    """Random crops of a list of images; item (epoch, index) is deterministic, so a resumed run sees the
    same data it would have seen."""

    def __init__(self, paths: list[Path], resolution: int, seed: int, jitter: bool = False):
        if not paths:
            raise ValueError("no readable images to train on")
        self.paths, self.resolution, self.seed, self.jitter = list(paths), resolution, seed, jitter

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        x = random_crop(load_image(self.paths[index]), self.resolution, rng)
        return colour_jitter(x, rng) if self.jitter else x


def _smooth_mask(size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random smooth 0..1 mask: a blurred random split of the frame, for multi-focus pairs."""
    coarse = torch.from_numpy(rng.random((1, 1, 4, 4)).astype(np.float32))
    mask = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return torch.sigmoid((mask - 0.5) * 12)[0]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    kernel = int(2 * round(3 * sigma) + 1)
    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def synthetic_fusion_pair(x: torch.Tensor, kind: str, rng: np.random.Generator) -> torch.Tensor:
    """Two sources made from one clean image x (3, H, W): complementary defocus or an exposure bracket."""
    if kind == "multi-focus":
        mask = _smooth_mask(x.shape[-1], rng)
        blurred = _blur(x, float(rng.uniform(1.5, 3.5)))
        return torch.stack([mask * x + (1 - mask) * blurred, (1 - mask) * x + mask * blurred])
    if kind == "multi-exposure":
        unit = (x + 1) / 2
        dark = unit.pow(float(rng.uniform(1.8, 3.0))) * float(rng.uniform(0.5, 0.8))
        bright = (unit * float(rng.uniform(1.6, 2.5))).clamp(0, 1).pow(float(rng.uniform(0.5, 0.8)))
        return torch.stack([dark, bright]) * 2 - 1
    raise ValueError(f"unknown synthetic fusion kind {kind!r}")


class SyntheticFusionDataset(ImageDataset):
    """(sources (2, 3, H, W), task id, clean reference (3, H, W)) built on the fly from content photos."""

    def __init__(self, paths, resolution, seed, kinds=("multi-focus", "multi-exposure")):
        super().__init__(paths, resolution, seed)
        self.kinds = tuple(kinds)

    def __getitem__(self, key):
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        x = random_crop(load_image(self.paths[index]), self.resolution, rng)
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        return synthetic_fusion_pair(x, kind, rng), FUSION_TASKS.index(kind), x


class FusionFolderDataset(torch.utils.data.Dataset):
    """Registered sets: each sub-folder of `root` holding 2+ images of one scene is one item (the same crop of
    each, task "general"); the first source stands in as the reference."""

    def __init__(self, root, resolution: int, seed: int, sources: int = 2, log=print):
        self.scenes = []
        for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
            paths, _ = find_images(folder, log=log)
            if len(paths) >= sources:
                self.scenes.append(paths[:sources])
        if not self.scenes:
            raise ValueError(f"{root} has no sub-folder with {sources} or more readable images")
        self.resolution, self.seed = resolution, seed

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, key):
        epoch, index = key
        images = [load_image(p) for p in self.scenes[index]]
        size = images[0].size
        images = [im if im.size == size else im.resize(size, Image.BICUBIC) for im in images]
        crops = [random_crop(im, self.resolution, np.random.default_rng([self.seed, epoch, index])) for im in images]
        return torch.stack(crops), 0, crops[0]


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Endless seeded batches of (epoch, index) keys for one process's shard. Batch k of the stream is a pure
    function of (seed, k), so resuming after `start` batches replays nothing and skips nothing."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        # every process gets the same number of items per epoch (the shard wraps around)
        self.per_rank = -(-size // world_size)
        self.batches_per_epoch = max(1, self.per_rank // batch_size)

    def __len__(self):
        return self.batches_per_epoch

    def __iter__(self):
        epoch, position = divmod(self.start, self.batches_per_epoch)
        while True:
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            needed = max(self.per_rank, self.batch_size) * self.world_size
            shard = perm.repeat(-(-needed // self.size))[self.rank :: self.world_size].tolist()
            for b in range(position, self.batches_per_epoch):
                yield [(epoch, i) for i in shard[b * self.batch_size : (b + 1) * self.batch_size]]
            epoch, position = epoch + 1, 0


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale (never upscale) so that the longer side is at most `max_side`; None keeps the image."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS)

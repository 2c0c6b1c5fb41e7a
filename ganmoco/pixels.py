"""The one pixel convention: every tensor image in ganmoco is float32, RGB, NCHW, with values in [-1, 1].
PIL images go in and come out here; a user's file is opened by `ganmoco.images.load_image` (one door)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from . import options
from .images import ImageInput, load_image, to_rgb


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
    arr = tensor.detach().float().clamp(-1, 1).add_(1).mul_(127.5).round_().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def load_mask(src: ImageInput, size: tuple[int, int], photo: tuple[int, int] | None = None) -> torch.Tensor:
    """A mask image -> (1, 1, H, W) float in [0, 1] at `size` (width, height); white selects. `photo`: the size
    of the photo it masks: the mask must be that size or a scaled copy (its shape within 2 %)."""
    image = load_image(src)
    if photo is not None:
        options.mask_fits(image.size, photo)
    image = image.convert("L").resize(size, Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale (never upscale) so that the longer side is at most `max_side`; None keeps the image."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS)

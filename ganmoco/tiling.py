"""Running a fully convolutional network on overlapping tiles, for images too large for one pass."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def run_tiled(
    x: torch.Tensor,
    run: Callable[[torch.Tensor, tuple[int, int, int, int]], torch.Tensor],
    tile: int,
    margin: int,
    scale: int = 1,
) -> torch.Tensor:
    """`run(piece, (y0, y1, x0, x1))` on tiles of `tile` px of x (B, C, H, W), each widened by `margin` px of
    context on every side, and the tiles' centres stitched into one (B, 3, scale H, scale W) output. With a
    margin past the network's receptive field, each kept pixel sees all it would see untiled."""
    height, width = x.shape[-2:]
    out = x.new_empty(x.shape[0], 3, height * scale, width * scale)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, bottom + margin), min(width, right + margin)
            piece = run(x[..., y0:y1, x0:x1], (y0, y1, x0, x1))
            out[..., top * scale : bottom * scale, left * scale : right * scale] = piece[
                ..., (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale
            ]
    return out


def thumbnail(x: torch.Tensor, side: int) -> torch.Tensor:
    """x shrunk (antialiased) to at most `side` px on its longer side; x itself when it is no larger."""
    scale = min(1.0, side / max(x.shape[-2:]))
    return x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True)

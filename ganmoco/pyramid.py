"""Gaussian and Laplacian image pyramids (Burt & Adelson 1983): tensors (B, C, H, W) in, lists of tensors out,
any H and W. Used by the fusion head (blending per level) and the classic fusion rules of the evaluator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """Blur with the 5-tap binomial kernel, then keep every second pixel."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype, device=x.device) / 16
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])[..., ::2, ::2]


def upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pyramid_levels(size: tuple[int, int], coarsest: int = 8) -> int:
    """As many levels as halvings leave the coarsest one at least `coarsest` pixels on its short side."""
    return max(1, int(math.log2(max(min(size) / coarsest, 1))) + 1)


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(pyramid_down(pyramid[-1]))
    return pyramid


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels, then the low-pass residual; collapse_pyramid inverts it exactly."""
    gauss = gaussian_pyramid(x, levels)
    return [g - upsample(g_next, g.shape[-2:]) for g, g_next in zip(gauss, gauss[1:], strict=False)] + [gauss[-1]]


def collapse_pyramid(pyramid: list[torch.Tensor]) -> torch.Tensor:
    x = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        x = band + upsample(x, band.shape[-2:])
    return x

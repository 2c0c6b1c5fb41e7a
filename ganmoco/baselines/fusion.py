"""The classic fusion rules: per-pixel average and max-abs, the Laplacian-pyramid max-abs rule (multi-focus)
and Mertens exposure fusion. Sources and results are (1, 3, H, W) tensors in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..pyramid import collapse_pyramid, gaussian_pyramid, laplacian_pyramid, pyramid_levels


def average_fusion(sources: list[torch.Tensor]) -> torch.Tensor:
    """Per-pixel mean of the sources."""
    return torch.stack(sources).mean(0)


def max_abs_fusion(sources: list[torch.Tensor]) -> torch.Tensor:
    """Per pixel and channel, the source value farthest from mid-grey (the largest |x| in [-1, 1])."""
    stacked = torch.stack(sources)
    return stacked.gather(0, stacked.abs().argmax(0, keepdim=True))[0]


def laplacian_max_abs_fusion(sources: list[torch.Tensor]) -> torch.Tensor:
    """The classic multi-focus rule: at each band-pass level of the sources' Laplacian pyramids keep, per
    pixel, the source whose coefficients (summed over the channels) are largest in magnitude; average the
    low-pass residuals; collapse."""
    levels = pyramid_levels(sources[0].shape[-2:])
    pyramids = [laplacian_pyramid(s.float(), levels) for s in sources]
    fused = []
    for level in range(levels - 1):
        bands = torch.stack([p[level] for p in pyramids])  # (N, B, 3, h, w)
        pick = bands.abs().sum(2, keepdim=True).argmax(0, keepdim=True).expand(1, *bands.shape[1:])
        fused.append(bands.gather(0, pick)[0])
    fused.append(torch.stack([p[-1] for p in pyramids]).mean(0))
    return collapse_pyramid(fused).clamp(-1, 1)


def mertens_fusion(sources: list[torch.Tensor], sigma: float = 0.2) -> torch.Tensor:
    """Exposure fusion (Mertens, Kautz & Van Reeth 2007): per-pixel weights = contrast (|Laplacian| of grey)
    x saturation (std over RGB) x well-exposedness (prod over RGB of exp(-(c - 1/2)^2 / 2 sigma^2)), normalised
    over the sources, blend the sources' Laplacian pyramids with the weights' Gaussian pyramids."""
    units = [(s.float() + 1) / 2 for s in sources]
    laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    weights = []
    for u in units:
        grey = u.mean(1, keepdim=True)
        contrast = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), laplace.to(u)).abs()
        saturation = u.std(1, keepdim=True, unbiased=False)
        exposedness = torch.exp(-((u - 0.5) ** 2) / (2 * sigma**2)).prod(1, keepdim=True)
        weights.append(contrast * saturation * exposedness + 1e-12)
    total = torch.stack(weights).sum(0)
    levels = pyramid_levels(units[0].shape[-2:])
    fused = None
    for u, w in zip(units, weights, strict=True):
        blended = [
            g * band for g, band in zip(gaussian_pyramid(w / total, levels), laplacian_pyramid(u, levels), strict=True)
        ]
        fused = blended if fused is None else [a + b for a, b in zip(fused, blended, strict=True)]
    return (collapse_pyramid(fused).clamp(0, 1) * 2 - 1).to(sources[0].dtype)

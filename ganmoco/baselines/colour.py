"""The trivial style-transfer floors: the content itself and a Lab mean/std colour transfer."""

from __future__ import annotations

import torch

# sRGB (D65) <-> CIE XYZ, and the Lab white point
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [-1, 1] -> CIE Lab (L in 0..100)."""
    rgb = ((x.clamp(-1, 1) + 1) / 2).double()
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.double(), linear) / _WHITE.double().view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_lab, clamped to the sRGB gamut, back in [-1, 1] float32."""
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    xyz = torch.where(f > 0.206893, f**3, (f - 16 / 116) / 7.787) * _WHITE.double().view(1, 3, 1, 1)
    linear = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_XYZ.double()), xyz).clamp(0, 1)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return (rgb * 2 - 1).float()


def content_only(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The floor: no stylization at all."""
    return content


def lab_colour_transfer(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Reinhard et al. 2001: match each Lab channel's mean and standard deviation to the style's."""
    c, s = rgb_to_lab(content), rgb_to_lab(style)
    c_mean, c_std = c.mean((2, 3), keepdim=True), c.std((2, 3), keepdim=True) + 1e-6
    s_mean, s_std = s.mean((2, 3), keepdim=True), s.std((2, 3), keepdim=True)
    return lab_to_rgb((c - c_mean) / c_std * s_std + s_mean)

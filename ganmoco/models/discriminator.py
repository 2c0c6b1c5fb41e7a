"""Multi-scale PatchGAN discriminator with spectral norm, conditioned on a code by projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """Patch logits + <embed(code), features> per patch (the projection discriminator, Miyato & Koyama)."""

    def __init__(self, base_channels: int, num_layers: int, code_dim: int):
        super().__init__()
        layers, channels = [], 3
        for i in range(num_layers):
            out = base_channels * min(2**i, 8)
            layers += [spectral_norm(nn.Conv2d(channels, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.to_logit = spectral_norm(nn.Conv2d(channels, 1, 3, padding=1))
        self.embed = spectral_norm(nn.Linear(code_dim, channels, bias=False))

    def forward(self, x, code):
        h = self.features(x)
        return self.to_logit(h) + (self.embed(code)[:, :, None, None] * h).sum(1, keepdim=True)


class GanMocoDiscriminator(ModelMixin, ConfigMixin):
    """`D(images, code) -> [patch logits per scale]`; scale k sees the image downsampled 2**k times."""

    @register_to_config
    def __init__(self, base_channels: int = 64, num_layers: int = 3, num_scales: int = 2, code_dim: int = 128):
        super().__init__()
        for key, value in (
            ("base_channels", base_channels),
            ("num_layers", num_layers),
            ("num_scales", num_scales),
            ("code_dim", code_dim),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self.scales = nn.ModuleList(PatchDiscriminator(base_channels, num_layers, code_dim) for _ in range(num_scales))

    def forward(self, images: torch.Tensor, code: torch.Tensor) -> list[torch.Tensor]:
        if code.ndim != 2 or code.shape != (images.shape[0], self.config.code_dim):
            raise ValueError(
                f"code must have shape ({images.shape[0]}, {self.config.code_dim}), got {tuple(code.shape)}"
            )
        logits = []
        for k, scale in enumerate(self.scales):
            x = images if k == 0 else F.avg_pool2d(images, 2**k)
            logits.append(scale(x, code))
        return logits

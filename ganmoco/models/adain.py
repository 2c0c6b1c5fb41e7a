"""The AdaIN baseline (Huang & Belongie 2017): a frozen VGG encoder to relu4_1, adaptive instance norm, and a
trained decoder that mirrors the encoder. Only the decoder has weights of its own; the evaluator compares
ganmoco against it (trained with `train/train_adain.py` on the same data and budget)."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

ENCODER_LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), per channel over the spatial dims."""
    c_mean, c_std = content.mean((2, 3), keepdim=True), (content.var((2, 3), keepdim=True) + eps).sqrt()
    s_mean, s_std = style.mean((2, 3), keepdim=True), (style.var((2, 3), keepdim=True) + eps).sqrt()
    return (content - c_mean) / c_std * s_std + s_mean


class AdaINDecoder(ModelMixin, ConfigMixin):
    """relu4_1 features (B, 512, H/8, W/8) -> image (B, 3, H, W) in [-1, 1] (unbounded while training: the
    loss sees the raw output, as in the paper; `decode` clamps)."""

    @register_to_config
    def __init__(self, in_channels: int = 512):
        super().__init__()

        def conv(cin, cout, relu=True):
            layers = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
            return layers + [nn.ReLU()] if relu else layers

        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.net = nn.Sequential(
            *conv(in_channels, 256), up, *conv(256, 256), *conv(256, 256), *conv(256, 128), up,
            *conv(128, 128), *conv(128, 64), up, *conv(64, 64), *conv(64, 3, relu=False),
        )  # fmt: skip

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

"""The AdaIN baseline (Huang & Belongie 2017): a frozen VGG encoder to relu4_1, adaptive instance norm, and a
trained decoder that mirrors the encoder. Only the decoder has weights of its own (trained with
`train/train_adain.py`); `AdaINStylizer` runs it behind the offline VGG16 for the evaluator, `AdaINNet` (VGG19,
random weights) is the network the benchmarks time."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..models.features import FeatureExtractor

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


class AdaINStylizer:
    """A trained AdaIN decoder (a folder written by `train/train_adain.py`) behind the frozen VGG16."""

    def __init__(self, path: str | os.PathLike):
        self.decoder = AdaINDecoder.from_pretrained(os.fspath(path)).eval()
        self.vgg = FeatureExtractor("vgg16", layers=(ENCODER_LAYER,))

    @torch.no_grad()
    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h, w = content.shape[-2:]
        # the VGG pools three times: pad to a multiple of 8 and crop back
        padded = F.pad(content, (0, -w % 8, 0, -h % 8), mode="replicate")
        target = adaptive_instance_norm(self.vgg(padded)[ENCODER_LAYER], self.vgg(style)[ENCODER_LAYER])
        return self.decoder(target)[..., :h, :w].clamp(-1, 1)


class AdaINNet(nn.Module):
    """Huang & Belongie 2017: VGG19 to relu4_1, AdaIN, the mirrored decoder (the style features are cached)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import vgg19

        self.encoder = vgg19(weights=None).features[:21]
        self.decoder = AdaINDecoder()

    def forward(self, x, style_mean, style_std):
        f = self.encoder(x)
        mean, std = f.mean((2, 3), keepdim=True), f.std((2, 3), keepdim=True) + 1e-5
        return self.decoder((f - mean) / std * style_std + style_mean)

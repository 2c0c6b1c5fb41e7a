"""Style encoder: a pretrained trunk -> a style code z in R^d (as Ghiasi et al. 2017).

Two trunks: the FID Inception V3 (a learned head on its feature mean and std), or the MobileNetV2 of Magenta's
arbitrary-stylization predictor, whose pretrained head gives the 100-d style vector its transformer was trained
on (`ganmoco.models.pretrained.load_weights("magenta_predict")`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .layers import INCEPTION_CHANNELS, INCEPTION_LAYERS, build_fid_inception

BACKBONES = ("inception_v3", "mobilenet_v2")
MAX_ASPECT = 4  # a longer strip is squeezed to this: its code comes from all of it at a bounded cost


def build_tf_mobilenet_v2() -> nn.Sequential:
    """torchvision's MobileNetV2 features (1280 channels) with TensorFlow's "SAME" padding on the stride-2
    convolutions (one row and column of zeros after the input, none before), so that TF weights load exactly."""
    from torchvision.models import mobilenet_v2

    features = mobilenet_v2().features
    for module in list(features.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and child.stride == (2, 2):
                child.padding = (0, 0)
                setattr(module, name, nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), child))
    return features


class StyleEncoder(ModelMixin, ConfigMixin):
    """`E(style) -> (B, code_dim)`; the style image (any size, [-1, 1]) is resized to image_size on its shorter
    side, keeping its aspect ratio (squashing a painting into a square distorts its strokes: on the dev split's
    two paintings it raised the Gram distance of the results by 39 % and 116 %), times `scale` (`forward`)."""

    @register_to_config
    def __init__(
        self,
        code_dim: int = 128,
        trunk_layer: str = "Mixed_6e",
        image_size: int = 256,
        backbone: str = "inception_v3",
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if trunk_layer not in INCEPTION_LAYERS[:-1]:
            raise ValueError(f"trunk_layer must be one of {INCEPTION_LAYERS[:-1]}, got {trunk_layer!r}")
        if not isinstance(code_dim, int) or code_dim < 1:
            raise ValueError(f"code_dim must be a positive integer, got {code_dim!r}")
        if not isinstance(image_size, int) or image_size < 75:
            raise ValueError(f"image_size must be an integer >= 75 (the Inception stem needs it), got {image_size!r}")
        if backbone == "mobilenet_v2":
            # Magenta's predictor: the mean of the last 1280 features through one linear "bottleneck"
            self.trunk = build_tf_mobilenet_v2().eval()  # frozen batch norms from the start (see train())
            self.head = nn.Linear(1280, code_dim)
            return
        self.trunk = build_fid_inception(trunk_layer).eval()
        channels = INCEPTION_CHANNELS[trunk_layer]
        # mean and std of the trunk's features: the statistics style lives in
        self.head = nn.Sequential(nn.Linear(2 * channels, 2 * code_dim), nn.ReLU(), nn.Linear(2 * code_dim, code_dim))

    def load_trunk(self, state: dict[str, torch.Tensor]) -> None:
        """Load pretrained FID Inception weights (e.g. `ganmoco.models.pretrained.load_weights("inception_v3")`)."""
        own = self.trunk.state_dict()
        self.trunk.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)

    def train(self, mode: bool = True):
        # The trunk's batch norms keep their pretrained statistics: batch statistics of a few style crops
        # would make a code depend on the rest of its batch.
        super().train(mode)
        self.trunk.eval()
        return self

    def resized(self, style: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """`style` with its shorter side at scale * image_size px, its aspect ratio kept (up to MAX_ASPECT)."""
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        h, w = style.shape[-2:]
        short = self.config.image_size * scale
        k = short / min(h, w)
        size = (round(min(h * k, MAX_ASPECT * short)), round(min(w * k, MAX_ASPECT * short)))
        if style.shape[-2:] == size:
            return style
        return F.interpolate(style, size=size, mode="bilinear", align_corners=False, antialias=True)

    def _trunk_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 if self.config.backbone == "mobilenet_v2" else x  # the TF predictor reads [0, 1]

    def feature_statistics(self, image: torch.Tensor, strides=(4, 8, 16)) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-channel (mean, std) of the trunk's features at the end of each of `strides`: what a style's
        strokes look like to the encoder, at three sizes."""
        x, width, found = self._trunk_input(image), image.shape[-1], {}
        for stage in self.trunk:
            x = stage(x)
            if x.ndim != 4:
                break
            # the nearest power of two: unpadded convolutions shave pixels off, so a narrow image's ratio drifts
            # (44 px left of 384 reads 8.7) and rounding it would skip a stride for one image and not another
            stride = 2 ** round(math.log2(width / x.shape[-1]))
            if stride in strides:
                found[stride] = x  # the last stage at that stride wins
            elif stride > max(strides):
                break
        return [(f.mean(dim=(2, 3)), f.std(dim=(2, 3))) for f in found.values()]

    def forward(self, style: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """`scale`: how large the encoder sees the style (`resized`). The generator paints the strokes and
        patterns it sees at about the size it sees them, so a larger scale paints larger ones. The trunk ends in
        a global average, so any size and aspect ratio works."""
        style = self._trunk_input(self.resized(style, scale))
        if self.config.backbone == "mobilenet_v2":
            return self.head(self.trunk(style).mean(dim=(2, 3)))
        feats = self.trunk(style)
        stats = torch.cat([feats.mean(dim=(2, 3)), feats.flatten(2).std(dim=2)], dim=1)
        return self.head(stats)

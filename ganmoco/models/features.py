"""Frozen deep feature extractor (Inception V3 or VGG16) returning named intermediate layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torchvision.models import vgg16

from .layers import INCEPTION_LAYERS, build_fid_inception
from .pretrained import load_weights


def _vgg16_names() -> list[str]:
    names = []
    for block, n in zip(range(1, 6), (2, 2, 3, 3, 3), strict=True):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


VGG16_LAYERS = tuple(_vgg16_names())
LAYERS = {"inception_v3": INCEPTION_LAYERS, "vgg16": VGG16_LAYERS}
# the VGG16 taps that the style, feature and evaluation distances all read (one home for the tuple)
VGG_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# Caffe-style input of the HED VGG16: BGR, 0..255, minus the BSDS mean.
_HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)


class FeatureExtractor(ModelMixin, ConfigMixin):
    """`FeatureExtractor("vgg16", layers=("relu2_2",))(x) -> {"relu2_2": tensor}` for x in [-1, 1], RGB, NCHW.

    Weights are frozen and the module stays in eval mode. Inception inputs are resized to 299x299 (the FID
    convention); VGG inputs keep their size. Gradients flow to the input, so it serves as a loss network.
    """

    @register_to_config
    def __init__(self, network: str = "vgg16", layers: tuple[str, ...] = ("relu2_2",), pretrained: bool = True):
        super().__init__()
        if network not in LAYERS:
            raise ValueError(f"network must be one of {sorted(LAYERS)}, got {network!r}")
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must name at least one layer")
        unknown = [name for name in layers if name not in LAYERS[network]]
        if unknown:
            raise ValueError(f"unknown {network} layers {unknown}; choose from {LAYERS[network]}")
        self.layers = layers
        last = max(LAYERS[network].index(name) for name in layers)
        if network == "inception_v3":
            self.net = build_fid_inception(LAYERS[network][last])
        else:
            features = vgg16(weights=None).features[: last + 1]
            self.net = nn.Sequential()
            for name, module in zip(VGG16_LAYERS, features, strict=False):
                self.net.add_module(name, nn.ReLU() if isinstance(module, nn.ReLU) else module)
            self.register_buffer("mean_bgr", torch.tensor(_HED_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        if pretrained and not any(p.is_meta for p in self.net.parameters()):
            self._load_pretrained()
        self.requires_grad_(False)
        self.eval()

    def _load_pretrained(self):
        state = load_weights(self.config.network)
        if self.config.network == "vgg16":
            # torchvision numbers the VGG modules; ours are named.
            index = {str(i): name for i, name in enumerate(VGG16_LAYERS)}
            state = {f"{index[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in state.items()}
        own = self.net.state_dict()
        self.net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: BN statistics never update

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) image batch in [-1, 1], got shape {tuple(x.shape)}")
        if self.config.network == "inception_v3":
            if x.shape[-2:] != (299, 299):
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        else:
            x = (x.flip(1) + 1.0) * 127.5 - self.mean_bgr.to(x.dtype)
        wanted, out = set(self.layers), {}
        for name, stage in self.net.named_children():
            x = stage(x)
            if name in wanted:
                out[name] = x
        return out

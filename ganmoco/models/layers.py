"""Blocks shared by two models: the FID Inception V3 (style encoder trunk and feature extractor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

# The TF 2015 Inception V3 ("the FID network") differs from torchvision's in its average pools, which
# exclude padding, and in the last block, which max-pools; the variants below match it (as pytorch-fid).


class FIDInceptionA(InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return [self.branch1x1(x), b5, b3, pool]


class FIDInceptionC(InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = layer(d)
        pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return [self.branch1x1(x), b7, d, pool]


class FIDInceptionE(InceptionE):
    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, 3, 1, 1)
        else:
            pooled = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]


# Named stages in forward order; "pool" is the 2048-d global average (the FID feature).
INCEPTION_LAYERS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "pool",
)
INCEPTION_CHANNELS = {
    "Conv2d_1a_3x3": 32,
    "Conv2d_2a_3x3": 32,
    "Conv2d_2b_3x3": 64,
    "maxpool1": 64,
    "Conv2d_3b_1x1": 80,
    "Conv2d_4a_3x3": 192,
    "maxpool2": 192,
    "Mixed_5b": 256,
    "Mixed_5c": 288,
    "Mixed_5d": 288,
    "Mixed_6a": 768,
    "Mixed_6b": 768,
    "Mixed_6c": 768,
    "Mixed_6d": 768,
    "Mixed_6e": 768,
    "Mixed_7a": 1280,
    "Mixed_7b": 2048,
    "Mixed_7c": 2048,
    "pool": 2048,
}


def build_fid_inception(last_layer: str = "pool") -> nn.Sequential:
    """The FID Inception V3 as an `nn.Sequential` of named stages, cut after `last_layer` (random weights)."""
    if last_layer not in INCEPTION_LAYERS:
        raise ValueError(f"last_layer must be one of {INCEPTION_LAYERS}, got {last_layer!r}")
    net = Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = FIDInceptionA(192, 32), FIDInceptionA(256, 64), FIDInceptionA(288, 64)
    net.Mixed_6b = FIDInceptionC(768, 128)
    net.Mixed_6c, net.Mixed_6d = FIDInceptionC(768, 160), FIDInceptionC(768, 160)
    net.Mixed_6e = FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = FIDInceptionE(1280, max_pool=False), FIDInceptionE(2048, max_pool=True)
    stages = nn.Sequential()
    for name in INCEPTION_LAYERS:
        stage = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if name == "pool" else getattr(net, name)
        stages.add_module(name, stage)
        if name == last_layer:
            break
    return stages

"""The transformer network of Johnson et al. 2016 (random weights): a speed reference for the benchmarks."""

from __future__ import annotations

from torch import nn


def _conv(cin, cout, k=3, stride=1):
    return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class JohnsonNet(nn.Module):
    """The transformer net of Johnson et al. 2016 (as in pytorch/examples fast_neural_style)."""

    def __init__(self):
        super().__init__()

        def block(cin, cout, k, stride=1):
            return [_conv(cin, cout, k, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()]

        class Res(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(*block(128, 128, 3), _conv(128, 128), nn.InstanceNorm2d(128, affine=True))

            def forward(self, x):
                return x + self.body(x)

        self.net = nn.Sequential(
            *block(3, 32, 9),
            *block(32, 64, 3, 2),
            *block(64, 128, 3, 2),
            *[Res() for _ in range(5)],
            nn.Upsample(scale_factor=2),
            *block(128, 64, 3),
            nn.Upsample(scale_factor=2),
            *block(64, 32, 3),
            _conv(32, 3, 9),
        )

    def forward(self, x):
        return self.net(x)

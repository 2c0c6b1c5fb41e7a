"""Training throughput: images/second of one GAN-MoCo style step beside an AdaIN decoder step, same batch.

    python train/bench_train.py [--resolution 256] [--batch_size 4] [--steps 5]

The GAN-MoCo step is the one `train/train.py` runs (generator + style encoder + discriminator, VGG16 losses);
the AdaIN step trains a decoder on a frozen VGG19 (to relu4_1) with the usual content and mean/std style
losses (Huang & Belongie 2017). Random VGG19 weights: the timing does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# started as a script (accelerate launch train/train.py): the repository root first, so `train` is this package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from ganmoco.baselines import AdaINNet
from ganmoco.bench import machine
from ganmoco.models import FeatureExtractor, GanMocoDiscriminator, GanMocoGenerator, StyleEncoder
from ganmoco.models.features import VGG_STYLE_LAYERS
from train.steps import LossWeights, discriminator_loss, style_step


def _timed(step, steps: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ganmoco_step(content, style, pretrained: bool):
    weights = LossWeights()  # the training defaults
    G, E, D = GanMocoGenerator(), StyleEncoder(), GanMocoDiscriminator()
    E.trunk.requires_grad_(False)
    vgg = FeatureExtractor("vgg16", layers=VGG_STYLE_LAYERS, pretrained=pretrained)
    params = [p for p in [*G.parameters(), *E.parameters()] if p.requires_grad]
    opt_g = torch.optim.Adam(params, lr=1e-4)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4)

    def step():
        D.requires_grad_(False)
        loss, fake, code, real, _ = style_step(G, E, D, (vgg, None), content, style, weights)
        loss.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        D.requires_grad_(True)
        discriminator_loss(D, real, fake, code, weights).backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

    return step


def adain_step(content, style):
    net = AdaINNet()
    net.encoder.requires_grad_(False)
    taps = (1, 6, 11, 20)  # relu1_1, relu2_1, relu3_1, relu4_1 of VGG19
    opt = torch.optim.Adam(net.decoder.parameters(), lr=1e-4)

    def features(x):
        out = []
        for i, layer in enumerate(net.encoder):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out

    def stats(f):
        return f.mean((2, 3)), f.flatten(2).std(2) + 1e-5

    def step():
        with torch.no_grad():
            fc, fs = features(content)[-1], features(style)
            mean_c, std_c = stats(fc)
            mean_s, std_s = stats(fs[-1])
            target = (fc - mean_c[..., None, None]) / std_c[..., None, None] * std_s[..., None, None]
            target = target + mean_s[..., None, None]
        out = net.decoder(target)
        fo = features(out)
        loss = F.mse_loss(fo[-1], target)
        for a, b in zip(fo, fs, strict=True):
            (ma, sa), (mb, sb) = stats(a), stats(b)
            loss = loss + 10 * (F.mse_loss(ma, mb) + F.mse_loss(sa, sb))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--random_features", action="store_true", help="skip the pretrained VGG16 (same timing)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    shape = (args.batch_size, 3, args.resolution, args.resolution)
    content, style = torch.rand(shape) * 2 - 1, torch.rand(shape) * 2 - 1
    rows = [
        (
            "ganmoco style step (G + E + D, VGG16 losses)",
            _timed(ganmoco_step(content, style, not args.random_features), args.steps),
        ),
        ("AdaIN decoder step (VGG19 relu4_1)", _timed(adain_step(content, style), args.steps)),
    ]
    print(f"machine: {machine()}; batch {args.batch_size} at {args.resolution}x{args.resolution}\n")
    print("| step | median s/step | images/s |\n| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {args.batch_size / seconds:.2f} |")


if __name__ == "__main__":
    main()

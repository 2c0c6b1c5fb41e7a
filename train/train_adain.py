"""Train the AdaIN baseline's decoder on the same data as ganmoco, for the evaluator's comparison.

    python train/train_adain.py --content_dir corpus/content --style_dir corpus/style --output_dir runs/adain \
        --resolution 160 --train_batch_size 4 --max_train_steps 900

Same crops, held-out split and seeds as `train/train.py` (ganmoco.data), a frozen VGG16 (the offline HED
trunk) to relu4_1, and the paper's loss: L = ||f(g(t)) - t||^2 + lambda * sum_i (||mu_i - mu_i(s)||^2 +
||sigma_i - sigma_i(s)||^2) over relu1_1..relu4_1, with t = AdaIN(f(c), f(s)). One process; the output folder
holds `decoder/` (config.json + safetensors), `training_args.json` and `train_log.txt`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ganmoco import losses
from ganmoco.baselines.adain import ENCODER_LAYER, STYLE_LAYERS, AdaINDecoder, adaptive_instance_norm
from ganmoco.data import ImageDataset, ResumableBatchSampler, split_train_val
from ganmoco.images import find_images
from ganmoco.models.features import FeatureExtractor


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content_dir", required=True)
    p.add_argument("--style_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--validation_images", type=int, default=2, help="held out exactly as train/train.py does")
    p.add_argument("--train_batch_size", type=int, default=4)
    p.add_argument("--max_train_steps", type=int, default=1000)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--style_weight", type=float, default=10.0)
    p.add_argument("--logging_steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("resolution", "train_batch_size", "max_train_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive")
    return args


def batches(paths, args, salt: int, jitter: bool):
    dataset = ImageDataset(paths, args.resolution, args.seed, jitter=jitter)
    sampler = ResumableBatchSampler(len(dataset), args.train_batch_size, args.seed + salt)
    return iter(DataLoader(dataset, batch_sampler=sampler))


def main(args) -> int:
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    contents, _ = find_images(args.content_dir)
    styles, _ = find_images(args.style_dir)
    if min(len(contents), len(styles)) <= args.validation_images:
        raise SystemExit(f"error: need more than --validation_images={args.validation_images} images per folder")
    train_c, _ = split_train_val(contents, args.validation_images, args.seed)
    train_s, _ = split_train_val(styles, args.validation_images, args.seed + 1)
    content_batches = batches(train_c, args, 0, jitter=False)
    style_batches = batches(train_s, args, 1, jitter=True)

    vgg = FeatureExtractor("vgg16", layers=STYLE_LAYERS)
    decoder = AdaINDecoder()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=args.learning_rate)
    log = (out / "train_log.txt").open("a")
    start = time.perf_counter()
    for step in tqdm(range(1, args.max_train_steps + 1), desc="adain", unit="step"):
        content, style = next(content_batches), next(style_batches)
        with torch.no_grad():
            f_style = vgg(style)
            target = adaptive_instance_norm(vgg(content)[ENCODER_LAYER], f_style[ENCODER_LAYER])
        output = vgg(decoder(target))
        content_loss = F.mse_loss(output[ENCODER_LAYER], target)
        style_loss = losses.mean_std_style_loss(output, f_style)
        loss = content_loss + args.style_weight * style_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.logging_steps == 0 or step == args.max_train_steps:
            line = (
                f"step {step} loss {loss.item():.4f} content {content_loss.item():.4f} "
                f"style {style_loss.item():.4f} elapsed {time.perf_counter() - start:.0f}s"
            )
            print(line, file=log, flush=True)
            tqdm.write(line)
    decoder.save_pretrained(out / "decoder")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

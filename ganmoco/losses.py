"""Loss terms of GAN-MoCo: pure functions, tensors in, scalar out; the formula in each docstring.

Images are in [-1, 1]. Discriminator outputs are lists of patch-logit maps (one per scale); adversarial
losses average over scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.transforms.functional import gaussian_blur

Logits = torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]


def _scales(logits: Logits) -> list[torch.Tensor]:
    return list(logits) if isinstance(logits, list | tuple) else [logits]


def hinge_d_loss(real: Logits, fake: Logits) -> torch.Tensor:
    """L_D = mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(_scales(real), _scales(fake), strict=True)]
    return torch.stack(terms).mean()


def hinge_g_loss(fake: Logits) -> torch.Tensor:
    """L_G = -mean(D(fake))."""
    return torch.stack([-f.mean() for f in _scales(fake)]).mean()


def nonsaturating_d_loss(real: Logits, fake: Logits) -> torch.Tensor:
    """L_D = mean(softplus(-D(real))) + mean(softplus(D(fake)))  (= -log s(D(real)) - log(1 - s(D(fake))))."""
    terms = [F.softplus(-r).mean() + F.softplus(f).mean() for r, f in zip(_scales(real), _scales(fake), strict=True)]
    return torch.stack(terms).mean()


def nonsaturating_g_loss(fake: Logits) -> torch.Tensor:
    """L_G = mean(softplus(-D(fake)))  (= -log s(D(fake)))."""
    return torch.stack([F.softplus(-f).mean() for f in _scales(fake)]).mean()


ADVERSARIAL = {"hinge": (hinge_d_loss, hinge_g_loss), "nonsaturating": (nonsaturating_d_loss, nonsaturating_g_loss)}


def gram_matrix(feats: torch.Tensor) -> torch.Tensor:
    """G = F F^T / (C H W) for F the (B, C, H*W) features."""
    b, c, h, w = feats.shape
    f = feats.reshape(b, c, h * w).float()
    return f @ f.transpose(1, 2) / (c * h * w)


def feature_loss(feats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_feature = sum over layers i of mean((phi_i(X) - phi_i(Y))^2)  (the seed's sum ||phi_i(X) - phi_i(Y)||^2)."""
    return sum(F.mse_loss(feats[k].float(), targets[k].float()) for k in targets)


def gram_style_loss(feats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_gram = sum over layers of mean((Gram(phi(X)) - Gram(phi(S)))^2)."""
    return sum(F.mse_loss(gram_matrix(feats[k]), gram_matrix(targets[k])) for k in targets)


COARSE_STYLE_FACTORS = (2, 4)  # the pyramid levels at which L_style_coarse (and the evaluator's coarse Gram, at 4) look


def downscaled(image: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H // factor, W // factor): the mean of each factor x factor block (a box-filter pyramid
    level; differentiable). A structure `factor` times wider than VGG's early receptive fields is texture there."""
    return F.avg_pool2d(image, factor)


def mean_std_style_loss(
    feats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], eps: float = 1e-5
) -> torch.Tensor:
    """L_meanstd = sum over layers of mean((mu(X) - mu(S))^2) + mean((sigma(X) - sigma(S))^2), per channel."""
    total = 0.0
    for k in targets:
        x, s = feats[k].float().flatten(2), targets[k].float().flatten(2)
        x_std = (x.var(dim=2, unbiased=False) + eps).sqrt()
        s_std = (s.var(dim=2, unbiased=False) + eps).sqrt()
        total = total + F.mse_loss(x.mean(2), s.mean(2)) + F.mse_loss(x_std, s_std)
    return total


def total_variation_loss(image: torch.Tensor) -> torch.Tensor:
    """TV = mean(|x[i+1, j] - x[i, j]|) + mean(|x[i, j+1] - x[i, j]|)."""
    return (image[..., 1:, :] - image[..., :-1, :]).abs().mean() + (image[..., :, 1:] - image[..., :, :-1]).abs().mean()


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y = 0.299 R + 0.587 G + 0.114 B, kept as (B, 1, H, W)."""
    weights = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True)


def image_gradient(image: torch.Tensor) -> torch.Tensor:
    """|d/dx| + |d/dy| of the luminance by central differences (replicate border), shape (B, 1, H, W)."""
    y = F.pad(luminance(image), (1, 1, 1, 1), mode="replicate")
    gx = (y[..., 1:-1, 2:] - y[..., 1:-1, :-2]) / 2
    gy = (y[..., 2:, 1:-1] - y[..., :-2, 1:-1]) / 2
    return gx.abs() + gy.abs()


def fusion_intensity_loss(
    fused: torch.Tensor, sources: torch.Tensor, exposure: torch.Tensor | None = None, sigma: float = 0.2
) -> torch.Tensor:
    """L_int = mean(|Y(F) - T|) with T = max_i Y(S_i), the salient (brightest) intensity (U2Fusion-like), or,
    for the items where `exposure` (B,) is true, T = sum_i w_i Y(S_i) / sum_i w_i with the well-exposedness
    w_i = exp(-(Y_i - 1/2)^2 / (2 sigma^2)) of Mertens et al. (Y in [0, 1]): the brightest exposure of a bracket
    is the over-exposed one.

    `sources` has shape (B, N, 3, H, W).
    """
    y = luminance(sources.flatten(0, 1)).view(*sources.shape[:2], 1, *sources.shape[-2:])
    target = y.amax(1)
    if exposure is not None:
        unit = (y + 1) / 2
        w = torch.exp(-((unit - 0.5) ** 2) / (2 * sigma**2)) + 1e-6
        exposed = (w * y).sum(1) / w.sum(1)
        target = torch.where(exposure.view(-1, 1, 1, 1).to(target.device), exposed, target)
    return (luminance(fused) - target).abs().mean()


def fusion_gradient_loss(fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """L_grad = mean(| |grad F| - max_i |grad S_i| |): keep the sharpest detail of any source."""
    target = image_gradient(sources.flatten(0, 1)).view(*sources.shape[:2], 1, *sources.shape[-2:]).amax(1)
    return (image_gradient(fused) - target).abs().mean()


def fusion_ssim_loss(fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """L_ssim = 1 - mean_i SSIM(F, S_i), SSIM on [0, 1] images with an 11x11 Gaussian window."""
    n = sources.shape[1]
    x = ((fused.float() + 1) / 2).repeat_interleave(n, dim=0)
    y = (sources.flatten(0, 1).float() + 1) / 2
    return 1 - structural_similarity_index_measure(x, y, data_range=1.0)


def fusion_reference_loss(fused: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """L_ref = mean(|F - R|) + 1 - SSIM(F, R): the distance to the clean image R a synthetic pair was made from."""
    x, y = (fused.float() + 1) / 2, (reference.float() + 1) / 2
    return (x - y).abs().mean() + 1 - structural_similarity_index_measure(x, y, data_range=1.0)


def fusion_loss(
    fused: torch.Tensor,
    sources: torch.Tensor,
    w_int: float = 1.0,
    w_grad: float = 1.0,
    w_ssim: float = 1.0,
    exposure: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    w_ref: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_fusion = w_int L_int + w_grad L_grad + w_ssim L_ssim (+ w_ref L_ref when the clean `reference` is
    known, as for synthetic pairs); returns the total and the raw terms.
    `exposure` (B,) marks exposure brackets (see fusion_intensity_loss)."""
    terms = {
        "fusion_intensity": fusion_intensity_loss(fused, sources, exposure),
        "fusion_gradient": fusion_gradient_loss(fused, sources),
        "fusion_ssim": fusion_ssim_loss(fused, sources),
    }
    total = w_int * terms["fusion_intensity"] + w_grad * terms["fusion_gradient"] + w_ssim * terms["fusion_ssim"]
    if reference is not None:
        terms["fusion_reference"] = fusion_reference_loss(fused, reference)
        total = total + w_ref * terms["fusion_reference"]
    return total, terms


def teacher_loss(output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
    """L_teacher = mean |G(x) - T(x)|: distance to a frozen teacher network's output for the same input."""
    return (output.float() - teacher_output.float()).abs().mean()


def colour_loss(output: torch.Tensor, style: torch.Tensor, projections: int = 32) -> torch.Tensor:
    """L_colour = the sliced Wasserstein-1 distance between the RGB colours of each output and its style image:
    both sets of pixels projected on `projections` random directions of colour space, sorted, compared quantile
    by quantile. It matches the whole colour distribution (where Gram and mean/std terms see feature
    statistics), and ignores where the colours are. Images of different sizes compare by quantiles."""
    x, y = output.float().flatten(2), style.float().flatten(2)  # (B, 3, N), (B, 3, M)
    directions = F.normalize(torch.randn(3, projections, device=x.device), dim=0)
    px = torch.einsum("bcn,cp->bpn", x, directions).sort(dim=-1).values
    py = torch.einsum("bcn,cp->bpn", y, directions).sort(dim=-1).values
    if py.shape[-1] != px.shape[-1]:
        py = F.interpolate(py, size=px.shape[-1], mode="linear", align_corners=True)
    return (px - py).abs().mean()


def upscale_loss(output: torch.Tensor, target: torch.Tensor, w_ssim: float = 0.0) -> torch.Tensor:
    """L_upscale = mean |SR - HR| + w_ssim (1 - SSIM(SR, HR)), on [0, 1] images: the PSNR-oriented
    super-resolution term (L1 converges to sharper results than L2, Lim et al. 2017)."""
    x, y = (output.float() + 1) / 2, (target.float() + 1) / 2
    loss = (x - y).abs().mean()
    if w_ssim > 0:
        loss = loss + w_ssim * (1 - structural_similarity_index_measure(x.clamp(0, 1), y, data_range=1.0))
    return loss


HALO_REACH = 16  # px on either side of an edge in which halos are looked for (the stylizer's reach about 10 px)


def _halo_ends(reach: int) -> int:
    """How many samples at each end of an edge's profile are its flat ground."""
    return max(2, (reach + 1) // 3)


def sobel(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Sobel derivatives d/dx, d/dy of (B, 1, H, W) images (replicate border), each (B, 1, H, W)."""
    kx = y.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    g = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), torch.stack([kx, kx.t()])[:, None])
    return g[:, :1], g[:, 1:]


def edge_profiles(content: torch.Tensor, reach: int = HALO_REACH, max_edges: int = 1024) -> list[torch.Tensor | None]:
    """Where to look for halos: for each image of `content`, the sampling grid (1, n, 2 reach + 1, 2) of
    grid_sample (align_corners=True) across its strong step edges, dark side first, or None if it has none.
    A step edge: among the 3 % strongest gradients of the luminance (smoothed, sigma 1.5 px), and flat on both
    sides `reach` px away (the outer third of each side varies by less than 0.04) with a step of 0.15 or more.
    At most `max_edges` of them, evenly spread over the image's edges (deterministic)."""
    y = (luminance(content.detach().float()) + 1) / 2
    b, _, h, w = y.shape
    gx, gy = sobel(gaussian_blur(y, [9, 9], [1.5, 1.5]))
    mag = torch.hypot(gx, gy)
    inner = torch.zeros(h, w, dtype=torch.bool, device=y.device)
    inner[reach + 1 : h - reach - 1, reach + 1 : w - reach - 1] = True
    t = torch.arange(-reach, reach + 1, dtype=y.dtype, device=y.device)
    k = _halo_ends(reach)
    grids: list[torch.Tensor | None] = []
    for i in range(b):
        strong = mag[i, 0] > torch.quantile(mag[i, 0].flatten()[:: max(1, h * w // 1_000_000)], 0.97)
        ys, xs = torch.nonzero(strong & inner & (mag[i, 0] > 8e-3), as_tuple=True)
        if len(ys) == 0:
            grids.append(None)
            continue
        norm = mag[i, 0, ys, xs]
        nx, ny = gx[i, 0, ys, xs] / norm, gy[i, 0, ys, xs] / norm  # toward the bright side
        px, py = xs[:, None] + nx[:, None] * t, ys[:, None] + ny[:, None] * t
        grid = torch.stack([px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1], dim=-1)[None]
        prof = F.grid_sample(y[i : i + 1], grid, align_corners=True)[0, 0]
        lo, hi = prof[:, :k], prof[:, -k:]
        step = hi.mean(1) - lo.mean(1)
        edge = (lo.std(1) < 0.04) & (hi.std(1) < 0.04) & (step > 0.15)
        chosen = torch.nonzero(edge)[:, 0]
        if len(chosen) == 0:
            grids.append(None)
            continue
        chosen = chosen[torch.linspace(0, len(chosen) - 1, min(max_edges, len(chosen))).long()]
        grids.append(grid[:, chosen])
    return grids


def _mean_edge_profile(profiles: torch.Tensor, k: int) -> torch.Tensor | None:
    """(n, L) profiles -> their mean with each profile's dark end at 0, in units of the mean step (the step's
    size taken as a constant), over the edges that keep their direction; None if none does."""
    lo, hi = profiles[:, :k].mean(1, keepdim=True), profiles[:, -k:].mean(1, keepdim=True)
    kept = (hi - lo)[:, 0] > 0.05
    if not bool(kept.any()):
        return None
    return (profiles - lo)[kept].mean(0) / (hi - lo)[kept].mean().detach()


def halo_loss(output: torch.Tensor, content: torch.Tensor, reach: int = HALO_REACH) -> torch.Tensor:
    """L_halo = mean over images of sum_t max(0, d_out(t) - d_content(t)), with d(t) = max(0, p(t) - p(t + 1)) the
    falls of the mean luminance profile p across the content's step edges (`edge_profiles`), walked from the
    dark side to the bright side, in units of the step. A step, sharp or blurred, only rises; a bright rim
    overshooting the bright side, a dark rim undershooting the dark side, or a light band standing off the edge
    make it fall. Falls the photo's own profile has (a groove, a shadow) are not counted. Averaging over many
    edges cancels painted texture, which lies at random across them; images without step edges count 0."""
    k = _halo_ends(reach)
    y = (luminance(output.float()) + 1) / 2
    c = (luminance(content.detach().float()) + 1) / 2
    total, count = y.sum() * 0, 0
    for i, grid in enumerate(edge_profiles(content, reach)):
        if grid is None:
            continue
        p = _mean_edge_profile(F.grid_sample(y[i : i + 1], grid, align_corners=True)[0, 0], k)
        q = _mean_edge_profile(F.grid_sample(c[i : i + 1], grid, align_corners=True)[0, 0], k)
        if p is None or q is None:
            continue
        falls_out, falls_content = (p[:-1] - p[1:]).clamp(min=0), (q[:-1] - q[1:]).clamp(min=0)
        total = total + (falls_out - falls_content).clamp(min=0).sum()
        count += 1
    return total / max(count, 1)


def temporal_loss(moved_output: torch.Tensor, output: torch.Tensor, dy: int, dx: int, border: int = 4) -> torch.Tensor:
    """L_temporal = mean |G(T x) - T G(x)| for T a move by (dy, dx) pixels (T x [i, j] = x [i - dy, j - dx]),
    over the pixels both show, `border` px in from the edges: the output of a moved frame must be the moved
    output (Gupta et al. 2017; ReCoNet), so painted texture follows the scene instead of flickering."""
    h, w = output.shape[-2:]
    top, left = border + max(dy, 0), border + max(dx, 0)
    bottom, right = h - border + min(dy, 0), w - border + min(dx, 0)
    if bottom <= top or right <= left:
        raise ValueError(f"a move of ({dy}, {dx}) px leaves no overlap in a {h}x{w} image")
    moved = moved_output[..., top:bottom, left:right].float()
    return (moved - output[..., top - dy : bottom - dy, left - dx : right - dx].float()).abs().mean()

"""What phones, cameras and the web do to a photo before anyone upscales it, as functions of a photo.

`second_order` draws a random chain for training, after Real-ESRGAN (Wang et al. 2021): blur, resize, noise and
JPEG, then the same again with other draws, a final resize to the low-resolution size and a sinc filter before
or after the last JPEG (its ringing); for a share of the draws a first-order chain instead (one resize, noise
and one JPEG: a phone's or a web page's). The ranges are milder than Real-ESRGAN's (this head upscales photos,
not old scans: heavier chains cost PSNR on every track, measured), and a share of plain bicubic and area
downscales is kept so that clean inputs still get sharpened.
`TRACKS` are the fixed degradations the evaluator scores (`degrade(image, scale, track)`).

Images are (1, 3, H, W) float tensors in 0..1 inside, PIL RGB images outside; JPEG goes through Pillow.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Probabilities and ranges of each step, stage 1 then stage 2 (sigmas in pixels of the stage's input, noise
# sigmas in 8-bit levels): the strengths of phone and web photos, not of old scans.
STAGES = (
    {"blur": 0.6, "blur_sigma": (0.2, 1.5), "resize": (0.75, 1.1), "noise": 0.4, "noise_sigma": (1.0, 6.0),
     "poisson": (0.05, 0.8), "jpeg": 0.4, "jpeg_quality": (60, 95)},
    {"blur": 0.3, "blur_sigma": (0.2, 0.8), "resize": None, "noise": 0.3, "noise_sigma": (1.0, 4.0),
     "poisson": (0.05, 0.5), "jpeg": 0.8, "jpeg_quality": (55, 95)},
)  # fmt: skip
RESIZE_SHARES = {"area": 0.5, "bilinear": 0.25, "bicubic": 0.25}  # phones bin pixels: area is the commonest
CLEAN_SHARE = {"bicubic": 0.3, "area": 0.1}  # then WEB_SHARE first order, the rest second order
# one resize, sometimes sensor noise, one JPEG: what a phone or a web page does to most photos. A head trained
# only on these (area + JPEG 70) gained 0.4 dB more on every JPEG track than on the second-order chain alone
WEB_SHARE = 0.3
WEB = {"noise": 0.3, "noise_sigma": (1.0, 5.0), "jpeg_quality": (55, 92)}
FINAL_SINC = 0.2


def to_tensor01(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def to_image(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy(), "RGB")


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float, beta: float = 2.0, plateau: bool = False):
    """A (k, k) blur kernel, k odd and about 3 sigma each side: an (an)isotropic Gaussian rotated by `angle`;
    `beta` != 2 gives the generalised Gaussian exp(-d^beta / 2), `plateau` the 1 / (1 + d^beta) kernel."""
    radius = max(1, math.ceil(3 * max(sigma_x, sigma_y)))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float64)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = (c * x + s * y) / sigma_x, (-s * x + c * y) / sigma_y
    d2 = u * u + v * v
    kernel = 1 / (1 + d2 ** (beta / 2)) if plateau else torch.exp(-0.5 * d2 ** (beta / 2))
    return (kernel / kernel.sum()).float()


def sinc_kernel(cutoff: float, radius: int = 6) -> torch.Tensor:
    """A separable windowed-sinc low-pass, `cutoff` in (0, 1] of Nyquist: the ringing of sharpened or
    resampled photos."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.sinc(cutoff * t) * torch.hann_window(2 * radius + 3, periodic=False, dtype=torch.float64)[1:-1]
    taps = taps / taps.sum()
    return (taps[:, None] * taps[None, :]).float()


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    radius = kernel.shape[-1] // 2
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    padded = F.pad(x, (radius, radius, radius, radius), mode=mode)
    return F.conv2d(padded, kernel.expand(3, 1, *kernel.shape), groups=3)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """To (h, w) with `mode` one of RESIZE_SHARES; bilinear and bicubic are antialiased when shrinking."""
    if mode == "area":
        return (
            F.interpolate(x, size=size, mode="area")
            if size[0] <= x.shape[-2]
            else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        )
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True).clamp(0, 1)


def gaussian_noise(x: torch.Tensor, sigma: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn((1, 1 if grey else 3, *x.shape[-2:]), generator=gen) * (sigma / 255)
    return (x + noise).clamp(0, 1)


def poisson_noise(x: torch.Tensor, scale: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """Shot noise: counts of ~255 photons at white, the deviation scaled by `scale`."""
    base = x.mean(1, keepdim=True) if grey else x
    noise = torch.poisson(base * 255, generator=gen) / 255 - base
    return (x + scale * noise).clamp(0, 1)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    buffer = io.BytesIO()
    to_image(x).save(buffer, "JPEG", quality=int(quality))
    return to_tensor01(Image.open(buffer))


def _random_blur(x, stage, rng):
    lo, hi = stage["blur_sigma"]
    sx = float(rng.uniform(lo, hi))
    kind = rng.choice(["iso", "aniso", "generalised", "plateau"], p=[0.45, 0.25, 0.15, 0.15])
    sy = sx if kind == "iso" else float(rng.uniform(lo, hi))
    beta = {"generalised": float(rng.uniform(0.5, 4.0)), "plateau": float(rng.uniform(1.0, 2.0))}.get(kind, 2.0)
    return filter2d(x, gaussian_kernel(sx, sy, float(rng.uniform(0, math.pi)), beta, plateau=kind == "plateau"))


def _random_noise(x, stage, rng, gen):
    grey = bool(rng.random() < 0.4)
    if rng.random() < 0.6:
        return gaussian_noise(x, float(rng.uniform(*stage["noise_sigma"])), grey, gen)
    return poisson_noise(x, float(rng.uniform(*stage["poisson"])), grey, gen)


def second_order(image: Image.Image, scale: int, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """(`image` at 1/scale of its size (floor), its denoise strength): degraded by a random chain drawn from
    `rng` (see the module docstring; strength 1), or for a share of the draws a clean bicubic or area downscale
    (strength 0)."""
    size = (max(1, image.height // scale), max(1, image.width // scale))
    x = to_tensor01(image)
    draw = rng.random()
    if draw < CLEAN_SHARE["bicubic"]:
        return image.resize(size[::-1], Image.BICUBIC), 0.0
    if draw < CLEAN_SHARE["bicubic"] + CLEAN_SHARE["area"]:
        return to_image(resize(x, size, "area")), 0.0
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if draw < CLEAN_SHARE["bicubic"] + CLEAN_SHARE["area"] + WEB_SHARE:
        x = resize(x, size, str(rng.choice(list(RESIZE_SHARES), p=list(RESIZE_SHARES.values()))))
        if rng.random() < WEB["noise"]:
            x = gaussian_noise(x, float(rng.uniform(*WEB["noise_sigma"])), bool(rng.random() < 0.4), gen)
        return to_image(jpeg(x, int(rng.integers(WEB["jpeg_quality"][0], WEB["jpeg_quality"][1] + 1)))), 1.0
    for index, stage in enumerate(STAGES):
        if rng.random() < stage["blur"]:
            x = _random_blur(x, stage, rng)
        if index == 0:  # stage 1 resizes around the final size; stage 2 lands on it
            factor = float(rng.uniform(*stage["resize"])) / scale
            shape = (max(1, round(x.shape[-2] * factor)), max(1, round(x.shape[-1] * factor)))
        else:
            shape = size
        x = resize(x, shape, str(rng.choice(list(RESIZE_SHARES), p=list(RESIZE_SHARES.values()))))
        if rng.random() < stage["noise"]:
            x = _random_noise(x, stage, rng, gen)
        last = index == len(STAGES) - 1
        sinc = last and rng.random() < FINAL_SINC
        if sinc and rng.random() < 0.5:
            x, sinc = filter2d(x, sinc_kernel(float(rng.uniform(0.5, 0.95)))), False
        if rng.random() < stage["jpeg"]:
            x = jpeg(x, int(rng.integers(stage["jpeg_quality"][0], stage["jpeg_quality"][1] + 1)))
        if sinc:
            x = filter2d(x, sinc_kernel(float(rng.uniform(0.5, 0.95))))
    return to_image(x), 1.0


def _track(steps):
    def degrade_track(image: Image.Image, scale: int, seed: int = 0) -> Image.Image:
        x, gen = to_tensor01(image), torch.Generator().manual_seed(seed)
        size = (max(1, image.height // scale), max(1, image.width // scale))
        for step, value in steps:
            if step == "blur":  # sigma in low-resolution pixels, applied before the downscale
                x = filter2d(x, gaussian_kernel(value * scale, value * scale, 0.0))
            elif step == "area":
                x = resize(x, size, "area")
            elif step == "bicubic":  # Pillow's, as super-resolution benchmarks make their inputs
                x = to_tensor01(to_image(x).resize(size[::-1], Image.BICUBIC))
            elif step == "noise":
                x = gaussian_noise(x, value, False, gen)
            elif step == "jpeg":
                x = jpeg(x, value)
        return to_image(x)

    return degrade_track


# The evaluator's tracks: name -> the steps, in order (see `degrade`).
TRACKS = {
    "clean": _track([("bicubic", None)]),
    "area": _track([("area", None)]),  # no loss but the pixels' own averaging: the others' ceiling, nearly
    "area+jpeg70": _track([("area", None), ("jpeg", 70)]),
    "area+noise3+jpeg80": _track([("area", None), ("noise", 3.0), ("jpeg", 80)]),
    "blur+jpeg75": _track([("blur", 0.5), ("bicubic", None), ("jpeg", 75)]),
}


def degrade(image: Image.Image, scale: int, track: str = "clean", seed: int = 0) -> Image.Image:
    """`image` at 1/scale of its size as the evaluator's `track` makes it (TRACKS; `seed` draws the noise)."""
    if track not in TRACKS:
        raise ValueError(f"unknown degradation track {track!r}; choose from {', '.join(TRACKS)}")
    return TRACKS[track](image, scale, seed)

"""The GAN-MoCo generator: one shared encoder / residual trunk / decoder for style transfer, fusion and
super-resolution.

Every norm is a conditional instance norm whose scale and shift come from a code: the style code for style
transfer, a learned task code for fusion. The statistics a norm divides by are the input's own unless a
NormStats argument supplies them (tiles, video frames): the generator keeps no state between calls. Upscaling
feeds the encoder's features of the low-resolution image to a small residual head that writes the detail
bicubic upsampling misses (x2, x4). Fusion encodes each of the N inputs with the shared encoder, and its
head turns their features into per-pixel softmax weights over the sources at full resolution and a tone curve
per source (order-invariant, any N >= 2): the fused image is a weighted sum of the (toned) sources. With
`match_colors`, a stylized image finally takes the mean and std of the style image's YCbCr channels (a
Reinhard et al. 2001 style colour transfer, inside the network): exact for a painting never seen in training,
where a learned code is not.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..tasks import FUSION_TASKS


class NormStats:
    """The statistics the instance norms of one forward pass normalise with, passed in as an argument so that
    the generator keeps no state between calls (concurrent calls need no lock).

    `given`: one (mean, var) per norm in call order, used instead of each input's own: the tiles of one image
    share the whole image's. Otherwise, with `previous` (the `used` of an earlier pass), each norm's own
    statistics move toward the earlier ones by `momentum`: the frames of a video share a slowly moving
    normalisation. `used` collects, in call order, what every norm of this pass used."""

    def __init__(self, given: list | None = None, previous: list | None = None, momentum: float = 0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.given, self.previous, self.momentum = given, previous or None, momentum
        self.used: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = len(self.used)
        if self.given is not None:
            if index >= len(self.given):
                raise ValueError(f"statistics were given for {len(self.given)} norms, the pass has more")
            stats = self.given[index]
        else:
            stats = instance_stats(x)
            if self.previous is not None:
                (mean, var), (old_mean, old_var) = stats, self.previous[index]
                stats = torch.lerp(mean, old_mean, self.momentum), torch.lerp(var, old_var, self.momentum)
        self.used.append(stats)
        return stats


def instance_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, var) of x, as E[x^2] - E[x]^2 in float32 (bf16 autocast would cancel): one fast
    reduction each, where var_mean over the spatial dims is several times slower on CPU."""
    xf = x.float()
    mean = xf.mean((2, 3), keepdim=True)
    return mean, ((xf * xf).mean((2, 3), keepdim=True) - mean * mean).clamp_min(0)


class _InstanceStats(nn.Module):
    """Instance normalisation by the input's own statistics, or by those a NormStats supplies."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def _normalise(
        self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, relu: bool, stats: NormStats | None
    ) -> torch.Tensor:
        """(x - mean) / std * scale + shift as one scale-and-shift per channel (two passes over the
        activations, not the four of instance_norm followed by an affine), with an optional fused ReLU."""
        mean, var = instance_stats(x) if stats is None else stats(x)
        scale = scale * torch.rsqrt(var + self.eps)
        out = torch.addcmul((shift - mean * scale).to(x.dtype), x, scale.to(x.dtype))
        return out.relu_() if relu else out


class ConditionalInstanceNorm(_InstanceStats):
    """Instance norm with (1 + gamma, beta) predicted from a code (B, d) or a spatial code map (B, d, h, w)."""

    def __init__(self, channels: int, code_dim: int, eps: float = 1e-5):
        super().__init__(eps)
        self.to_scale_shift = nn.Linear(code_dim, 2 * channels)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(
        self, x: torch.Tensor, code: torch.Tensor, relu: bool = False, stats: NormStats | None = None
    ) -> torch.Tensor:
        if code.ndim == 2:
            params = self.to_scale_shift(code)[:, :, None, None]
        else:
            # gamma and beta are linear in the code, so a blended code map blends the modulations per pixel
            code = F.interpolate(code, size=x.shape[-2:], mode="bilinear", align_corners=False)
            weight = self.to_scale_shift.weight[:, :, None, None]
            params = F.conv2d(code, weight, self.to_scale_shift.bias)
        gamma, beta = params.chunk(2, dim=1)
        return self._normalise(x, 1 + gamma, beta, relu, stats)


class AdaptiveInstanceNorm(_InstanceStats):
    """AdaIN (Huang & Belongie 2017): the input's per-channel statistics replaced by a style's, given as
    (B, 2C) = [mean, std] or as a map (B, 2C, h, w). No parameters: the statistics travel in the style code,
    so a style never seen in training still sets them exactly."""

    def forward(self, x: torch.Tensor, target: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        if target.ndim == 2:
            target = target[:, :, None, None]
        else:
            target = F.interpolate(target, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mean, std = target.float().chunk(2, dim=1)
        return self._normalise(x, std, mean, False, stats)


class ConvBlock(nn.Module):
    """reflection pad -> conv -> conditional instance norm (none when code_dim is None) -> ReLU (optional)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        code_dim: int | None,
        stride: int = 1,
        kernel_size: int = 3,
        relu: bool = True,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, padding_mode="reflect"
        )
        self.norm = ConditionalInstanceNorm(out_channels, code_dim) if code_dim else None
        self.relu = relu

    def forward(self, x, code=None, stats: NormStats | None = None):
        x = self.conv(x)
        if self.norm is not None:
            return self.norm(x, code, relu=self.relu, stats=stats)
        return x.relu() if self.relu else x


def nearest_upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The (4 * out, in, 3, 3) sub-pixel kernel that, pixel-shuffled, equals nearest-x2-upsample -> 3x3 conv
    with `weight` (out, in, 3, 3): output phase 0 of a row sees the upsampled taps (-1 | 0, +1), i.e. the
    low-resolution offsets (-1 | 0); phase 1 sees (-1, 0 | +1), i.e. (0 | +1). Same for columns."""
    fold = weight.new_tensor([[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]])
    kernel = torch.einsum("aik,ockl,bjl->oabcij", fold, weight, fold)  # (out, row phase, col phase, in, 3, 3)
    return kernel.reshape(weight.shape[0] * 4, weight.shape[1], 3, 3)


class UpBlock(nn.Module):
    """2x upsampling as a sub-pixel conv: a 3x3 conv at the low resolution to 4x the channels, then
    pixel_shuffle, without ever writing an upsampled input.

    `nearest=False`: the four phases are free (started equal, ICNR). `nearest=True`: the block stores one 3x3
    kernel and is exactly nearest-upsample -> reflect pad -> 3x3 conv (the phases' kernels are that kernel folded
    onto 2x2 taps, and replicate padding at the low resolution is reflect padding at the high one): the four
    phases stay tied in training, so no checkerboard can grow (the layout of pretrained Magenta weights)."""

    def __init__(self, in_channels: int, out_channels: int, code_dim: int | None, nearest: bool = False):
        super().__init__()
        self.nearest = nearest
        self.conv = nn.Conv2d(in_channels, (1 if nearest else 4) * out_channels, 3, padding=1, padding_mode="replicate")
        self.norm = ConditionalInstanceNorm(out_channels, code_dim) if code_dim else None
        if not nearest:
            # ICNR (Aitken et al. 2017): the four phases of each output channel start equal, so a fresh generator
            # upsamples like nearest-neighbour instead of starting from a checkerboard it must unlearn.
            with torch.no_grad():
                self.conv.weight.copy_(self.conv.weight[::4].repeat_interleave(4, dim=0))
                self.conv.bias.copy_(self.conv.bias[::4].repeat_interleave(4, dim=0))

    def forward(self, x, code=None, stats: NormStats | None = None):
        if self.nearest:
            kernel, bias = nearest_upsample_kernel(self.conv.weight), self.conv.bias.repeat_interleave(4)
            x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, bias)
        else:
            x = self.conv(x)
        x = F.pixel_shuffle(x, 2)
        return self.norm(x, code, relu=True, stats=stats) if self.norm is not None else x


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, code_dim: int, dilation: int = 1):
        super().__init__()
        conv = dict(padding=dilation, dilation=dilation, padding_mode="reflect")
        self.conv1 = nn.Conv2d(channels, channels, 3, **conv)
        self.norm1 = ConditionalInstanceNorm(channels, code_dim)
        self.conv2 = nn.Conv2d(channels, channels, 3, **conv)
        self.norm2 = ConditionalInstanceNorm(channels, code_dim)

    def forward(self, x, code, stats: NormStats | None = None):
        h = self.norm1(self.conv1(x), code, relu=True, stats=stats)
        return x + self.norm2(self.conv2(h), code, stats=stats)


class FusionHead(nn.Module):
    """Fusion writes weights, not pixels: per-pixel softmax weights over the N sources, and a tone curve per
    source, computed from the shared encoder's features of every source; the fused image is the weighted sum
    of the toned sources at full resolution, so it can *be* a source where that source is right.

    Each source is scored from its own features at every encoder scale beside the stack's mean and max there
    (order-invariant, any N), next to its pixels and a focus measure, at half resolution, and scaled by a
    per-pixel sharpness (e^-4..e^4) read from the whole stack (a focus stack wants one source at a time, an
    exposure bracket a smooth mix); the scores are upsampled before the softmax, so the weights still switch
    sources within a pixel or two. The tone curve (Guo et al. 2020, Zero-DCE: x <- x + a x (1 - x), repeated,
    with a per-pixel a in [-1, 1]) lets an exposure bracket fuse brighter or darker than any weighted mean of
    its frames; its a is the difference of one function of (source, stack) and the same function of (stack,
    stack), so a stack of agreeing sources is left as it is."""

    def __init__(self, feature_channels: list[int], code_dim: int, hidden: int = 16, tone_steps: int = 6):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(3 * c, hidden, 1) for c in feature_channels])
        self.task_bias = nn.Linear(code_dim, hidden)
        self.score = nn.Sequential(
            nn.Conv2d(hidden + 4, hidden, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, 3, padding=1, padding_mode="replicate"),
        )
        # the log of how decisive the weights are, per pixel (starts at 0: the plain softmax)
        self.sharpness = nn.Conv2d(hidden, 1, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.sharpness.weight)
        nn.init.zeros_(self.sharpness.bias)
        self.tone = nn.Sequential(
            nn.Conv2d(3 * feature_channels[-1], 32, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(),
            nn.Conv2d(32, tone_steps, 3, padding=1, padding_mode="replicate"),
        )

    @staticmethod
    def _stack(f: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) -> (B, 2C, h, w): the stack's mean and max."""
        # running sums over the N sources: mean(1) and amax(1) of channels-last features run ~10x slower
        sources = f.unbind(1)
        return torch.cat(
            [functools.reduce(torch.add, sources) / len(sources), functools.reduce(torch.maximum, sources)], dim=1
        )

    @classmethod
    def _beside_stack(cls, conv: nn.Conv2d, f: torch.Tensor) -> torch.Tensor:
        """`conv` (taking 3C channels) of each source's features (B, N, C, h, w) beside the stack's mean and max
        -> (B*N, out, h, w). A convolution is linear in its input channels, so the stack's share is convolved once
        per stack and added to each source's: no N copies of a 3C-channel concatenation to build and convolve."""
        b, n, c = f.shape[:3]
        own = conv._conv_forward(f.flatten(0, 1), conv.weight[:, :c], conv.bias)
        shared = conv._conv_forward(cls._stack(f), conv.weight[:, c:], None)
        return (own.unflatten(0, (b, n)) + shared.unsqueeze(1)).flatten(0, 1)

    @staticmethod
    def _focus(toned: torch.Tensor, b: int, n: int, size: tuple[int, int]) -> torch.Tensor:
        """(B*N, 1, h, w): each source's local detail energy (|grey - its 3x3 mean|, pooled over ~10 px) in
        log units relative to the stack's most detailed source: 0 for the sharpest, below 0 for the others.
        The classic focus measure, given to the scorer so that it need not learn one."""
        grey = toned.float().mean(1, keepdim=True)
        detail = (grey - F.avg_pool2d(grey, 3, 1, 1, count_include_pad=False)).abs()
        detail = F.adaptive_avg_pool2d(detail, size) if detail.shape[-2:] != size else detail
        energy = torch.log(F.avg_pool2d(detail, 5, 1, 2, count_include_pad=False) + 1e-3).view(b, n, 1, *size)
        return (energy - energy.amax(1, keepdim=True)).flatten(0, 1).to(toned.dtype)

    def forward(
        self, sources: torch.Tensor, feats: list[torch.Tensor], code: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sources (B, N, 3, H, W) in [-1, 1], feats: the encoder's (B*N, C, h, w) per scale, code (B, d)
        -> fused (B, 3, H, W), weights (B, N, 1, H, W) summing to 1 over N. `keep` (B, N, 1, H, W) in [0, 1]
        scales each source's weight before they are renormalised: 0 where a source must not be used (outside
        its frame after alignment, a subject that moved); at least one source must keep every pixel."""
        b, n, _, h, w = sources.shape
        full, half = (h, w), (-(-h // 2), -(-w // 2))

        def resize(t, size):
            return t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        coarse = feats[-1].view(b, n, *feats[-1].shape[1:])
        stack = self._stack(coarse)  # its first half is the mean
        agreeing = self.tone(torch.cat([stack[:, : coarse.shape[2]], stack], dim=1))
        own = self.tone[1:](self._beside_stack(self.tone[0], coarse))
        gains = torch.tanh(own) - torch.tanh(agreeing).repeat_interleave(n, dim=0)
        gains = gains.clamp(-1, 1)  # the curve keeps [0, 1] in [0, 1] for a in [-1, 1]
        toned = (sources.flatten(0, 1).float() + 1) / 2
        for a in resize(gains.float(), full).unbind(1):
            toned = torch.addcmul(toned, a.unsqueeze(1) * toned, 1 - toned)
        toned = toned.to(sources.dtype) * 2 - 1
        hidden = self.task_bias(code).repeat_interleave(n, dim=0)[:, :, None, None]
        for lateral, f in zip(self.lateral, feats, strict=True):
            hidden = hidden + resize(self._beside_stack(lateral, resize(f, half).view(b, n, -1, *half)), half)
        scores = self.score(torch.cat([hidden.relu(), resize(toned, half), self._focus(toned, b, n, half)], dim=1))
        mean_hidden = sum(hidden.relu().view(b, n, -1, *half).unbind(1)) / n  # see _stack: mean(1) is slow here
        sharpness = self.sharpness(mean_hidden).clamp(-4, 4).exp()
        scores = scores * sharpness.repeat_interleave(n, dim=0)
        weights = resize(scores, full).view(b, n, 1, h, w).float().softmax(dim=1)
        if keep is not None:
            weights = weights * keep.float()
            weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        weights = weights.to(sources.dtype)
        return (weights * toned.view(b, n, 3, h, w)).sum(1), weights


class UpscaleHead(nn.Module):
    """Super-resolution from the shared encoder: the low-resolution image and the encoder's features at every
    scale (resized to the input's grid) feed a small residual body (EDSR-style, no norms, so tiles and whole
    images agree), and a sub-pixel tail per scale writes the detail that bicubic upsampling misses. The tails
    start at zero, so an untrained head is exactly bicubic.

    `denoise`: the head also takes a strength in [0, 1] per image (0: a clean downscale, to sharpen; 1: a real
    photo's JPEG blocks and noise, to clean up rather than sharpen), as a learned shift of the body's input and
    of each block's, scaled by the strength (zero at the start: the head without it)."""

    def __init__(
        self, feature_channels: list[int], scales: list[int], hidden: int = 32, num_blocks: int = 4, denoise=False
    ):
        super().__init__()
        self.denoise = nn.Parameter(torch.zeros(num_blocks + 1, hidden)) if denoise else None
        self.pixels = nn.Conv2d(3, hidden, 3, padding=1, padding_mode="replicate")
        self.lateral = nn.ModuleList([nn.Conv2d(c, hidden, 1) for c in feature_channels])
        self.body = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"),
                    nn.ReLU(),
                    nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"),
                )
                for _ in range(num_blocks)
            ]
        )
        self.tails = nn.ModuleDict(
            {str(s): nn.Conv2d(hidden, 3 * s * s, 3, padding=1, padding_mode="replicate") for s in scales}
        )
        for tail in self.tails.values():
            nn.init.zeros_(tail.weight)
            nn.init.zeros_(tail.bias)

    def forward(
        self, x: torch.Tensor, feats: list[torch.Tensor], scale: int, denoise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, 3, h, w) in [-1, 1], feats: the encoder's features of x, denoise: (B,) strengths (with the
        option) -> (B, 3, scale h, scale w)."""
        size = x.shape[-2:]
        shifts = [0.0] * (len(self.body) + 1)
        if self.denoise is not None and denoise is not None:
            strength = denoise.to(x.dtype).view(-1, 1, 1, 1)
            shifts = [strength * shift.to(x.dtype).view(1, -1, 1, 1) for shift in self.denoise]
        h = self.pixels(x)
        for lateral, f in zip(self.lateral, feats, strict=True):
            f = lateral(f)
            h = h + (f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False))
        h = start = (h + shifts[0]).relu()
        for block, shift in zip(self.body, shifts[1:], strict=True):
            h = h + block(h + shift)
        detail = F.pixel_shuffle(self.tails[str(scale)](h + start), scale)
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) + detail


# ITU-R BT.601 YCbCr: luma and two opponent colour axes, linear in the [-1, 1] sRGB values (cheap, exportable)
_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, _YCBCR.to(x)[:, :, None, None])


def _ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, torch.linalg.inv(_YCBCR).to(x)[:, :, None, None])


class GanMocoGenerator(ModelMixin, ConfigMixin):
    """`G(content, code=z)` stylizes; `G(sources, task=t)` fuses sources of shape (B, N, 3, H, W).

    Images are in [-1, 1]; any H, W (padded internally to a multiple of 2**num_downsamples).
    """

    @register_to_config
    def __init__(
        self,
        base_channels: int = 32,
        max_channels: int = 128,
        num_downsamples: int = 3,
        num_res_blocks: int = 2,
        code_dim: int = 128,
        num_fusion_tasks: int = len(FUSION_TASKS),
        skip_connections: bool = True,
        match_colors: bool = False,
        stem_kernel_size: int = 0,
        encoder_norm: bool = True,
        upsample: str = "subpixel",
        upscale_scales: tuple[int, ...] = (2, 4),
        upscale_channels: int = 32,
        upscale_blocks: int = 4,
        upscale_denoise: bool = False,
        trunk_dilation: int = 1,
    ):
        super().__init__()
        for key, value in (
            ("base_channels", base_channels),
            ("max_channels", max_channels),
            ("num_downsamples", num_downsamples),
            ("code_dim", code_dim),
            ("num_fusion_tasks", num_fusion_tasks),
            ("trunk_dilation", trunk_dilation),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        for key, value in (
            ("match_colors", match_colors),
            ("encoder_norm", encoder_norm),
            ("upscale_denoise", upscale_denoise),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
        if upsample not in ("subpixel", "nearest"):
            raise ValueError(f"upsample must be 'subpixel' or 'nearest', got {upsample!r}")
        if stem_kernel_size not in (0, 3, 5, 7, 9):
            raise ValueError(f"stem_kernel_size must be 0 (no stem) or an odd size 3..9, got {stem_kernel_size!r}")
        if not isinstance(upscale_scales, list | tuple) or any(
            not isinstance(v, int) or isinstance(v, bool) or not 2 <= v <= 8 for v in upscale_scales
        ):
            raise ValueError(
                f"upscale_scales must be a list of integers in 2..8 (may be empty), got {upscale_scales!r}"
            )
        for key, value in (("upscale_channels", upscale_channels), ("upscale_blocks", upscale_blocks)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not isinstance(num_res_blocks, int) or num_res_blocks < 0:
            raise ValueError(f"num_res_blocks must be a non-negative integer, got {num_res_blocks!r}")
        # Two layouts. Without a stem: stride-2 conv blocks in, sub-pixel blocks out, the last one straight to RGB.
        # With a stem (the layout of Ghiasi et al. 2017's transformer, whose pretrained weights load into it):
        # a k x k stride-1 conv in at full resolution, and a k x k conv with a conditional norm out.
        stem = stem_kernel_size > 0
        enc_code = code_dim if encoder_norm else None
        channels = [min(base_channels * 2 ** (i + stem), max_channels) for i in range(num_downsamples)]
        inputs = [base_channels if stem else 3, *channels[:-1]]
        self.stem = ConvBlock(3, base_channels, enc_code, kernel_size=stem_kernel_size) if stem else None
        self.encoder = nn.ModuleList(
            [ConvBlock(c_in, c_out, enc_code, stride=2) for c_in, c_out in zip(inputs, channels, strict=True)]
        )
        # a dilated trunk reaches twice as far at the same weights and FLOPs: strokes and swirls can grow larger
        self.trunk = nn.ModuleList(
            [ResidualBlock(channels[-1], code_dim, trunk_dilation) for _ in range(num_res_blocks)]
        )
        # each block mirrors one encoder block (with a stem, the first one too: to_rgb then stays at full size)
        self.decoder = nn.ModuleList(
            [
                UpBlock(channels[i], inputs[i], code_dim, nearest=upsample == "nearest")
                for i in range(num_downsamples - 1, -1 if stem else 0, -1)
            ]
        )
        if stem:
            self.to_rgb = ConvBlock(base_channels, 3, code_dim, kernel_size=stem_kernel_size, relu=False)
        else:
            self.to_rgb = UpBlock(channels[0], 3, code_dim=None, nearest=upsample == "nearest")
        self.task_codes = nn.Embedding(num_fusion_tasks, code_dim)
        nn.init.normal_(self.task_codes.weight, std=0.1)
        self.fusion = FusionHead(([base_channels] if stem else []) + channels, code_dim)
        self.upscaler = (
            UpscaleHead(
                ([base_channels] if stem else []) + channels,
                list(upscale_scales),
                upscale_channels,
                upscale_blocks,
                upscale_denoise,
            )
            if upscale_scales
            else None
        )
        # match_colors: the style code ends with the style image's YCbCr [mean, std], which the output takes
        self.colour_norm = AdaptiveInstanceNorm() if match_colors else None

    @property
    def stylize_reach(self) -> int:
        """The stylization's receptive-field radius in input pixels: how much context a tile needs on each side
        to be painted as in the whole image. A k x k conv at 1/2^i scale reaches (k // 2) 2^i px."""
        c = self.config
        levels = range(c.num_downsamples)
        reach = 2 * (c.stem_kernel_size // 2)  # the stem and the to-RGB conv, at full size
        reach += sum(2**i for i in levels) + sum(2 ** (i + 1) for i in levels)  # encoder; decoder at its input
        return reach + 2 * c.num_res_blocks * c.trunk_dilation * 2**c.num_downsamples

    @property
    def style_code_dim(self) -> int:
        """Length of a style code: the style encoder's code_dim, then (match_colors) 6 colour statistics."""
        return self.config.code_dim + (6 if self.config.match_colors else 0)

    def style_code(self, code: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The full style code of `style` (B, 3, H, W) from its style-encoder code (B, code_dim): with
        match_colors the mean and std of the style image's YCbCr channels follow the code."""
        if not self.config.match_colors:
            return code
        ycc = _rgb_to_ycbcr(style.float())
        mean, var = ycc.mean((2, 3)), ycc.var((2, 3), unbiased=False)
        return torch.cat([code, mean.to(code.dtype), (var + 1e-5).sqrt().to(code.dtype)], dim=1)

    def _encode(self, x, code, stats: NormStats | None = None) -> list[torch.Tensor]:
        """Features at (with a stem: 1,) 1/2, 1/4, ... 1/2**num_downsamples of the input."""
        feats = []
        if self.stem is not None:
            x = self.stem(x, code, stats)
            feats.append(x)
        for block in self.encoder:
            x = block(x, code, stats)
            feats.append(x)
        return feats

    def _decode(self, feats: list[torch.Tensor], code, stats: NormStats | None = None):
        h = feats[-1]
        for block in self.trunk:
            h = block(h, code, stats)
        for block, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            h = block(h, code, stats)
            if self.config.skip_connections:  # encoder detail at each scale, so the bottleneck can stay small
                h = h + skip
        return self.to_rgb(h, code, stats)

    def _pad(self, x):
        # a multiple of the total stride, and at least 2x2 at the bottleneck (instance norm needs >1 pixel)
        multiple = 2**self.config.num_downsamples
        h, w = x.shape[-2:]
        if torch.jit.is_tracing():
            # ONNX export: sizes are traced values, so the padding stays dynamic (inputs >= 2 * multiple)
            pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate"), (h, w)
        pad_h, pad_w = max(-h % multiple, 2 * multiple - h), max(-w % multiple, 2 * multiple - w)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        # channels-last: oneDNN's convolutions run ~1.5x faster on CPU, and the rest of the net keeps the format
        return x.contiguous(memory_format=torch.channels_last), (h, w)

    def norm_stats(
        self, reference: torch.Tensor, code: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (mean, var) every norm uses, in call order, when stylizing `reference` (an image or a thumbnail
        of it) with `code`, or with code None when upscaling it (only the encoder, under the "general" task
        code): pass them as NormStats(given=...) to stylize or upscale its tiles alike."""
        stats = NormStats()
        if code is None:
            self._encode(self._pad(reference)[0], self.task_code(0, reference.shape[0]), stats)
        else:
            self.stylize(reference, code, stats)
        return stats.used

    def task_code(self, task: int | torch.Tensor, batch: int) -> torch.Tensor:
        task = torch.as_tensor(task, device=self.task_codes.weight.device, dtype=torch.long)
        if task.ndim == 0:
            task = task.expand(batch)
        if task.min() < 0 or task.max() >= self.config.num_fusion_tasks:
            raise ValueError(f"task ids must be in [0, {self.config.num_fusion_tasks}), got {task.tolist()}")
        return self.task_codes(task)

    def forward(
        self,
        x: torch.Tensor,
        code: torch.Tensor | None = None,
        task: int | torch.Tensor = 0,
        style: torch.Tensor | None = None,
        scale: int | None = None,
        stats: NormStats | None = None,
        denoise: float | torch.Tensor = 0.0,
    ) -> torch.Tensor:
        """`style`: the style images, when `code` is only the style encoder's code (training). `scale`:
        upscale x (B, 3, h, w) by that factor instead (`denoise`: see `upscale`). `stats`: what the norms
        normalise with (see NormStats; default: each input's own statistics)."""
        if scale is not None:
            return self.upscale(x, scale, stats, denoise)
        if x.ndim == 4:
            return self.stylize(x, code if style is None or code is None else self.style_code(code, style), stats)
        if x.ndim == 5:
            return self.fuse(x, task)
        raise ValueError(f"expected (B, 3, H, W) content or (B, N, 3, H, W) fusion sources, got {tuple(x.shape)}")

    def stylize(self, content: torch.Tensor, code: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        if code is None or code.shape[0] != content.shape[0] or code.shape[1] != self.style_code_dim:
            got = None if code is None else tuple(code.shape)
            raise ValueError(f"stylize needs a code of shape (B, {self.style_code_dim}[, h, w]), got {got}")
        code, colours = code[:, : self.config.code_dim], code[:, self.config.code_dim :]
        x, (h, w) = self._pad(content)
        out = torch.tanh(self._decode(self._encode(x, code, stats), code, stats))[..., :h, :w]
        if self.colour_norm is not None:
            out = _ycbcr_to_rgb(self.colour_norm(_rgb_to_ycbcr(out), colours, stats)).clamp(-1, 1)
        return out

    def fuse(
        self, sources: torch.Tensor, task: int | torch.Tensor = 0, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.fusion_weights(sources, task, keep)[0]

    def fusion_weights(
        self, sources: torch.Tensor, task: int | torch.Tensor = 0, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused image (B, 3, H, W) and the per-pixel weights (B, N, 1, H, W) of its N sources; `keep`
        (B, N, 1, H, W): see FusionHead.forward."""
        b, n = sources.shape[:2]
        if sources.ndim != 5 or n < 2 or sources.shape[2] != 3:
            raise ValueError(f"fusion needs sources of shape (B, N>=2, 3, H, W), got {tuple(sources.shape)}")
        code = self.task_code(task, b)
        x, (h, w) = self._pad(sources.flatten(0, 1))
        feats = self._encode(x, code.repeat_interleave(n, dim=0))
        if keep is not None:
            if keep.shape != (b, n, 1, h, w):
                raise ValueError(f"keep must be of shape {(b, n, 1, h, w)}, got {tuple(keep.shape)}")
            pad = (0, x.shape[-1] - w, 0, x.shape[-2] - h)
            keep = F.pad(keep.flatten(0, 1).float(), pad, mode="replicate").view(b, n, 1, *x.shape[-2:])
        fused, weights = self.fusion(x.view(b, n, *x.shape[1:]), feats, code, keep)
        return fused[..., :h, :w], weights[..., :h, :w]

    def upscale(
        self, x: torch.Tensor, scale: int, stats: NormStats | None = None, denoise: float | torch.Tensor = 0.0
    ) -> torch.Tensor:
        """x (B, 3, h, w) in [-1, 1] -> (B, 3, scale h, scale w), not clamped. The encoder sees the "general"
        task code (it only matters with encoder_norm). `denoise`: a strength in [0, 1], one or one per image
        (only with upscale_denoise: 0 sharpens a clean downscale, 1 cleans up a real photo's JPEG and noise)."""
        denoise = torch.as_tensor(denoise, dtype=torch.float32, device=x.device).expand(x.shape[0])
        if not self.config.upscale_denoise and bool(denoise.any()):
            raise ValueError("this model's upscaler has no denoise strength (upscale_denoise is off)")
        scales = tuple(self.config.upscale_scales or ())
        if scale not in scales:
            raise ValueError(f"this model upscales by {' or '.join(map(str, scales)) or 'nothing'}, not {scale!r}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"upscale needs images of shape (B, 3, H, W), got {tuple(x.shape)}")
        padded, (h, w) = self._pad(x)
        feats = self._encode(padded, self.task_code(0, x.shape[0]), stats)
        return self.upscaler(padded, feats, scale, denoise)[..., : h * scale, : w * scale]

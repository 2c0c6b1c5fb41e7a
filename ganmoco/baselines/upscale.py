"""Super-resolution references: bicubic and Lanczos resampling, and ESRGAN-thick (UpscalerJS's RRDN)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..tiling import run_tiled


def resample_upscale(image: Image.Image, scale: int, method: str = "bicubic") -> Image.Image:
    """The classic floor: `image` resized by `scale` with PIL's bicubic or Lanczos filter."""
    filters = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
    return image.resize((image.width * scale, image.height * scale), filters[method])


class RRDN(nn.Module):
    """idealo's Residual-in-Residual Dense Network (the ESRGAN generator), in the layout of UpscalerJS's
    esrgan-thick weights, with their layer names: `blocks` RRDBs of `dense` dense blocks of `convs` 3x3 convs
    (growth `growth`, width `width`), residuals scaled by beta; then a sub-pixel upsampler and one last conv.
    Takes and returns [0, 1] images."""

    def __init__(self, scale: int, blocks: int = 10, dense: int = 3, convs: int = 4, growth: int = 32, width: int = 64):
        super().__init__()
        self.scale, self.blocks, self.dense, self.n_convs, self.beta = scale, blocks, dense, convs, 0.2
        layers = {"Pre_blocks_conv": (3, width), "post_blocks_conv": (width, width)}
        for t in range(1, blocks + 1):
            for d in range(1, dense + 1):
                for c in range(1, convs + 1):
                    layers[f"F_{t}_{d}_{c}"] = (width + growth * (c - 1), growth)
                layers[f"LFF_{t}_{d}"] = (width + growth * convs, width)
        layers |= {"PreShuffle": (width, 3 * scale * scale), "SR": (3, 3)}
        self.convs = nn.ModuleDict({name: nn.Conv2d(i, o, 3, padding=1) for name, (i, o) in layers.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.convs
        start = h = conv["Pre_blocks_conv"](x)
        for t in range(1, self.blocks + 1):
            block_in = h
            for d in range(1, self.dense + 1):
                dense = h
                for c in range(1, self.n_convs + 1):
                    dense = torch.cat([dense, conv[f"F_{t}_{d}_{c}"](dense).relu()], dim=1)
                h = h + self.beta * conv[f"LFF_{t}_{d}"](dense)
            h = block_in + self.beta * h
        h = conv["post_blocks_conv"](h) + start
        return conv["SR"](F.pixel_shuffle(conv["PreShuffle"](h), self.scale))


class EsrganThick:
    """The super-resolution reference: ESRGAN-thick (UpscalerJS, MIT; trained on DIV2K), converted from its
    TF.js layers model on first use (a 110 MB npm tarball; `ganmoco fetch-weights esrgan_thick_x4`).
    Runs in tiles of `tile` low-res pixels with a 16-px margin (its receptive field is smaller), so that
    large images fit in memory."""

    def __init__(self, scale: int, tile: int = 192):
        from ..models.pretrained import load_weights

        if scale not in (2, 4):
            raise ValueError(f"ESRGAN-thick is converted for x2 and x4, not x{scale}")
        self.net = RRDN(scale).eval()
        self.net.load_state_dict(load_weights(f"esrgan_thick_x{scale}"))
        self.scale, self.tile = scale, tile

    @torch.inference_mode()
    def __call__(self, image: Image.Image) -> Image.Image:
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        out = run_tiled(x, lambda piece, _: self.net(piece), self.tile, 16, self.scale)  # 16 px > its receptive field
        arr = out[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        return Image.fromarray(arr, "RGB")

"""ONNX export of the generator's style-transfer path (dynamic height and width), and its style codes.

The graph computes `image = G(content, code)`: content (1, 3, H, W) float32 in [-1, 1] (RGB / 127.5 - 1), code
(1, d) float32, image like content. A code comes from `GanMocoPipeline.style_code` / `blend_codes` (or
`pipe.preset`), saved by `save_code` or `ganmoco export-onnx --style S --code-out code.npy`:

    import numpy as np, onnxruntime as ort
    session = ort.InferenceSession("generator.onnx")
    x = np.asarray(photo, np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    image = session.run(None, {"content": x, "code": np.load("code.npy")})[0]

It is the full style at strength 1; strength, colour preservation, masks and tiling are the pipeline's.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .files import atomic_output
from .models.generator import GanMocoGenerator


class _Stylize(nn.Module):
    def __init__(self, generator: GanMocoGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, content: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.generator.stylize(content, code)


def save_code(code: torch.Tensor, path: str | os.PathLike) -> Path:
    """A style code as a (1, d) float32 .npy file, written atomically: the ONNX graph's `code` input."""
    import numpy as np

    path = Path(path)
    with atomic_output(path, ".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, code.detach().float().cpu().numpy().reshape(1, -1))
    return path


def export_onnx(generator: GanMocoGenerator, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write `image = G(content, code)` as ONNX: content (1, 3, H, W) in [-1, 1] with any H, W >= 16 and
    code (1, style_code_dim) from `GanMocoPipeline.style_code`. Written atomically."""
    path = Path(path)
    generator = generator.eval().float()
    content = torch.rand(1, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        code = generator.style_code(torch.zeros(1, generator.config.code_dim), content)
    with atomic_output(path, ".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            _Stylize(generator),
            (content, code),
            tmp,
            input_names=["content", "code"],
            output_names=["image"],
            dynamic_axes={"content": {2: "height", 3: "width"}, "image": {2: "height", 3: "width"}},
            opset_version=opset,
            dynamo=False,
        )
    return path

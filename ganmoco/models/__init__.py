try:  # first: a torchvision built for another torch fails on import with a message that does not say so
    import torchvision  # noqa: F401
except RuntimeError as err:  # e.g. "operator torchvision::nms does not exist"
    import torch

    raise ImportError(
        f"torchvision does not match torch {torch.__version__} ({err}); install the two as one pair, e.g. on a CPU "
        "machine: pip install --force-reinstall torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    ) from None

from .discriminator import GanMocoDiscriminator
from .features import FeatureExtractor
from .generator import GanMocoGenerator
from .style_encoder import StyleEncoder

__all__ = ["FeatureExtractor", "GanMocoDiscriminator", "GanMocoGenerator", "StyleEncoder"]

from .discriminator import GanMocoDiscriminator
from .features import FeatureExtractor
from .generator import GanMocoGenerator
from .style_encoder import StyleEncoder

__all__ = ["FeatureExtractor", "GanMocoDiscriminator", "GanMocoGenerator", "StyleEncoder"]

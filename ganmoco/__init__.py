"""GAN-MoCo: arbitrary style transfer and multi-image fusion with one shared GAN generator."""

from .data import ImageError, load_image
from .models import FeatureExtractor, GanMocoDiscriminator, GanMocoGenerator, StyleEncoder
from .pipeline import GanMocoPipeline, ModelLoadError

__version__ = "0.1.0"
__all__ = [
    "FeatureExtractor",
    "GanMocoDiscriminator",
    "GanMocoGenerator",
    "GanMocoPipeline",
    "ImageError",
    "ModelLoadError",
    "StyleEncoder",
    "load_image",
]

"""GAN-MoCo: arbitrary style transfer and multi-image fusion with one shared GAN generator."""

from importlib import import_module

__version__ = "0.1.0"

# Loaded on first use (PEP 562): `import ganmoco` and the command line's argument parsing need no torch.
_LAZY = {
    "ImageError": ".images",
    "load_image": ".images",
    "FeatureExtractor": ".models",
    "GanMocoDiscriminator": ".models",
    "GanMocoGenerator": ".models",
    "StyleEncoder": ".models",
    "GanMocoPipeline": ".pipeline",
    "ModelLoadError": ".pipeline",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'ganmoco' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])

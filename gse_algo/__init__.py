"""gse_algo: the GSE attack (Sadiku, Wagner, Pokutta, arXiv 2311.17434), its metrics and CAM comparison.

Qt-free. Everything is in [0,1] pixel space: models take [0,1] images and normalise themselves.
The names below are imported on first use (PEP 562), so that `gse_algo.params` or `gse_algo.defaults` can be used
without importing torch (the desktop app shows its window, and `gse_algo.entry` starts, before torch loads).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "GSERun": "attack", "gse_attack": "attack", "iterate_gse": "attack",
    "DEFAULT_IMAGE": "defaults", "DEFAULT_MODEL": "defaults",
    "ImageError": "images", "load_image": "images",
    "LoadedModel": "models", "ModelError": "models", "load_model": "models",
    "GSEParams": "params",
    "GSEResult": "snapshot", "Progress": "snapshot", "Snapshot": "snapshot", "SparseDelta": "snapshot",
    "StepRecord": "snapshot",
}
__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gse_algo' has no attribute {name!r}")
    return getattr(import_module(f"gse_algo.{_EXPORTS[name]}"), name)

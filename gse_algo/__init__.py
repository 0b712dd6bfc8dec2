"""gse_algo: the GSE attack (Sadiku, Wagner, Pokutta, arXiv 2311.17434), its metrics and CAM comparison.

Qt-free. Everything is in [0,1] pixel space: models take [0,1] images and normalise themselves.
"""

__version__ = "0.1.0"

from .attack import GSERun, gse_attack, iterate_gse
from .images import DEFAULT_IMAGE, ImageError, load_image
from .models import DEFAULT_MODEL, LoadedModel, ModelError, load_model
from .params import GSEParams
from .snapshot import GSEResult, Progress, Snapshot, SparseDelta, StepRecord

__all__ = [
    "DEFAULT_IMAGE", "DEFAULT_MODEL", "GSEParams", "GSEResult", "GSERun", "ImageError", "LoadedModel",
    "ModelError", "Progress", "Snapshot", "SparseDelta", "StepRecord", "__version__", "gse_attack", "iterate_gse",
    "load_image", "load_model",
]

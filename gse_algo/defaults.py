"""Torch-free facts shared by the engine, the command lines and the app (which shows its window before torch loads).

The default model and image, the bundled examples, and the names of the CAM methods (gse_algo.cam maps each name
to its pytorch_grad_cam class).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_THREADS = 1  # torch threads of an attack: fixed, so a default run repeats everywhere (gse_algo.runtime)
DEFAULT_MODEL = "mobilenet_v2"  # torchvision's MobileNetV2 with IMAGENET1K_V1 weights, installed for offline use
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_IMAGE = RESOURCES / "coffee.jpg"  # MobileNetV2: espresso, p = 0.985
EXAMPLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}

CAM_METHOD_NAMES = ("GradCAM", "GradCAM++", "XGradCAM", "HiResCAM", "LayerCAM", "EigenCAM", "ScoreCAM", "AblationCAM")
IS_PERCENTILES = (50, 60, 70, 80, 90)  # the interpretability score's percentiles (spec 2.4)
# One forward pass per channel of the target layer: computed only on request.
EXPENSIVE_METHODS = frozenset({"ScoreCAM", "AblationCAM"})


def example_images() -> list[Path]:
    """The bundled example photos, the default first, then the rest by name."""
    found = sorted(p for p in RESOURCES.glob("*") if p.suffix.lower() in EXAMPLE_SUFFIXES)
    return sorted(found, key=lambda p: p != DEFAULT_IMAGE)  # stable: the default first, the rest stay sorted


DEFAULT_REG = "l1/2"  # the phase-1 regulariser of the paper (half thresholding)
REGULARISER_NAMES = ("l0", "l1", "l1/2", "l2/3")  # gse_algo.prox maps each to its proximal operator


def regulariser_name(name: str) -> str:
    """The canonical spelling: case, spaces and '_' for '/' do not matter ('L1_2' -> 'l1/2'); ValueError else."""
    key = str(name).strip().lower().replace(" ", "").replace("_", "/")
    if key not in REGULARISER_NAMES:
        raise ValueError(f"reg must be one of {', '.join(REGULARISER_NAMES)} (got {name!r})")
    return key

"""The torchattacks 3.5.1 baselines (MIT, Harry Kim): SparseFool (L0, white-box) and Pixle (L0, black-box).

Each entry builds the library's attack object with its own defaults and calls it; torchattacks is imported only
when an attack runs. Both attacks process the batch one image at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .base import AttackSpec, Param, Value
from .library import library_run

SOURCE = "torchattacks 3.5.1"
REQUIRES = ("torchattacks",)
EXTRA = "baselines"


def _sparsefool(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
                s: Mapping[str, Value]) -> torch.Tensor:
    import torchattacks
    attack = torchattacks.SparseFool(model, steps=s["steps"], lam=s["lam"], overshoot=s["overshoot"])
    attack.set_device(x.device)  # torchattacks reads it from the model's parameters, which a model may not have
    return attack(x, y)


SPARSEFOOL = AttackSpec(
    name="sparsefool", title="SparseFool", source=SOURCE, norm="l0 (C x H x W values)", targeted=False,
    requires=REQUIRES, extra=EXTRA, run=library_run("SparseFool", _sparsefool),
    notes="Untargeted only in torchattacks. Each step runs DeepFool (up to 50 iterations, each one forward pass and "
          "one backward pass per class: 1000 on ImageNet) to find a boundary point, then moves one value at a time "
          "towards that boundary's plane. Returns its last point, perturbed, also when it fails.",
    params=(
        Param("steps", int, 10, "Outer steps, each a DeepFool run and a linear solve towards its boundary", 1,
              10_000),
        Param("lam", float, 3.0, "Scale of the DeepFool perturbation that sets the boundary point (larger: "
              "farther, surer to cross)", 0, 1e3, low_ok=False),
        Param("overshoot", float, 0.02, "Relative step past the boundary at the end of each step", 0, 10),
    ))

MAPPINGS = ("random", "similarity", "similarity_random", "distance", "distance_random")


def _pixle(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
           s: Mapping[str, Value]) -> torch.Tensor:
    import numpy as np
    import torchattacks
    side = (s["patch_min"], s["patch_max"])
    attack = torchattacks.Pixle(model, x_dimensions=side, y_dimensions=side, pixel_mapping=s["pixel_mapping"],
                                restarts=s["restarts"], max_iterations=s["max_iterations"])
    attack.set_device(x.device)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    np.random.seed(int(torch.randint(0, 2**32, (1,))))  # Pixle draws from NumPy's global generator: seeded from torch's
    return attack(x, y)


def _pixle_rules(images: torch.Tensor, s: Mapping[str, Value]) -> None:
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"Pixle (torchattacks 3.5.1) needs square images, got {images.shape[-2]} x "
                         f"{images.shape[-1]} (it swaps x and y when it places pixels)")


def _pixle_patch(s: Mapping[str, Value]) -> None:
    if s["patch_min"] > s["patch_max"]:
        raise ValueError(f"patch_min ({s['patch_min']}) must not exceed patch_max ({s['patch_max']})")


PIXLE = AttackSpec(
    name="pixle", title="Pixle", source=SOURCE, norm="l0 (pixels moved), black-box", requires=REQUIRES,
    extra=EXTRA, run=library_run("Pixle", _pixle), rules=_pixle_rules, together=_pixle_patch,
    notes="Black-box (forward passes only): copies pixels of a random patch to other places in the image, keeping "
          "a change when it lowers the probability of the true class (raises the target's). Perturbed values are "
          "the image's own values. Random: seeded from torch's generator (gse-attack --seed). Square images only.",
    params=(
        Param("patch_min", int, 2, "Smallest side of the patch whose pixels are moved (pixels)", 1, 4096),
        Param("patch_max", int, 10, "Largest side of that patch (pixels)", 1, 4096),
        Param("pixel_mapping", str, "random", "Where the patch's pixels go: at random, or drawn by similarity or "
              "distance to them", choices=MAPPINGS),
        Param("restarts", int, 20, "Restarts (each keeps the best image so far)", 0, 10_000),
        Param("max_iterations", int, 10, "Patches tried per restart (one forward pass each)", 1, 100_000),
    ))

SPECS = (SPARSEFOOL, PIXLE)

"""The attack registry: GSE and the library baselines behind one interface (base.AttackSpec).

`iterate_attack(name, model, images, labels, targeted, settings)` returns an `AttackRun`: iterate over it for the
attack's per-iteration items (GSE: Snapshot/Progress; a library attack: library.ModelCall); once exhausted,
`run.result` is the `AttackResult` with the adversarial images, the measured metrics per image (measure.py) and
the model's forward/backward counts (counting.py), the same for every attack. `run_attack` drains it.
Modules that wrap an optional library import it only when an attack runs, so the registry lists every attack and
`AttackSpec.missing()` says what to install.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from gse_algo.attack import check_inputs

from . import adv_lib_attacks, gse, torchattacks_attacks
from .base import AttackSpec, Param, Value
from .counting import CountedModel
from .measure import AttackMetrics, measure

_SPECS: tuple[AttackSpec, ...] = (gse.GSE, *adv_lib_attacks.SPECS, *torchattacks_attacks.SPECS)
REGISTRY: dict[str, AttackSpec] = {spec.name: spec for spec in _SPECS}

__all__ = ["REGISTRY", "AttackMetrics", "AttackResult", "AttackRun", "AttackSpec", "Param", "attack_names",
           "checked_settings", "get_attack", "iterate_attack", "run_attack"]


def attack_names() -> list[str]:
    """Every registered attack, GSE first."""
    return list(REGISTRY)


def get_attack(name: str) -> AttackSpec:
    """The registered attack called `name`, or ValueError listing the names."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in REGISTRY:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[key]


def checked_settings(spec: AttackSpec, overrides: Mapping[str, Value] | None, targeted: bool) -> dict[str, Value]:
    """The attack's settings with `overrides` applied, after the checks that need no model or images: the library
    is installed, the attack supports the goal, every value is valid (ValueError otherwise)."""
    why = spec.missing()
    if why:
        raise ValueError(why)
    spec.check_goal(targeted)
    return spec.settings(overrides)


@dataclass(frozen=True)
class AttackResult:
    attack: str
    settings: dict[str, Value]
    x_adv: torch.Tensor  # [B,C,H,W] in [0,1]
    metrics: tuple[AttackMetrics, ...]  # one per image, measured (measure.py)
    time_s: float  # the attack alone, measurement excluded
    n_forward: int  # batched forward calls of the model (counting.CountedModel)
    n_backward: int  # backward passes through the model's output
    native: object = None  # the attack's own result where it has one (GSE: the GSEResult)

    @property
    def success(self) -> list[bool]:
        return [m.success for m in self.metrics]


class AttackRun:
    """Iterate for the attack's items; `result` holds the AttackResult once exhausted; `close()` stops it."""

    def __init__(self, spec: AttackSpec, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 targeted: bool, settings: dict[str, Value], trace: bool) -> None:
        self.spec, self.settings = spec, settings
        self.result: AttackResult | None = None
        self._args = (model, images, labels, targeted)
        self._counted = CountedModel(model)
        self._items = self._run(trace)

    def _run(self, trace: bool) -> Iterator:
        model, images, labels, targeted = self._args
        start = time.perf_counter()
        out = yield from self.spec.run(self._counted, images, labels, targeted, self.settings, trace=trace)
        elapsed = time.perf_counter() - start
        x_adv = getattr(out, "x_adv", out)
        if not isinstance(x_adv, torch.Tensor):
            x_adv = torch.as_tensor(x_adv, device=images.device)
        x_adv = x_adv.detach().to(images.device, images.dtype)
        self.result = AttackResult(self.spec.name, self.settings, x_adv,
                                   measure(model, images, labels, targeted, x_adv), elapsed,
                                   self._counted.n_forward, self._counted.n_backward,
                                   None if out is x_adv else out)

    def __iter__(self) -> "AttackRun":
        return self

    def __next__(self) -> object:
        return next(self._items)

    def close(self) -> None:
        self._items.close()


def iterate_attack(name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   targeted: bool = False, settings: Mapping[str, Value] | None = None, *,
                   trace: bool = False, seed: int | None = None) -> AttackRun:
    """Start the attack `name` on [0,1] images (labels: true classes, or targets if targeted); checks come first:
    an unknown name, a missing library, an unsupported goal or a bad setting raise ValueError before any work.
    With a seed, torch.manual_seed(seed) comes after the checks, so a random attack (VFGA, Pixle) gives the same
    result for the same images and seed whatever drew random numbers before it (loading a model, other runs)."""
    spec = get_attack(name)
    values = checked_settings(spec, settings, bool(targeted))
    check_inputs(images, labels, (0.0, 1.0))
    spec.check_run(images, values)
    if any(module.training for module in model.modules()):
        raise ValueError("the model must be in eval mode (BatchNorm/Dropout would couple the images)")
    if seed is not None:
        torch.manual_seed(seed)
    return AttackRun(spec, model, images.detach(), labels.to(images.device).long(), bool(targeted), values, trace)


def run_attack(name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
               targeted: bool = False, settings: Mapping[str, Value] | None = None) -> AttackResult:
    """Run the attack to the end without a trace and return its AttackResult."""
    run = iterate_attack(name, model, images, labels, targeted, settings)
    for _ in run:
        pass
    assert run.result is not None
    return run.result

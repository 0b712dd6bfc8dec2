"""GSE as the registry's first attack: the engine's own `iterate_gse`, unchanged (spec section 1).

Its parameters are GSEParams' fields with their ranges (params.RANGES) and tooltips (params.HELP), plus the
preset; mu, sigma, k_hat and q default to the preset's values (None = "from the preset").
"""

from __future__ import annotations

from collections.abc import Generator, Mapping

import torch

from gse_algo.attack import iterate_gse
from gse_algo.defaults import REGULARISER_NAMES, regulariser_name
from gse_algo.params import AUTO, HELP, PRESET_FIELDS, PRESETS, RANGES, SMALL_INPUT, GSEParams, params_from_settings
from gse_algo.snapshot import GSEResult, Progress, Snapshot

from .base import AttackSpec, Param, Value

PRESET_TIP = ("Official per-dataset settings of mu, sigma, k_hat and q; 'auto' picks cifar10 for inputs under "
              "64 px, else imagenet")


def _params() -> tuple[Param, ...]:
    defaults = GSEParams()
    fields = [Param("preset", str, AUTO, PRESET_TIP, choices=(AUTO, *PRESETS))]
    for name, (kind, low, high, low_ok) in RANGES.items():
        default = None if name in PRESET_FIELDS else getattr(defaults, name)
        fields.append(Param(name, kind, default, HELP[name], low, high, low_ok))
    fields.append(Param("reg", str, defaults.reg, HELP["reg"], choices=REGULARISER_NAMES,
                        spelling=regulariser_name))
    fields.append(Param("blur", bool, defaults.blur, HELP["blur"]))
    return tuple(fields)


def gse_params(settings: Mapping[str, Value], targeted: bool, input_size: tuple[int, int]) -> GSEParams:
    """The GSEParams of registry settings: the (resolved) preset, then every value that is set."""
    return params_from_settings(dict(settings), targeted, input_size)


def _gse_rules(settings: Mapping[str, Value]) -> None:
    """GSEParams' own checks beyond each field's range (an odd blur size); the preset only fills the fields left
    unset, with valid values, so neither the goal nor the input size changes the verdict."""
    gse_params(settings, False, (SMALL_INPUT, SMALL_INPUT))


def run(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool,
        settings: Mapping[str, Value], trace: bool = False) -> Generator[Snapshot | Progress, None, GSEResult]:
    params = gse_params(settings, targeted, tuple(images.shape[-2:]))
    gse_run = iterate_gse(model, images, labels, targeted, params, trace=trace)
    yield from gse_run
    assert gse_run.result is not None
    return gse_run.result


GSE = AttackSpec(name="gse", title="GSE", source="gse_algo (this project)", norm="l0 (pixels), grouped",
                 params=_params(), run=run, together=_gse_rules, views=frozenset({"lambda_map", "search"}),
                 notes="Group-wise sparse: phase-1 prox steps with a blurred lambda map, then a frozen support.")

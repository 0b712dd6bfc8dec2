"""One registered attack (gse_algo.attacks) on one image, for the command lines: checks, the run with its progress
line, and the metrics.json record of a baseline (GSE itself keeps gse_algo.record, unchanged).

A baseline's record has the fields of GSE's where they apply (image, model, target, classes, success, ACP, ANC, l2,
d2,0, the 8- and 16-bit checks, IS, time, parameters, runtime, versions, and in quantisation-aware mode the files'
own numbers), the measured AttackMetrics (channel-L0 and linf too), and the attack's name and source. GSE-only
fields (preset, chosen search step, lambda_0, the lambda map's iterate) are absent. Pass counts: n_forward counts
every batched forward call of the model, n_backward every backward pass (gse_algo.attacks.counting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from gse_algo import quantize
from gse_algo.attacks import AttackResult, AttackSpec, Value, iterate_attack
from gse_algo.attacks.library import ModelCall
from gse_algo.export import versions
from gse_algo.models import LoadedModel
from gse_algo.record import UNITS, ClassInfo, interpretability, predict
from gse_algo.runtime import Runtime

NO_LAMBDA = "lambda"  # the figure panel a baseline cannot have


class ProgressShown(Protocol):
    """Where a run's progress goes (cli.ProgressLine)."""

    def show(self, text: Callable[[], str]) -> None: ...

    def done(self) -> None: ...


def baseline_panels(spec: AttackSpec, panels: list[str], figure: str, preset: str | None) -> list[str]:
    """The figure panels a baseline can draw: no lambda map (named explicitly: an error; in 'all' or 'default':
    left out); --preset is refused (it sets GSE's hyper-parameters)."""
    if preset is not None:
        raise ValueError(f"--preset sets GSE's hyper-parameters; {spec.title} takes --set NAME=VALUE only")
    if NO_LAMBDA in panels and figure.strip().lower() not in ("all", "default"):
        raise ValueError(f"--figure {NO_LAMBDA}: {spec.title} has no lambda map (only GSE has one)")
    return [p for p in panels if p != NO_LAMBDA]


def run_with_progress(spec: AttackSpec, model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor,
                      targeted: bool, settings: Mapping[str, Value], progress: ProgressShown,
                      seed: int) -> AttackResult:
    """Run the attack to the end, showing its progress on `progress` (cli.ProgressLine); seeded by iterate_attack,
    so the images before it in gse-attack and the attacks before it in gse-compare do not change its result."""
    run = iterate_attack(spec.name, model, batch, labels, targeted, settings, seed=seed)
    for item in run:
        if isinstance(item, ModelCall):
            progress.show(lambda: f"{spec.title}, {item.n_forward} forward / {item.n_backward} backward passes")
        else:  # GSE's Progress / Snapshot
            progress.show(lambda: f"{spec.title}, search step {item.step + 1}, iteration {item.iteration + 1}")
    progress.done()
    assert run.result is not None
    return run.result


def attack_image(spec: AttackSpec, settings: Mapping[str, Value], loaded: LoadedModel, x: torch.Tensor,
                 target: int | None, progress: ProgressShown, *, image: str, runtime: Runtime,
                 quantized: bool) -> dict:
    """Attack one [3,H,W] image with a baseline; return the record and arrays the outputs need (as cli.attack_image
    does for GSE: metrics, runtime, x, x_adv, delta, lambda_map None, grids)."""
    model, batch = loaded.model, x.unsqueeze(0)
    clean = predict(model, batch)[0]
    labels = torch.tensor([clean if target is None else target], device=x.device)
    result = run_with_progress(spec, model, batch, labels, target is not None, settings, progress, runtime.seed)
    grids = {bits: quantize.finalize(model, batch, labels, target is not None, result.x_adv, bits)
             for bits in quantize.BITS} if quantized else {}
    record = baseline_record(loaded, image, spec, batch, target, result, runtime, grids)
    delta = result.x_adv - batch
    return {"metrics": record, "runtime": runtime.as_dict(), "x": x.cpu().numpy(),
            "x_adv": result.x_adv[0].cpu().numpy(), "delta": delta[0].cpu().numpy(), "lambda_map": None,
            "grids": grids}


def baseline_record(loaded: LoadedModel, image: str, spec: AttackSpec, x: torch.Tensor, target: int | None,
                    result: AttackResult, runtime: Runtime, grids: dict) -> dict:
    """metrics.json of a baseline on one [1,C,H,W] image (module docstring)."""
    model, names = loaded.model, loaded.class_names
    (m,) = result.metrics
    clean, clean_p = predict(model, x)
    adv, adv_p = predict(model, result.x_adv)
    labels = torch.tensor([clean if target is None else target], device=x.device)
    if grids:
        fools = {8: bool(grids[8].success[0]), 16: bool(grids[16].success[0])}
    else:
        fools = {8: m.fools_at_8bit, 16: bool(quantize.fools(model, quantize.to_grid(result.x_adv, 16), labels,
                                                             target is not None)[0])}
    out = {"image": image, "model": loaded.name,
           "attack": {"name": spec.name, "title": spec.title, "source": spec.source, "norm": spec.norm},
           "targeted": target is not None, "target": None if target is None else ClassInfo(target, names[target]).to_json(),
           "clean": ClassInfo(clean, names[clean], clean_p).to_json(), "success": m.success,
           "adversarial": ClassInfo(adv, names[adv], adv_p).to_json(), "acp": m.acp, "anc": m.anc, "l2": m.l2,
           "d20": m.d20, "channel_l0": m.channel_l0, "linf": m.linf, "fools_at_8bit": fools[8],
           "fools_at_16bit": fools[16], "units": UNITS,
           "interpretability_score": interpretability(model, x, result.x_adv - x, clean, adv if target is None else target),
           "time_s": result.time_s, "n_forward": result.n_forward, "n_backward": result.n_backward,
           "params": dict(result.settings), **runtime.as_dict(), "versions": versions()}
    if grids:
        out.update(eight_bit=grids[8].record(0), sixteen_bit=grids[16].record(0))
    return out

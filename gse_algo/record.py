"""The metrics record of one attacked image: what metrics.json holds and what figure captions read.

`RunRecord` is built in one place (`build_record`) and written with `to_json()`. The numbers of the adversarial
image are a nested `ResultMetrics`; in quantisation-aware mode the files' own numbers (gse_algo.quantize, after
its final step) go in `eight_bit` and `sixteen_bit`. The JSON layout is flat for the float result (success, adversarial, acp, anc, l2, d20 at the top) so
files written before the record existed read the same. Units: [0,1] pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gse_algo import metrics
from gse_algo.export import versions
from gse_algo.models import LoadedModel
from gse_algo.params import GSEParams
from gse_algo.runtime import Runtime
from gse_algo.snapshot import GSEResult

UNITS = "[0,1] pixel space: l2 is half the value in the paper's [-1,1] units; acp, anc, d20 are counts"


@dataclass(frozen=True)
class ClassInfo:
    index: int
    name: str
    probability: float | None = None  # None where only the class is known (a target)

    def to_json(self) -> dict:
        d = {"index": self.index, "name": self.name}
        return d if self.probability is None else {**d, "probability": self.probability}


@dataclass(frozen=True)
class ResultMetrics:
    """Success and size of one adversarial image (spec 2.2): ACP, ANC, l2 ([0,1] units), d2,0."""

    success: bool
    adversarial: ClassInfo  # the model's class at the image, with its probability
    acp: int
    anc: int
    l2: float
    d20: int

    def to_json(self) -> dict:
        return {"success": self.success, "adversarial": self.adversarial.to_json(), "acp": self.acp,
                "anc": self.anc, "l2": self.l2, "d20": self.d20}


@dataclass(frozen=True)
class RunRecord:
    image: str
    model: str
    preset: str
    clean: ClassInfo
    target: ClassInfo | None  # None: untargeted
    result: ResultMetrics  # the float result the engine returned
    fools_at_8bit: bool | None  # the result rounded to 8 bits per channel still fools the model (None: unknown)
    fools_at_16bit: bool | None
    interpretability_score: dict[str, float]  # IS per percentile ("50" ... "90")
    chosen_step: int
    figure_iterate: dict[str, int]  # {"step", "iteration"} of the lambda map shown
    lambda0: float
    time_s: float
    n_forward_backward: int
    n_forward: int
    params: GSEParams
    runtime: Runtime
    versions: dict[str, str]
    on_grids: dict[str, dict] | None = None  # {"eight_bit": ..., "sixteen_bit": ...} (quantize.GridResult.record)
    units: str = UNITS

    @property
    def targeted(self) -> bool:
        return self.target is not None

    def to_json(self) -> dict:
        out = {"image": self.image, "model": self.model, "preset": self.preset, "targeted": self.targeted,
               "target": None if self.target is None else self.target.to_json(), "clean": self.clean.to_json(),
               **self.result.to_json(), "fools_at_8bit": self.fools_at_8bit, "fools_at_16bit": self.fools_at_16bit,
               "units": self.units, "interpretability_score": dict(self.interpretability_score),
               "chosen_step": self.chosen_step, "figure_iterate": dict(self.figure_iterate),
               "lambda0": self.lambda0, "time_s": self.time_s, "n_forward_backward": self.n_forward_backward,
               "n_forward": self.n_forward,
               "params": {"units_0_1": self.params.as_dict(), "official_units_-1_1": self.params.official_units()},
               **self.runtime.as_dict(), "versions": dict(self.versions)}
        return {**out, **(self.on_grids or {})}


def predict(model: torch.nn.Module, image: torch.Tensor) -> tuple[int, float]:
    """(class, probability) of the model at one [1,C,H,W] image."""
    with torch.no_grad():
        probs = torch.softmax(model(image), dim=1)[0]
    index = int(probs.argmax())
    return index, float(probs[index])


def interpretability(model: torch.nn.Module, x: torch.Tensor, delta: torch.Tensor, clean: int,
                     goal: int) -> dict[str, float]:
    """IS per percentile ("50" ... "90") of one [1,C,H,W] perturbation; goal: the target, or the class after an
    untargeted attack."""
    labels = torch.tensor([clean, goal], device=x.device)
    scores = metrics.interpretability_score(model, x, delta, labels[:1], labels[1:])[0]
    return {str(p): float(s) for p, s in zip(metrics.IS_PERCENTILES, scores)}


def result_metrics(delta: torch.Tensor | np.ndarray, adversarial: ClassInfo, success: bool) -> ResultMetrics:
    """ResultMetrics of one [1,C,H,W] perturbation (metrics.py owns the formulas)."""
    return ResultMetrics(success=bool(success), adversarial=adversarial, acp=int(metrics.acp(delta)[0]),
                         anc=int(metrics.anc(delta)[0]), l2=float(metrics.l2(delta)[0]),
                         d20=int(metrics.d20(delta)[0]))


def build_record(loaded: LoadedModel, image: str, preset: str, x: torch.Tensor, target: int | None,
                 result: GSEResult, figure_iterate: dict[str, int], params: GSEParams,
                 runtime: Runtime, grids: dict | None = None) -> RunRecord:
    """The record of one attacked [1,C,H,W] image `x` and its GSEResult (one image, batch of 1). `grids`:
    bits -> quantize.GridResult of the final step in quantisation-aware mode; then the files' success is theirs."""
    model, names = loaded.model, loaded.class_names
    clean, clean_p = predict(model, x)
    adv, adv_p = predict(model, result.x_adv)

    def fools(image_: torch.Tensor) -> bool:
        pred = predict(model, image_)[0]
        return pred == target if target is not None else pred != clean

    return RunRecord(
        image=image, model=loaded.name, preset=preset, clean=ClassInfo(clean, names[clean], clean_p),
        target=None if target is None else ClassInfo(target, names[target]),
        result=result_metrics(result.delta, ClassInfo(adv, names[adv], adv_p), bool(result.success[0])),
        fools_at_8bit=bool(grids[8].success[0]) if grids else fools(torch.round(result.x_adv * 255) / 255),
        fools_at_16bit=bool(grids[16].success[0]) if grids else fools(torch.round(result.x_adv * 65535) / 65535),
        on_grids={"eight_bit": grids[8].record(0), "sixteen_bit": grids[16].record(0)} if grids else None,
        interpretability_score=interpretability(model, x, result.delta, clean, adv if target is None else target),
        chosen_step=int(result.chosen_step[0]), figure_iterate=dict(figure_iterate),
        lambda0=float(result.lambda0[0]), time_s=result.time_s, n_forward_backward=result.n_forward_backward,
        n_forward=result.n_forward, params=params, runtime=runtime, versions=versions())

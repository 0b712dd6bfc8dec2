"""The engine process's side of the attack registry (imports torch): the registry described for the window, the
registry settings of a RunSpec, and a library attack's iterates turned into the snapshots the app shows.

A library attack (gse_algo.attacks.library) hands back every forward call of the model; when the call evaluates a
batch of the image's shape, it is the current iterate. `LiveFrames` makes a Snapshot of it (the SparseDelta and the
model's prediction there; what only GSE has, its lambda map, loss and search, is left out or NaN), at every call
first and then at every 2nd, 4th, ... call (the spacing doubles every LEVEL frames, so a long run keeps a few
hundred frames, not thousands), and always when asked to (a paused or stepping run shows where it is).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from gse_algo.attack import cw_margin
from gse_algo.attacks import REGISTRY, AttackResult, AttackSpec
from gse_algo.attacks.library import ModelCall
from gse_algo.attacks.measure import goal_reached
from gse_algo.params import AUTO, PRESET_FIELDS
from gse_algo.snapshot import GSEResult, Snapshot, SparseDelta, frozen_array
from gse_desktop.history import derived
from gse_desktop.records import GSE, AttackInfo, Measured, ParamInfo, RunSpec

LEVEL = 50  # frames kept at each spacing of forward calls (1, 2, 4, ...)
TOP = 5


def attack_info(spec: AttackSpec) -> AttackInfo:
    """The window's description of a registered attack."""
    params = tuple(ParamInfo(p.name, p.kind.__name__, p.default, p.tip, p.low, p.high, p.low_ok, tuple(p.choices),
                             p.interval() if p.kind in (int, float) else "") for p in spec.params)
    return AttackInfo(spec.name, spec.title, spec.source, spec.norm, params, spec.targeted, spec.untargeted,
                      frozenset(spec.views), spec.missing(), spec.notes)


def attack_infos() -> list[AttackInfo]:
    """Every registered attack, GSE first (the engine's ready event carries them)."""
    return [attack_info(spec) for spec in REGISTRY.values()]


def registry_settings(spec: RunSpec) -> dict:
    """The registry settings of one press of Run: GSE's from its parameters and preset (a preset sets mu, sigma,
    k_hat and q; 'custom' gives every field as shown), a library attack's as the controls gave them."""
    if spec.attack != GSE:
        return dict(spec.settings)
    values = spec.params.as_dict()
    if spec.preset:
        values.update({name: None for name in PRESET_FIELDS})
    return {**values, "preset": spec.preset or AUTO}


class LiveFrames:
    """Snapshots of a library attack's iterates on the clean images `x` [B,C,H,W] (module docstring)."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> None:
        self.model, self.x, self.labels, self.targeted = model, x, labels, targeted
        self.count = 0
        self.due = 0  # the forward call from which the next frame is taken
        self.nan = frozen_array(np.full(len(x), np.nan))

    def wire(self, item: ModelCall | torch.Tensor, force: bool = False) -> tuple | None:
        """A snapshot event's payload (as gse_desktop.engine's client expects it) of a forward call (None when it
        is not an iterate or not due) or of the returned images; no lambda map, no frozen region."""
        snap = self.snapshot(item) if isinstance(item, torch.Tensor) else self.from_call(item, force)
        return None if snap is None else (snap, derived(snap), True, True)

    def from_call(self, call: ModelCall, force: bool = False) -> Snapshot | None:
        """The snapshot of a forward call, or None when it is not an iterate or not due."""
        if tuple(call.x.shape) != tuple(self.x.shape) or not (force or call.n_forward >= self.due):
            return None
        self.due = call.n_forward + 2 ** ((self.count + 1) // LEVEL)  # after 50 frames every 2nd call, ...
        return self.snapshot(call.x)

    def snapshot(self, x_adv: torch.Tensor) -> Snapshot:
        """The snapshot of an iterate (or the returned images): iteration = the frame's number, in step 0."""
        x_adv = x_adv.detach().to(self.x.device, self.x.dtype)
        delta = x_adv - self.x
        with torch.no_grad():  # the raw model: the app's own pass is not counted as the attack's
            logits = self.model(x_adv)
        probs = torch.softmax(logits, dim=1)
        top = probs.topk(min(TOP, probs.shape[1]), dim=1)
        pred = logits.argmax(dim=1)
        success = goal_reached(pred, self.labels, self.targeted).cpu().numpy()
        index = self.count
        self.count += 1
        return Snapshot(step=0, iteration=index, phase=0, delta=SparseDelta.from_tensor(delta), lambda_map=None,
                        frozen=None, lambda_b=self.nan, sigma_b=self.nan,
                        margin=_np(cw_margin(logits, self.labels, self.targeted)), cw_loss=self.nan,
                        l2=_np(delta.flatten(1).norm(dim=1)), l2_term=self.nan, pred=_np(pred),
                        top_classes=_np(top.indices), top_probs=_np(top.values), success=success,
                        active=~success)


def without_overhead(result: AttackResult, overhead_s: float) -> AttackResult:
    """The result with the attack's own time: the engine's work per frame and the pauses taken out."""
    return dataclasses.replace(result, time_s=max(result.time_s - overhead_s, 0.0))


def measured(result: AttackResult) -> Measured:
    """The run list's record of image 0: the registry's metrics, time and counts."""
    return Measured(result.metrics[0].as_dict(), result.time_s, result.n_forward, result.n_backward)


def library_result(result: AttackResult, x: torch.Tensor) -> GSEResult:
    """A library attack's result in the record the app stores for every run (history, sessions, exports): one
    "search step" (0), chosen when the attack succeeded; no lambda and no step records (plain NumPy, no torch)."""
    x_adv = result.x_adv.detach().cpu().numpy()
    success = np.array([m.success for m in result.metrics])
    return GSEResult(x_adv=x_adv, delta=x_adv - x.detach().cpu().numpy(), success=success,
                     adv_pred=np.array([m.adv_class for m in result.metrics]),
                     chosen_step=np.where(success, 0, -1), lambda0=np.full(len(success), math.nan),
                     n_forward_backward=result.n_backward, n_forward=result.n_forward - result.n_backward,
                     time_s=result.time_s)


def _np(t: torch.Tensor) -> np.ndarray:
    return frozen_array(t.detach().cpu().numpy())


def _np(t: torch.Tensor) -> np.ndarray:
    return frozen_array(t.detach().cpu().numpy())


def library_record(description: dict, result: AttackResult, grids: dict, overhead_s: float) -> dict:
    """The metrics record of a library attack's run (the counterpart of gse_algo.record for GSE): what was run
    (`description`: image, model, attack, settings, target, runtime, versions), the measured metrics of image 0,
    and in quantisation-aware mode the files' own numbers after gse_algo.quantize's final step."""
    m = measured(result, overhead_s)
    record = {**description, **m.metrics, "time_s": m.time_s, "n_forward": m.n_forward, "n_backward": m.n_backward}
    if grids:
        record.update(fools_at_8bit=bool(grids[8].success[0]), fools_at_16bit=bool(grids[16].success[0]),
                      eight_bit=grids[8].record(0), sixteen_bit=grids[16].record(0))
    return record

"""The run history: every snapshot of one run, stored compactly, answering "what is at (step, iteration)?".

Qt-free (like napari's components): the worker fills it, the views only read it, tests drive it directly.

Storage per snapshot (see `RunHistory.nbytes`):
- delta: the engine's sparse pixels as int32 indices + float32 values [n, C]; the index array is shared with the
  previous snapshot when the support did not change (the common case in phase 2);
- lambda map: log10(lambda) as float16, kept only when the engine hands out a new array (phase 1); phase-2
  snapshots share their step's last phase-1 map. log10 keeps +inf (float16 inf) and the huge values that
  lambda / q^k reaches (1e30 would overflow a plain float16); the cost is ~0.1-1 % relative precision in
  lambda, plenty for a colour map and a hover readout;
- frozen region: np.packbits of the bool mask, shared while it does not change (it is fixed within a step);
- the per-image scalars (margin, losses, top-5, ...) as they come, plus ACP and ANC computed once here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gse_algo import metrics
from gse_algo.snapshot import GSEResult, Snapshot, StepRecord

SERIES = ("cw_loss", "l2", "acp", "anc", "margin")


@dataclass(frozen=True)
class Frame:
    """One decoded snapshot, ready for the views. Arrays are [B, ...] like the engine's."""

    step: int
    iteration: int
    phase: int
    delta: np.ndarray  # float32 [B,C,H,W]
    mask: np.ndarray  # bool [B,H,W], pixels in the support
    frozen: np.ndarray  # bool [B,H,W], held at 0 (all False in phase 1)
    log10_lambda: np.ndarray  # float32 [B,H,W], may hold +inf
    lambda_b: np.ndarray
    margin: np.ndarray
    cw_loss: np.ndarray
    l2: np.ndarray
    acp: np.ndarray
    anc: np.ndarray
    pred: np.ndarray
    top_classes: np.ndarray
    top_probs: np.ndarray
    success: np.ndarray
    active: np.ndarray


@dataclass(frozen=True)
class _Packed:
    step: int
    iteration: int
    phase: int
    pixels: np.ndarray  # int32 [n]
    values: np.ndarray  # float32 [n, C]
    log_lambda: np.ndarray  # float16 [B,H,W] (shared)
    frozen_bits: np.ndarray | None  # uint8 packbits of bool [B,H,W] (shared), None in phase 1
    scalars: dict  # name -> small [B] / [B,k] array


@dataclass(frozen=True)
class StepSummary:
    """The outer search at a glance, per image: live from the snapshots, final from the engine's records."""

    step: int
    lambda_b: np.ndarray
    success: np.ndarray
    d20: np.ndarray  # -1 where the step has not succeeded
    stop_iteration: np.ndarray  # -1 where it did not stop early
    chosen: np.ndarray  # bool [B], the engine returned this step's example (only known at the end)


class RunHistory:
    """All snapshots of one run. `add` them in order; read with `frame`, `series`, `steps`."""

    def __init__(self) -> None:
        self._steps: dict[int, list[_Packed]] = {}
        self._shape: tuple[int, int, int, int] | None = None
        self._last_lambda_src: np.ndarray | None = None
        self._last_lambda: np.ndarray | None = None
        self._last_frozen_src: np.ndarray | None = None
        self._last_frozen: np.ndarray | None = None
        self._last_pixels: np.ndarray | None = None
        self.result: GSEResult | None = None

    # -- writing ---------------------------------------------------------------------------------------------
    def add(self, snap: Snapshot) -> None:
        """Store one snapshot (steps and iterations must arrive in the engine's order)."""
        self._shape = snap.delta.shape
        b, _, h, w = snap.delta.shape
        pixels = snap.delta.pixels.astype(np.int32)
        if self._last_pixels is not None and np.array_equal(pixels, self._last_pixels):
            pixels = self._last_pixels
        self._last_pixels = pixels
        mask = snap.delta.mask()
        scalars = {name: np.array(getattr(snap, name)) for name in
                   ("lambda_b", "margin", "cw_loss", "l2", "pred", "top_classes", "top_probs", "success", "active")}
        scalars["acp"] = mask.reshape(b, -1).sum(axis=1)
        scalars["anc"] = np.array([ndimage.label(m)[1] for m in mask])  # 4-connected clusters, as metrics.anc
        packed = _Packed(snap.step, snap.iteration, snap.phase, pixels, snap.delta.values,
                         self._lambda(snap.lambda_map), self._frozen(snap.frozen), scalars)
        self._steps.setdefault(snap.step, []).append(packed)

    def _lambda(self, lam: np.ndarray) -> np.ndarray:
        if lam is not self._last_lambda_src:
            with np.errstate(divide="ignore"):
                self._last_lambda = np.log10(lam).astype(np.float16)
            self._last_lambda_src = lam
        return self._last_lambda

    def _frozen(self, frozen: np.ndarray | None) -> np.ndarray | None:
        if frozen is None:
            return None
        if frozen is not self._last_frozen_src:
            bits = np.packbits(frozen)
            if self._last_frozen is None or not np.array_equal(bits, self._last_frozen):
                self._last_frozen = bits
            self._last_frozen_src = frozen
        return self._last_frozen

    def set_result(self, result: GSEResult) -> None:
        self.result = result

    # -- reading ---------------------------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        return sorted(self._steps)

    def n_iterations(self, step: int) -> int:
        return len(self._steps.get(step, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._steps.values())

    def latest(self) -> tuple[int, int] | None:
        """(step, index) of the newest snapshot, None when empty."""
        if not self._steps:
            return None
        step = max(self._steps)
        return step, len(self._steps[step]) - 1

    def frame(self, step: int, index: int) -> Frame:
        """The decoded snapshot number `index` (= iteration) of search step `step`."""
        p = self._steps[step][index]
        b, c, h, w = self._shape
        flat = np.zeros((b * h * w, c), dtype=np.float32)
        flat[p.pixels] = p.values
        delta = flat.reshape(b, h, w, c).transpose(0, 3, 1, 2)
        mask = np.zeros(b * h * w, dtype=bool)
        mask[p.pixels] = True
        if p.frozen_bits is None:
            frozen = np.zeros((b, h, w), dtype=bool)
        else:
            frozen = np.unpackbits(p.frozen_bits, count=b * h * w).astype(bool).reshape(b, h, w)
        return Frame(p.step, p.iteration, p.phase, delta, mask.reshape(b, h, w), frozen,
                     p.log_lambda.astype(np.float32), **p.scalars)

    def series(self, step: int, name: str, image: int = 0) -> np.ndarray:
        """One of SERIES against the iteration within `step`, for one image."""
        return np.array([p.scalars[name][image] for p in self._steps.get(step, ())], dtype=np.float64)

    def summaries(self) -> list[StepSummary]:
        """Per search step: the engine's StepRecord when the run is over, else what the last snapshot says."""
        records: dict[int, StepRecord] = {r.step: r for r in (self.result.steps if self.result else ())}
        out = []
        for step in self.steps:
            last = self._steps[step][-1]
            chosen = (self.result.chosen_step == step) if self.result else np.zeros_like(last.scalars["success"])
            if step in records:
                r = records[step]
                out.append(StepSummary(step, r.lambda_b, r.success, r.d20, r.stop_iteration, chosen))
                continue
            success = last.scalars["success"]
            d20 = metrics.d20(self.frame(step, len(self._steps[step]) - 1).mask[:, None]).numpy()
            stop = np.where(success, last.iteration, -1)
            out.append(StepSummary(step, last.scalars["lambda_b"], success, np.where(success, d20, -1), stop, chosen))
        return out

    def nbytes(self) -> int:
        """Bytes held by the stored arrays, counting every shared array once."""
        seen: set[int] = set()
        total = 0

        def count(a: np.ndarray | None) -> None:
            nonlocal total
            if a is not None and id(a) not in seen:
                seen.add(id(a))
                total += a.nbytes

        for packed in (p for v in self._steps.values() for p in v):
            count(packed.pixels)
            count(packed.values)
            count(packed.log_lambda)
            count(packed.frozen_bits)
            for a in packed.scalars.values():
                count(a)
        return total

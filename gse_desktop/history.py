"""The run history: every snapshot of one run, stored compactly, answering "what is at (step, iteration)?".

Qt-free (like napari's components): the app state fills it from the engine's events, the views only read it,
tests drive it directly.

Storage per snapshot (see `RunHistory.nbytes`):
- delta: the engine's sparse pixels as int32 indices + float32 values [n, C]; the index array is shared with the
  previous snapshot when the support did not change (the common case in phase 2);
- lambda map: log10(lambda) as float16, kept only when the engine hands out a new array (phase 1); phase-2
  snapshots share their step's last phase-1 map. A library attack has none (None). log10 keeps +inf (float16 inf) and the huge values that
  lambda / q^k reaches (1e30 would overflow a plain float16); the cost is ~0.1-1 % relative precision in
  lambda, plenty for a colour map and a hover readout;
- frozen region: np.packbits of the bool mask, shared while it does not change (it is fixed within a step);
- the per-image scalars (margin, losses, top-5, ...) as they come, plus the `derived` metrics (ACP, ANC, d2,0),
  which the engine process computes before handing a snapshot over, so the GUI does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gse_algo.snapshot import GSEResult, Snapshot, StepRecord

SERIES = ("cw_loss", "l2", "acp", "anc", "margin")
# the per-image values kept from each snapshot (derived ones are added by `derived`)
SCALARS = ("lambda_b", "margin", "cw_loss", "l2", "pred", "top_classes", "top_probs", "success", "active")
PROGRESS_EVERY = 64  # snapshots rebuilt between two progress reports
DERIVED = ("acp", "anc", "d20")  # computed by the engine process (`derived`); saved, so a reopened run needs no torch


def derived(snap: Snapshot) -> dict[str, np.ndarray]:
    """Per-image metrics of one snapshot beyond the engine's scalars: acp, anc, and d20 (-1 where not succeeded).

    d2,0 is only needed for a step's success (the outer search table), so it is only computed there. The engine
    process computes these before it hands a snapshot over (gse_algo.metrics imports torch).
    """
    from gse_algo import metrics

    mask = snap.delta.mask()[:, None]  # [B,1,H,W]: the metrics take any [B,C,H,W] perturbation
    success = np.asarray(snap.success, dtype=bool)
    d20 = np.full(len(mask), -1, dtype=np.int64)
    if success.any():
        d20[success] = metrics.d20(mask[success]).numpy()
    return {"acp": metrics.acp(mask), "anc": metrics.anc(mask), "d20": d20}


@dataclass(frozen=True)
class Frame:
    """One decoded snapshot, ready for the views. Arrays are [B, ...] like the engine's."""

    step: int
    iteration: int
    phase: int
    delta: np.ndarray  # float32 [B,C,H,W]
    mask: np.ndarray  # bool [B,H,W], pixels in the support
    frozen: np.ndarray  # bool [B,H,W], held at 0 (all False in phase 1)
    log10_lambda: np.ndarray | None  # float32 [B,H,W], may hold +inf; None for an attack without a lambda map
    lambda_b: np.ndarray
    margin: np.ndarray
    cw_loss: np.ndarray
    l2: np.ndarray
    acp: np.ndarray
    anc: np.ndarray
    d20: np.ndarray  # -1 where the image has not succeeded
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
    log_lambda: np.ndarray | None  # float16 [B,H,W] (shared), None without a lambda map
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
        self._decoded_lambda: tuple[np.ndarray, np.ndarray] | None = None  # (stored float16, its float32)
        self.result: GSEResult | None = None

    # -- writing ---------------------------------------------------------------------------------------------
    def add(self, snap: Snapshot, extra: dict[str, np.ndarray] | None = None) -> None:
        """Store one snapshot (in the engine's order); `extra` is `derived(snap)` when the caller has it."""
        self._shape = snap.delta.shape
        pixels = snap.delta.pixels.astype(np.int32)
        if self._last_pixels is not None and np.array_equal(pixels, self._last_pixels):
            pixels = self._last_pixels
        self._last_pixels = pixels
        scalars = {name: np.array(getattr(snap, name)) for name in SCALARS}
        scalars.update(extra if extra is not None else derived(snap))
        packed = _Packed(snap.step, snap.iteration, snap.phase, pixels, snap.delta.values,
                         self._lambda(snap.lambda_map), self._frozen(snap.frozen), scalars)
        self._steps.setdefault(snap.step, []).append(packed)

    def _lambda(self, lam: np.ndarray | None) -> np.ndarray | None:
        if lam is None:
            return None
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
    def shape(self) -> tuple[int, int, int, int] | None:
        """[B,C,H,W] of the stored perturbations (None while empty)."""
        return self._shape

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
        """The decoded snapshot number `index` (= iteration) of search step `step`.

        Frames that share a stored lambda map share one read-only float32 `log10_lambda` array, so a view can
        tell by identity that the map did not change.
        """
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
        if p.log_lambda is None:
            self._decoded_lambda = (None, None)
        elif self._decoded_lambda is None or self._decoded_lambda[0] is not p.log_lambda:
            decoded = p.log_lambda.astype(np.float32)
            decoded.flags.writeable = False
            self._decoded_lambda = (p.log_lambda, decoded)
        return Frame(p.step, p.iteration, p.phase, delta, mask.reshape(b, h, w), frozen, self._decoded_lambda[1],
                     **p.scalars)

    def sparse(self, step: int, index: int, image: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The perturbation of snapshot `index` of `step` for one image, as stored: (flat pixel indices into its
        H*W image [n], values [n, C]), without decoding the whole frame."""
        p = self._steps[step][index]
        h, w = self._shape[-2:]
        mine = (p.pixels >= image * h * w) & (p.pixels < (image + 1) * h * w)
        return p.pixels[mine] - image * h * w, p.values[mine]

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
            stop = np.where(success, last.iteration, -1)
            out.append(StepSummary(step, last.scalars["lambda_b"], success, last.scalars["d20"], stop, chosen))
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

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every snapshot as plain numeric arrays (saved without pickle); `from_arrays` rebuilds an equal history.
        Supports, lambda maps and frozen regions are written once per change, as they are shared in memory."""
        packed = [p for step in self.steps for p in self._steps[step]]
        if not packed:
            return {"shape": np.zeros(0, np.int64)}
        b, c, h, w = self._shape
        shared: dict[str, list[np.ndarray]] = {"support": [], "lambda": [], "frozen": []}
        index: dict[str, list[int]] = {"support": [], "lambda": [], "frozen": []}
        for p in packed:
            for name, stored in (("support", p.pixels), ("lambda", p.log_lambda), ("frozen", p.frozen_bits)):
                if stored is not None and (not shared[name] or stored is not shared[name][-1]):
                    shared[name].append(stored)
                index[name].append(-1 if stored is None else len(shared[name]) - 1)
        supports, frozens = shared["support"], shared["frozen"]
        frozen_bits = np.stack(frozens) if frozens else np.zeros((0, (b * h * w + 7) // 8), np.uint8)
        return {"shape": np.array([b, c, h, w], np.int64),
                "step": np.array([p.step for p in packed], np.int32),
                "iteration": np.array([p.iteration for p in packed], np.int32),
                "phase": np.array([p.phase for p in packed], np.int8),
                **{name: np.array(v, np.int32) for name, v in index.items()},
                "support_sizes": np.array([len(s) for s in supports], np.int64),
                "support_pixels": np.concatenate(supports), "values": np.concatenate([p.values for p in packed]),
                "log10_lambda": np.stack(shared["lambda"]) if shared["lambda"] else np.zeros((0, b, h, w), np.float16),
                "frozen_bits": frozen_bits,
                **{f"scalar_{name}": np.stack([p.scalars[name] for p in packed]) for name in SCALARS + DERIVED}}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray],
                    progress: Callable[[float], None] | None = None) -> "RunHistory":
        """The history that `to_arrays` described; KeyError / ValueError / IndexError for inconsistent arrays.
        Arrays without the DERIVED metrics (older sessions) have them computed again (this imports torch).
        `progress(fraction)` is called every PROGRESS_EVERY snapshots."""
        from gse_algo.snapshot import SparseDelta

        history = cls()
        shape = tuple(int(v) for v in arrays["shape"])
        if not shape:
            return history
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"bad trace shape {shape}")
        b, c, h, w = shape
        n = len(arrays["step"])
        ends = np.cumsum(arrays["support_sizes"])
        supports = np.split(arrays["support_pixels"].astype(np.int64), ends[:-1])
        if ends[-1] != len(arrays["support_pixels"]) or any(s.size and (s.min() < 0 or s.max() >= b * h * w)
                                                            for s in supports):
            raise ValueError("the trace's supports do not fit its shape")
        lambdas = [10.0 ** m.astype(np.float64) for m in arrays["log10_lambda"]]  # log10 -> float16 gives m back
        frozens = [np.unpackbits(bits, count=b * h * w).astype(bool).reshape(b, h, w) for bits in arrays["frozen_bits"]]
        if any(m.shape != (b, h, w) for m in lambdas) or arrays["frozen_bits"].shape[1:] != ((b * h * w + 7) // 8,):
            raise ValueError("the trace's lambda maps or frozen regions do not fit its shape")
        scalars = {k[len("scalar_"):]: v for k, v in arrays.items() if k.startswith("scalar_")}
        if any(len(v) != n or v.shape[1:2] != (b,) for v in scalars.values()):
            raise ValueError("the trace's per-iteration values do not match its snapshots")
        saved = {name: scalars.pop(name) for name in DERIVED if name in scalars}
        saved = saved if len(saved) == len(DERIVED) else None

        def pick(items: list, i: int, what: str):
            if not 0 <= i < len(items):
                raise IndexError(f"snapshot refers to {what} {i} of {len(items)}")
            return items[i]

        values, offset = arrays["values"], 0
        unknown = np.full(b, np.nan)  # sigma_b and l2_term: not kept by the history
        for k in range(n):
            pixels = pick(supports, int(arrays["support"][k]), "support")
            vals = values[offset:offset + len(pixels)]
            offset += len(pixels)
            if vals.shape != (len(pixels), c):
                raise ValueError("the trace's perturbation values do not match its supports")
            frozen = None if arrays["frozen"][k] < 0 else pick(frozens, int(arrays["frozen"][k]), "frozen region")
            lambda_map = None if arrays["lambda"][k] < 0 else pick(lambdas, int(arrays["lambda"][k]), "lambda map")
            snap = Snapshot(int(arrays["step"][k]), int(arrays["iteration"][k]), int(arrays["phase"][k]),
                            SparseDelta(shape, pixels, vals), lambda_map,
                            frozen, sigma_b=unknown, l2_term=unknown, **{name: v[k] for name, v in scalars.items()})
            history.add(snap, None if saved is None else {name: v[k] for name, v in saved.items()})
            if progress is not None and k % PROGRESS_EVERY == 0:
                progress(k / n)
        if offset != len(values):
            raise ValueError("the trace holds more perturbation values than its supports")
        return history

"""Immutable records the engine hands out: per-iteration snapshots, per-search-step records, the result.

All arrays are CPU NumPy copies marked read-only; every length-B array is indexed by the image in the batch.
Units: [0,1] pixel space (an l2 norm here is half the paper's [-1,1] value).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: these records also travel to the torch-free app
    import torch


def frozen_array(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def trace_dtype(dtype: torch.dtype) -> torch.dtype:
    """The float type of snapshot arrays: float64 in a float64 run, float32 otherwise."""
    import torch

    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class SparseDelta:
    """A [B,C,H,W] perturbation stored as its changed pixels: flat pixel index over B*H*W and values [n, C]."""

    shape: tuple[int, int, int, int]
    pixels: np.ndarray  # int64 [n], index into B*H*W (C-order: b, h, w)
    values: np.ndarray  # float32 [n, C] (float64 in a float64 run)

    @classmethod
    def from_tensor(cls, delta: torch.Tensor) -> "SparseDelta":
        import torch

        b, c, h, w = delta.shape
        flat = delta.detach().permute(0, 2, 3, 1).reshape(-1, c)
        pixels = (flat != 0).any(dim=1).nonzero().squeeze(1)
        values = flat[pixels].to(trace_dtype(delta.dtype)).cpu().numpy()
        return cls((b, c, h, w), frozen_array(pixels.cpu().numpy()), frozen_array(values))

    def dense(self) -> np.ndarray:
        """The full [B,C,H,W] array in the values' dtype (a new, writable copy)."""
        b, c, h, w = self.shape
        out = np.zeros((b * h * w, c), dtype=self.values.dtype)
        out[self.pixels] = self.values
        return out.reshape(b, h, w, c).transpose(0, 3, 1, 2).copy()

    def mask(self) -> np.ndarray:
        """bool [B,H,W]: pixels where any channel changed."""
        b, _, h, w = self.shape
        out = np.zeros(b * h * w, dtype=bool)
        out[self.pixels] = True
        return out.reshape(b, h, w)

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes + self.values.nbytes


class Progress(NamedTuple):
    """What the engine yields per inner iteration when no trace is asked for."""

    step: int
    iteration: int
    phase: int
    n_active: int


@dataclass(frozen=True)
class Snapshot:
    """The state after inner iteration `iteration` of search step `step`.

    Images that already stopped in this step keep their final state. `lambda_map` is shared (same object)
    between consecutive snapshots while it does not change (phase 2).
    """

    step: int
    iteration: int  # j, 0-based; delta is the iterate after update j
    phase: int  # 1 while j < k_hat, else 2
    delta: SparseDelta  # after the box clamp
    lambda_map: np.ndarray  # float32 [B,H,W], float64 in a float64 run (may hold +inf)
    frozen: np.ndarray | None  # bool [B,H,W], pixels held at 0 in phase 2 (None in phase 1)
    lambda_b: np.ndarray  # float [B], this search step's starting lambda
    sigma_b: np.ndarray  # float [B], this search step's step size (x10 rule)
    margin: np.ndarray  # float [B], CW margin before max(0, .): Z_y - max_other (untargeted), max_other - Z_t (targeted)
    cw_loss: np.ndarray  # float [B], max(0, margin + kappa)
    l2: np.ndarray  # float [B], ||delta||_2
    l2_term: np.ndarray  # float [B], mu * ||delta||_2^2
    pred: np.ndarray  # int [B], argmax of the logits at x + delta
    top_classes: np.ndarray  # int [B, k<=5]
    top_probs: np.ndarray  # float [B, k<=5], softmax probabilities
    success: np.ndarray  # bool [B], the image succeeded in this search step (it has stopped)
    active: np.ndarray  # bool [B], the image is still iterating in this search step

    @property
    def mask(self) -> np.ndarray:
        return self.delta.mask()


@dataclass(frozen=True)
class StepRecord:
    """The outcome of one outer search step, per image."""

    step: int
    lambda_b: np.ndarray  # [B] starting lambda of the step
    sigma_b: np.ndarray  # [B] step size used
    success: np.ndarray  # bool [B]
    stop_iteration: np.ndarray  # int [B], iteration of the first success, -1 if the step failed
    d20: np.ndarray  # int [B], d_{2,0} of the step's success, -1 if it failed
    improved: np.ndarray  # bool [B], this step's success became the best so far (strictly smaller d_{2,0})


@dataclass(frozen=True)
class GSEResult:
    """What `gse_attack` returns. Tensors live on the input's device; arrays are CPU NumPy."""

    x_adv: torch.Tensor | np.ndarray  # [B,C,H,W] in [0,1]; equal to the input where the attack failed
    delta: torch.Tensor | np.ndarray  # x_adv - x (NumPy in the app, see `to_numpy`)
    success: np.ndarray  # bool [B], some search step succeeded
    adv_pred: np.ndarray  # int [B], the model's class at the returned x_adv (the clean class on failure)
    chosen_step: np.ndarray  # int [B], search step of the returned example, -1 on failure
    lambda0: np.ndarray  # [B] initial lambda from the closed-form threshold
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)
    n_forward_backward: int = 0  # batched forward+backward passes
    n_forward: int = 0  # batched forward-only passes
    time_s: float = 0.0

    def to_numpy(self) -> "GSEResult":
        """The same result with x_adv and delta as CPU NumPy arrays (what the desktop app's engine hands over)."""
        def plain(a):
            return a if isinstance(a, np.ndarray) else a.detach().cpu().numpy()

        return dataclasses.replace(self, x_adv=plain(self.x_adv), delta=plain(self.delta))

"""Attack metrics (spec section 2.2, 2.4). Inputs may be torch tensors or NumPy arrays, [B,C,H,W] in [0,1] units.

ACP: changed pixels (any channel); channel-L0: changed C*H*W values; ANC: 4-connected clusters of that mask; l2 over all entries;
d_{2,0}: 8x8 stride-1 'valid' windows holding a changed pixel; IS: share of ||delta|| on salient entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from gse_algo.defaults import IS_PERCENTILES

PATCH = 8  # d_{2,0} window size (spec 2.2)


def _tensor(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))


def changed_mask(delta: torch.Tensor | np.ndarray) -> torch.Tensor:
    """bool [B,H,W]: pixels where any channel of delta is nonzero."""
    return (_tensor(delta) != 0).any(dim=1)


def acp(delta: torch.Tensor | np.ndarray) -> np.ndarray:
    """Number of changed pixels per image (the official 'L0' column counts pixels, not entries)."""
    return changed_mask(delta).flatten(1).sum(dim=1).cpu().numpy().astype(np.int64)


def channel_l0(delta: torch.Tensor | np.ndarray) -> np.ndarray:
    """Number of changed values over all C*H*W entries per image (the L0 that sigma-zero and FMN report)."""
    return (_tensor(delta) != 0).flatten(1).sum(dim=1).cpu().numpy().astype(np.int64)


def linf(delta: torch.Tensor | np.ndarray) -> np.ndarray:
    """max |delta| over all entries per image."""
    return _tensor(delta).detach().double().flatten(1).abs().amax(dim=1).cpu().numpy()


def l2(delta: torch.Tensor | np.ndarray) -> np.ndarray:
    """||delta||_2 over all C*H*W entries, computed in float64."""
    return _tensor(delta).detach().double().flatten(1).norm(dim=1).cpu().numpy()


def d20(delta: torch.Tensor | np.ndarray, patch: int = PATCH) -> torch.Tensor:
    """Number of patch x patch windows (stride 1, 'valid') containing a changed pixel; exact, mask based.

    Max-pooling the binary mask marks every window holding a changed pixel (spec 2.6: no conv round-off).
    Images smaller than the patch use one window as large as the image (the official code fails there).
    Returns an int64 tensor [B] on delta's device.
    """
    mask = changed_mask(delta).unsqueeze(1).float()
    kh, kw = min(patch, mask.shape[-2]), min(patch, mask.shape[-1])
    windows = F.max_pool2d(mask, kernel_size=(kh, kw), stride=1)
    return windows.flatten(1).sum(dim=1).long()


def anc(delta: torch.Tensor | np.ndarray) -> np.ndarray:
    """Number of 4-connected clusters of changed pixels per image (0 for delta = 0)."""
    masks = changed_mask(delta).cpu().numpy()
    return np.array([ndimage.label(m)[1] for m in masks], dtype=np.int64)


def asr(success: Sequence[bool] | np.ndarray) -> float:
    """Attack success rate: the mean of the success flags."""
    flags = np.asarray(success, dtype=bool)
    return float(flags.mean()) if flags.size else float("nan")


def adversarial_saliency(model: torch.nn.Module, x: torch.Tensor, true_labels: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """ASM = dZ_t/dx * |dZ_y/dx| at the clean x, entry-wise (spec 2.4), one row per image.

    Per-sample version (grd[arange(B), t] = 1): the official code's column-set seeding bug is not reproduced.
    """
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        rows = torch.arange(x.shape[0], device=x.device)
        g_t = torch.autograd.grad(logits[rows, targets].sum(), x, retain_graph=True)[0]
        g_y = torch.autograd.grad(logits[rows, true_labels].sum(), x)[0]
    return (g_t * g_y.abs()).detach()


def percentile_threshold(values: torch.Tensor, p: float) -> torch.Tensor:
    """nu_P as the official code takes it: sort ascending, keep nonzeros, prepend one 0, a[ceil(P/100 * n)]."""
    nonzero = torch.sort(values.flatten()).values
    nonzero = nonzero[nonzero != 0]
    a = torch.cat([torch.zeros(1, dtype=values.dtype, device=values.device), nonzero])
    index = min(math.ceil(p / 100.0 * a.numel()), a.numel() - 1)
    return a[index]


def interpretability_score(model: torch.nn.Module, x: torch.Tensor, delta: torch.Tensor, true_labels: torch.Tensor,
                           targets: torch.Tensor, percentiles: Sequence[float] = IS_PERCENTILES) -> np.ndarray:
    """IS = ||[ASM > nu_P] * delta|| / ||delta|| per image and percentile; NaN where delta = 0. Shape [B, P].

    In untargeted runs pass the class after the attack as `targets` (the issue's convention).
    """
    asm = adversarial_saliency(model, x, true_labels, targets)
    delta = _tensor(delta).to(x.device)
    out = np.full((x.shape[0], len(percentiles)), np.nan)
    for b in range(x.shape[0]):
        norm = delta[b].double().norm()
        if norm == 0:
            continue
        for i, p in enumerate(percentiles):
            region = asm[b] > percentile_threshold(asm[b], p)
            out[b, i] = float((delta[b].double() * region).norm() / norm)
    return out

"""Adversarial examples that still fool the model once saved as 8-bit (or 16-bit) image files.

Not part of the paper or the spec. A PNG stores integers k in [0, L] per channel, L = 2^bits - 1, read back as
k / L. The model input (the photo resized with antialiasing) is not on that grid, and GSE stops at the first
iterate past the decision boundary, so rounding the float result often undoes the attack. Quantisation-aware
mode, in three parts:
- `to_grid`: the clean model input is put on the grid first, x_q = round(x L) / L (the "original" file), and
  the attack runs on x_q, so every pixel GSE leaves alone is already exact in the file;
- `finalize`: candidates c(s) = grid(clip(x_q + s delta, 0, 1)) on the support S of delta (pixels where any
  channel changed) and x_q elsewhere, for s = 1 (plain rounding), then s = 1 + 0.01 * 2^k (k = 0..9) until one
  fools the model, then a few bisection steps between the last failing and the first fooling scale. The
  smallest scale checked to fool wins; when none does, the plain rounding is returned with success False.
  Each candidate is judged by the model on that exact grid tensor, so success means the file fools the model;
- `encode_png`: the grid tensor as the PNG holding exactly those integers.
The 8-bit grid lies on the 16-bit one (k / 255 = 257 k / 65535), so one 8-bit clean image serves both depths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from . import metrics
from .attack import gse_attack
from .images import encode_png16
from .params import GSEParams
from .snapshot import GSEResult, frozen_array

BITS = (8, 16)
FIRST_STEP = 0.01  # growth schedule s = 1 + FIRST_STEP * 2^k, k = 0 .. DOUBLINGS - 1 (s up to 6.12)
DOUBLINGS = 10
BISECTIONS = 3


def levels(bits: int) -> int:
    """L = 2^bits - 1, the largest integer a channel of a `bits`-bit file holds (8 or 16 bits)."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    return 2 ** bits - 1


def to_grid(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """round(x L) / L in x's dtype: the values a `bits`-bit file decodes to (x in [0, 1])."""
    top = levels(bits)
    return torch.round(x * top) / top


def to_integers(x: torch.Tensor | np.ndarray, bits: int = 8) -> np.ndarray:
    """The integers k = round(x L) a file stores: uint8 or uint16, same shape as x."""
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    top = levels(bits)
    return np.round(np.clip(array, 0.0, 1.0) * top).astype(np.uint8 if bits == 8 else np.uint16)


def encode_png(image: torch.Tensor | np.ndarray, bits: int = 8) -> bytes:
    """A [3, H, W] image in [0, 1] as the bytes of an RGB PNG with `bits` bits per channel (values rounded)."""
    if bits == 16:
        return encode_png16(image)
    pixels = to_integers(image, bits)
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"an RGB PNG needs a [3, H, W] image, got shape {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def fools(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """bool [B]: the model's class at x is the target (targeted) or differs from the label (untargeted)."""
    with torch.no_grad():
        pred = model(x).argmax(1)
    return pred == labels if targeted else pred != labels


@dataclass(frozen=True)
class GridResult:
    """The attack's result on a `bits`-bit grid, per image of the batch (arrays [B], CPU NumPy)."""

    bits: int
    x_adv: torch.Tensor  # [B,C,H,W] on the grid: exactly what the file decodes to
    success: np.ndarray  # bool [B], the model is fooled by x_adv (checked on this exact tensor)
    plain_success: np.ndarray  # bool [B], plain rounding of the float result already fooled the model
    scale: np.ndarray  # float [B], the s of the returned candidate (1.0: plain rounding, also on failure)
    acp: np.ndarray  # int [B], metrics of x_adv - x_q ([0,1] units)
    anc: np.ndarray
    d20: np.ndarray
    l2: np.ndarray
    n_extra_passes: int  # batched forward passes the final step made

    def integers(self) -> np.ndarray:
        """x_adv as the uint8 / uint16 integers of the file, [B,C,H,W]."""
        return to_integers(self.x_adv, self.bits)

    def record(self, b: int) -> dict:
        """Image b's entry for metrics.json."""
        return {"bits": self.bits, "success": bool(self.success[b]), "plain_rounding_fools": bool(self.plain_success[b]),
                "scale": float(self.scale[b]), "acp": int(self.acp[b]), "anc": int(self.anc[b]),
                "d20": int(self.d20[b]), "l2": float(self.l2[b]), "n_extra_passes": self.n_extra_passes}


def finalize(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, x_adv: torch.Tensor,
             bits: int = 8) -> GridResult:
    """Make the float result `x_adv` of an attack on the grid image `x` fool the model on the `bits`-bit grid,
    changing only pixels where x_adv differs from x (see the module docstring). labels as for the attack."""
    x, x_adv = x.detach(), x_adv.detach()
    if x.shape != x_adv.shape or x.dim() != 4:
        raise ValueError(f"x and x_adv must be [B,C,H,W] tensors of one shape, got {list(x.shape)} and {list(x_adv.shape)}")
    if not torch.equal(to_grid(x, bits), x):
        raise ValueError(f"the clean images are not on the {bits}-bit grid: attack quantize.to_grid(x) instead")
    if labels.shape != x.shape[:1]:
        raise ValueError(f"labels must have shape [{x.shape[0]}], got {list(labels.shape)}")
    labels = labels.to(x.device).long()
    delta = x_adv - x
    support = metrics.changed_mask(delta)[:, None].expand_as(x)
    n = x.shape[0]
    passes = 0

    def candidate(rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        moved = to_grid((x[rows] + scale.to(x.dtype).view(-1, 1, 1, 1) * delta[rows]).clamp(0.0, 1.0), bits)
        return torch.where(support[rows], moved, x[rows])  # off the support: x itself, bit for bit

    def check(rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        nonlocal passes
        passes += 1
        images = candidate(rows, scale)
        ok = fools(model, images, labels[rows], targeted)
        best[rows[ok]] = images[ok]
        return ok

    every = torch.arange(n, device=x.device)
    lo = torch.ones(n, dtype=torch.float64, device=x.device)  # largest scale known to fail
    hi = torch.full((n,), torch.inf, dtype=torch.float64, device=x.device)  # smallest scale known to fool
    best = candidate(every, lo)  # plain rounding, kept where nothing fools
    plain = fools(model, best, labels, targeted)
    passes += 1
    hi[plain] = 1.0
    moving = support.flatten(1).any(dim=1)
    for k in range(DOUBLINGS):
        rows = every[torch.isinf(hi) & moving]
        if rows.numel() == 0:
            break
        scale = torch.full((rows.numel(),), 1.0 + FIRST_STEP * 2 ** k, dtype=torch.float64, device=x.device)
        ok = check(rows, scale)
        hi[rows[ok]] = scale[ok]
        lo[rows[~ok]] = scale[~ok]
    for _ in range(BISECTIONS):
        rows = every[torch.isfinite(hi) & (hi > 1.0)]
        if rows.numel() == 0:
            break
        mid = (lo[rows] + hi[rows]) / 2
        ok = check(rows, mid)
        hi[rows[ok]] = mid[ok]
        lo[rows[~ok]] = mid[~ok]
    success = torch.isfinite(hi)
    final = best - x
    return GridResult(
        bits=bits, x_adv=best, success=frozen_array(success.cpu().numpy()),
        plain_success=frozen_array(plain.cpu().numpy()),
        scale=frozen_array(torch.where(success, hi, 1.0).cpu().numpy()), acp=frozen_array(metrics.acp(final)),
        anc=frozen_array(metrics.anc(final)), d20=frozen_array(metrics.d20(final).cpu().numpy()),
        l2=frozen_array(metrics.l2(final)), n_extra_passes=passes)


def gse_attack_on_grid(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool = False,
                       params: GSEParams | None = None, *, bits: int = 8) -> tuple[GSEResult, GridResult]:
    """Quantisation-aware GSE: attack to_grid(images, bits) and finalize the result on that grid.

    Returns the float result (of the attack on the grid image) and the grid result. Untargeted labels should be
    the model's classes at the grid image.
    """
    x = to_grid(images.detach(), bits)
    result = gse_attack(model, x, labels, targeted, params)
    return result, finalize(model, x, labels, targeted, result.x_adv, bits)

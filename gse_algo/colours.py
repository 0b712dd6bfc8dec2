"""One colour convention for the app's views, its exported single views, composite figures and animations.

Qt-free (NumPy and matplotlib's colour maps). Each scalar view has a colour map and a level rule:
- perturbation (the signed strongest channel, figures.signed_perturbation): PERTURBATION_CMAP on symmetric levels
  +-nice_bound(max |delta|), so nothing saturates and the bound changes seldom during a run; the colour follows
  sign(d) |d|^PERTURBATION_GAMMA, so small changes stay visible, while a colour bar shows the true values;
- lambda map: LAMBDA_CMAP on log10 lambda, levels the finite minimum and maximum; +inf is drawn INF_GREY;
- CAM: CAM_CMAP on CAM_LEVELS.
"""

from __future__ import annotations

import matplotlib
import numpy as np

PERTURBATION_CMAP = "RdBu_r"
PERTURBATION_GAMMA = 0.5
LAMBDA_CMAP = "viridis"
CAM_CMAP = "jet"
CAM_LEVELS = (0.0, 1.0)
INF_GREY = 0.75  # grey level of +inf / undefined lambda
LUT_SIZE = 257  # odd: a lookup table over symmetric levels has an entry for exactly 0


def nice_bound(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k >= value (> 0): levels that change seldom, and so the colour bar's axis."""
    value = max(value, 1e-6)
    power = 10.0 ** np.floor(np.log10(value))
    return float(next(power * m for m in (1, 2, 5, 10) if power * m >= value * (1 - 1e-9)))


def perturbation_levels(signed: np.ndarray) -> tuple[float, float]:
    """(-L, L) with L = nice_bound of the largest |value| (L = 1e-6 for an all-zero perturbation)."""
    bound = nice_bound(float(np.abs(signed).max()) if np.size(signed) else 0.0)
    return -bound, bound


def lambda_levels(log10_lambda: np.ndarray) -> tuple[float, float]:
    """(low, high): the finite minimum and maximum of log10 lambda (high > low; (0, 1) when nothing is finite)."""
    finite = log10_lambda[np.isfinite(log10_lambda)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return low, (high if high > low else low + 1e-3)


def stretch(position: np.ndarray, gamma: float = PERTURBATION_GAMMA) -> np.ndarray:
    """Where a position in [0, 1] of symmetric levels falls on the colour map: 0.5 + sign(u) |u|^gamma / 2 with
    u = 2 position - 1 (the perturbation's sign(d) |d|^gamma scale)."""
    u = 2.0 * np.asarray(position, dtype=np.float64) - 1.0
    return 0.5 + 0.5 * np.sign(u) * np.abs(u) ** gamma


def lookup_table(view: str, size: int = LUT_SIZE) -> np.ndarray:
    """uint8 [size, 4] RGBA: the colours of `view` ('perturbation', 'lambda' or 'cam') from its low level to its
    high level, evenly spaced in value (the perturbation's stretch included)."""
    positions = np.linspace(0.0, 1.0, size)
    name = {"perturbation": PERTURBATION_CMAP, "lambda": LAMBDA_CMAP, "cam": CAM_CMAP}[view]
    if view == "perturbation":
        positions = stretch(positions)
    return np.round(matplotlib.colormaps[name](positions) * 255).astype(np.uint8)

"""The phase-1 proximal operators (the regularisers) and the lambda_0 rule.

Spec section 1.3: prox(v, lam) = argmin_u (u - v)^2 + lam * |u|^p, entry by entry (no 1/2 in front of the
quadratic, so it is the textbook prox of (lam/2)|.|^p). The paper uses p = 1/2 ("half thresholding", Xu et al.
2012); `REGULARISERS` adds l0 (hard), l1 (soft) and l2/3 thresholding (Cao, Sun and Xu 2013), all in closed form.
Each has a zero threshold tau(lam) (|v| <= tau: u = 0) and lambda*, the smallest lambda with
prox(sigma g, lambda sigma) == 0, the closed-form inverse of tau (spec 1.4); lambda_0 = 0.01 lambda*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gse_algo.defaults import DEFAULT_REG, REGULARISER_NAMES, regulariser_name  # noqa: F401 (re-exported)

HALF_THRESHOLD_CONST = 54.0 ** (1.0 / 3.0) / 4.0  # tau(lam) = (54^(1/3) / 4) * lam^(2/3)
LAMBDA_STAR_CONST = 8.0 / math.sqrt(54.0)  # lambda* = (8/sqrt 54) * sqrt(sigma) * max|g|^1.5  (spec 1.4)
TWO_THIRDS_THRESHOLD_CONST = 2.0 * 3.0 ** -0.75  # tau(lam) = (2/3) (3 lam^3)^(1/4) = 2 * 3^(-3/4) * lam^(3/4)
TWO_THIRDS_LAMBDA_CONST = 3.0 * 2.0 ** (-4.0 / 3.0)  # lambda* = 3 * 2^(-4/3) * sigma^(1/3) * max|g|^(4/3)
LAMBDA0_SCALE = 0.01  # lambda_0 = 0.01 * lambda*  (spec 1.4)
# With g = 0 the official bisection only shrinks its upper bound: 0.001 * 2^-50, then the mid-point (spec 1.4).
_ZERO_GRADIENT_LAMBDA_STAR = 0.001 * 2.0 ** -51


def _lam(v: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(lam, dtype=v.dtype, device=v.device)


# -- l1/2: half thresholding (the paper's, the default) -------------------------------------------------------------

def half_threshold(lam: torch.Tensor) -> torch.Tensor:
    """tau(lam): entries with |v| <= tau(lam) are set to 0 by the prox."""
    return HALF_THRESHOLD_CONST * lam.pow(2.0 / 3.0)


def prox_half(v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Half thresholding of v with parameter lam (broadcast against v). Returns a new tensor.

    |v| <= tau(lam): 0; else phi = arccos((lam/8) (|v|/3)^(-3/2)),
    u = sign(v) (2/3)|v| (1 + cos(2 pi/3 - 2 phi/3)).
    Entries below the threshold (where phi would be NaN) are masked out before arccos; lam = +inf gives 0.
    """
    lam = _lam(v, lam)
    a = v.abs()
    keep = a > half_threshold(lam)
    safe_a = torch.where(keep, a, torch.ones_like(a))
    ratio = torch.where(keep, lam * 0.125 * (safe_a / 3.0).pow(-1.5), torch.zeros_like(a))
    phi = torch.arccos(ratio.clamp(-1.0, 1.0))
    u = (2.0 / 3.0) * safe_a * (1.0 + torch.cos(2.0 * math.pi / 3.0 - (2.0 / 3.0) * phi))
    return torch.where(keep, torch.sign(v) * u, torch.zeros_like(v))


def _half_lambda_star(g_max: torch.Tensor, sigma: float) -> torch.Tensor:
    """sigma max|g| <= tau(sigma lambda) iff lambda >= (8/sqrt 54) sqrt(sigma) max|g|^1.5 (spec 1.4)."""
    return LAMBDA_STAR_CONST * math.sqrt(sigma) * g_max.pow(1.5)


# -- l0: hard thresholding ------------------------------------------------------------------------------------------

def hard_threshold(lam: torch.Tensor) -> torch.Tensor:
    """(u - v)^2 + lam [u != 0]: u = v costs lam, u = 0 costs v^2, so tau(lam) = sqrt(lam) (ties go to 0)."""
    return lam.sqrt()


def prox_hard(v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """u = v where |v| > sqrt(lam), else 0."""
    return torch.where(v.abs() > hard_threshold(_lam(v, lam)), v, torch.zeros_like(v))


def _hard_lambda_star(g_max: torch.Tensor, sigma: float) -> torch.Tensor:
    """sigma max|g| <= sqrt(sigma lambda) iff lambda >= sigma max|g|^2."""
    return sigma * g_max.pow(2)


# -- l1: soft thresholding ------------------------------------------------------------------------------------------

def soft_threshold(lam: torch.Tensor) -> torch.Tensor:
    """(u - v)^2 + lam |u|: stationary at u = v - sign(u) lam/2, so tau(lam) = lam / 2."""
    return lam / 2.0


def prox_soft(v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """u = sign(v) max(|v| - lam/2, 0)."""
    return torch.sign(v) * (v.abs() - soft_threshold(_lam(v, lam))).clamp(min=0)


def _soft_lambda_star(g_max: torch.Tensor, sigma: float) -> torch.Tensor:
    """sigma max|g| <= sigma lambda / 2 iff lambda >= 2 max|g| (sigma cancels)."""
    return 2.0 * g_max


# -- l2/3: Cao, Sun and Xu 2013 -------------------------------------------------------------------------------------

def two_thirds_threshold(lam: torch.Tensor) -> torch.Tensor:
    """tau(lam) = (2/3) (3 lam^3)^(1/4): where the nonzero local minimiser and u = 0 cost the same."""
    return TWO_THIRDS_THRESHOLD_CONST * lam.pow(0.75)


def prox_two_thirds(v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """2/3 thresholding: 0 for |v| <= tau(lam), else the largest root of the stationarity condition.

    For u = t^3 > 0 the condition 2(u - |v|) + (2/3) lam u^(-1/3) = 0 is the quartic t^4 - |v| t + lam/3 = 0.
    Ferrari's resolvent gives t = (phi + sqrt(2|v|/phi - phi^2)) / 2 with w = phi^2 the real root of
    w^3 - (4 lam/3) w - v^2 = 0; Cao et al. write it w = (4/3) sqrt(lam) cosh(arccosh(27 v^2 / (16 lam^1.5)) / 3).
    Here the same root in Cardano's form, scaled by |v|^(2/3) so that nothing overflows for tiny lam:
    w = |v|^(2/3) r, r = c + (e/3)/c, c = cbrt(1/2 + sqrt(1/4 - e^3/27)), e = 4 lam / (3 |v|^(4/3)),
    and u = sign(v) |v| ((sqrt r + sqrt(2/sqrt r - r)) / 2)^3. Above the threshold e <= 1.59, so 1/4 - e^3/27 > 0.
    """
    lam = _lam(v, lam)
    a = v.abs()
    keep = a > two_thirds_threshold(lam)
    safe_a = torch.where(keep, a, torch.ones_like(a))
    e = torch.where(keep, lam * (4.0 / 3.0) * safe_a.pow(-4.0 / 3.0), torch.zeros_like(a))
    c = (0.5 + (0.25 - e.pow(3) / 27.0).clamp(min=0).sqrt()).pow(1.0 / 3.0)
    r = c + (e / 3.0) / c
    root_r = r.sqrt()
    t = (root_r + (2.0 / root_r - r).clamp(min=0).sqrt()) / 2.0
    return torch.where(keep, torch.sign(v) * safe_a * t.pow(3), torch.zeros_like(v))


def _two_thirds_lambda_star(g_max: torch.Tensor, sigma: float) -> torch.Tensor:
    """sigma max|g| <= 2 * 3^(-3/4) (sigma lambda)^(3/4) iff lambda >= 3 * 2^(-4/3) sigma^(1/3) max|g|^(4/3)."""
    return TWO_THIRDS_LAMBDA_CONST * sigma ** (1.0 / 3.0) * g_max.pow(4.0 / 3.0)


# -- the family -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Regulariser:
    """One phase-1 penalty lam |u|^p with its closed-form prox, zero threshold and lambda* rule."""

    name: str
    description: str
    prox: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    threshold: Callable[[torch.Tensor], torch.Tensor]
    lambda_star: Callable[[torch.Tensor, float], torch.Tensor]  # (max|g| per image [B], sigma) -> [B]


REGULARISERS = {reg.name: reg for reg in (  # in the order of defaults.REGULARISER_NAMES
    Regulariser("l0", "hard thresholding, lam [u != 0]", prox_hard, hard_threshold, _hard_lambda_star),
    Regulariser("l1", "soft thresholding, lam |u|", prox_soft, soft_threshold, _soft_lambda_star),
    Regulariser("l1/2", "half thresholding, lam |u|^(1/2) (the paper's)", prox_half, half_threshold,
                _half_lambda_star),
    Regulariser("l2/3", "2/3 thresholding, lam |u|^(2/3) (Cao, Sun, Xu 2013)", prox_two_thirds,
                two_thirds_threshold, _two_thirds_lambda_star),
)}
assert tuple(REGULARISERS) == REGULARISER_NAMES


def regulariser(name: str = DEFAULT_REG) -> Regulariser:
    return REGULARISERS[regulariser_name(name)]


def lambda_zero(grad: torch.Tensor, sigma: float, reg: str = DEFAULT_REG) -> torch.Tensor:
    """Per-image starting lambda: 0.01 * the smallest lambda with prox(sigma g, lambda sigma) == 0 (spec 1.4).

    Closed form of the official 50-step bisection, through the regulariser's threshold. grad: [B, ...];
    returns [B].
    """
    g_max = grad.detach().flatten(1).abs().amax(dim=1)
    lam_star = regulariser(reg).lambda_star(g_max, sigma)
    lam_star = torch.where(g_max > 0, lam_star, torch.full_like(lam_star, _ZERO_GRADIENT_LAMBDA_STAR))
    return LAMBDA0_SCALE * lam_star

"""The 1/2-quasinorm proximal operator ("half thresholding", Xu et al. 2012) and the lambda_0 threshold.

Spec section 1.3: prox(v, lam) = argmin_u (u - v)^2 + lam * |u|^(1/2), entry by entry (no 1/2 in front of the
quadratic, so it is the textbook prox of (lam/2)|.|^(1/2)).
"""

from __future__ import annotations

import math

import torch

HALF_THRESHOLD_CONST = 54.0 ** (1.0 / 3.0) / 4.0  # tau(lam) = (54^(1/3) / 4) * lam^(2/3)
LAMBDA_STAR_CONST = 8.0 / math.sqrt(54.0)  # lambda* = (8/sqrt 54) * sqrt(sigma) * max|g|^1.5  (spec 1.4)
LAMBDA0_SCALE = 0.01  # lambda_0 = 0.01 * lambda*  (spec 1.4)
# With g = 0 the official bisection only shrinks its upper bound: 0.001 * 2^-50, then the mid-point (spec 1.4).
_ZERO_GRADIENT_LAMBDA_STAR = 0.001 * 2.0 ** -51


def half_threshold(lam: torch.Tensor) -> torch.Tensor:
    """tau(lam): entries with |v| <= tau(lam) are set to 0 by the prox."""
    return HALF_THRESHOLD_CONST * lam.pow(2.0 / 3.0)


def prox_half(v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Half thresholding of v with parameter lam (broadcast against v). Returns a new tensor.

    |v| <= tau(lam): 0; else phi = arccos((lam/8) (|v|/3)^(-3/2)),
    u = sign(v) (2/3)|v| (1 + cos(2 pi/3 - 2 phi/3)).
    Entries below the threshold (where phi would be NaN) are masked out before arccos; lam = +inf gives 0.
    """
    lam = torch.as_tensor(lam, dtype=v.dtype, device=v.device)
    a = v.abs()
    keep = a > half_threshold(lam)
    safe_a = torch.where(keep, a, torch.ones_like(a))
    ratio = torch.where(keep, lam * 0.125 * (safe_a / 3.0).pow(-1.5), torch.zeros_like(a))
    phi = torch.arccos(ratio.clamp(-1.0, 1.0))
    u = (2.0 / 3.0) * safe_a * (1.0 + torch.cos(2.0 * math.pi / 3.0 - (2.0 / 3.0) * phi))
    return torch.where(keep, torch.sign(v) * u, torch.zeros_like(v))


def lambda_zero(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-image starting lambda: 0.01 * the smallest lambda with prox(sigma g, lambda sigma) == 0 (spec 1.4).

    Closed form of the official 50-step bisection: sigma max|g| <= tau(sigma lambda) iff
    lambda >= (8/sqrt 54) sqrt(sigma) max|g|^1.5. grad: [B, ...]; returns [B].
    """
    g_max = grad.detach().flatten(1).abs().amax(dim=1)
    lam_star = LAMBDA_STAR_CONST * math.sqrt(sigma) * g_max.pow(1.5)
    lam_star = torch.where(g_max > 0, lam_star, torch.full_like(lam_star, _ZERO_GRADIENT_LAMBDA_STAR))
    return LAMBDA0_SCALE * lam_star

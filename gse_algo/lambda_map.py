"""The per-pixel lambda update of phase 1 (spec section 1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel_1d(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian weights, as torchvision's GaussianBlur builds them (5, 1.5 -> 0.120078 ... )."""
    half = (size - 1) / 2.0
    x = torch.linspace(-half, half, size, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def blur_mask(mask: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a [B,H,W] map with reflect padding (fixed kernel, no RNG draws: pitfall 17)."""
    k = gaussian_kernel_1d(size, sigma, mask.dtype).to(mask.device)
    pad = size // 2
    m = mask.unsqueeze(1)
    # Reflect padding needs pad < side; tiny images fall back to replicate padding.
    mode = "reflect" if min(m.shape[-2:]) > pad else "replicate"
    m = F.pad(m, (pad, pad, pad, pad), mode=mode)
    m = F.conv2d(m, k.view(1, 1, 1, size))
    m = F.conv2d(m, k.view(1, 1, size, 1))
    return m.squeeze(1)


def perturbed_pixels(delta: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] -> bool [B,H,W]: True where any channel of delta is nonzero."""
    return (delta != 0).any(dim=1)


def adjust_lambda(lam: torch.Tensor, delta: torch.Tensor, q: float, size: int = 5, sigma: float = 1.5) -> torch.Tensor:
    """Return the updated lambda map (a new tensor; the official code divides in place).

    m = [any channel of delta != 0]; factor = 1 + blur(m); where factor == 1 exactly (no perturbed pixel in the
    window) factor = q; lambda <- lambda / factor. Near the support lambda shrinks by up to 2; far from it it
    grows by 1/q. lambda may overflow to +inf for small q and large k_hat (pitfall 15): inf / factor stays inf.
    """
    factor = 1.0 + blur_mask(perturbed_pixels(delta).to(lam.dtype), size, sigma)
    factor = torch.where(factor == 1.0, torch.full_like(factor, q), factor)
    return lam / factor


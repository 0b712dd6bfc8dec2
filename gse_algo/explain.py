"""How a perturbation sits on a CAM: overlap with the most salient pixels and a table of its clusters.

Per image, NumPy in and out: delta [C,H,W] (any units; every number here is scale free), cam [H,W].
The perturbation mask holds the pixels where any channel of delta is nonzero (as ACP, spec 2.2). The paper's
interpretability score IS (adversarial saliency map, spec 2.4) lives in gse_algo.metrics.interpretability_score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

OVERLAP_KEYS = ("pixel_share", "l2_share", "iou")


def _check(delta: np.ndarray, cam: np.ndarray, batched: bool = False) -> None:
    want = 4 if batched else 3
    if delta.ndim != want or cam.ndim != 2 or delta.shape[-2:] != cam.shape:
        raise ValueError(f"expected delta [{'T,' if batched else ''}C,H,W] and cam [H,W] of the same H,W; "
                         f"got delta {delta.shape} and cam {cam.shape}")


def salient_region(cam: np.ndarray, top_percent: float) -> np.ndarray:
    """bool [H,W]: the k = ceil(q/100 * H*W) pixels with the largest CAM values, q = top_percent in (0, 100].

    Exactly k pixels are chosen. Ties are broken by raster order (row by row, the earlier pixel wins), so the
    region is deterministic even on a flat CAM.
    """
    cam = np.asarray(cam)
    if not 0 < top_percent <= 100:
        raise ValueError(f"top_percent must be in (0, 100] (got {top_percent})")
    if cam.ndim != 2 or not np.isfinite(cam).all():
        raise ValueError(f"expected a finite CAM [H,W], got shape {cam.shape}")
    k = math.ceil(top_percent / 100 * cam.size)
    order = np.argsort(-cam.ravel(), kind="stable")
    region = np.zeros(cam.size, dtype=bool)
    region[order[:k]] = True
    return region.reshape(cam.shape)


def overlap_curve(deltas: Sequence[np.ndarray] | np.ndarray, cam: np.ndarray,
                  top_percent: float) -> dict[str, np.ndarray]:
    """The overlap numbers (see `overlap`) for T perturbations at once: deltas [T,C,H,W] -> dict of float64 [T].

    For a curve over many iterations of a sparse history, `overlap_curve_sparse` needs no densified deltas.
    """
    deltas = np.asarray(deltas)
    cam = np.asarray(cam)
    _check(deltas, cam, batched=True)
    return region_overlap(deltas, salient_region(cam, top_percent))


def region_overlap(deltas: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """pixel_share, l2_share and iou (see `overlap`) of T perturbations [T,C,H,W] with a bool region [H,W]
    (a CAM's top pixels, or a user's object mask); NaN where delta = 0."""
    deltas, region = np.asarray(deltas), np.asarray(region, dtype=bool)
    _check(deltas, region, batched=True)
    mask = (deltas != 0).any(axis=1)                              # [T,H,W]
    energy = (deltas.astype(np.float64) ** 2).sum(axis=1)          # [T,H,W] per-pixel ||delta||^2 over channels
    return _shares(mask.sum(axis=(1, 2)), (mask & region).sum(axis=(1, 2)), (energy * region).sum(axis=(1, 2)),
                   energy.sum(axis=(1, 2)), int(region.sum()))


def overlap_curve_sparse(supports: Sequence[tuple[np.ndarray, np.ndarray]], cam: np.ndarray,
                         top_percent: float) -> dict[str, np.ndarray]:
    """`overlap_curve` of T sparse perturbations: each (flat pixel indices into the H*W image [n], values [n, C])."""
    cam = np.asarray(cam)
    region = salient_region(cam, top_percent).ravel()
    counts = np.zeros((4, len(supports)))  # perturbed pixels, those inside, energy inside, energy
    for t, (pixels, values) in enumerate(supports):
        values = np.asarray(values, dtype=np.float64)
        changed = (values != 0).any(axis=1)
        if np.size(pixels) and (np.min(pixels) < 0 or np.max(pixels) >= cam.size):
            raise ValueError(f"pixel indices outside the {cam.shape} CAM")
        inside = region[np.asarray(pixels)[changed]]
        energy = (values[changed] ** 2).sum(axis=1)
        counts[:, t] = (changed.sum(), inside.sum(), energy[inside].sum(), energy.sum())
    return _shares(*counts, int(region.sum()))


def _shares(n_mask: np.ndarray, n_inside: np.ndarray, energy_inside: np.ndarray, total: np.ndarray,
            region_size: int) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = {
            "pixel_share": n_inside / n_mask,
            "l2_share": np.sqrt(energy_inside / total),
            "iou": n_inside / (n_mask + region_size - n_inside),
        }
    empty = n_mask == 0
    for values in result.values():
        values[empty] = np.nan
    return result


def overlap(delta: np.ndarray, cam: np.ndarray, top_percent: float) -> dict[str, float]:
    """Overlap of the perturbation with the top `top_percent` % salient pixels R of the CAM.

    pixel_share = |M & R| / |M| (M: perturbed pixels); l2_share = ||R * delta||_2 / ||delta||_2 (as IS, spec 2.4);
    iou = |M & R| / |M | R|. All NaN when delta = 0.
    """
    delta = np.asarray(delta)
    _check(delta, np.asarray(cam))
    return {key: float(values[0]) for key, values in overlap_curve(delta[None], cam, top_percent).items()}


def cluster_table(delta: np.ndarray, cam: np.ndarray) -> list[dict]:
    """One row per 4-connected cluster of perturbed pixels (scipy.ndimage.label, cross structure, as ANC in 2.2).

    Row keys: label (the cluster's number in ndimage.label's labelling, raster order of first pixel), size (pixels),
    bbox (row0, col0, row1, col1, inclusive), energy_share = ||delta on the cluster||_2^2 / ||delta||_2^2 (shares of
    the squared l2 norm, so the rows sum to 1; the cluster's share of the norm itself is its square root),
    mean_cam (mean CAM value over the cluster's pixels). Sorted by size, largest first (ties: by label).
    Empty for delta = 0.
    """
    delta, cam = np.asarray(delta), np.asarray(cam)
    _check(delta, cam)
    labels, n = ndimage.label((delta != 0).any(axis=0))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    energy = (delta.astype(np.float64) ** 2).sum(axis=0)
    sizes = ndimage.sum_labels(np.ones_like(energy), labels, index)
    energies = ndimage.sum_labels(energy, labels, index) / energy.sum()
    means = ndimage.mean(cam.astype(np.float64), labels, index)
    rows = [{"label": int(i), "size": int(size), "bbox": (box[0].start, box[1].start, box[0].stop - 1, box[1].stop - 1),
             "energy_share": float(share), "mean_cam": float(mean)}
            for i, size, box, share, mean in zip(index, sizes, ndimage.find_objects(labels), energies, means)]
    return sorted(rows, key=lambda row: -row["size"])

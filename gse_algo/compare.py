"""Two attack results side by side: where their supports agree, and which one is better at each metric.

The app's comparison view, the comparison figure and `gse-compare` all read these rules (one owner). Colours are
Okabe-Ito (colour-blind safe): only A blue, only B vermillion, both yellow.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import to_rgb
from scipy import ndimage

NEITHER, ONLY_A, ONLY_B, BOTH = 0, 1, 2, 3
OVERLAY_COLOURS = {ONLY_A: "#0072B2", ONLY_B: "#D55E00", BOTH: "#F0E442"}
OVERLAY_LABELS = {ONLY_A: "only A", ONLY_B: "only B", BOTH: "both"}

# metric -> True when a larger value is better; metrics not listed here are not ranked
HIGHER_IS_BETTER = {"success": True, "fools_at_8bit": True, "acp": False, "channel_l0": False, "anc": False,
                    "d20": False, "l2": False, "linf": False, "time_s": False, "n_forward": False,
                    "n_backward": False}

GREY_FLOOR, GREY_SPAN = 0.3, 0.4  # the overlay's background: the clean image's mean in [0.3, 0.7], faint grey
RING_SIDE = 64  # on images this wide or wider, views ring the small clusters (on smaller ones pixels show well)
SMALL_CLUSTER = 1 / 40  # a cluster whose bounding box is at most this share of the image side is small
RING_RADIUS = 1 / 45  # a ring's radius, as a share of the image side
MAX_RINGS = 300  # more small clusters than this: no rings (they would cover the image)
RING_LABEL = "ring: a cluster too small to see"  # the legends' words for the rings

# the metrics that measure a perturbation's size: ranked only among results that succeeded
SIZES = frozenset({"acp", "channel_l0", "anc", "d20", "l2", "linf"})


def overlay_codes(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """uint8 map of two [H,W] supports: 0 neither, 1 only A, 2 only B, 3 both."""
    a, b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two supports differ in shape: {a.shape} and {b.shape}")
    return (a.astype(np.uint8) * ONLY_A + b.astype(np.uint8) * ONLY_B).astype(np.uint8)


def overlay_picture(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """float32 [H,W,3] in [0,1]: the clean image x [H,W,C] in faint grey, and OVERLAY_COLOURS where a support
    holds the pixel."""
    grey = (GREY_FLOOR + GREY_SPAN * np.asarray(x, np.float32).mean(axis=2)).astype(np.float32)
    out = np.repeat(grey[..., None], 3, axis=2)
    for code, colour in OVERLAY_COLOURS.items():
        out[codes == code] = to_rgb(colour)
    return out


def small_clusters(codes: np.ndarray) -> list[tuple[float, float, int]]:
    """(row, column, code): the centre of the bounding box of every cluster (4-connected) of each overlay code
    that is at most SMALL_CLUSTER of the image side wide, which vanishes at print or screen size; views ring them.
    [] on images smaller than RING_SIDE, and when there are more than MAX_RINGS."""
    if max(codes.shape) < RING_SIDE:
        return []
    limit = max(codes.shape) * SMALL_CLUSTER
    small = []
    for code in OVERLAY_COLOURS:
        labels, _ = ndimage.label(codes == code)
        for rows, cols in ndimage.find_objects(labels):
            if max(rows.stop - rows.start, cols.stop - cols.start) <= limit:
                small.append(((rows.start + rows.stop - 1) / 2, (cols.start + cols.stop - 1) / 2, code))
    return small if len(small) <= MAX_RINGS else []


def support_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """|A and B| / |A or B| of two supports; NaN when both are empty."""
    codes = overlay_codes(mask_a, mask_b)
    union = int((codes != NEITHER).sum())
    return float((codes == BOTH).sum()) / union if union else math.nan


def better(metric: str, a: float | bool | None, b: float | bool | None) -> str | None:
    """'a' or 'b' for the better of two values of `metric`, None for a tie, an unranked metric or a missing value.
    Sizes (ACP, l2, ...) only count among successful results: the caller passes None for a failed run's sizes."""
    if metric not in HIGHER_IS_BETTER or a is None or b is None:
        return None
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb) or fa == fb:
        return None
    return "a" if (fa > fb) == HIGHER_IS_BETTER[metric] else "b"

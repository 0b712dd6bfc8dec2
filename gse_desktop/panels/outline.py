"""The outline of a pixel mask over an image view: the edges between pixels in and out of the mask.

A vectorised replacement for pyqtgraph's IsocurveItem, whose contouring runs in Python (about 50 ms for a 224x224
mask, on every repaint): the edges are found with NumPy and drawn as one path of separate segments.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg


def mask_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of segment end points, in pairs, along every edge between a pixel in `mask` [H,W] and one outside it
    (or the border). Pixel (r, c) covers x in [c, c+1], y in [r, r+1], as an ImageItem at the origin draws it."""
    padded = np.pad(np.asarray(mask, bool), 1)
    rows, cols = np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])  # an edge above pixel (rows, cols)
    horizontal = (cols, rows, cols + 1, rows)
    rows, cols = np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])  # an edge left of pixel (rows, cols)
    vertical = (cols, rows, cols, rows + 1)
    x0, y0, x1, y1 = (np.concatenate(parts).astype(np.float64) for parts in zip(horizontal, vertical))
    return np.column_stack([x0, x1]).ravel(), np.column_stack([y0, y1]).ravel()


class MaskOutline(pg.PlotCurveItem):
    """Draw `set_mask(mask)` as its outline; `set_mask(None)` clears it."""

    def __init__(self, colour: str, width: float = 1.5) -> None:
        super().__init__(pen=pg.mkPen(colour, width=width), connect="pairs")
        self.setZValue(10)
        self.mask: np.ndarray | None = None

    def set_mask(self, mask: np.ndarray | None) -> None:
        if mask is None or not np.any(mask):
            self.mask = None
            self.setData([], [])
            return
        self.mask = np.asarray(mask, bool)
        x, y = mask_edges(self.mask)
        self.setData(x, y, connect="pairs")

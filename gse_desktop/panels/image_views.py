"""The image grid: original, adversarial, signed perturbation, mask (+ frozen region), log10 lambda, CAM.

All views share zoom and pan; perturbation and lambda have colour bars. Hovering a pixel emits its readout.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Signal

from gse_algo.figures import signed_perturbation
from gse_desktop.history import Frame

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

# mask colours (RGB): untouched pixels, the support, the phase-2 frozen region
FREE, SUPPORT, FROZEN = (45, 45, 45), (255, 200, 0), (40, 90, 200)
TITLES = {
    "original": "Original",
    "adversarial": "Adversarial",
    "perturbation": "Perturbation δ (strongest channel)",
    "mask": "Mask: <span style='color:#ffc800'>support</span> / <span style='color:#6e9bff'>frozen</span>",
    "lambda": "λ map (log10)",
    "cam": "CAM",
}
# (row, column) of each view; columns 2 and 4 hold the two colour bars (see ImageViews._colour_bar)
CELLS = {"original": (0, 0), "adversarial": (0, 1), "perturbation": (0, 3),
         "mask": (1, 0), "lambda": (1, 1), "cam": (1, 3)}


def nice_bound(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k >= value (> 0): colour-bar levels that change seldom, and so its axis."""
    value = max(value, 1e-6)
    power = 10.0 ** np.floor(np.log10(value))
    return float(next(power * m for m in (1, 2, 5, 10) if power * m >= value * (1 - 1e-9)))


class ImageViews(pg.GraphicsLayoutWidget):
    """Six linked image views; call `show_original` once per image and `show_frame` per shown snapshot."""

    hovered = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.plots: dict[str, pg.PlotItem] = {}
        self.items: dict[str, pg.ImageItem] = {}
        for name in TITLES:
            plot = self.addPlot(*CELLS[name], title=TITLES[name])
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.invertY(True)
            plot.setAspectLocked(not self.plots)  # only the first view locks its aspect, the linked ones follow it
            plot.setMenuEnabled(False)
            item = pg.ImageItem()
            plot.addItem(item)
            if self.plots:
                first = next(iter(self.plots.values()))
                plot.setXLink(first)
                plot.setYLink(first)
            self.plots[name], self.items[name] = plot, item
        self.delta_bar = self._colour_bar("perturbation", (-0.1, 0.1), "CET-D1", "δ", (0, 4))
        self.lambda_bar = self._colour_bar("lambda", (0, 1), "viridis", "log10 λ", (1, 2))
        for column in {c for _, c in CELLS.values()}:  # the view columns share the width equally
            self.ci.layout.setColumnStretchFactor(column, 1)
        self.cam_text = pg.TextItem("CAM — computed after the run\n(explainability panel)", color="#bbbbbb",
                                    anchor=(0.5, 0.5))
        self.plots["cam"].addItem(self.cam_text)
        self.original: np.ndarray | None = None
        self.frame: Frame | None = None  # the shown one
        self._image = 0  # the batch index it shows
        self.scene().sigMouseMoved.connect(self._mouse_moved)

    def _colour_bar(self, name: str, values: tuple[float, float], cmap: str, label: str,
                    cell: tuple[int, int]) -> pg.ColorBarItem:
        """A colour bar in a column of its own: grid columns are shared by both rows, so every view keeps the
        same width (and, with the linked axes, the same pixel aspect)."""
        bar = pg.ColorBarItem(values=values, colorMap=pg.colormap.get(cmap), interactive=False, width=12,
                              label=label)
        bar.setImageItem(self.items[name])
        self.addItem(bar, *cell)
        return bar

    def show_original(self, rgb: np.ndarray, label: str = "model input") -> None:
        """A new clean image [H,W,3] in [0,1] (`label` says what it is): reset every view."""
        self.original = np.asarray(rgb, dtype=np.float32)
        h, w = self.original.shape[:2]
        self.plots["original"].setTitle(f"{TITLES['original']} ({label}, {w}x{h})")
        self.items["original"].setImage(self.original, levels=(0, 1))
        self.items["adversarial"].setImage(self.original, levels=(0, 1))
        for name in ("perturbation", "lambda"):
            self.items[name].setImage(np.zeros((h, w), np.float32), autoLevels=False)
        self.items["mask"].setImage(np.full((h, w, 3), FREE, np.uint8), levels=(0, 255))
        self.items["cam"].clear()
        self.cam_text.setPos(w / 2, h / 2)
        self.frame = None
        self.fit()

    def fit(self) -> None:
        """Zoom every (linked) view to the whole image."""
        if self.original is not None:
            h, w = self.original.shape[:2]
            for plot in self.plots.values():
                plot.vb.setRange(QRectF(0, 0, w, h), padding=0.02)

    def show_frame(self, frame: Frame, image: int = 0) -> None:
        """Draw one decoded snapshot (image `image` of the batch); the mask and lambda views only when they changed."""
        if self.original is None or frame.delta.shape[-2:] != self.original.shape[:2]:
            return
        shown, self.frame = self.frame, frame
        same_image = shown is not None and self._image == image
        self._image = image
        delta = frame.delta[image]
        self.items["adversarial"].setImage(np.clip(self.original + delta.transpose(1, 2, 0), 0, 1), levels=(0, 1))
        signed = signed_perturbation(delta)  # the same rendering as the composite figure
        self.items["perturbation"].setImage(signed, autoLevels=False)
        changed = np.abs(signed[signed != 0])
        # levels at the 95th percentile of the changed pixels: the few largest saturate, the rest stay visible
        bound = nice_bound(float(np.percentile(changed, 95)) if changed.size else 0.0)
        if self.delta_bar.levels() != (-bound, bound):
            self.delta_bar.setLevels((-bound, bound))
        if not (same_image and np.array_equal(shown.mask[image], frame.mask[image])
                and np.array_equal(shown.frozen[image], frame.frozen[image])):
            self._show_mask(frame, image)
        if not (same_image and shown.log10_lambda is frame.log10_lambda):  # shared while lambda is unchanged
            self._show_lambda(frame.log10_lambda[image])

    def _show_mask(self, frame: Frame, image: int) -> None:
        mask = np.empty(frame.mask.shape[1:] + (3,), np.uint8)
        mask[:] = FREE
        mask[frame.frozen[image]] = FROZEN
        mask[frame.mask[image]] = SUPPORT
        self.items["mask"].setImage(mask, levels=(0, 255))
        # the count in fixed-width digits: a title that changes size would re-layout (and repaint) every view
        digits = len(str(mask.shape[0] * mask.shape[1]))
        count = f"{int(frame.acp[image]):>{digits}}".replace(" ", "&nbsp;")
        self.plots["mask"].setTitle(TITLES["mask"] + f"  (<span style='font-family:monospace'>{count}</span> px)")

    def _show_lambda(self, log_lam: np.ndarray) -> None:
        finite = log_lam[np.isfinite(log_lam)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        high = high if high > low else low + 1e-3
        self.items["lambda"].setImage(np.nan_to_num(log_lam, posinf=high, neginf=low), autoLevels=False)
        self.lambda_bar.setLevels((low, high))

    def show_cam(self, cam: np.ndarray | None, title: str = "CAM") -> None:
        """Fill the CAM view ([H,W] in [0,1]) or show the placeholder again (None)."""
        self.plots["cam"].setTitle(title)
        self.cam_text.setVisible(cam is None)
        if cam is None:
            self.items["cam"].clear()
        else:
            self.items["cam"].setImage(cam, levels=(0, 1), lut=pg.colormap.get("inferno").getLookupTable())

    def readout(self, row: int, col: int, image: int = 0) -> str:
        """What is at one pixel of the shown frame: delta per channel, lambda, support, frozen."""
        if self.original is None:
            return ""
        h, w = self.original.shape[:2]
        if not (0 <= row < h and 0 <= col < w):
            return ""
        text = f"(x={col}, y={row})  rgb={np.round(self.original[row, col], 3).tolist()}"
        f = self.frame
        if f is None:
            return text
        d = f.delta[image, :, row, col]
        lam = 10.0 ** float(f.log10_lambda[image, row, col])
        return (text + f"  δ=[{d[0]:+.4f}, {d[1]:+.4f}, {d[2]:+.4f}]  λ={lam:.3g}"
                f"  {'in' if f.mask[image, row, col] else 'out of'} support"
                f"  {'frozen' if f.frozen[image, row, col] else 'not frozen'}")

    def _mouse_moved(self, pos: QPointF) -> None:
        for plot in self.plots.values():
            if plot.sceneBoundingRect().contains(pos):
                point = plot.vb.mapSceneToView(pos)
                self.hovered.emit(self.readout(int(np.floor(point.y())), int(np.floor(point.x()))))
                return

"""The image grid: original, adversarial, signed perturbation, mask (+ frozen region), log10 lambda, CAM.

All views share zoom and pan; perturbation, lambda and CAM have colour bars, with the colour maps and level rules
of gse_algo.colours (the composite figures' convention). Hovering a pixel emits its readout.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Signal

from gse_algo import colours
from gse_algo.figures import amplified_difference, signed_perturbation
from gse_desktop.history import Frame
from gse_desktop.panels.outline import MaskOutline

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

# mask colours (RGB): untouched pixels, the support, the phase-2 frozen region
FREE, SUPPORT, FROZEN = (45, 45, 45), (255, 200, 0), (40, 90, 200)
OUTLINE = "#00e5ff"  # the support's outline over an image
TITLES = {
    "original": "Original",
    "adversarial": "Adversarial",
    "perturbation": "Perturbation δ (strongest channel)",
    "mask": "Mask: <span style='color:#ffc800'>support</span> / <span style='color:#6e9bff'>frozen</span>",
    "lambda": "λ map (log10)",
    "cam": "CAM",
}
MASK_SUPPORT_ONLY = "Mask: <span style='color:#ffc800'>support</span>"  # an attack without a frozen region
# (row, column) of each view; columns 2 and 4 hold the colour bars (see ImageViews._colour_bar)
CELLS = {"original": (0, 0), "adversarial": (0, 1), "perturbation": (0, 3),
         "mask": (1, 0), "lambda": (1, 1), "cam": (1, 3)}
TITLE_SIZE = "9pt"  # small titles leave the height to the images on a laptop
TITLE_ROW = 18  # px
MIN_VIEW = 200  # px, the smallest an image view gets
TITLE_HEIGHT, BAR_WIDTH = 24, 70  # px a view's title and margins take above it; a colour bar column with its axis
BARS = {"perturbation": ("δ", (0, 4)), "lambda": ("log10 λ", (1, 2)), "cam": ("CAM", (1, 4))}


def set_title(plot: pg.PlotItem, text: str) -> None:
    """A small title (TITLE_SIZE) in a row TITLE_ROW px high (PlotItem.setTitle would make it 30 px each time)."""
    plot.titleLabel.setText(text, size=TITLE_SIZE)
    plot.titleLabel.setMaximumHeight(TITLE_ROW)
    plot.titleLabel.setVisible(True)
    plot.layout.setRowFixedHeight(0, TITLE_ROW)


def colour_map(view: str) -> pg.ColorMap:
    """The pyqtgraph colour map of a view, from gse_algo.colours' lookup table (the figures' colours)."""
    lut = colours.lookup_table(view)
    return pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut)


class LinkedViews(pg.GraphicsLayoutWidget):
    """Image views that share zoom and pan (the same centre and scale, image pixels per screen pixel, in every
    view), each with square pixels. `image_shape` (H, W) is what `fit` shows whole."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.plots: dict[str, pg.PlotItem] = {}
        self.items: dict[str, pg.ImageItem] = {}
        self._fitted = True  # no zoom or pan since the last fit: a resize fits again
        self._syncing = False
        self.image_shape: tuple[int, int] | None = None

    def add_view(self, name: str, row: int, column: int, title: str) -> pg.PlotItem:
        plot = self.addPlot(row, column)
        set_title(plot, title)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.invertY(True)
        plot.setAspectLocked(True)  # square pixels in every view
        plot.setMenuEnabled(False)
        plot.hideButtons()  # pyqtgraph's auto-range would fit one view only: `fit` (key F) fits them all
        item = pg.ImageItem()
        plot.addItem(item)
        plot.vb.sigRangeChangedManually.connect(lambda _, vb=plot.vb: self._user_moved(vb))
        plot.vb.sigResized.connect(lambda _: self._resized())
        self.plots[name], self.items[name] = plot, item
        return plot

    def _apply(self, centre: tuple[float, float], scale: float) -> None:
        """Every view centred on `centre` (data units) at `scale` data units per screen pixel."""
        self._syncing = True
        try:
            for plot in self.plots.values():
                vb = plot.vb
                half_w, half_h = vb.width() * scale / 2, vb.height() * scale / 2
                vb.setRange(QRectF(centre[0] - half_w, centre[1] - half_h, 2 * half_w, 2 * half_h), padding=0)
        finally:
            self._syncing = False

    def _user_moved(self, source) -> None:
        """A zoom or pan in one view: the others follow it."""
        if self._syncing:
            return
        self._fitted = False
        (x0, x1), (y0, y1) = source.viewRange()
        self._apply(((x0 + x1) / 2, (y0 + y1) / 2), source.viewPixelSize()[0])

    def _resized(self) -> None:
        if self._fitted and not self._syncing:
            self.fit()

    def fit(self) -> None:
        """The whole image in every view, with square pixels, at one scale (the one the smallest view needs)."""
        if self.image_shape is None:
            return
        h, w = self.image_shape
        margin = 1.02
        sizes = [(p.vb.width(), p.vb.height()) for p in self.plots.values()]
        scale = max(max(margin * w / max(bw, 1), margin * h / max(bh, 1)) for bw, bh in sizes)
        self._apply((w / 2, h / 2), scale)
        self._fitted = True

    def zoom_to(self, rows: tuple[int, int], cols: tuple[int, int], margin: int = 4) -> None:
        """Every view on image rows r0..r1 and columns c0..c1 (inclusive), with a margin of image pixels."""
        (r0, r1), (c0, c1) = rows, cols
        sizes = [(p.vb.width(), p.vb.height()) for p in self.plots.values()]
        w, h = c1 - c0 + 1 + 2 * margin, r1 - r0 + 1 + 2 * margin
        scale = max(max(w / max(bw, 1), h / max(bh, 1)) for bw, bh in sizes)
        self._apply(((c0 + c1 + 1) / 2, (r0 + r1 + 1) / 2), scale)
        self._fitted = False

    def pixel_geometry(self) -> dict[str, tuple[float, tuple[float, float, float, float]]]:
        """Per view: the pixel aspect (1 = square) and the visible data rectangle (x0, x1, y0, y1)."""
        out = {}
        for name, plot in self.plots.items():
            dx, dy = plot.vb.viewPixelSize()
            (x0, x1), (y0, y1) = plot.vb.viewRange()
            out[name] = (dy / dx, (x0, x1, y0, y1))
        return out


class ImageViews(LinkedViews):
    """Six linked image views; call `show_original` once per image and `show_frame` per shown snapshot."""

    hovered = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.original: np.ndarray | None = None
        for name in TITLES:
            self.add_view(name, *CELLS[name], TITLES[name])
        self.bars = {name: self._colour_bar(name, label, cell) for name, (label, cell) in BARS.items()}
        self.lambda_grey = pg.ImageItem()  # +inf lambda (NaN in the view) shows this grey through
        self.lambda_grey.setZValue(-1)
        self.plots["lambda"].addItem(self.lambda_grey)
        for column in {c for _, c in CELLS.values()}:  # the view columns share the width equally
            self.ci.layout.setColumnStretchFactor(column, 1)
        self.ci.layout.setSpacing(2)
        self.ci.setContentsMargins(2, 2, 2, 2)
        # every view at least MIN_VIEW px on screen: the window's docks give way first
        self.setMinimumSize(3 * MIN_VIEW + 2 * BAR_WIDTH, 2 * (MIN_VIEW + TITLE_HEIGHT))
        self.cam_text = pg.TextItem("CAM — computed after the run\n(explainability panel)", color="#bbbbbb",
                                    anchor=(0.5, 0.5))
        self.plots["cam"].addItem(self.cam_text)
        self.lambda_text = pg.TextItem("", color="#bbbbbb", anchor=(0.5, 0.5))  # an attack without a lambda map
        self.plots["lambda"].addItem(self.lambda_text)
        self.lambda_text.setVisible(False)
        self.amplified = False
        self.mask_title = TITLES["mask"]  # the shown attack's: a frozen region only where it has one (GSE)
        self.support_outline = MaskOutline(OUTLINE, width=1)  # on the adversarial view
        self.plots["adversarial"].addItem(self.support_outline)
        self.frame: Frame | None = None  # the shown one
        self._image = 0  # the batch index it shows
        self.scene().sigMouseMoved.connect(self._mouse_moved)

    def _colour_bar(self, name: str, label: str, cell: tuple[int, int]) -> pg.ColorBarItem:
        """A colour bar in a column of its own: grid columns are shared by both rows, so every view keeps the
        same width (and, with the linked axes, the same pixel aspect). The view gets the full lookup table (the
        bar's own would be resampled to an even size, without an entry for exactly 0)."""
        bar = pg.ColorBarItem(values=colours.CAM_LEVELS, colorMap=colour_map(name), interactive=False, width=12,
                              label=label, colorMapMenu=False)
        bar.setContentsMargins(0, TITLE_ROW, 0, 8)  # level with its view, room for the end labels
        self.items[name].setLookupTable(colours.lookup_table(name))
        self.items[name].setLevels(colours.CAM_LEVELS)
        self.addItem(bar, *cell)
        return bar

    def _set_levels(self, name: str, levels: tuple[float, float]) -> None:
        """The levels of a view and of its colour bar (the bar's axis redrawn only when they change)."""
        if self.bars[name].levels() != levels:
            self.bars[name].setLevels(levels)
        self.items[name].setLevels(levels)

    def show_original(self, rgb: np.ndarray, label: str = "model input") -> None:
        """A new clean image [H,W,3] in [0,1] (`label` says what it is): reset every view."""
        self.original = np.asarray(rgb, dtype=np.float32)
        h, w = self.image_shape = self.original.shape[:2]
        set_title(self.plots["original"], f"{TITLES['original']} ({label}, {w}x{h})")
        self.items["original"].setImage(self.original, levels=(0, 1))
        self.items["adversarial"].setImage(self.original, levels=(0, 1))
        self.items["perturbation"].setImage(np.zeros((h, w), np.float32), autoLevels=False)
        self._set_levels("perturbation", (-1.0, 1.0))  # delta = 0 in the map's middle, on the range delta can take
        self._lambda_caption("λ map: shown once GSE runs")  # not a colour that would read as a value
        self.items["mask"].setImage(np.full((h, w, 3), FREE, np.uint8), levels=(0, 255))
        self.items["cam"].clear()
        self.lambda_grey.setImage(np.full((h, w, 3), colours.INF_GREY, np.float32), levels=(0, 1))
        self.support_outline.set_mask(None)
        self.cam_text.setPos(w / 2, h / 2)
        self.lambda_text.setPos(w / 2, h / 2)
        self.frame = None
        self.fit()

    def set_attack(self, title: str, has_lambda_map: bool) -> None:
        """What the run shows: an attack without a lambda map says so in that view (and has no frozen region)."""
        self._lambda_caption(None if has_lambda_map else f"{title} has no λ map\n(only GSE has one)")
        set_title(self.plots["lambda"], TITLES["lambda"] if has_lambda_map else "λ map: none")
        self.mask_title = TITLES["mask"] if has_lambda_map else MASK_SUPPORT_ONLY
        set_title(self.plots["mask"], self.mask_title)

    def _lambda_caption(self, text: str | None) -> None:
        """The λ view: a caption in place of a map (`text`), or room for the map with its colour bar (None)."""
        self.lambda_text.setText(text or "")
        self.lambda_text.setVisible(text is not None)
        self.bars["lambda"].setVisible(text is None)
        self.lambda_grey.setVisible(text is None)
        if text is not None:
            self.items["lambda"].clear()

    def show_frame(self, frame: Frame, image: int = 0) -> None:
        """Draw one decoded snapshot (image `image` of the batch); the mask and lambda views only when they changed."""
        if self.original is None or frame.delta.shape[-2:] != self.original.shape[:2]:
            return
        shown, self.frame = self.frame, frame
        same_image = shown is not None and self._image == image
        self._image = image
        delta = frame.delta[image]
        self._show_adversarial(delta)
        signed = signed_perturbation(delta)  # the same rendering as the composite figure
        self.items["perturbation"].setImage(signed, autoLevels=False)
        self._set_levels("perturbation", colours.perturbation_levels(signed))
        if not (same_image and np.array_equal(shown.mask[image], frame.mask[image])
                and np.array_equal(shown.frozen[image], frame.frozen[image])):
            self._show_mask(frame, image)
        lam = frame.log10_lambda
        if lam is not None and not (same_image and shown.log10_lambda is lam):  # shared while lambda is unchanged
            self._show_lambda(lam[image])

    def set_amplified(self, on: bool) -> None:
        """The adversarial view as the amplified difference (|delta| x k over the dimmed image) or as it is."""
        self.amplified = on
        if self.frame is not None:
            self._show_adversarial(self.frame.delta[self._image])
        else:
            set_title(self.plots["adversarial"], TITLES["adversarial"])

    def _show_adversarial(self, delta: np.ndarray) -> None:
        if self.amplified:
            picture, gain = amplified_difference(self.original.transpose(2, 0, 1), delta)
            title = f"Adversarial: |δ| × {gain:g} over the image dimmed"
        else:
            picture, title = np.clip(self.original + delta.transpose(1, 2, 0), 0, 1), TITLES["adversarial"]
        self.items["adversarial"].setImage(picture, levels=(0, 1))
        if self.plots["adversarial"].titleLabel.text != title:
            set_title(self.plots["adversarial"], title)
        self.support_outline.set_mask(np.abs(delta).sum(axis=0) > 0)

    def _show_mask(self, frame: Frame, image: int) -> None:
        mask = np.empty(frame.mask.shape[1:] + (3,), np.uint8)
        mask[:] = FREE
        mask[frame.frozen[image]] = FROZEN
        mask[frame.mask[image]] = SUPPORT
        self.items["mask"].setImage(mask, levels=(0, 255))
        # a title of fixed width (a title that changes size would re-layout and repaint every view): the count in
        # fixed-width digits, padded after the text, where the padding is not seen
        count = str(int(frame.acp[image]))
        pad = "&nbsp;" * (len(str(mask.shape[0] * mask.shape[1])) - len(count))
        mono = "<span style='font-family:monospace'>{}</span>"
        set_title(self.plots["mask"], self.mask_title + f"  ({mono.format(count)} px){mono.format(pad)}")

    def _show_lambda(self, log_lam: np.ndarray) -> None:
        self.items["lambda"].setImage(np.where(np.isfinite(log_lam), log_lam, np.nan), autoLevels=False)
        self._set_levels("lambda", colours.lambda_levels(log_lam))

    def show_cam(self, cam: np.ndarray | None, title: str = "CAM") -> None:
        """Fill the CAM view ([H,W] in [0,1]) or show the placeholder again (None)."""
        set_title(self.plots["cam"], title)
        self.cam_text.setVisible(cam is None)
        if cam is None:
            self.items["cam"].clear()
        else:
            self.items["cam"].setImage(cam, autoLevels=False)

    def readout(self, row: int, col: int, image: int = 0) -> str:
        """What is at one pixel of the shown frame: delta per channel, lambda, support, frozen."""
        if self.original is None:
            return ""
        h, w = self.original.shape[:2]
        if not (0 <= row < h and 0 <= col < w):
            return ""
        rgb = ", ".join(f"{v:.3f}" for v in self.original[row, col])
        text = f"(x={col}, y={row})  rgb=[{rgb}]"
        cam = self.items["cam"].image
        if cam is not None and cam.shape == (h, w):
            text += f"  CAM={float(cam[row, col]):.3f}"
        f = self.frame
        if f is None:
            return text
        d = f.delta[image, :, row, col]
        text += f"  δ=[{d[0]:+.4f}, {d[1]:+.4f}, {d[2]:+.4f}]"
        if f.log10_lambda is not None:
            text += f"  λ={10.0 ** float(f.log10_lambda[image, row, col]):.3g}"
        return (text + f"  {'in' if f.mask[image, row, col] else 'out of'} support"
                f"  {'frozen' if f.frozen[image, row, col] else 'not frozen'}")

    def _mouse_moved(self, pos: QPointF) -> None:
        for plot in self.plots.values():
            if plot.sceneBoundingRect().contains(pos):
                point = plot.vb.mapSceneToView(pos)
                self.hovered.emit(self.readout(int(np.floor(point.y())), int(np.floor(point.x()))))
                return

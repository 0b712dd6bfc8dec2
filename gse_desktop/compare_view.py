"""Two kept runs side by side (state.compared = (A, B)): both adversarial images and both perturbations with linked
zoom and square pixels (panels.image_views.LinkedViews), the two supports overlaid in one view (only A, only B,
both: gse_algo.compare's codes and colours, with a legend), their IoU, and every measured metric with the better
value marked (gse_desktop.run_rows, gse_algo.compare.better). It reads the state only."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from gse_algo.compare import (BOTH, ONLY_A, ONLY_B, OVERLAY_COLOURS, OVERLAY_LABELS, RING_LABEL, RING_RADIUS,
                              overlay_codes, overlay_picture, small_clusters, support_iou)
from gse_algo.figures import signed_perturbation
from gse_algo import colours
from gse_desktop.panels.image_views import LinkedViews, set_title
from gse_desktop.panels.tables import filling
from gse_desktop.run_rows import METRIC_HELP, key_parameters, metric_rows, registry_defaults
from gse_desktop.state import AppState, KeptRun

CELLS = {"adv_a": (0, 0), "adv_b": (0, 1), "overlay": (0, 2), "delta_a": (1, 0), "delta_b": (1, 1),
         "original": (1, 2)}
BETTER = "#2ca02c"
SIDE_WIDTH = 330  # the legend and the metrics table, readable beside the images
MARK = " ★"


class CompareImages(LinkedViews):
    """Adversarial images and perturbations of A and B, the overlay and the clean image, all linked."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        for name, cell in CELLS.items():
            self.add_view(name, *cell, "")
        self.lut = colours.lookup_table("perturbation")  # the main views' and the figures' colours
        self.rings = pg.ScatterPlotItem(pxMode=False, symbol="o", brush=None)  # small clusters, as in the figure
        self.plots["overlay"].addItem(self.rings)
        for column in range(3):
            self.ci.layout.setColumnStretchFactor(column, 1)

    def show_pair(self, x: np.ndarray, deltas: tuple[np.ndarray, np.ndarray], codes: np.ndarray) -> None:
        """x [H,W,3], deltas [C,H,W] of A and B (named in the view's header), the overlay codes [H,W]."""
        new_size = self.image_shape != x.shape[:2]
        self.image_shape = x.shape[:2]
        for side, delta in zip("ab", deltas):
            self.items[f"adv_{side}"].setImage(np.clip(x + delta.transpose(1, 2, 0), 0, 1), levels=(0, 1))
            set_title(self.plots[f"adv_{side}"], f"{side.upper()}: adversarial")
            signed = signed_perturbation(delta)
            # each at its own scale (the main view's rule): sizes differ between attacks by orders of magnitude
            levels = colours.perturbation_levels(signed)
            self.items[f"delta_{side}"].setImage(signed, levels=levels, lut=self.lut)
            set_title(self.plots[f"delta_{side}"], f"{side.upper()}: δ, ±{levels[1]:g}")
        self.items["overlay"].setImage(overlay_picture(x, codes), levels=(0, 1))
        self.ring(codes)
        set_title(self.plots["overlay"], "Supports: A, B, both")
        self.items["original"].setImage(x, levels=(0, 1))
        set_title(self.plots["original"], "Original")
        if new_size or self._fitted:
            self.fit()

    def ring(self, codes: np.ndarray) -> None:
        """Rings around the overlay's clusters too small to see (gse_algo.compare.small_clusters), in their colours;
        pixel (r, c) spans [c, c+1] x [r, r+1] here."""
        small = small_clusters(codes)
        self.rings.setData(x=[c + 0.5 for _, c, _ in small], y=[r + 0.5 for r, _, _ in small],
                           size=2 * RING_RADIUS * max(codes.shape),
                           pen=[pg.mkPen(OVERLAY_COLOURS[code], width=1.5) for _, _, code in small])

    def blank(self) -> None:
        """No pair shown (pyqtgraph's own `clear` would remove the views)."""
        self.rings.clear()
        for name, item in self.items.items():
            item.clear()
            set_title(self.plots[name], "")


class CompareView(QWidget):
    """The comparison of the state's two compared runs; `export_clicked` asks the window for the figure."""

    export_clicked = Signal()
    back_clicked = Signal()  # the window shows the run's views again

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.title = QLabel("Select two runs in the run list (Ctrl+click) to compare them.")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.swap_button = QPushButton("Swap A/B", toolTip="B becomes A and A becomes B")
        self.swap_button.clicked.connect(self.swap)
        self.export_button = QPushButton("Export figure…", toolTip="The comparison as one figure (PNG or SVG)")
        self.export_button.clicked.connect(self.export_clicked)
        self.zoom_button = QPushButton("Zoom to the supports", toolTip="Every view on the pixels either run changed")
        self.zoom_button.clicked.connect(self.zoom_to_supports)
        self.fit_button = QPushButton("Fit", toolTip="The whole image in every view")
        self.back_button = QPushButton("Back to the run", toolTip="The shown run's views (the comparison stays: "
                                                                  "View > Comparison, key C)")
        self.back_button.clicked.connect(self.back_clicked)
        self.images = CompareImages()
        self.fit_button.clicked.connect(self.images.fit)
        self.union: np.ndarray | None = None  # the pixels either run changed
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["metric", "A", "B"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the labels take what A and B leave
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setToolTip(f"Every run measured the same way (gse_algo.attacks.measure); {MARK.strip()} marks "
                              "the better value. Sizes count only for a run that succeeded; time is the attack "
                              "alone, pauses and the app's own work excluded.")
        side = QWidget()
        side.setMinimumWidth(SIDE_WIDTH)
        column = QVBoxLayout(side)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.legend)
        column.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.images)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([3 * SIDE_WIDTH, SIDE_WIDTH])  # 3:1 from the start (scaled to the width), not the hints'
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.zoom_button)
        top.addWidget(self.fit_button)
        top.addWidget(self.swap_button)
        top.addWidget(self.export_button)
        top.addWidget(self.back_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.iou = float("nan")
        for event in ("compare", "runs"):
            state.events.connect(event, self.refresh)
        self.refresh()

    def pair(self) -> tuple[KeptRun, KeptRun] | None:
        keys = self.state.compared
        return None if keys is None else (self.state.kept(keys[0]), self.state.kept(keys[1]))

    def swap(self) -> None:
        keys = self.state.compared
        if keys is not None:
            self.state.compare((keys[1], keys[0]))

    def refresh(self) -> None:
        pair = self.pair()
        for button in (self.swap_button, self.export_button, self.zoom_button, self.fit_button):
            button.setEnabled(pair is not None)
        self.union = None
        if pair is None:
            self.title.setText("Select two runs in the run list (Ctrl+click) to compare them.")
            self.images.blank()
            self.legend.setText("")
            self.table.setRowCount(0)
            return
        a, b = pair
        defaults = registry_defaults(self.state.attacks)
        self.title.setText("<br>".join(f"<b>{side}: {html.escape(k.name)}</b> "
                                       f"({html.escape(key_parameters(k.description, defaults))})"
                                       for side, k in (("A", a), ("B", b))))
        self._fill_table(a, b)
        x = a.description.image
        if b.description.image.shape != x.shape:
            self.images.blank()
            self.iou = float("nan")
            self.legend.setText(f"The two runs attacked model inputs of different sizes ({x.shape[1]}x{x.shape[0]} "
                                f"and {b.description.image.shape[1]}x{b.description.image.shape[0]}): no overlay.")
            return
        (delta_a, _), (delta_b, _) = a.outcome(), b.outcome()
        masks = [np.abs(d).sum(axis=0) > 0 for d in (delta_a, delta_b)]
        codes = overlay_codes(*masks)
        self.iou = support_iou(*masks)
        self.union = masks[0] | masks[1]
        self.images.show_pair(x, (delta_a, delta_b), codes)
        counts = {code: int((codes == code).sum()) for code in (ONLY_A, ONLY_B, BOTH)}
        # a line breaks between the entries, never inside one ("(61" / "px)")
        swatches = " &nbsp; ".join(f"<span style='color:{OVERLAY_COLOURS[c]}'>■</span>&nbsp;"
                                   + f"{OVERLAY_LABELS[c]} ({counts[c]} px)".replace(" ", "&nbsp;")
                                   for c in (ONLY_A, ONLY_B, BOTH))
        iou = "–" if np.isnan(self.iou) else f"{self.iou:.3f}"
        if len(self.images.rings.data):
            swatches += " &nbsp; ○&nbsp;" + RING_LABEL
        self.legend.setText(f"{swatches}<br>support IoU = <b>{iou}</b> (pixels in both / pixels in either)<br>"
                            "perturbations: red +, blue −, each at its own scale (in its title), colour ~ sqrt")

    def zoom_to_supports(self) -> None:
        """Every view on the bounding box of the pixels either run changed (with a margin)."""
        if self.union is None or not self.union.any():
            return
        rows, cols = np.nonzero(self.union)
        self.images.zoom_to((int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max())))

    def _fill_table(self, a: KeptRun, b: KeptRun) -> None:
        rows = metric_rows((a.measured, a.record), (b.measured, b.record))
        with filling(self.table):
            self._fill_rows(rows)

    def _fill_rows(self, rows: list[tuple[str, str, str, str, str | None]]) -> None:
        self.table.setRowCount(len(rows))
        bold = QFont()
        bold.setBold(True)
        for row, (name, label, text_a, text_b, best) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(label))
            self.table.item(row, 0).setToolTip(METRIC_HELP.get(name, ""))
            for col, side, text in ((1, "a", text_a), (2, "b", text_b)):
                item = QTableWidgetItem(text + (MARK if best == side else ""))
                if best == side:
                    item.setFont(bold)
                    item.setForeground(QBrush(QColor(BETTER)))
                self.table.setItem(row, col, item)

"""Metrics against the iteration of the shown search step, with a cursor at the shown iteration.

Cheap to update live, since redrawing an axis costs more than the rest of a plot: the x axis spans the step's
iterations from the start, a y range changes only when the data leaves it (with headroom), and there is no grid
(pyqtgraph draws a grid as part of the axes, which then repaint the whole plot area).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from gse_algo.colours import nice_bound
from gse_desktop.help import MEANINGS
from gse_desktop.history import SERIES
from gse_desktop.panels.image_views import set_title

LABELS = {"cw_loss": "CW loss", "l2": "‖δ‖₂", "acp": "ACP (pixels)", "anc": "ANC (clusters)",
          "margin": "CW margin"}
COLOURS = {"cw_loss": "#ff7f0e", "l2": "#1f77b4", "acp": "#2ca02c", "anc": "#9467bd", "margin": "#d62728"}
TIPS = {"cw_loss": "CW loss", "l2": "l2", "acp": "ACP", "anc": "ANC", "margin": "margin"}
HEADROOM = 0.3  # of the data's span, on both sides of a new y range


def y_range(values: np.ndarray, shown: tuple[float, float] | None) -> tuple[float, float] | None:
    """`shown` while it holds the finite values and is at most 4x their span, else a new range with headroom."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return shown
    low, high = float(finite.min()), float(finite.max())
    span = high - low or 0.1 * max(abs(high), 1e-3)
    if shown is not None and shown[0] <= low and high <= shown[1] and shown[1] - shown[0] <= 4 * span:
        return shown
    return low - HEADROOM * span, high + HEADROOM * span


class MetricPlots(pg.GraphicsLayoutWidget):
    """One small plot per series in SERIES; x axes linked and fixed to [0, max(iterations, points) - 1]."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.cursors: list[pg.InfiniteLine] = []
        self.boundaries: list[pg.InfiniteLine] = []
        self.plots: dict[str, pg.PlotItem] = {}
        self.iterations = 0  # of a search step in the current run, 0 when unknown
        self._x_span = -1
        self._y_ranges: dict[str, tuple[float, float] | None] = {name: None for name in SERIES}
        first = None
        for name in SERIES:
            plot = self.addPlot()
            set_title(plot, LABELS[name])
            plot.setToolTip(f"{MEANINGS[TIPS[name]]}\nx: iteration of the shown search step; dashed line: k_hat "
                            f"(the support freezes), solid line: the shown iteration")
            plot.setLabel("bottom", "iteration")
            plot.setMenuEnabled(False)
            plot.disableAutoRange()
            plot.getAxis("left").setWidth(40)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            self.plots[name] = plot
            self.curves[name] = plot.plot(pen=pg.mkPen(COLOURS[name], width=2))
            boundary = pg.InfiniteLine(angle=90, pen=pg.mkPen("#888888", style=pg.QtCore.Qt.PenStyle.DashLine))
            cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffffff", width=1))
            plot.addItem(boundary)
            plot.addItem(cursor)
            self.boundaries.append(boundary)
            self.cursors.append(cursor)
            if name == "margin":
                plot.addItem(pg.InfiniteLine(angle=0, pos=0, pen=pg.mkPen("#888888")))

    def set_series(self, series: dict[str, np.ndarray]) -> None:
        n = max((len(v) for v in series.values()), default=0)
        self._set_x_span(max(n, self.iterations, 2) - 1)
        for name, values in series.items():
            values = np.asarray(values, dtype=np.float64)
            if not np.isfinite(values).any():  # what the attack does not have (a baseline's CW loss): no curve
                values = values[:0]
            few = len(values) < 3  # a lone point needs a symbol to be seen
            self.curves[name].setData(np.arange(len(values)), values, symbol="o" if few else None, symbolSize=6,
                                      symbolBrush=COLOURS[name])
            shown = self._y_ranges[name]
            self._y_ranges[name] = y_range(values, shown)
            if self._y_ranges[name] != shown:
                self.plots[name].setYRange(*self._y_ranges[name], padding=0)

    def _set_x_span(self, span: int) -> None:
        if span != self._x_span:
            self._x_span = span
            major = nice_bound(span / 2)  # two or three labelled ticks fit these narrow plots
            for plot in self.plots.values():
                plot.setXRange(0, span, padding=0.02)
                plot.getAxis("bottom").setTickSpacing(major, major / 2)

    def set_cursor(self, iteration: int) -> None:
        for line in self.cursors:
            line.setPos(iteration)

    def set_attack(self, title: str, gse: bool) -> None:
        """GSE plots against its iterations with the phase boundary; a library attack against its frames (sampled
        forward calls), without the CW loss it does not have."""
        self.iterations = 0
        for plot in self.plots.values():
            plot.setLabel("bottom", "iteration" if gse else "frame")
        for line in self.boundaries:
            line.setVisible(gse)
        self.plots["cw_loss"].setTitle(LABELS["cw_loss"] if gse else f"CW loss: none for {title}")

    def set_phase_boundary(self, k_hat: int, iterations: int = 0) -> None:
        """Dashed line where phase 2 starts (the support freezes); `iterations` per search step fixes the x axis."""
        self.iterations = iterations
        for line in self.boundaries:
            line.setPos(k_hat)

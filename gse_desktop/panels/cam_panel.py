"""The CAM comparison panel: does the perturbation sit on what the model looks at?

A view of the app state's CAM part (gse_desktop.state): the pickers (method, target layer, class, clean or
adversarial image) ask the state for a CAM, which the state takes from its cache or has the engine compute once a
run is over; the panel draws the map the state shows (its title names the key that produced it) in the image
grid's CAM view over the image, with the shown iterate's perturbation mask as an outline. The numbers follow the
shown iterate: its overlap with the top q % of the CAM and its clusters (gse_algo.explain), the overlap against
iteration of the shown search step, and the run's interpretability score IS (computed by the engine once per run).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSlider,
                               QSpinBox, QTableWidget, QVBoxLayout, QWidget)

from gse_algo.defaults import CAM_METHOD_NAMES, EXPENSIVE_METHODS, IS_PERCENTILES
from gse_algo.explain import cluster_table, overlap, overlap_curve_sparse
from gse_desktop.help import MEANINGS
from gse_desktop.history import Frame
from gse_desktop.panels.image_views import OUTLINE, ImageViews
from gse_desktop.panels.outline import MaskOutline
from gse_desktop.panels.tables import fill_row, filling, setup_table
from gse_desktop.state import CAM_IMAGES, AppState, CamKey, describe

MAX_CLUSTER_ROWS = 100
L2_COLOUR, PIXEL_COLOUR = "#4fa3ff", "#2ca02c"


class CamPanel(QWidget):
    """Renders `state.cam` on every 'cam' event; `show_frame` for each shown iterate."""

    def __init__(self, state: AppState, views: ImageViews, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state, self.views = state, views
        self.frame: Frame | None = None
        self.overlap_now: dict[str, float] = {}
        self.curve_values: dict[str, np.ndarray] = {}
        self._curve_key: tuple | None = None
        self._drawn: tuple | None = None  # (key, map id, image id) on screen
        self._build()
        self.model_combos = (self.method_combo, self.layer_combo, self.class_combo, self.image_combo)
        self._add_overlay()
        state.events.connect("cam", self.render)
        self.render()

    # -- layout --------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.method_combo = QComboBox()
        for name in CAM_METHOD_NAMES:
            self.method_combo.addItem(f"{name} (slow)" if name in EXPENSIVE_METHODS else name, name)
        self.method_combo.setToolTip("CAM method (pytorch_grad_cam); the slow ones run only when you press Compute")
        self.layer_combo = QComboBox(toolTip="Target layer of the CAM (default: chosen for the architecture)")
        self.class_combo = QComboBox(toolTip="The class whose evidence the CAM shows")
        self.image_combo = QComboBox(toolTip="The image the CAM is computed on (adversarial: the run's result)")
        self.image_combo.addItems([f"{name} image" for name in CAM_IMAGES])
        self.q_spin = QSpinBox(minimum=1, maximum=100, value=20, suffix=" %",
                               toolTip="The salient region: the top q % pixels of the CAM")
        self.opacity = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=60,
                               toolTip="Opacity of the CAM over the image")
        self.compute_button = QPushButton("Compute", toolTip="Compute the chosen CAM now")
        self.cancel_button = QPushButton("Cancel", toolTip="Stop the CAM being computed")
        self.progress = QProgressBar(textVisible=True, maximum=100)
        self.message = QLabel(wordWrap=True)
        for combo in (self.method_combo, self.layer_combo, self.class_combo, self.image_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        self.pickers = QWidget()
        grid = QGridLayout(self.pickers)  # two pickers a row: the panel stays low enough for a laptop's bottom dock
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(2)
        for i, (label, widget) in enumerate((("Method", self.method_combo), ("Layer", self.layer_combo),
                                             ("Class", self.class_combo), ("Image", self.image_combo),
                                             ("Top q", self.q_spin), ("Opacity", self.opacity))):
            grid.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            grid.addWidget(widget, i // 2, 2 * (i % 2) + 1)
        left = QVBoxLayout()
        left.setSpacing(2)
        left.addWidget(self.pickers)
        left.addLayout(buttons)
        left.addWidget(self.message)
        left.addStretch(1)
        self.numbers = QLabel(textFormat=Qt.TextFormat.RichText)  # never wrapped into a narrow column
        self.numbers.setToolTip("\n".join(f"{name}: {MEANINGS[name]}" for name in ("pixel share", "l2 share", "IoU",
                                                                                    "IS")))
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cluster_view = QTableWidget()
        setup_table(self.cluster_view, ["px", "rows, cols", "‖δ‖²", "CAM"])
        self.cluster_view.setToolTip("4-connected clusters of the shown perturbation, largest first: pixels, "
                                     "bounding box, share of ‖δ‖², mean CAM value")
        self.cluster_view.setMinimumHeight(44)  # a header and a row at least; it scrolls
        middle = QVBoxLayout()
        middle.setSpacing(2)
        middle.addWidget(self.numbers)
        middle.addWidget(self.cluster_view, 1)
        self.curve_plot = pg.PlotWidget(background="#202020")
        self.curve_plot.setMinimumWidth(120)
        self.curve_plot.setMenuEnabled(False)
        self.curve_plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve_plot.setYRange(0, 1)
        self.curve_plot.getAxis("left").setWidth(30)
        self.l2_curve = self.curve_plot.plot(pen=pg.mkPen(L2_COLOUR, width=2))
        self.pixel_curve = self.curve_plot.plot(pen=pg.mkPen(PIXEL_COLOUR, width=1))
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffffff"))
        self.curve_plot.addItem(self.cursor)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addLayout(left, 0)
        layout.addLayout(middle, 6)
        layout.addWidget(self.curve_plot, 3)
        for combo in (self.method_combo, self.layer_combo, self.class_combo, self.image_combo):
            combo.currentIndexChanged.connect(lambda _: self.request())
        self.q_spin.valueChanged.connect(lambda v: self.state.set_cam_view(top_percent=v))
        self.opacity.valueChanged.connect(lambda v: self.state.set_cam_view(opacity=v / 100))
        self.compute_button.clicked.connect(lambda: self.request(force=True))
        self.cancel_button.clicked.connect(self.state.cancel_cam)

    def _add_overlay(self) -> None:
        """The image under the grid's CAM view and the mask outline over it (same plot: zoom/pan stay linked)."""
        plot = self.views.plots["cam"]
        self.base = pg.ImageItem()
        self.base.setZValue(-1)
        self.outline = MaskOutline(OUTLINE)
        plot.addItem(self.base)
        plot.addItem(self.outline)

    # -- requests ------------------------------------------------------------------------------------------------
    def key(self) -> CamKey | None:
        """What the pickers ask for now (None before a run has ended)."""
        if self.class_combo.currentIndex() < 0 or self.layer_combo.currentIndex() < 0:
            return None
        return CamKey(CAM_IMAGES[self.image_combo.currentIndex()], self.class_combo.currentData()[1],
                      self.method_combo.currentData(), self.layer_combo.currentText())

    def request(self, force: bool = False) -> None:
        key = self.key()
        if key is not None and not self._rendering:
            self.state.select_cam(key, force)

    # -- rendering -----------------------------------------------------------------------------------------------
    _rendering = False

    def render(self) -> None:
        """Pickers, message, progress, buttons and the shown map from the state."""
        state, cam = self.state, self.state.cam
        run = state.run
        self._rendering = True
        self._fill_pickers()
        self._rendering = False
        ended = run is not None and not state.active and len(state.history) > 0
        self.pickers.setEnabled(ended)
        self.q_spin.setValue(cam.top_percent)
        self.opacity.setValue(round(100 * cam.opacity))
        computing = cam.job is not None
        self.cancel_button.setEnabled(computing)
        key = cam.selection
        self.compute_button.setEnabled(ended and key is not None and key not in cam.cache
                                       and not (computing and cam.job[1] == key))
        self.progress.setValue(round(100 * cam.progress) if computing or cam.progress == 1.0 else 0)
        self.message.setText(cam.message if ended or cam.message else "CAMs are computed when a run has ended.")
        self._draw()
        self._update_numbers()

    def redraw(self) -> None:
        """Draw everything again (the image grid was reset under the CAM view)."""
        self._drawn = None
        self.render()

    def _fill_pickers(self) -> None:
        """The layer and class lists of the shown run, with the state's selection chosen."""
        run, key = self.state.run, self.state.cam.selection
        layers = list(run.model.layers) if run is not None else []
        roles = self.state.cam_classes()
        if key is not None and key.layer not in layers:
            layers.insert(0, key.layer)
        if key is not None and key.class_index not in [i for _, i in roles]:
            roles.append(("saved", key.class_index))
        for combo in self.model_combos:
            combo.blockSignals(True)
        if [self.layer_combo.itemText(i) for i in range(self.layer_combo.count())] != layers:
            self.layer_combo.clear()
            self.layer_combo.addItems(layers)
        self.class_combo.clear()
        for role, index in roles:
            label = run.model.class_name(index) if run is not None else str(index)
            self.class_combo.addItem(f"{role}: {index} ({label})", (role, index))
        if key is not None:
            self.layer_combo.setCurrentText(key.layer)
            self.class_combo.setCurrentIndex([i for _, i in roles].index(key.class_index))
            self.method_combo.setCurrentIndex(self.method_combo.findData(key.method))
            self.image_combo.setCurrentIndex(CAM_IMAGES.index(key.image))
        for combo in self.model_combos:
            combo.blockSignals(False)

    def _picture(self, key: CamKey) -> np.ndarray | None:
        final = self.state.cam.final
        if key.image == "clean":
            return self.state.run.image if self.state.run is not None else None
        return final.adversarial if final is not None else None

    def _draw(self) -> None:
        cam = self.state.cam
        key, array = cam.shown, cam.map
        picture = self._picture(key) if key is not None else None
        drawn = (key, id(array), id(picture))
        if drawn == self._drawn:
            self.views.items["cam"].setOpacity(cam.opacity)
            return
        self._drawn = drawn
        if array is None or picture is None:
            self.views.show_cam(None)
            self.base.clear()
            self.outline.set_mask(None)
            return
        name = self.state.run.model.class_name(key.class_index)
        self.views.show_cam(array, f"{key.method}: {key.class_index} {name} ({key.image})")
        self.views.plots["cam"].setToolTip(describe(key, self.state.run.model))
        self.views.items["cam"].setOpacity(cam.opacity)
        self.base.setImage(np.clip(picture, 0, 1), levels=(0, 1))

    def show_frame(self, frame: Frame | None) -> None:
        """The shown iterate changed: redraw its outline and its numbers."""
        self.frame = frame
        self._update_numbers()

    def _update_numbers(self) -> None:
        """Outline, overlap numbers, clusters and the curve for the shown iterate and the shown CAM."""
        scores = self._scores_text()
        frame, cam = self.frame, self.state.cam.map
        if frame is None or cam is None or frame.delta.shape[-2:] != cam.shape:
            self.numbers.setText(scores)
            self.cluster_view.setRowCount(0)
            self.outline.set_mask(None)
            self.l2_curve.setData([], [])
            self.pixel_curve.setData([], [])
            self.overlap_now, self._curve_key = {}, None
            return
        delta, q = frame.delta[0], self.state.cam.top_percent
        self.outline.set_mask(frame.mask[0])
        self.overlap_now = overlap(delta, cam, q)
        share = "  ".join(f"{label} <b>{self.overlap_now[k]:.3f}</b>" for k, label in
                          (("pixel_share", "pixel share"), ("l2_share", "l2 share"), ("iou", "IoU")))
        self.numbers.setText(f"step {frame.step + 1}, iteration {frame.iteration + 1}, top {q} % of the CAM:<br>"
                             f"{share}<br>{scores}")
        rows = cluster_table(delta, cam)[:MAX_CLUSTER_ROWS]
        with filling(self.cluster_view):
            self.cluster_view.setRowCount(len(rows))
            for i, r in enumerate(rows):
                r0, c0, r1, c1 = r["bbox"]
                fill_row(self.cluster_view, i, [str(r["size"]), f"{r0}–{r1}, {c0}–{c1}",
                                                 f"{r['energy_share']:.3f}", f"{r['mean_cam']:.3f}"])
        self._update_curve(frame.step, q)
        self.cursor.setPos(frame.iteration)

    def _scores_text(self) -> str:
        final = self.state.cam.final
        if final is None:
            return "IS: computing …" if self.state.cam.final_job is not None else ""
        values = " ".join(f"P{p} <b>{s:.2f}</b>" for p, s in zip(IS_PERCENTILES, final.scores))
        return f"IS of the result:<br>{values}"

    def _update_curve(self, step: int, q: int) -> None:
        """The overlap of every iteration of `step` (from the sparse history), redone when step/CAM/q change."""
        key = (step, self.state.cam.shown, q, id(self.state.history))
        if key == self._curve_key:
            return
        history, cam = self.state.history, self.state.cam.map
        n = history.n_iterations(step)
        self.curve_values = overlap_curve_sparse([history.sparse(step, i) for i in range(n)], cam, q)
        self._curve_key = key
        x = np.arange(n)
        self.l2_curve.setData(x, self.curve_values.get("l2_share", np.zeros(0)), connect="finite")
        self.pixel_curve.setData(x, self.curve_values.get("pixel_share", np.zeros(0)), connect="finite")
        self.curve_plot.setTitle(f"<span style='color:{L2_COLOUR}'>l2</span> / <span style='color:{PIXEL_COLOUR}'>"
                                 f"pixel</span> share, top {q} %", size="9pt")

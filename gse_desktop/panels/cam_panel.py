"""The CAM comparison panel: does the perturbation sit on what the model looks at?

Pickers choose a CAM (method, target layer, class, clean or adversarial image); CAMs are computed by model jobs
(gse_desktop.jobs) once a run is over, cached per choice, and drawn in the image grid's CAM view over the image,
with the shown iterate's perturbation mask as an outline. The numbers follow the shown iterate: its overlap with
the top q % of the CAM and its clusters (gse_algo.explain), the overlap against iteration of the shown search
step, and the run's interpretability score IS (gse_algo.metrics, computed once per run). A reopened session is
shown with `restore`, without the model: its saved CAM and IS, the numbers recomputed from them and the trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSlider,
                               QSpinBox, QTableWidget, QVBoxLayout, QWidget)

from gse_algo.cam import CAM_METHODS, EXPENSIVE_METHODS, model_layers
from gse_algo.explain import cluster_table, overlap, overlap_curve
from gse_algo.metrics import IS_PERCENTILES
from gse_desktop.history import Frame, RunHistory
from gse_desktop.jobs import Final, ModelJobs, cam_task, final_task
from gse_desktop.panels.image_views import ImageViews
from gse_desktop.panels.tables import fill_row, setup_table

IMAGES = ("clean", "adversarial")
CURVE_CHUNK = 64  # iterations densified at once for the overlap curve
MAX_CLUSTER_ROWS = 100
OUTLINE = "#00e5ff"
L2_COLOUR, PIXEL_COLOUR = "#4fa3ff", "#2ca02c"
NO_MODEL = "open the model (Run) to compute other CAMs"
Key = tuple[str, int, str, str]  # (image, class index, method, layer)


@dataclass(frozen=True)
class RunInfo:
    """What the panel needs from a finished or stopped run."""

    model: object  # gse_algo.models.LoadedModel
    clean: np.ndarray  # float32 [H,W,3] in [0,1]
    history: RunHistory
    clean_class: int
    adv_class: int  # the class after the attack
    target: int | None  # the target class of a targeted run
    delta: object  # [B,C,H,W] the run's returned perturbation (torch or NumPy); converted in the job

    @classmethod
    def ended(cls, model: object, clean: np.ndarray, history: RunHistory, clean_class: int,
              target: int | None) -> RunInfo:
        """The run in `history`: its result when it finished, else its latest iterate (a stopped run)."""
        result = history.result
        if result is not None:
            return cls(model, clean, history, clean_class, int(result.adv_pred[0]), target, result.delta)
        last = history.frame(*history.latest())
        return cls(model, clean, history, clean_class, int(last.pred[0]), target, last.delta)


class CamPanel(QWidget):
    """Call `start` when a run has ended (or `restore` for a reopened session), `show_frame` for each shown
    iterate, `reset` when a run starts."""

    status = Signal(str)

    def __init__(self, jobs: ModelJobs, views: ImageViews, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs, self.views = jobs, views
        self.run: RunInfo | None = None
        self.final: Final | None = None
        self.cams: dict[Key, np.ndarray] = {}
        self.cam: np.ndarray | None = None
        self.cam_key: Key | None = None
        self.class_names: list[str] = []
        self.frame: Frame | None = None
        self.overlap_now: dict[str, float] = {}
        self.curve_values: dict[str, np.ndarray] = {}
        self._curve_key: tuple | None = None
        self._cam_job: tuple[int, Key] | None = None
        self._final_job: int | None = None
        self._build()
        self.model_combos = (self.method_combo, self.layer_combo, self.class_combo, self.image_combo)
        self._tips = [combo.toolTip() for combo in self.model_combos]
        self._add_overlay()
        jobs.progress.connect(self._on_progress)
        jobs.done.connect(self._on_done)
        jobs.failed.connect(self._on_failed)
        self.reset()

    # -- layout --------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.method_combo = QComboBox()
        for name in CAM_METHODS:
            self.method_combo.addItem(f"{name} (slow)" if name in EXPENSIVE_METHODS else name, name)
        self.method_combo.setToolTip("CAM method (pytorch_grad_cam); the slow ones run only when you press Compute")
        self.layer_combo = QComboBox(toolTip="Target layer of the CAM (default: chosen for the architecture)")
        self.class_combo = QComboBox(toolTip="The class whose evidence the CAM shows")
        self.image_combo = QComboBox(toolTip="The image the CAM is computed on (adversarial: the run's result)")
        self.image_combo.addItems([f"{name} image" for name in IMAGES])
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
            combo.setMinimumContentsLength(12)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        self.pickers = QWidget()
        form = QFormLayout(self.pickers)
        form.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("Method", self.method_combo), ("Layer", self.layer_combo),
                              ("Class", self.class_combo), ("Image", self.image_combo), ("Top q", self.q_spin),
                              ("Opacity", self.opacity)):
            form.addRow(label, widget)
        left = QVBoxLayout()
        left.addWidget(self.pickers)
        left.addLayout(buttons)
        left.addWidget(self.message)
        left.addStretch(1)
        self.numbers = QLabel(textFormat=Qt.TextFormat.RichText, wordWrap=True)
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cluster_view = QTableWidget()
        setup_table(self.cluster_view, ["px", "rows, cols", "‖δ‖²", "CAM"])
        self.cluster_view.setToolTip("4-connected clusters of the shown perturbation, largest first: pixels, "
                                     "bounding box, share of ‖δ‖², mean CAM value")
        middle = QVBoxLayout()
        middle.addWidget(self.numbers)
        middle.addWidget(self.cluster_view, 1)
        self.curve_plot = pg.PlotWidget(background="#202020")
        self.curve_plot.setMinimumWidth(180)
        self.curve_plot.setMenuEnabled(False)
        self.curve_plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve_plot.setYRange(0, 1)
        self.curve_plot.getAxis("left").setWidth(30)
        self.l2_curve = self.curve_plot.plot(pen=pg.mkPen(L2_COLOUR, width=2))
        self.pixel_curve = self.curve_plot.plot(pen=pg.mkPen(PIXEL_COLOUR, width=1))
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffffff"))
        self.curve_plot.addItem(self.cursor)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 0)
        layout.addLayout(middle, 6)
        layout.addWidget(self.curve_plot, 3)
        for combo in (self.method_combo, self.layer_combo, self.class_combo, self.image_combo):
            combo.currentIndexChanged.connect(lambda _: self.request())
        self.q_spin.valueChanged.connect(lambda _: self._update_numbers())
        self.opacity.valueChanged.connect(lambda v: self.views.items["cam"].setOpacity(v / 100))
        self.compute_button.clicked.connect(lambda: self.request(force=True))
        self.cancel_button.clicked.connect(self.cancel)

    def _add_overlay(self) -> None:
        """The image under the grid's CAM view and the mask outline over it (same plot: zoom/pan stay linked)."""
        plot = self.views.plots["cam"]
        self.base = pg.ImageItem()
        self.base.setZValue(-1)
        self.outline = pg.IsocurveItem(level=0.5, pen=pg.mkPen(OUTLINE, width=1.5))
        self.outline.setZValue(10)
        self.outline.setPos(-0.5, -0.5)  # a padded mask; isocurve points sit on pixel centres
        plot.addItem(self.base)
        plot.addItem(self.outline)

    # -- run life cycle ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the run: cancel every job, clear the overlay and the numbers, disable the pickers."""
        self.jobs.cancel()
        self.run, self.final, self.cam, self.cam_key, self.frame = None, None, None, None, None
        self.cams, self.overlap_now, self.curve_values, self._curve_key = {}, {}, {}, None
        self._cam_job = self._final_job = None
        self.views.show_cam(None)
        self.base.clear()
        self.outline.setData(None)
        self.pickers.setEnabled(False)
        for combo, tip in zip(self.model_combos, self._tips):
            combo.setEnabled(True)
            combo.setToolTip(tip)
        self._sync_buttons()
        self.progress.setValue(0)
        self.message.setText("CAMs are computed when a run has ended.")
        self.numbers.setText("")
        self.cluster_view.setRowCount(0)
        self.l2_curve.setData([], [])
        self.pixel_curve.setData([], [])

    def start(self, run: RunInfo) -> None:
        """A run has ended: fill the pickers, compute IS and the default CAM (GradCAM, clean class, clean image)."""
        if self.run is not None and self.run.history is run.history:
            return
        self.reset()
        self.run, self.class_names = run, list(run.model.class_names)
        layers = model_layers(run.model.net)
        if run.model.cam_layer not in layers:
            layers.insert(0, run.model.cam_layer)
        self._set_pickers(layers, run.model.cam_layer, ("clean", run.clean_class), "GradCAM", IMAGES[0])
        goal = run.target if run.target is not None else run.adv_class
        self._final_job = self.jobs.submit(final_task(run.model, run.clean, run.delta, run.clean_class, goal))
        self.request()

    def restore(self, state: dict, cam: np.ndarray | None, run: RunInfo, class_names: list[str]) -> None:
        """Show a reopened session without its model (run.model None): the pickers as saved (those needing the
        model disabled), the saved CAM and IS, and the numbers of the shown iterate recomputed from them."""
        self.reset()
        self.run, self.class_names = run, list(class_names)
        scores = state.get("interpretability_score") or {}
        if scores:
            self.final = Final.from_delta(run.clean, run.delta[0], [math.nan if scores.get(str(p)) is None
                                                                    else scores[str(p)] for p in IS_PERCENTILES])
        saved_role = (state.get("class_role"), state.get("class_index"))
        role = saved_role if None not in saved_role else ("clean", run.clean_class)
        layer = state.get("layer") or ""
        self._set_pickers([layer], layer, role, state.get("method") or "GradCAM", state.get("image") or IMAGES[0])
        self.q_spin.setValue(int(state.get("top_percent") or self.q_spin.value()))
        self.opacity.setValue(round(100 * state.get("opacity", self.opacity.value() / 100)))
        if run.model is None:
            for combo in self.model_combos:
                combo.setEnabled(False)
                combo.setToolTip(NO_MODEL)
        shown = state.get("shown_cam")
        if cam is not None and shown:
            key = (shown["image"], shown["class_index"], shown["method"], shown["layer"])
            self.cams[key] = cam
            self._show(key)
        else:
            self.message.setText(NO_MODEL)
            self._update_numbers()
        self._sync_buttons()

    def _set_pickers(self, layers: list[str], layer: str, role: tuple[str, int], method: str, image: str) -> None:
        """Fill the layer and class pickers for self.run and choose the given entries (no CAM is requested)."""
        run, names = self.run, self.class_names
        roles = [("clean", run.clean_class), ("after attack", run.adv_class)]
        if run.target is not None:
            roles.append(("target", run.target))
        if role not in roles:
            roles.append(role)
        for combo in self.model_combos:
            combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(layers)
        self.layer_combo.setCurrentText(layer)
        self.class_combo.clear()
        for name, index in roles:
            label = names[index] if 0 <= index < len(names) else str(index)
            self.class_combo.addItem(f"{name}: {index} ({label})", (name, index))
        self.class_combo.setCurrentIndex(roles.index(role))
        self.method_combo.setCurrentIndex(self.method_combo.findData(method))
        self.image_combo.setCurrentIndex(IMAGES.index(image) if image in IMAGES else 0)
        for combo in self.model_combos:
            combo.blockSignals(False)
        self.pickers.setEnabled(True)

    def show_frame(self, frame: Frame) -> None:
        """The shown iterate changed: redraw its outline and its numbers."""
        self.frame = frame
        self._update_numbers()

    # -- CAM requests --------------------------------------------------------------------------------------------
    def key(self) -> Key | None:
        """What the pickers ask for now (None before a run has ended)."""
        if self.run is None or self.class_combo.currentIndex() < 0:
            return None
        return (IMAGES[self.image_combo.currentIndex()], self.class_combo.currentData()[1],
                self.method_combo.currentData(), self.layer_combo.currentText())

    def request(self, force: bool = False) -> None:
        """Show the CAM the pickers ask for: from the cache, else from a job (slow methods only when forced)."""
        key = self.key()
        if key is None:
            return
        image, class_index, method, layer = key
        if key in self.cams:
            self._show(key)
        elif self._cam_job is not None and self._cam_job[1] == key:
            pass
        elif self.run.model is None:
            self.message.setText(NO_MODEL)
        elif image == "adversarial" and self.final is None:
            self.message.setText("waiting for the adversarial example …")
        elif method in EXPENSIVE_METHODS and not force:
            self.message.setText(f"{method} costs one forward pass per channel of the layer: press Compute.")
        else:
            self.cancel()
            picture = self.run.clean if image == "clean" else self.final.adversarial
            job = self.jobs.submit(cam_task(self.run.model, picture, class_index, method, layer))
            self._cam_job = (job, key)
            self.progress.setValue(0)
            self.message.setText(f"computing {method} …")
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        key = self.key()
        computing = self._cam_job is not None
        self.cancel_button.setEnabled(computing)
        self.compute_button.setEnabled(key is not None and key not in self.cams
                                       and not (computing and self._cam_job[1] == key))

    def cancel(self) -> None:
        """Cancel the CAM being computed (the app stays usable; the job ends at its next check)."""
        if self._cam_job is not None:
            self.jobs.cancel(self._cam_job[0])
            self.message.setText(f"{self._cam_job[1][2]} cancelled")
            self._cam_job = None
        self.progress.setValue(0)
        self._sync_buttons()

    def _on_progress(self, job: int, fraction: float) -> None:
        if self._cam_job is not None and job == self._cam_job[0]:
            self.progress.setValue(round(100 * fraction))

    def _on_done(self, job: int, result: object) -> None:
        if job == self._final_job:
            self.final, self._final_job = result, None
            self._update_numbers()
            self.request()
        elif self._cam_job is not None and job == self._cam_job[0]:
            key = self._cam_job[1]
            self.cams[key], self._cam_job = result, None
            self.progress.setValue(100)
            self.message.setText("")
            if key == self.key():
                self._show(key)
            self._sync_buttons()

    def _on_failed(self, job: int, text: str) -> None:
        if self._cam_job is not None and job == self._cam_job[0]:
            self._cam_job = None
            self._sync_buttons()
        self.message.setText(f"<span style='color:#e05050'>{text}</span>")
        self.status.emit(f"CAM: {text}")

    # -- drawing -------------------------------------------------------------------------------------------------
    def _show(self, key: Key) -> None:
        image, class_index, method, _ = key
        self.cam, self.cam_key = self.cams[key], key
        names = self.class_names
        name = names[class_index] if 0 <= class_index < len(names) else ""
        self.views.show_cam(self.cam, f"{method}: {class_index} {name} ({image})")
        self.views.items["cam"].setOpacity(self.opacity.value() / 100)
        picture = self.run.clean if image == "clean" else self.final.adversarial
        self.base.setImage(np.clip(picture, 0, 1), levels=(0, 1))
        self.message.setText("")
        self._update_numbers()

    def _update_numbers(self) -> None:
        """Outline, overlap numbers, clusters and the curve for the shown iterate and the shown CAM."""
        scores = self._scores_text()
        frame, cam = self.frame, self.cam
        if frame is None or cam is None or frame.delta.shape[-2:] != cam.shape:
            self.numbers.setText(scores)
            return
        delta, q = frame.delta[0], self.q_spin.value()
        self.outline.setData(np.pad(frame.mask[0], 1).astype(np.float32))
        self.overlap_now = overlap(delta, cam, q)
        share = "  ".join(f"{label} <b>{self.overlap_now[k]:.3f}</b>" for k, label in
                          (("pixel_share", "pixel share"), ("l2_share", "l2 share"), ("iou", "IoU")))
        self.numbers.setText(f"step {frame.step}, iteration {frame.iteration}, top {q} % of the CAM:<br>"
                             f"{share}<br>{scores}")
        rows = cluster_table(delta, cam)[:MAX_CLUSTER_ROWS]
        self.cluster_view.setRowCount(len(rows))
        for i, r in enumerate(rows):
            r0, c0, r1, c1 = r["bbox"]
            fill_row(self.cluster_view, i, [str(r["size"]), f"{r0}–{r1}, {c0}–{c1}",
                                             f"{r['energy_share']:.3f}", f"{r['mean_cam']:.3f}"])
        self._update_curve(frame.step, q)
        self.cursor.setPos(frame.iteration)

    def _scores_text(self) -> str:
        if self.final is None:
            return "IS: computing …" if self._final_job is not None else ""
        values = "  ".join(f"P{p} <b>{s:.3f}</b>" for p, s in zip(IS_PERCENTILES, self.final.scores))
        return f"IS of the result: {values}"

    def _update_curve(self, step: int, q: int) -> None:
        """The overlap of every iteration of `step` (densified CURVE_CHUNK at a time), redone when step/CAM/q change."""
        key = (step, self.cam_key, q)
        if key == self._curve_key:
            return
        history = self.run.history
        n = history.n_iterations(step)
        parts = [overlap_curve(np.stack([history.frame(step, i).delta[0] for i in range(s, min(s + CURVE_CHUNK, n))]),
                               self.cam, q) for s in range(0, n, CURVE_CHUNK)]
        self.curve_values = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        self._curve_key = key
        x = np.arange(n)
        self.l2_curve.setData(x, self.curve_values.get("l2_share", np.zeros(0)), connect="finite")
        self.pixel_curve.setData(x, self.curve_values.get("pixel_share", np.zeros(0)), connect="finite")
        self.curve_plot.setTitle(f"<span style='color:{L2_COLOUR}'>l2</span> / <span style='color:{PIXEL_COLOUR}'>"
                                 f"pixel</span> share, top {q} %", size="9pt")

    # -- state for export and sessions ---------------------------------------------------------------------------
    def cam_array(self) -> np.ndarray | None:
        """The shown CAM, float32 [H,W] in [0,1] (None before one is computed)."""
        return self.cam

    def state(self) -> dict:
        """The panel's settings and results as plain values (JSON-ready)."""
        key = self.cam_key
        role = self.class_combo.currentData()
        scores = self.final.scores if self.final is not None else []
        return {
            "method": self.method_combo.currentData(),
            "layer": self.layer_combo.currentText(),
            "class_role": role[0] if role else None,
            "class_index": role[1] if role else None,
            "image": IMAGES[self.image_combo.currentIndex()],
            "top_percent": self.q_spin.value(),
            "opacity": self.opacity.value() / 100,
            "shown_cam": None if key is None else dict(zip(("image", "class_index", "method", "layer"), key)),
            "overlap": {k: (None if math.isnan(v) else v) for k, v in self.overlap_now.items()},
            "interpretability_score": {str(p): (None if math.isnan(s) else float(s))
                                       for p, s in zip(IS_PERCENTILES, scores)},
        }

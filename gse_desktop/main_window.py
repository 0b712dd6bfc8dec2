"""The main window: layout and wiring of the panels, the run controller and the run history."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (QLabel, QMainWindow, QMessageBox, QProgressBar, QScrollArea, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from gse_algo.images import DEFAULT_IMAGE, ImageError, example_images, read_image
from gse_algo.models import DEFAULT_MODEL
from gse_desktop.export import FileActions
from gse_desktop.history import SERIES, RunHistory
from gse_desktop.jobs import ModelJobs
from gse_desktop.panels.cam_panel import CamPanel, RunInfo
from gse_desktop.panels.controls import ControlsPanel
from gse_desktop.panels.image_views import ImageViews
from gse_desktop.panels.plots import MetricPlots
from gse_desktop.panels.tables import SearchTable, TopTable
from gse_desktop.panels.timeline import Timeline
from gse_desktop.worker import Loader, Prepared, RunController, RunRequest, default_threads

REDRAW_MS = 33  # at most ~30 redraws a second; the latest snapshot wins
REDRAW_SHARE = 0.04  # and during a run at most this share of the time, as redrawing holds the GIL the attack
REDRAW_MS_MAX = 500  # needs too (benchmarks/bench_gui.py); but at least two redraws a second
MAX_RECENT = 8


def imagenet_class_names() -> list[str]:
    """ImageNet class names for the target list before any model is loaded (torchvision metadata, no download)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


class MainWindow(QMainWindow):
    """`loader(spec, device)` loads a model (replaceable in tests); `settings` defaults to the user's QSettings."""

    def __init__(self, settings: QSettings | None = None, loader: Loader | None = None,
                 image: str | None = None, model: str | None = None, target: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("GSE Desktop")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings("gse-desktop", "gse-desktop")
        self.controller = RunController(loader, self)
        self.history = RunHistory()
        self.prepared: Prepared | None = None
        self.image_path: str | None = None
        self.last_error = ""
        self._dirty = False
        self._plotted_step: int | None = None
        self._n_steps_shown = 0
        self._started = 0.0
        self._build()
        self._wire()
        self.files = FileActions(self)  # File menu: sessions and exports
        self._restore(image, model, target)

    # -- layout --------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.controls = ControlsPanel()
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.controls)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self.views = ImageViews()
        self.plots = MetricPlots()
        self.top_table = TopTable()
        self.search_table = SearchTable()
        self.timeline = Timeline()
        self.readout = QLabel("hover a pixel for its values")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        tables = QSplitter(Qt.Orientation.Vertical)
        tables.addWidget(self.top_table)
        tables.addWidget(self.search_table)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        self._closed = False
        self.cam_jobs = ModelJobs(self.controller.model_lock, self)  # CAMs and IS, never during a run
        self.cam_panel = CamPanel(self.cam_jobs, self.views)
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.plots, "Metrics")
        self.bottom_tabs.addTab(self.cam_panel, "CAM comparison")
        bottom.addWidget(self.bottom_tabs)
        bottom.addWidget(tables)
        bottom.setSizes([760, 420])
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.views)
        right.addWidget(bottom)
        right.setSizes([560, 240])
        self.view_area = QWidget()
        area = QVBoxLayout(self.view_area)
        area.setContentsMargins(0, 0, 0, 0)
        area.addWidget(right, 1)
        area.addWidget(self.readout)
        area.addWidget(self.timeline)
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(scroll)
        main.addWidget(self.view_area)
        main.setStretchFactor(1, 1)
        main.setSizes([320, 1280])
        self.setCentralWidget(main)
        self.timeline.install_shortcuts(self.view_area)
        self.message = QLabel("ready")
        self.progress = QProgressBar(maximumWidth=220, textVisible=True)
        self.device_label = QLabel()
        self.model_label = QLabel()
        bar = self.statusBar()
        bar.addWidget(self.message, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.model_label)
        self.resize(1600, 960)

    def _wire(self) -> None:
        c = self.controls
        c.open_image.connect(self.open_image)
        c.run_clicked.connect(self.start_run)
        c.pause_toggled.connect(self.set_paused)
        c.step_clicked.connect(self.step_once)
        c.stop_clicked.connect(self.stop_run)
        c.device_combo.currentTextChanged.connect(lambda d: self.device_label.setText(f" {d} "))
        c.model_combo.currentTextChanged.connect(lambda m: self.model_label.setText(f" {m} "))
        QShortcut(QKeySequence("F5"), self, activated=self.start_run)
        ctl = self.controller
        ctl.status.connect(self.message.setText)
        ctl.prepared.connect(self._on_prepared)
        ctl.snapshot.connect(self._on_snapshot)
        ctl.finished.connect(self._on_finished)
        ctl.failed.connect(self._on_failed)
        ctl.idle.connect(lambda: c.set_running(False))
        ctl.idle.connect(lambda: QTimer.singleShot(0, self._cam_after_run))  # after a restart's new run began
        self.cam_panel.status.connect(self.message.setText)
        self.views.hovered.connect(self.readout.setText)
        self.timeline.moved.connect(self.show_snapshot)
        self.timeline.follow.toggled.connect(lambda on: self._redraw() if on else None)
        self.redraw_timer = QTimer(self, interval=REDRAW_MS)
        self.redraw_timer.timeout.connect(self._redraw)

    def _restore(self, image: str | None, model: str | None, target: str | None) -> None:
        s = self.settings
        self.controls.restore(s, default_threads())
        self.controls.set_examples(example_images())
        self.controls.set_recent(self._recent())
        from gse_algo.models import torchvision_model_names

        self.controls.set_model_names([DEFAULT_MODEL, *torchvision_model_names()],
                                      model or s.value("model", DEFAULT_MODEL))
        self.controls.set_class_names(imagenet_class_names())
        if target is not None:
            self._set_target_text(target)
        self.device_label.setText(f" {self.controls.device_combo.currentText()} ")
        self.model_label.setText(f" {self.controls.model_spec()} ")
        for candidate in (image, s.value("image"), str(DEFAULT_IMAGE)):
            if candidate and self.open_image(str(candidate), quiet=candidate != image):
                break

    def _set_target_text(self, target: str) -> None:
        names = [n.lower() for n in imagenet_class_names()]
        if target.strip().isdigit() and int(target) < len(names):
            self.controls.set_target(int(target))
        elif target.strip().lower() in names:
            self.controls.set_target(names.index(target.strip().lower()))
        else:
            self.show_error(f"unknown target class {target!r}: pick one in the target list")

    def _recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    # -- messages ------------------------------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """A one-line message in the status bar and a non-blocking message box (tests may replace this)."""
        self.last_error = text
        self.message.setText(text)
        box = QMessageBox(QMessageBox.Icon.Warning, "GSE Desktop", text, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- image ---------------------------------------------------------------------------------------------------
    @Slot(str)
    def open_image(self, path: str, quiet: bool = False) -> bool:
        """Show a new image; on a bad file keep everything as it was and say why."""
        try:
            rgb = read_image(path)
        except ImageError as error:
            if not quiet:
                self.show_error(str(error))
            return False
        if self.controller.running:
            self.stop_run()
        self.image_path = str(path)
        self.prepared = None
        self.history = RunHistory()
        self.views.show_original(rgb)
        self.cam_panel.reset()
        self.controls.set_image_path(self.image_path)
        recent = [self.image_path] + [p for p in self._recent() if p != self.image_path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self.settings.setValue("image", self.image_path)
        self.controls.set_recent(recent[:MAX_RECENT])
        self.message.setText(f"image {Path(path).name} ({rgb.shape[1]}x{rgb.shape[0]})")
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_image(urls[0])

    # -- run control ---------------------------------------------------------------------------------------------
    @Slot()
    def start_run(self) -> None:
        if self.image_path is None:
            self.show_error("open an image first")
            return
        try:
            params = self.controls.params()
        except ValueError as error:
            self.show_error(f"invalid parameters: {error}")
            return
        c = self.controls
        request = RunRequest(self.image_path, c.model_spec(), c.device_combo.currentText(), c.target(), params,
                             c.preset(), c.threads_spin.value())
        self._save_settings()
        self.history = RunHistory()
        self._plotted_step, self._n_steps_shown = None, 0
        self.timeline.chosen_step = None
        self.timeline.set_counts({})
        self.timeline.follow.setChecked(True)
        self.search_table.set_summaries([])
        self.plots.set_series({name: np.zeros(0) for name in SERIES})
        self.progress.setRange(0, params.iters * params.search_steps)
        self.progress.setValue(0)
        self.cam_panel.reset()  # cancels any CAM job: the model is the attack's from now on
        self.controller.start(request)
        self._started = time.perf_counter()
        c.set_running(True)
        self.redraw_timer.start()

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        (self.controller.pause if paused else self.controller.resume)()
        self.message.setText("paused" if paused else "running")

    @Slot()
    def step_once(self) -> None:
        """Run one iteration, then pause."""
        self.controls.pause_button.blockSignals(True)
        self.controls.pause_button.setChecked(True)
        self.controls.pause_button.setText("Resume")
        self.controls.pause_button.blockSignals(False)
        self.controller.step()

    @Slot()
    def stop_run(self) -> None:
        if self.controller.running:
            self.controller.stop()
            self._redraw()
            self.redraw_timer.stop()
            self.message.setText(f"stopped after {len(self.history)} iterations")

    # -- signals from the current run ----------------------------------------------------------------------------
    @Slot(object)
    def _on_prepared(self, p: Prepared) -> None:
        self.prepared = p
        self.views.show_original(p.image)
        self.controls.set_class_names(p.model.class_names)
        self.top_table.set_before(p.top_classes, p.top_probs, p.model.class_names, p.label)
        self.plots.set_phase_boundary(p.params.k_hat, p.params.iters)
        self.progress.setRange(0, p.params.iters * p.params.search_steps)
        mode = f"target {p.label} ({p.model.class_names[p.label]})" if p.targeted else "untargeted"
        self.model_label.setText(f" {p.model.name} ")
        self.message.setText(f"running GSE, {mode}")

    @Slot(object)
    def _on_snapshot(self, payload) -> None:
        self.history.add(*payload)  # (snapshot, its derived metrics, computed in the worker)
        self._dirty = True

    @Slot(object)
    def _on_finished(self, result) -> None:
        self.redraw_timer.stop()
        if result is None:
            self._redraw()
            self.message.setText(f"stopped after {len(self.history)} iterations")
            return
        self.history.set_result(result)
        chosen = int(result.chosen_step[0])
        self.timeline.chosen_step = chosen if chosen >= 0 else None
        self._n_steps_shown = -1  # force the search table to refresh
        self._redraw()
        if self.timeline.follow.isChecked() and chosen >= 0:
            self.show_snapshot(chosen, self.history.n_iterations(chosen) - 1)
        names = self.prepared.model.class_names if self.prepared else []
        adv = int(result.adv_pred[0])
        outcome = (f"success: now {adv} ({names[adv] if adv < len(names) else adv}), chosen step {chosen}"
                   if result.success[0] else "no adversarial example found")
        self.message.setText(f"done in {time.perf_counter() - self._started:.1f} s — {outcome}")
        self.progress.setValue(self.progress.maximum())

    def _cam_after_run(self) -> None:
        """A run has ended (finished or stopped): hand it to the CAM panel, whose jobs wait for the model."""
        latest = self.history.latest()
        if self.controller.running or self.prepared is None or latest is None or self._closed:
            return  # not while a run goes on, nor once the window has closed (no job may outlive it)
        p = self.prepared
        self.cam_panel.start(RunInfo.ended(p.model, p.image, self.history, p.clean_class,
                                           p.label if p.targeted else None))
        if self.views.frame is not None:
            self.cam_panel.show_frame(self.views.frame)

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        self.redraw_timer.stop()
        self._redraw()
        self.show_error(f"the run failed: {text}")

    # -- drawing -------------------------------------------------------------------------------------------------
    def _redraw(self) -> None:
        """Timer tick: refresh progress, the step table and (when following) the newest snapshot."""
        started = time.perf_counter()
        latest = self.history.latest()
        if latest is None:
            return
        counts = {s: self.history.n_iterations(s) for s in self.history.steps}
        self.timeline.set_counts(counts)
        if len(counts) != self._n_steps_shown:
            self._n_steps_shown = len(counts)
            self.search_table.set_summaries(self.history.summaries())
        self._update_progress(latest)
        if self._dirty and self.timeline.follow.isChecked():
            self.show_snapshot(*latest)
            for view in (self.views, self.plots):
                view.viewport().repaint()  # now, so that the pace counts the painting (see bench_gui.py)
            cost_ms = 1000 * (time.perf_counter() - started)
            self.redraw_timer.setInterval(round(min(max(REDRAW_MS, cost_ms / REDRAW_SHARE), REDRAW_MS_MAX)))
        self._dirty = False

    def _update_progress(self, latest: tuple[int, int]) -> None:
        if not self.controller.running:
            return
        step, index = latest
        params = self.prepared.params if self.prepared else None
        # a search step that stops early skips its remaining iterations: progress counts (step, iteration) slots
        done = step * params.iters + index + 1 if params else len(self.history)
        self.progress.setValue(done)
        elapsed = time.perf_counter() - self._started
        busy = max(self.controller.active_seconds, 1e-9)
        # at most one iteration for every slot left, each as long as the mean so far: an upper bound
        left = busy / len(self.history) * (self.progress.maximum() - done) if len(self.history) else float("nan")
        total_steps = params.search_steps if params else "?"
        iters = params.iters if params else "?"
        phase = 1 if params and index < params.k_hat else 2
        self.message.setText(f"running: search step {step + 1}/{total_steps}, iteration {index + 1}/{iters}, "
                             f"phase {phase} — {elapsed:.0f} s elapsed, ≤ ~{left:.0f} s left")

    @Slot(int, int)
    def show_snapshot(self, step: int, index: int) -> None:
        """Show the stored snapshot (step, index) in every view."""
        if step not in self.history.steps or not 0 <= index < self.history.n_iterations(step):
            return
        frame = self.history.frame(step, index)
        self.views.show_frame(frame)
        self.cam_panel.show_frame(frame)
        self.top_table.set_now(frame.top_classes[0], frame.top_probs[0])
        if step != self._plotted_step or self.controller.running:
            self.plots.set_series({name: self.history.series(step, name) for name in SERIES})
            self._plotted_step = step
        self.plots.set_cursor(index)
        self.timeline.set_position(step, index, frame.phase)

    def show_history(self, history: RunHistory, shown: list[int] | None = None) -> None:
        """Show a run that did not come from the worker (a reopened session) at `shown` (step, iteration) when
        given and present, else at the last iteration of its chosen (or last) step."""
        self.history = history
        self._plotted_step, self._n_steps_shown = None, -1
        result = history.result
        chosen = int(result.chosen_step[0]) if result is not None else -1
        self.timeline.chosen_step = chosen if chosen >= 0 else None
        self.timeline.follow.setChecked(False)
        self.progress.setRange(0, len(history))
        self._redraw()
        if shown is not None and shown[0] in history.steps and 0 <= shown[1] < history.n_iterations(shown[0]):
            self.show_snapshot(*shown)
            return
        step = chosen if chosen >= 0 else history.latest()[0]
        self.show_snapshot(step, history.n_iterations(step) - 1)

    # -- settings and closing ------------------------------------------------------------------------------------
    def _save_settings(self) -> None:
        self.controls.save(self.settings)
        self.settings.setValue("model", self.controls.model_spec())
        if self.image_path:
            self.settings.setValue("image", self.image_path)

    def closeEvent(self, event: QCloseEvent) -> None:
        """The window goes at once; a running worker stops at its next iteration boundary."""
        self._closed = True
        self._save_settings()
        self.settings.sync()
        self.redraw_timer.stop()
        self.controller.stop()
        self.cam_jobs.cancel()
        event.accept()

"""The main window: layout, and wiring of the panels to the app state (gse_desktop.state) and the engine client.

Views subscribe to the state's events and render from it; user actions become state calls. A GUI timer polls the
engine client (the thin Qt adapter: `EnginePump`); a second one redraws the shown snapshot at most every
REDRAW_MS, so a burst of snapshots costs one redraw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QSizePolicy,
                               QStackedWidget, QVBoxLayout, QWidget)

from gse_algo.defaults import DEFAULT_IMAGE, DEFAULT_MODEL, DEFAULT_THREADS, example_images
from gse_algo.params import GSEParams
from gse_desktop.compare_view import CompareView
from gse_desktop.engine import EngineClient
from gse_desktop.help import build_help_menu
from gse_desktop.history import SERIES
from gse_desktop.layout import Docks, scrolled
from gse_desktop.panels.cam_panel import CamPanel
from gse_desktop.panels.controls import ControlsPanel
from gse_desktop.panels.image_views import ImageViews
from gse_desktop.panels.plots import MetricPlots
from gse_desktop.panels.run_list import RunList
from gse_desktop.panels.tables import SearchTable, TopTable
from gse_desktop.panels.timeline import Timeline
from gse_desktop.records import GSE, RunSpec
from gse_desktop.state import ACTIVE, FAILED, PAUSED, STOPPED, AppState

REDRAW_MS = 33  # at most ~30 redraws a second; the latest snapshot wins
PLOT_S = 0.25  # during a run the metric plots follow at most 4 times a second (a plot update costs more than a view)
POLL_MS = 15
MAX_RECENT = 8


class EnginePump(QObject):
    """The Qt adapter: polls the engine client on a GUI timer and hands its events to the state."""

    def __init__(self, engine: EngineClient, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine, self.state = engine, state
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    @Slot()
    def poll(self) -> None:
        events = self.engine.poll()
        if events:
            self.state.handle(events)


class MainWindow(QMainWindow):
    """`engine` is an EngineClient (made here with `loader` when not given; tests share one); `settings` defaults to
    the user's QSettings."""

    def __init__(self, settings: QSettings | None = None, engine: EngineClient | None = None,
                 image: str | None = None, model: str | None = None, target: str | None = None,
                 loader=None) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings("gse-desktop", "gse-desktop")
        self._own_engine = engine is None
        self.engine = engine if engine is not None else EngineClient(loader)
        self.state = AppState(self.engine)
        self.last_error = ""
        self._dirty = False
        self._plotted: tuple | None = None
        self._plotted_at = 0.0
        self._build()
        self._wire()
        from gse_desktop.export import FileActions

        self.files = FileActions(self)  # File menu: sessions and exports, reading the state
        from gse_desktop.study_view import add_to_file_menu

        add_to_file_menu(self)  # File > Open study… (gse-study folders)
        from gse_desktop.export_dialog import ask_comparison

        self.compare_view.export_clicked.connect(lambda: ask_comparison(self.files))
        self.compare_view.back_clicked.connect(lambda: self.show_comparison(False))
        view = self.menuBar().addMenu("&View")
        view.addAction("Fit the whole image", QKeySequence("F"), self.views.fit)
        view.addAction("Zoom to the support", QKeySequence("Z"), self.zoom_to_support)
        self.amplify_action = view.addAction("Amplified difference in the adversarial view", QKeySequence("A"))
        self.amplify_action.setCheckable(True)
        self.amplify_action.toggled.connect(self.views.set_amplified)
        view.addAction("Comparison of the two runs compared / the run", QKeySequence("C"),
                       lambda: self.show_comparison(self.central.currentWidget() is not self.compare_view))
        view.addSeparator()
        self.docks.add_menu_entries(view)
        build_help_menu(self, lambda: self.engine.info.get("versions", {}))
        self.pump = EnginePump(self.engine, self.state, self)
        self._pending_target = target
        self._restore(image, model)
        self._on_engine(self.state.engine_ready)  # a shared engine may be ready already: its devices and models

    # -- layout --------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.controls = ControlsPanel()
        self.views = ImageViews()
        self.plots = MetricPlots()
        self.top_table = TopTable()
        self.search_table = SearchTable()
        self.timeline = Timeline()
        self.readout = QLabel("hover a pixel for its values")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cam_panel = CamPanel(self.state, self.views)
        self.run_list = RunList(self.state)
        self.compare_view = CompareView(self.state)
        self.view_area = QWidget()  # the central widget: the image views are what the tool is for
        area = QVBoxLayout(self.view_area)
        area.setContentsMargins(0, 0, 0, 0)
        area.setSpacing(2)
        area.addWidget(self.views, 1)
        area.addWidget(self.readout)
        area.addWidget(self.timeline)
        self.central = QStackedWidget()  # the shown run's views, or the comparison of two runs, in the same space
        self.central.addWidget(self.view_area)
        self.central.addWidget(self.compare_view)
        # the comparison takes the space the views have: its own minimum must not make the window wider
        self.compare_view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setCentralWidget(self.central)
        self.timeline.install_shortcuts(self.view_area)
        self.message = QLabel("starting the engine …", textFormat=Qt.TextFormat.PlainText)  # names are the user's
        self.progress = QProgressBar(maximumWidth=220, textVisible=True)
        self.progress.setToolTip("Share of the iteration budget (search steps x iterations) done; a step that "
                                 "stops early skips the rest of its iterations")
        self.engine_label = QLabel()
        self.model_label = QLabel()
        bar = self.statusBar()
        bar.addWidget(self.message, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.engine_label)
        bar.addPermanentWidget(self.model_label)
        screen = QGuiApplication.primaryScreen().availableGeometry()
        self.resize(min(1600, screen.width()), min(960, screen.height()))  # never larger than the screen
        self.docks = Docks(self, {"setup": ("Setup", scrolled(self.controls)),
                                  "params": ("Parameters", scrolled(self.controls.params_box)),
                                  "metrics": ("Metrics", self.plots), "cam": ("CAM comparison", self.cam_panel),
                                  "classes": ("Classes", self.top_table),
                                  "search": ("Search steps", self.search_table), "runs": ("Runs", self.run_list)},
                           self.controls.run_buttons)

    def _wire(self) -> None:
        c, s = self.controls, self.state
        c.open_image.connect(self.open_image)
        c.run_clicked.connect(self.start_run)
        c.pause_toggled.connect(lambda paused: s.pause() if paused else s.resume())
        c.step_clicked.connect(s.step)
        c.stop_clicked.connect(s.stop)
        c.model_combo.currentTextChanged.connect(lambda m: self.model_label.setText(f" model: {m} "))
        QShortcut(QKeySequence("F5"), self, activated=self.start_run)
        self.views.hovered.connect(self.readout.setText)
        self.timeline.moved.connect(s.move_cursor)
        self.search_table.picked.connect(lambda step: s.move_cursor(step, s.history.n_iterations(step) - 1))
        self.timeline.follow.toggled.connect(s.set_follow)
        for name, slot in (("engine", self._on_engine), ("image", self._on_image), ("run", self._on_run),
                           ("history", self._on_history), ("cursor", self._mark_dirty), ("status", self._on_status),
                           ("result", self._on_result), ("error", self._on_error), ("compare", self._on_compare),
                           ("weights_missing", self._on_weights_missing),
                           ("weights_installed", self._on_weights_installed)):
            s.events.connect(name, slot)
        self.redraw_timer = QTimer(self, interval=REDRAW_MS)
        self.redraw_timer.timeout.connect(self._redraw)
        self.redraw_timer.start()

    def _restore(self, image: str | None, model: str | None) -> None:
        s = self.settings
        self.docks.restore(s)
        self.controls.restore(s, DEFAULT_THREADS)
        if self.state.attacks:  # a shared engine described the registry already
            self.controls.attack_picker.set_attacks(self.state.attacks)
        self.controls.set_examples(example_images())
        self.controls.set_recent(self._recent())
        self.controls.set_model_names([DEFAULT_MODEL], model or s.value("model", DEFAULT_MODEL))
        self.model_label.setText(f" model: {self.controls.model_spec()} ")
        self._candidates = [(c, quiet) for c, quiet in ((image, False), (s.value("image"), True),
                                                         (str(DEFAULT_IMAGE), True)) if c]
        self._quiet = False
        self._open_next_candidate()

    def _open_next_candidate(self) -> None:
        """At start-up: the given image, else the last one, else the bundled example (a bad one is skipped)."""
        if self._candidates:
            path, self._quiet = self._candidates.pop(0)
            self.open_image(str(path))

    def _recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    # -- messages ------------------------------------------------------------------------------------------------
    def _on_error(self, text: str) -> None:
        starting = self.state.image is None and bool(self._candidates)
        if not (starting and self._quiet):  # a remembered image that has gone is skipped without a word
            self.show_error(text)
        if starting:
            self._open_next_candidate()

    def show_error(self, text: str) -> None:
        """A one-line message in the status bar and a non-blocking message box (tests may replace this)."""
        self.last_error = text
        self.message.setText(text)
        box = QMessageBox(QMessageBox.Icon.Warning, "GSE Desktop", text, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- missing weights ---------------------------------------------------------------------------------------
    def offer_weights(self, info: dict) -> str | None:
        """Say where a model's weights file belongs and offer to pick one: its path, or None (tests replace this)."""
        box = QMessageBox(QMessageBox.Icon.Warning, "GSE Desktop", info["message"], parent=self)
        pick = box.addButton("Pick weights file…", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.exec()
        if box.clickedButton() is not pick:
            return None
        path, _ = QFileDialog.getOpenFileName(self, f"Weights file {Path(info['path']).name}", "",
                                              "PyTorch state_dict (*.pth *.pt);;All files (*)")
        return path or None

    def _on_weights_missing(self, info: dict) -> None:
        path = self.offer_weights(info)
        if path:
            self.state.install_weights(info["arch"], path)

    def _on_weights_installed(self, arch: str, _path: str) -> None:
        """The model loads now: mark it offline and open the image again with it."""
        self.controls.set_models(list({**self.controls.offline, arch: True}.items()))
        if self.state.image is not None and self.state.image.model is None:
            self.open_image(self.state.image.path)

    # -- unsaved runs ----------------------------------------------------------------------------------------------
    def ask_unsaved(self, action: str) -> str:
        """'save', 'discard' or 'cancel': what to do with the unsaved run before `action` (tests replace this)."""
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(self, "GSE Desktop", f"The run shown is not saved. Save it before {action}?",
                                      buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        return {buttons.Save: "save", buttons.Discard: "discard"}.get(answer, "cancel")

    def after_unsaved(self, action: str, proceed: Callable[[], None]) -> None:
        """`proceed` at once when nothing unsaved would be lost, else as the user answers: after the session is
        saved (Save), at once (Discard) or never (Cancel, or the save dialog cancelled)."""
        if not self.state.unsaved:
            proceed()
            return
        answer = self.ask_unsaved(action)
        if answer == "discard":
            proceed()
        elif answer == "save":
            from gse_desktop.export_dialog import save_session_dialog

            save_session_dialog(self.files, then=proceed)

    # -- image and run -------------------------------------------------------------------------------------------
    @Slot(str)
    def open_image(self, path: str) -> None:
        """Ask for a new image; the views switch when the engine has decoded it (a bad file changes nothing)."""
        self.after_unsaved("opening another image", lambda: self.state.open_image(
            path, self.controls.model_spec(), self.controls.device_combo.currentText()))

    def open_session(self, path: str) -> None:
        """Open a session file in the file worker (asking first about an unsaved run)."""
        self.after_unsaved("opening a session", lambda: self.files.open_session(path, wait=False))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            path = urls[0]
            if path.endswith(".gses"):
                self.open_session(path)
            else:
                self.open_image(path)

    @Slot()
    def start_run(self) -> None:
        """Run the attack with the shown settings (the runs so far stay in the run list: nothing is discarded)."""
        image = self.state.image
        if image is None:
            self.show_error("open an image first")
            return
        c = self.controls
        attack = c.attack()
        params = GSEParams()  # another attack's run does not read GSE's boxes
        if attack.name == GSE:
            try:
                params = c.params()
            except ValueError as error:
                self.show_error(f"invalid parameters: {error}")
                return
        self._save_settings()
        self.state.start_run(RunSpec(image.path, c.model_spec(), c.device_combo.currentText(), c.target(), params,
                                     c.preset(), c.threads_spin.value(), attack=attack.name,
                                     settings=c.attack_settings()))

    def run_when_ready(self) -> None:
        """Press Run as soon as the engine is ready and the image is open (`gse-desktop --run`)."""
        def check() -> None:
            if self.state.image is not None and self.state.engine_ready and self.state.status not in ACTIVE:
                self.state.events.disconnect("status", check)
                self.start_run()

        self.state.events.connect("status", check)
        check()

    def zoom_to_support(self) -> None:
        """Every view on the bounding box of the shown iterate's perturbed pixels (with a margin)."""
        frame = self.state.frame()
        if frame is None or not frame.mask[0].any():
            self.message.setText("no perturbed pixels to zoom to")
            return
        rows, cols = np.nonzero(frame.mask[0])
        self.views.zoom_to((int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max())))

    # -- state events --------------------------------------------------------------------------------------------
    def _on_engine(self, ready: bool) -> None:
        devices = self.engine.info.get("devices") if ready else None
        if devices:
            self.controls.set_devices(devices)
        if ready and self.engine.info.get("models"):
            self.controls.set_models(self.engine.info["models"])
        if ready and self.state.attacks:
            self.controls.attack_picker.set_attacks(self.state.attacks)
        self._on_status()

    def _on_image(self) -> None:
        """A new image, a new run or a reopened session: every run display starts empty."""
        image = self.state.image
        self._candidates = []
        if image is None:
            return
        self._show_image(image.shown, "model input" if image.model_input is not None else "file, no model")
        self.controls.set_image_path(image.path)
        if image.model is not None:
            self.controls.set_class_names(list(image.model.class_names))
            self._apply_pending_target()
        self.setWindowTitle(self._title())
        self.top_table.clear_all()
        if image.clean is not None and image.model is not None:
            self.top_table.set_before(image.clean.classes, image.clean.probs, list(image.model.class_names), -1)
        self.timeline.reset()
        self.search_table.set_summaries([])
        self.plots.set_series({name: [] for name in SERIES})
        self._plotted = None
        self.cam_panel.show_frame(None)
        self._remember_image(image.path)

    def _show_image(self, rgb, label: str) -> None:
        """Reset the image grid to a new clean image (and the CAM view over it)."""
        self.views.show_original(rgb, label)
        self.cam_panel.redraw()

    def _apply_pending_target(self) -> None:
        """--target NAME, matched against the loaded model's own class names."""
        target, self._pending_target = self._pending_target, None
        if target is None:
            return
        from gse_algo.classes import find_class

        try:
            self.controls.set_target(find_class(self.state.image.model.class_names, target))
        except ValueError as error:
            self.show_error(str(error))

    def _remember_image(self, path: str) -> None:
        if self.state.session_path is not None:
            return
        recent = [path] + [p for p in self._recent() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self.settings.setValue("image", path)
        self.controls.set_recent(recent[:MAX_RECENT])

    def _on_run(self) -> None:
        run = self.state.run
        self.central.setCurrentWidget(self.view_area)  # a new run, or another one shown: its views
        if self.views.original is None or not np.array_equal(self.views.original, run.image):
            self._show_image(run.image, "model input")
        self.controls.set_class_names(list(run.model.class_names))
        self.top_table.set_before(run.clean.classes, run.clean.probs, list(run.model.class_names), run.label)
        attack = run.attack
        self.views.set_attack(attack.title, attack.has_lambda_map)
        self.plots.set_attack(attack.title, attack.name == GSE)
        if run.params is not None:
            self.plots.set_phase_boundary(run.params.k_hat, run.params.iters)
            self.progress.setRange(0, run.params.iters * run.params.search_steps)
        else:  # a library attack's number of forward calls is not known in advance
            self.progress.setRange(0, 0 if self.state.active else 1)
        self.timeline.set_search(attack.has_search)
        if not attack.has_search:
            self.search_table.set_note(f"{attack.title} has no outer search over λ")
        self.model_label.setText(f" model: {run.model.name} ")
        self.setWindowTitle(self._title())
        self.settings.setValue("model", run.spec.model_spec)  # remembered once it has worked

    def _on_history(self) -> None:
        history = self.state.history
        self.timeline.set_counts({s: history.n_iterations(s) for s in history.steps})
        run = self.state.run
        if run is None or run.params is None:
            return
        if self.search_table.rowCount() != len(history.steps):
            self.search_table.set_summaries(history.summaries())
        latest = history.latest()
        if latest is not None:
            self.progress.setValue(min(latest[0] * run.params.iters + latest[1] + 1, self.progress.maximum()))

    def _on_result(self) -> None:
        history = self.state.history
        result = history.result
        run = self.state.run
        search = run is not None and run.attack.has_search
        self.timeline.chosen_step = int(result.chosen_step[0]) if search and result is not None \
            and result.chosen_step[0] >= 0 else None
        self.timeline.set_counts({s: history.n_iterations(s) for s in history.steps})
        if search:
            self.search_table.set_summaries(history.summaries())
        if result is not None:
            self.progress.setRange(0, max(self.progress.maximum(), 1))
            self.progress.setValue(self.progress.maximum())
        self._mark_dirty()

    def _on_status(self) -> None:
        s = self.state
        running = s.status in ACTIVE
        self.controls.set_running(running, paused=s.status == PAUSED)
        self.controls.run_button.setEnabled(not running and s.image is not None and s.engine_ready)
        self.engine_label.setText(" engine ready " if s.engine_ready else " engine starting … ")
        if s.status in (STOPPED, FAILED):
            self.progress.setRange(0, max(self.progress.maximum(), 1))  # a library run's busy bar stops
            self.progress.setValue(0)
        text = s.message
        if running and s.run is not None and s.cursor is not None and s.status != PAUSED:
            text = self._progress_text()
        self.message.setText(text)
        self.setWindowTitle(self._title())

    def _progress_text(self) -> str:
        s, run = self.state, self.state.run
        step, index = s.history.latest() or (0, 0)
        p = run.params
        if p is None:
            forward, backward = s.shown.calls or (0, 0)
            return (f"running {run.attack.title}: {forward} forward calls, {backward} backward passes, "
                    f"{len(s.history)} frames — {s.elapsed():.0f} s")
        done = step * p.iters + index + 1
        elapsed = s.elapsed()
        left = elapsed / len(s.history) * (p.iters * p.search_steps - done) if len(s.history) else float("nan")
        phase = 1 if index < p.k_hat else 2
        return (f"running: search step {step + 1}/{p.search_steps}, iteration {index + 1}/{p.iters}, phase {phase}"
                f" — {elapsed:.0f} s, at most ~{left:.0f} s left")

    def _title(self) -> str:
        s = self.state
        parts = [s.image.name if s.image else None, s.run.model.name if s.run else None,
                 Path(s.session_path).name if s.session_path else None]
        self.setWindowModified(s.unsaved)
        return " — ".join([p for p in parts if p] + ["GSE Desktop[*]"])

    def _on_compare(self) -> None:
        """Two runs chosen for comparison: show them; none: back to the run's views."""
        self.show_comparison(self.state.compared is not None)

    def show_comparison(self, on: bool) -> None:
        """The comparison (when two runs are compared) or the shown run's views, in the central area."""
        if on and self.state.compared is None:
            self.message.setText("nothing to compare: select two runs in the Runs panel (Ctrl+click)")
        self.central.setCurrentWidget(self.compare_view if on and self.state.compared else self.view_area)

    # -- drawing -------------------------------------------------------------------------------------------------
    def _mark_dirty(self) -> None:
        self._dirty = True

    def _redraw(self) -> None:
        """Timer tick: show the snapshot at the state's cursor when it changed."""
        if not self._dirty:
            return
        self._dirty = False
        s = self.state
        if s.status in ACTIVE:
            self._on_status()
        frame = s.frame()
        if frame is None:
            return
        self.views.show_frame(frame)
        self.cam_panel.show_frame(frame)
        self.top_table.set_now(frame.top_classes[0], frame.top_probs[0])
        key = (id(s.history), frame.step)
        now = time.perf_counter()
        if key != self._plotted or (s.status in ACTIVE and now - self._plotted_at >= PLOT_S):
            self.plots.set_series({name: s.history.series(frame.step, name) for name in SERIES})
            self._plotted, self._plotted_at = key, now
        self.plots.set_cursor(frame.iteration)
        self.timeline.set_position(frame.step, frame.iteration, frame.phase)
        self.timeline.set_follow(s.follow)

    def redraw_now(self) -> None:
        """Draw what the state shows without waiting for the timer (tests, exports)."""
        self._dirty = True
        self._redraw()

    # -- settings and closing ------------------------------------------------------------------------------------
    def _close_later(self) -> None:
        self.state.discard_unsaved()  # saved or discarded: nothing is left to ask about
        QTimer.singleShot(0, self.close)

    def _save_settings(self) -> None:
        self.controls.save(self.settings)
        self.docks.save(self.settings)

    def closeEvent(self, event: QCloseEvent) -> None:
        """After the question about an unsaved run, the window goes at once; the engine process is shut down (a
        run stops at its next iteration)."""
        if self.state.unsaved:
            event.ignore()  # closed again once the run is saved or discarded, or not at all (Cancel)
            self.after_unsaved("quitting", self._close_later)
            return
        self._save_settings()
        self.settings.sync()
        self.redraw_timer.stop()
        self.pump.timer.stop()
        if self.state.status in ACTIVE:
            self.state.stop()
        if self._own_engine:
            self.engine.shutdown()
        self.files.worker.shutdown()
        event.accept()

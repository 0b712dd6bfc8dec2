"""The File menu, its toolbar and the option dialogs of the exports; the work is done by gse_desktop.export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QListWidget, QListWidgetItem, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from gse_algo import animation, figures
from gse_desktop.export import CHOSEN, SHOWN
from gse_desktop.session import SUFFIX

SESSION_FILTER = f"GSE sessions (*{SUFFIX});;All files (*)"


def build_menu(actions) -> None:
    """File menu (and a toolbar with the common entries) for a FileActions object."""
    w = actions.window
    menu = w.menuBar().addMenu("&File")

    def add(target, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, w)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        target.addAction(action)
        return action

    open_image = add(menu, "Open image…", w.controls._browse_image, QKeySequence.StandardKey.Open)
    open_session = add(menu, "Open session…", lambda: _open_session(actions), "Ctrl+Shift+O")
    save_session = add(menu, "Save session…", lambda: save_session_dialog(actions), QKeySequence.StandardKey.Save)
    menu.addSeparator()
    sub = menu.addMenu("Export")
    add(sub, "Current view as PNG/SVG…", lambda: _export_view(actions))
    figure = add(sub, "Composite figure…", lambda: _export_figure(actions), "Ctrl+E")
    add(sub, "Animation (GIF) / frame strip…", lambda: _export_animation(actions))
    add(sub, "Data (adversarial PNG 16-bit + arrays .npz + metrics .json)…", lambda: _export_data(actions))
    actions.needs_pair = [add(sub, "Comparison of the two runs compared…", lambda: ask_comparison(actions))]
    menu.addSeparator()
    add(menu, "Quit", w.close, QKeySequence.StandardKey.Quit)
    bar = w.addToolBar("File")
    bar.setObjectName("file_toolbar")
    for action in (open_image, open_session, save_session, figure):
        bar.addAction(action)
    # saving and exporting are enabled once there is a run; the comparison once two runs are compared
    actions.needs_run = [save_session, *(a for a in sub.actions() if a not in actions.needs_pair)]


def _save_path(parent: QWidget, title: str, name: str, filters: str) -> str:
    path, chosen = QFileDialog.getSaveFileName(parent, title, name, filters)
    if path and not Path(path).suffix:  # the filter's first pattern gives the suffix
        path += chosen.split("(*")[1].split()[0].rstrip(")") if "(*" in chosen else ""
    return path


def _open_session(actions) -> None:
    path, _ = QFileDialog.getOpenFileName(actions.window, "Open session", "", SESSION_FILTER)
    if path:
        actions.window.open_session(path)


def save_session_dialog(actions, then: Callable[[], None] | None = None) -> None:
    """Ask for a file name and save the session there in the file worker; `then` runs once it is saved."""
    info = actions.info()
    name = Path(info["image_name"]).stem + SUFFIX if info else "session" + SUFFIX
    path = _save_path(actions.window, "Save session", name, SESSION_FILTER)
    if path:
        actions.save_session(path, wait=False, then=then)


def _export_view(actions) -> None:
    dialog = ViewDialog(list(actions.view_items()), actions.window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return
    name, width = dialog.options()
    path = _save_path(actions.window, "Export view", f"{name}.png", "PNG image (*.png);;SVG drawing (*.svg)")
    if path:
        actions.export_view(name, path, width)


def _export_figure(actions) -> None:
    chosen = _options_and_path(actions, FigureDialog(actions.state.history.result is not None, actions.window),
                               "Save composite figure", "figure")
    if chosen:
        options, path = chosen
        actions.export_figure(path, options["panels"], options["which"], options["dpi"], wait=False)


def _export_animation(actions) -> None:
    chosen = _options_and_path(actions, AnimationDialog(actions.state.history.steps, actions.state.cam.map is not None,
                                                        actions.window), "Save animation", "iterations")
    if chosen:
        options, path = chosen
        actions.export_animation(path, options["step"], options["every"], options["fps"], panels=options["panels"],
                                 wait=False)


def _options_and_path(actions, dialog: QDialog, title: str, stem: str) -> tuple[dict, str] | None:
    """Run an options dialog, then ask for a file name with the chosen suffix; None when either is cancelled."""
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    options = dialog.options()
    suffix = options["suffix"]
    path = _save_path(actions.window, title, stem + suffix, f"{suffix[1:].upper()} (*{suffix})")
    return (options, path) if path else None


def ask_comparison(actions) -> None:
    """The file name (PNG or SVG) of the comparison figure, then its export in the file worker."""
    path = _save_path(actions.window, "Save comparison figure", "comparison.png",
                      "PNG image (*.png);;SVG drawing (*.svg)")
    if path:
        actions.export_comparison(path, wait=False)


def _export_data(actions) -> None:
    folder = QFileDialog.getExistingDirectory(actions.window, "Export data into folder")
    if folder:
        actions.export_data(folder)


class ViewDialog(QDialog):
    """Which view, and the PNG width in pixels (SVG ignores it)."""

    def __init__(self, names: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export a view")
        self.view_combo = QComboBox()
        self.view_combo.addItems(names)
        self.width_spin = QSpinBox(minimum=16, maximum=16384, value=1200, suffix=" px")
        _fill(self, [("View", self.view_combo), ("PNG width", self.width_spin)])

    def options(self) -> tuple[str, int]:
        return self.view_combo.currentText(), self.width_spin.value()


class PanelList(QListWidget):
    """Panels to draw: checked ones, in the order shown (drag to reorder)."""

    def __init__(self, checked: tuple[str, ...], disabled: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        for name in figures.PANELS:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked)
            if name in disabled:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setToolTip("needs a computed CAM")
            self.addItem(item)

    def checked(self) -> list[str]:
        items = [self.item(i) for i in range(self.count())]
        return [i.text() for i in items
                if i.checkState() == Qt.CheckState.Checked and i.flags() & Qt.ItemFlag.ItemIsEnabled]


class FigureDialog(QDialog):
    """Panels (checked, drag to reorder), the iteration, dpi and format of the composite figure."""

    def __init__(self, has_result: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Composite figure")
        self.panel_list = PanelList(figures.DEFAULT_PANELS)
        self.shown = QRadioButton("the shown iteration", checked=True)
        self.chosen = QRadioButton("the engine's chosen result", enabled=has_result)
        group = QButtonGroup(self)
        group.addButton(self.shown)
        group.addButton(self.chosen)
        self.dpi_spin = QSpinBox(minimum=50, maximum=1200, value=300)
        self.format_combo = QComboBox()
        self.format_combo.addItems(["PNG", "SVG", "PDF"])
        _fill(self, [("Panels", self.panel_list), ("Iteration", self.shown), ("", self.chosen),
                     ("dpi", self.dpi_spin), ("Format", self.format_combo)])

    def options(self) -> dict:
        return {"panels": self.panel_list.checked(),
                "which": CHOSEN if self.chosen.isChecked() else SHOWN, "dpi": self.dpi_spin.value(),
                "suffix": "." + self.format_combo.currentText().lower()}


class AnimationDialog(QDialog):
    """The panels (checked, drag to reorder), one search step or all, every Nth iteration, GIF or a strip."""

    def __init__(self, steps: list[int], has_cam: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Animation")
        self.panel_list = PanelList(animation.DEFAULT_PANELS, () if has_cam else ("cam",))
        self.step_combo = QComboBox()
        self.step_combo.addItem("all search steps", None)
        for step in steps:
            self.step_combo.addItem(f"search step {step + 1}", step)  # counted from 1, as everywhere
        self.every_spin = QSpinBox(minimum=1, maximum=10000, value=10, prefix="every ")
        self.fps_spin = QSpinBox(minimum=1, maximum=60, value=5, suffix=" frames/s")
        self.kind_combo = QComboBox()
        self.kind_combo.addItem("animated GIF", ".gif")
        self.kind_combo.addItem("strip of frames (PNG)", ".png")
        _fill(self, [("Panels", self.panel_list), ("Search step", self.step_combo), ("Iterations", self.every_spin),
                     ("Speed", self.fps_spin), ("Output", self.kind_combo)])

    def options(self) -> dict:
        return {"panels": self.panel_list.checked(), "step": self.step_combo.currentData(),
                "every": self.every_spin.value(),
                "fps": self.fps_spin.value(), "suffix": self.kind_combo.currentData()}


def _fill(dialog: QDialog, rows: list[tuple[str, QWidget]]) -> None:
    layout = QVBoxLayout(dialog)
    form = QFormLayout()
    for label, widget in rows:
        form.addRow(label, widget)
    layout.addLayout(form)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    layout.addWidget(buttons)

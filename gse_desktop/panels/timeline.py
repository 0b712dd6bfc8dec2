"""The timeline: search step + iteration slider, play/pause, keyboard stepping, follow-live switch."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QSpinBox, QToolButton, QWidget


class Timeline(QWidget):
    """Emits `moved(step, iteration)` when the user navigates; the window then shows that snapshot."""

    moved = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.counts: dict[int, int] = {}  # search step -> stored iterations
        self.step, self.index = 0, 0
        self.chosen_step: int | None = None
        self.unit = "iteration"  # "frame" for a library attack: its sampled forward calls, in one step
        self.step_spin = QSpinBox(prefix="search step ", minimum=1, maximum=1)  # shown from 1, as everywhere
        self.step_spin.setToolTip("Outer search step (PageUp / PageDown)")
        self.step_spin.valueChanged.connect(lambda s: self.go(s - 1, self.index) if s - 1 != self.step else None)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(lambda j: self.go(self.step, j) if j != self.index else None)
        self.play_button = QToolButton(text="Play", checkable=True)
        self.play_button.setToolTip("Play through the stored iterations")
        self.play_button.toggled.connect(self._play_toggled)
        self.follow = QCheckBox("follow live", checked=True)
        self.follow.setToolTip("Show each new iteration as it arrives; any navigation switches this off")
        self.label = QLabel()
        self.label.setMinimumWidth(210)
        self._timer = QTimer(self, interval=66)
        self._timer.timeout.connect(self._advance)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.step_spin)
        buttons = [("|◀", "Home", self.first), ("◀", "Left", self.previous), ("▶", "Right", self.next),
                   ("▶|", "End", self.last)]
        for text, key, slot in buttons[:2]:
            layout.addWidget(self._button(text, key, slot))
        layout.addWidget(self.slider, 1)
        for text, key, slot in buttons[2:]:
            layout.addWidget(self._button(text, key, slot))
        layout.addWidget(self.play_button)
        layout.addWidget(self.follow)
        layout.addWidget(self.label)

    def _button(self, text: str, key: str, slot) -> QToolButton:
        button = QToolButton(text=text)
        button.setToolTip(key)
        button.clicked.connect(slot)
        return button

    def install_shortcuts(self, area: QWidget) -> None:
        """Left/Right, Home/End, PageUp/PageDown while the focus is anywhere inside `area`."""
        for key, slot in ((Qt.Key.Key_Left, self.previous), (Qt.Key.Key_Right, self.next),
                          (Qt.Key.Key_Home, self.first), (Qt.Key.Key_End, self.last),
                          (Qt.Key.Key_PageUp, self.previous_step), (Qt.Key.Key_PageDown, self.next_step)):
            shortcut = QShortcut(QKeySequence(key), area)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

    # -- state from the window -----------------------------------------------------------------------------------
    def set_counts(self, counts: dict[int, int]) -> None:
        self.counts = counts
        self.step_spin.blockSignals(True)
        self.step_spin.setMaximum(max(counts) + 1 if counts else 1)
        self.step_spin.blockSignals(False)
        self._sync()

    def reset(self) -> None:
        """No run shown."""
        self.chosen_step = None
        self.step = self.index = 0
        self.set_counts({})
        self.set_follow(True)

    def set_search(self, search: bool) -> None:
        """GSE: search steps and iterations; an attack without an outer search: its frames only."""
        self.unit = "iteration" if search else "frame"
        self.step_spin.setVisible(search)
        self._sync()

    def set_follow(self, follow: bool) -> None:
        """Show the state's follow-live flag (without emitting `toggled`)."""
        self.follow.blockSignals(True)
        self.follow.setChecked(follow)
        self.follow.blockSignals(False)

    def set_position(self, step: int, index: int, phase: int | None = None) -> None:
        """Show a position without emitting `moved` (the window already shows it)."""
        self.step, self.index = step, index
        self._sync(phase)

    def _sync(self, phase: int | None = None) -> None:
        n = self.counts.get(self.step, 0)
        for widget, value, maximum in ((self.step_spin, self.step + 1, None),
                                       (self.slider, self.index, max(n - 1, 0))):
            widget.blockSignals(True)
            if maximum is not None:
                widget.setMaximum(maximum)
            widget.setValue(value)
            widget.blockSignals(False)
        chosen = "  ★ chosen" if self.chosen_step == self.step else ""
        phase_text = f"  phase {phase}" if phase else ""
        self.label.setText(f"{self.unit} {self.index + 1} / {n}{phase_text}{chosen}" if n else "no run shown")

    # -- navigation ----------------------------------------------------------------------------------------------
    def go(self, step: int, index: int, user: bool = True) -> None:
        if not self.counts:
            return
        steps = sorted(self.counts)
        step = min(max(step, steps[0]), steps[-1])
        if step not in self.counts:
            return
        index = min(max(index, 0), self.counts[step] - 1)
        if user:
            self.set_follow(False)
        self.step, self.index = step, index
        self._sync()
        self.moved.emit(step, index)

    def previous(self) -> None:
        self.go(self.step, self.index - 1)

    def next(self) -> None:
        self.go(self.step, self.index + 1)

    def first(self) -> None:
        self.go(self.step, 0)

    def last(self) -> None:
        self.go(self.step, self.counts.get(self.step, 1) - 1)

    def previous_step(self) -> None:
        self.go(self.step - 1, self.index)

    def next_step(self) -> None:
        self.go(self.step + 1, self.index)

    def _play_toggled(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing:
            self.follow.setChecked(False)  # the state stops following too
            self._timer.start()
        else:
            self._timer.stop()

    def _advance(self) -> None:
        n = self.counts.get(self.step, 0)
        if self.index + 1 < n:
            self.go(self.step, self.index + 1, user=False)
        elif self.step + 1 in self.counts:
            self.go(self.step + 1, 0, user=False)
        else:
            self.play_button.setChecked(False)

"""The status bar's progress and Cancel for file work in the file worker (sessions, figures, animations)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget


class FileProgress(QWidget):
    """Hidden until `start`; a busy bar until the job reports a share done; Cancel calls the job's cancel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar(maximumWidth=160, textVisible=True)
        self.cancel_button = QToolButton(text="Cancel", toolTip="Stop this file job (nothing is written or opened)")
        self.cancel_button.clicked.connect(self._cancel_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.label, self.bar, self.cancel_button):
            layout.addWidget(widget)
        self._cancel: Callable[[], None] | None = None
        self.hide()

    def start(self, text: str, cancel: Callable[[], None]) -> None:
        self.label.setText(text)
        self.bar.setRange(0, 0)  # busy until the first report
        self._cancel = cancel
        self.cancel_button.setEnabled(True)
        self.show()

    def set_fraction(self, fraction: float) -> None:
        self.bar.setRange(0, 100)
        self.bar.setValue(round(100 * fraction))

    def finish(self) -> None:
        self._cancel = None
        self.hide()

    def _cancel_clicked(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self.cancel_button.setEnabled(False)
            self.label.setText(self.label.text() + " (cancelling)")

"""Small tables: the top-5 classes before and now, and the outer search at a glance."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from gse_desktop.history import StepSummary


def setup_table(table: QTableWidget, columns: list[str]) -> None:
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(20)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)


@contextmanager
def filling(table: QTableWidget) -> Iterator[None]:
    """Set many cells at once: the columns are sized to their contents once, at the end (with ResizeToContents
    on, Qt measures every row again for each cell set: ~1 ms a cell for a table of 100 rows). Each column gets its
    own mode back (a stretched one stays stretched)."""
    header = table.horizontalHeader()
    modes = [header.sectionResizeMode(column) for column in range(header.count())]
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    try:
        yield
    finally:
        for column, mode in enumerate(modes):
            header.setSectionResizeMode(column, mode)


def fill_row(table: QTableWidget, row: int, values: list[str], bold: bool = False,
              colour: str | None = None) -> None:
    for col, value in enumerate(values):
        item = QTableWidgetItem(value)
        if bold:
            font = QFont()
            font.setBold(True)
            item.setFont(font)
        if colour:
            item.setForeground(QBrush(QColor(colour)))
        table.setItem(row, col, item)


class TopTable(QTableWidget):
    """Two columns of (class, probability): the clean image and the shown iterate."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        setup_table(self, ["before", "p", "now", "p"])
        header = self.horizontalHeader()
        header.setStretchLastSection(False)
        for col in (0, 2):  # the class names share what the probabilities leave (elided, whole in the tooltip)
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        self.setRowCount(5)
        self.names: list[str] = []
        self.label: int = -1

    def set_before(self, classes: np.ndarray, probs: np.ndarray, names: list[str], label: int) -> None:
        """The clean prediction; `label` is the class the attack moves away from / towards (highlighted)."""
        self.names, self.label = list(names), label
        self._column(0, classes, probs)
        self._column(2, classes[:0], probs[:0])

    def clear_all(self) -> None:
        self.names, self.label = [], -1
        self._column(0, np.zeros(0, int), np.zeros(0))
        self._column(2, np.zeros(0, int), np.zeros(0))

    def set_now(self, classes: np.ndarray, probs: np.ndarray) -> None:
        self._column(2, classes, probs)

    def _name(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else str(index)

    def _column(self, col: int, classes: np.ndarray, probs: np.ndarray) -> None:
        with filling(self):
            self._fill_column(col, classes, probs)

    def _fill_column(self, col: int, classes: np.ndarray, probs: np.ndarray) -> None:
        for row in range(5):
            if row >= len(classes):
                self.setItem(row, col, QTableWidgetItem(""))
                self.setItem(row, col + 1, QTableWidgetItem(""))
                continue
            c = int(classes[row])
            for offset, text in ((0, f"{c}: {self._name(c)}"), (1, f"{float(probs[row]):.3f}")):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if c == self.label:
                    item.setForeground(QBrush(QColor("#e07000")))
                self.setItem(row, col + offset, item)


class SearchTable(QTableWidget):
    """One row per outer search step (numbered from 1): lambda, success, d2,0, stop iteration; the chosen step in
    bold. Clicking a row emits `picked(step)`."""

    COLUMNS = ["step", "λ", "success", "d₂,₀", "stop j", ""]
    picked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        setup_table(self, self.COLUMNS)
        self.setToolTip("The outer search over lambda: each step's starting lambda, whether it found an adversarial "
                        "example, its d2,0 and the iteration it stopped at. Click a row to show that step.")
        self.cellClicked.connect(lambda row, _: self.picked.emit(row))

    def set_note(self, text: str) -> None:
        """One line instead of the steps (an attack without an outer search)."""
        self.clearSpans()
        self.setRowCount(1)
        self.setSpan(0, 0, 1, self.columnCount())
        self.setItem(0, 0, QTableWidgetItem(text))

    def set_summaries(self, summaries: list[StepSummary], image: int = 0) -> None:
        with filling(self):
            self._fill(summaries, image)

    def _fill(self, summaries: list[StepSummary], image: int) -> None:
        self.clearSpans()
        self.setRowCount(len(summaries))
        for row, s in enumerate(summaries):
            ok = bool(s.success[image])
            chosen = bool(s.chosen[image])
            d20 = int(s.d20[image])
            stop = int(s.stop_iteration[image])
            fill_row(self, row, [str(s.step + 1), f"{float(s.lambda_b[image]):.3g}", "yes" if ok else "no",
                                  str(d20) if d20 >= 0 else "–", str(stop) if stop >= 0 else "–",
                                  "★ chosen" if chosen else ""],
                      bold=chosen, colour="#2ca02c" if ok else None)

"""The run list: every kept run of the current image (gse_desktop.state.AppState.runs, the one owner) with its
attack, key parameters, success, ACP, ANC, d2,0 and time. Selecting one run shows it; selecting two compares them
(A = the first selected); a run's name is edited in place (double click or Rename); Remove forgets the selected
runs. While a run is active the list only shows: its frames go to the run on screen."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSizePolicy,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from gse_desktop.run_rows import LIST_COLUMNS, METRIC_HELP, list_cell, registry_defaults
from gse_desktop.state import ACTIVE, AppState

KEY = Qt.ItemDataRole.UserRole  # a row's run key, on its first cell
NAME_WIDTH = 200  # px at most for the names (a long one is elided, whole in its tooltip): the parameters need room


class RunList(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.table = QTableWidget(0, len(LIST_COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in LIST_COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self._size_columns()
        self.table.setToolTip("Every run of this image. Click one to show it; Ctrl+click a second one to compare "
                              "the two (A = the first); double click a name to rename it. A column's header says "
                              "what it counts")
        for col, (column, _) in enumerate(LIST_COLUMNS):  # the comparison's words for the same metrics
            self.table.horizontalHeaderItem(col).setToolTip(METRIC_HELP.get(column, ""))
        self.rename_button = QPushButton("Rename", toolTip="Rename the selected run")
        self.remove_button = QPushButton("Remove", toolTip="Forget the selected runs")
        self.compare_button = QPushButton("Compare", toolTip="Compare the two selected runs")
        self.note = QLabel()
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock
        self.table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        buttons = QHBoxLayout()
        for button in (self.rename_button, self.remove_button, self.compare_button):
            buttons.addWidget(button)
        buttons.addWidget(self.note, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.rename_button.clicked.connect(self._rename_selected)
        self.remove_button.clicked.connect(self._remove_selected)
        self.compare_button.clicked.connect(self._compare_selected)
        self.table.itemSelectionChanged.connect(self._selected)
        self.table.itemChanged.connect(self._edited)
        self._order: list[int] = []  # selected keys in the order they were picked
        self._filling = False
        self._active = False
        for event in ("runs", "result"):
            state.events.connect(event, self.refresh)
        state.events.connect("status", self._status)
        self.refresh()

    def _size_columns(self) -> None:
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # the key parameters take the rest
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.resizeColumnToContents(0)
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), NAME_WIDTH))

    def _status(self) -> None:
        """A run started or ended: the list only shows while one is going (other status changes cost nothing)."""
        if (self.state.status in ACTIVE) != self._active:
            self.refresh()

    # -- showing the state ---------------------------------------------------------------------------------------
    def refresh(self) -> None:
        s = self.state
        defaults = registry_defaults(s.attacks)
        listed = set(self._keys())
        selected = self.selected_keys()
        self._filling = True
        # cells are set with the columns' sizes fixed, then sized once (Qt measures every row for each cell set)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setRowCount(len(s.runs))
        bold = QFont()
        bold.setBold(True)
        for row, kept in enumerate(s.runs):
            run = kept.description
            for col, (column, _) in enumerate(LIST_COLUMNS):
                text = list_cell(column, kept.name, run, kept.measured, defaults)
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
                flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                item.setFlags(flags | Qt.ItemFlag.ItemIsEditable if column == "name" else flags)
                item.setFont(bold if kept is s.shown else QFont())
                if col == 0:
                    item.setData(KEY, kept.key)
                    item.setToolTip(f"{kept.name} (shown)" if kept is s.shown else kept.name)
        self._size_columns()
        self.select(self._selection_after(listed, selected))
        self._filling = False
        active = self._active = s.status in ACTIVE
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection if active
                                    else QAbstractItemView.SelectionMode.ExtendedSelection)
        self._buttons()

    def _selection_after(self, listed: set[int], selected: list[int]) -> list[int]:
        """The runs selected once the list has changed (rows are selected by run, not by position): a new list (an
        image or a session opened) selects the pair compared, else the run shown; a run that has just joined the
        list (it ended) is selected alone; otherwise the selected runs that are still listed stay selected (the run
        shown when none is)."""
        s, keys = self.state, self._keys()
        shown = [s.shown.key] if s.shown.key in keys else []
        if not listed & set(keys):
            return list(s.compared) if s.compared is not None else shown
        if shown and shown[0] not in listed:
            return shown
        return [k for k in selected if k in keys] or shown

    def _keys(self) -> list[int]:
        """The listed runs' keys, row by row."""
        return [self.table.item(r, 0).data(KEY) for r in range(self.table.rowCount())
                if self.table.item(r, 0) is not None]

    def _buttons(self) -> None:
        keys = self.selected_keys()
        idle = self.state.status not in ACTIVE
        self.rename_button.setEnabled(idle and len(keys) == 1)
        self.remove_button.setEnabled(idle and bool(keys))
        self.compare_button.setEnabled(idle and len(keys) == 2)
        self.note.setText(self._note(len(keys)))

    def _note(self, selected: int) -> str:
        n = len(self.state.runs)
        if self.state.status in ACTIVE:
            return "a run is going: stop it to show another one"
        if selected > 2:
            return f"{selected} selected: Ctrl+click to keep two, to compare them"
        return f"{n} run{'s' if n != 1 else ''} of this image"

    def selected_keys(self) -> list[int]:
        """The selected runs' keys, in the order they were picked."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        keys = [self.table.item(r, 0).data(KEY) for r in rows if self.table.item(r, 0) is not None]
        return [k for k in self._order if k in keys] + [k for k in keys if k not in self._order]

    # -- user actions --------------------------------------------------------------------------------------------
    def select(self, keys: list[int]) -> None:
        """Select these runs (in this order), as clicks would; the first is scrolled into view."""
        self.table.clearSelection()
        self._order = []
        rows = {key: r for r, key in enumerate(self._keys())}
        for key in keys:
            self._order.append(key)
            self.table.selectionModel().select(self.table.model().index(rows[key], 0),
                                               self.table.selectionModel().SelectionFlag.Select
                                               | self.table.selectionModel().SelectionFlag.Rows)
        if keys:
            self.table.scrollToItem(self.table.item(rows[keys[0]], 0))

    def _selected(self) -> None:
        keys = self.selected_keys()
        self._order = keys
        self._buttons()
        if self._filling or self.state.status in ACTIVE:
            return
        if len(keys) == 1:
            self.state.show_kept(keys[0])
        elif len(keys) == 2:
            self.state.compare((keys[0], keys[1]))

    def _compare_selected(self) -> None:
        keys = self.selected_keys()
        if len(keys) == 2:
            self.state.compare((keys[0], keys[1]))

    def _rename_selected(self) -> None:
        keys = self.selected_keys()
        if len(keys) == 1:
            rows = [r for r in range(self.table.rowCount()) if self.table.item(r, 0).data(KEY) == keys[0]]
            self.table.editItem(self.table.item(rows[0], 0))

    def _edited(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 0:
            return
        key = item.data(KEY)
        if item.text().strip():
            self.state.rename_run(key, item.text())
        else:
            self.refresh()  # an empty name is not taken: the old one comes back

    def _remove_selected(self) -> None:
        for key in self.selected_keys():
            self.state.remove_run(key)

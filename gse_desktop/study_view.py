"""File > Open study…: a study folder (gse-study) as a table of its rows, sortable and filtered by a text; a click
on a row recomputes that image's run in the main window (the engine runs it with the row's configuration, target,
seed and thread count) and every view shows it as a live run.

Torch-free, as the rest of the GUI process: rows are read by gse_algo.study.table and the row's parameters are
rebuilt by gse_algo.params. A recomputed run is one image alone, so it can differ from the study's batched row by
float noise (README "Studies"). Rows the engine cannot recompute say why: other attacks than GSE (the engine
runs GSE), and studies made with the paper's preprocessing (the app loads each model with its own).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QFileDialog, QHeaderView, QLabel, QLineEdit, QTableView, QVBoxLayout, QWidget)

from gse_algo.params import params_from_settings
from gse_algo.study import StudyError
from gse_algo.study.table import read_rows
from gse_desktop.records import RunSpec

SHOWN = ("image", "target", "attack", "config", "success", "fools_at_8bit", "acp", "anc", "d20", "l2", "linf",
         "cam_pixel_share", "mask_pixel_share", "time_s")
SORT_ROLE = Qt.ItemDataRole.UserRole  # the raw value: numbers sort as numbers


class RowsModel(QAbstractTableModel):
    """The study's rows, the SHOWN columns it has; the display text is rounded, the sort value is raw."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows
        self.names = [name for name in SHOWN if rows and name in rows[0]]

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.names)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.names[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        value = self.rows[index.row()][self.names[index.column()]]
        if role == SORT_ROLE:
            return -1 if value is None else value
        if role == Qt.ItemDataRole.DisplayRole:
            if value is None:
                return "untargeted" if self.names[index.column()] == "target" else "–"
            return f"{value:.4g}" if isinstance(value, float) else str(value)
        return None


class StudyView(QWidget):
    """A study folder's table (its own window); `pick(row)` recomputes a row in `window` (a MainWindow)."""

    def __init__(self, window, folder: Path) -> None:
        super().__init__(None, Qt.WindowType.Window)
        self.window, self.folder = window, folder
        self.manifest, rows = read_rows(folder)
        self.setWindowTitle(f"Study {self.manifest['name']} — {folder}")
        self.model = RowsModel(rows)
        self.proxy = QSortFilterProxyModel(self, filterKeyColumn=-1, sortRole=SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setSourceModel(self.model)
        self.filter = QLineEdit(placeholderText="filter: any text in any column (an image, an attack, True, …)")
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView(sortingEnabled=True, selectionBehavior=QTableView.SelectionBehavior.SelectRows)
        self.table.setModel(self.proxy)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.clicked.connect(lambda index: self.pick(self.proxy.mapToSource(index).row()))
        self.status = QLabel(f"{len(rows)} rows; click a row to recompute it in the main window")
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.resize(980, 520)
        self._pending: RunSpec | None = None
        window.state.events.connect("image", self._image_opened)

    def spec(self, row: dict) -> RunSpec:
        """The run of one row as the engine takes it; StudyError says why a row cannot be recomputed here."""
        plan = self.manifest["plan"]
        model = plan["model"]
        if row["attack"] != "gse":
            raise StudyError(f"the app recomputes GSE rows; this row is {row['attack']}")
        if model["preprocessing"] != "default":
            raise StudyError("this study used the paper's preprocessing; the app loads models with their own")
        if not row["image_path"] or not Path(row["image_path"]).is_file():
            raise StudyError(f"the image {row['image_path'] or row['image']!r} is not there any more")
        config = next(c for c in plan["configs"] if c["config_id"] == row["config_id"])
        targeted = row["target"] is not None
        params = params_from_settings(config["settings"], targeted, tuple(model["input_size"]))
        study = self.manifest["study"]
        return RunSpec(row["image_path"], model["spec"], self.window.controls.device_combo.currentText(),
                       row["target"], params, None, int(study.get("threads", 1)), int(study.get("seed", 0)))

    def pick(self, source_row: int) -> None:
        row = self.model.rows[source_row]
        try:
            spec = self.spec(row)
        except StudyError as error:
            self.status.setText(str(error))
            self.window.show_error(str(error))
            return
        def recompute() -> None:
            self._pending = spec
            self.status.setText(f"recomputing {row['image']} ({row['config']}, target "
                                f"{'untargeted' if row['target'] is None else row['target']}) in the main window …")
            self.window.state.open_image(spec.image_path, spec.model_spec, spec.device)

        self.window.after_unsaved("recomputing a study row", recompute)  # an unsaved run is asked about first

    def _image_opened(self) -> None:
        """Start the pending row's run once the main window shows its image (opening is asynchronous)."""
        spec, image = self._pending, self.window.state.image
        if spec is None or image is None or image.path != spec.image_path:
            return
        self._pending = None
        self.window.state.start_run(spec)


def open_study(window, folder: str | Path) -> StudyView | None:
    """Show a study folder's table; a folder that is not a study's is one message."""
    try:
        view = StudyView(window, Path(folder))
    except (StudyError, OSError, KeyError) as error:
        window.show_error(f"cannot open the study {folder}: {error}")
        return None
    window.study_views = [*getattr(window, "study_views", []), view]  # kept alive with the window
    view.show()
    return view


def add_to_file_menu(window) -> None:
    """File > Open study… (after the session entries)."""
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() and a.text() == "&File")
    action = QAction("Open study…", window)

    def ask() -> None:
        folder = QFileDialog.getExistingDirectory(window, "Open a study folder (gse-study run --out)")
        if folder:
            open_study(window, folder)

    action.triggered.connect(ask)
    actions = file_menu.actions()
    after = next((i for i, a in enumerate(actions) if a.text().startswith("Save session")), 0)
    file_menu.insertAction(actions[after + 1] if after + 1 < len(actions) else None, action)

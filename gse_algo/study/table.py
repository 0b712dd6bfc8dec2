"""A study folder: study.json (what was planned), rows.csv (one row per image x target x attack x configuration,
appended and flushed to disk as each batch finishes), inputs/ (images held in memory, as PNGs), arrays/ (per-row
.npz, only with --save-arrays), report/.

Safety: the folder is checked before any work (`open_folder`): a new or empty folder is used; a folder holding
the same study (same digest) is resumed; anything else is refused. A row is a complete line or nothing: a line
cut by a crash is dropped when the table is reopened. rows.csv's header must be the study's columns.
Torch-free (the app reads study folders with it).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from gse_algo.export import atomic_write_bytes, json_bytes
from gse_algo.study import StudyError

FORMAT = "gse-study"
VERSION = 1
MANIFEST = "study.json"
ROWS = "rows.csv"
KEY = ("image", "target", "attack", "config_id")


def open_folder(out: Path, digest: str) -> dict | None:
    """Check the output folder before work: None for a new (or empty) folder, the manifest of the same study to
    resume; StudyError for a file, another study's folder or a folder holding other things."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out {out}: is a file, not a folder")
    if not out.exists() or not any(out.iterdir()):
        return None
    manifest = read_manifest(out)
    if manifest.get("digest") != digest:
        raise StudyError(f"--out {out}: holds the results of another study ({manifest.get('name')!r}, different "
                         "settings); choose another folder")
    return manifest


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise StudyError(f"{folder}: not a study folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StudyError(f"{path}: unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StudyError(f"{path}: not a {FORMAT} manifest")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes(folder / MANIFEST, json_bytes({"format": FORMAT, "version": VERSION, **manifest}))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RowTable:
    """rows.csv of a study folder: `done` holds the keys of the finished rows; `append` writes and syncs."""

    def __init__(self, path: Path, columns: list[tuple[str, str]]) -> None:
        self.path, self.names = path, [name for name, _ in columns]
        self.types = dict(columns)
        self.done: set[tuple[str, ...]] = set()
        if path.is_file():
            self._reopen()
        else:
            self._write_text(_line(self.names), "w")

    def _reopen(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a line cut by a crash or kill: drop it
            data = data[:data.rfind(b"\n") + 1]
            with self.path.open("r+b") as file:
                file.truncate(len(data))
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        if not rows or rows[0] != self.names:
            raise StudyError(f"{self.path}: its columns are not this study's (written by another version?)")
        index = [self.names.index(k) for k in KEY]
        self.done = {tuple(row[i] for i in index) for row in rows[1:]}

    def _write_text(self, text: str, mode: str) -> None:
        with self.path.open(mode, encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())

    def append(self, rows: Iterable[dict]) -> None:
        """Write complete rows (every column, in order) and sync them to disk before returning."""
        rows = list(rows)
        self._write_text("".join(_line([_cell(row[name]) for name in self.names]) for row in rows), "a")
        self.done |= {tuple(_cell(row[k]) for k in KEY) for row in rows}


def _line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest round-trip text: the table reads back the same float
    return str(value)


def read_rows(folder: Path) -> tuple[dict, list[dict]]:
    """(manifest, rows with typed values) of a study folder; '' reads as None, 'nan' as NaN."""
    manifest = read_manifest(folder)
    types = dict(manifest["columns"])
    path = folder / ROWS
    if not path.is_file():
        return manifest, []
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames != list(types):
            raise StudyError(f"{path}: its columns do not match {MANIFEST}")
        return manifest, [{k: _typed(v, types[k]) for k, v in row.items()} for row in reader
                          if None not in row]  # a row without every cell (cut short) is left out


def _typed(text: str, kind: str) -> object:
    if text == "":
        return None
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text == "True"
    return text


def write_parquet(folder: Path, rows: list[dict]) -> Path | None:
    """rows.parquet beside rows.csv when pyarrow is installed (it is not a dependency); else None."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    path = folder / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path

"""Writing results to disk: atomic writes, JSON / NPZ writers, PNG provenance chunks, the per-image run folder.

Every file goes through `atomic_write_bytes`: the bytes are written to a temporary file in the target folder and
moved over the target with os.replace, so a crash or a full disk never leaves a half-written file behind.
No pickle anywhere: arrays go to .npz (numeric dtypes only), everything else to JSON.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import PngImagePlugin

SOFTWARE = "gse-desktop"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_PNG_SIGNATURE) + 8 + 13 + 4  # signature, IHDR length+type, 13 data bytes, CRC


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and os.replace.

    On any failure the temporary file is removed, an existing file at `path` is left untouched, and an OSError
    naming the path is raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from None
    return path


def versions() -> dict[str, str]:
    """Versions of Python, torch, torchvision and this package, for provenance records."""
    import torch
    import torchvision

    from gse_algo import __version__ as ours
    return {"python": platform.python_version(), "torch": str(torch.__version__),  # plain str, not TorchVersion:
            "torchvision": str(torchvision.__version__), SOFTWARE: ours}  # the record travels to a torch-free app


def provenance(*, model: str | None = None, params: Mapping | None = None, iteration: str | None = None,
               library_versions: Mapping[str, str] | None = None, **extra: object) -> dict[str, str]:
    """Text metadata for exported files: software and version, UTC creation time, library versions (`versions()`
    unless given: the app passes the engine's, so that it never imports torch), model, parameters, iteration;
    `extra` adds more (the CLI adds Runtime: threads, seed, device, dtype)."""
    from gse_algo import __version__ as ours

    library_versions = dict(library_versions) if library_versions is not None else versions()
    info = {"Software": f"{SOFTWARE} {ours}",
            "Creation Time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "Versions": json.dumps(library_versions, sort_keys=True)}
    if model is not None:
        info["Model"] = model
    if params is not None:
        info["Parameters"] = json.dumps(to_jsonable(dict(params)), sort_keys=True)
    if iteration is not None:
        info["Iteration"] = iteration
    info.update({key: value if isinstance(value, str) else json.dumps(to_jsonable(value)) for key, value in extra.items()})
    return info


def png_info(metadata: Mapping[str, str]) -> PngImagePlugin.PngInfo:
    """Pillow PngInfo with one text chunk per entry (tEXt, or iTXt when the value is not Latin-1)."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    return info


def add_png_text(png: bytes, metadata: Mapping[str, str]) -> bytes:
    """The same PNG with text chunks for `metadata` inserted right after IHDR (for PNGs Pillow cannot re-save,
    such as 16-bit RGB). The chunks are built and framed by Pillow (PngInfo, putchunk)."""
    if not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file (no signature / IHDR chunk)")
    chunks = io.BytesIO()
    for chunk_type, data, _after_idat in png_info(metadata).chunks:
        PngImagePlugin.putchunk(chunks, chunk_type, data)
    return png[:_IHDR_END] + chunks.getvalue() + png[_IHDR_END:]


def to_jsonable(value: object) -> object:
    """Plain JSON types from NumPy scalars/arrays, tuples, Paths; NaN and +-inf become None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def json_bytes(data: Mapping) -> bytes:
    return (json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, data: Mapping) -> Path:
    """Write `data` as indented UTF-8 JSON (NaN/inf as null), atomically."""
    return atomic_write_bytes(path, json_bytes(data))


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A compressed .npz of numeric/bool arrays; object arrays are refused (they would need pickle)."""
    plain = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"array {name!r} has dtype {array.dtype}; only bool/integer/float arrays can be saved")
        plain[name] = array
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **plain)
    return buffer.getvalue()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a compressed .npz (readable with np.load(..., allow_pickle=False)), atomically."""
    return atomic_write_bytes(path, npz_bytes(arrays))


def write_png(path: str | os.PathLike, png: bytes, metadata: Mapping[str, str] | None = None) -> Path:
    """Write encoded PNG bytes, with provenance text chunks added, atomically."""
    return atomic_write_bytes(path, add_png_text(png, metadata) if metadata else png)


def make_dir(path: str | os.PathLike) -> Path:
    """Create a folder (and parents) and check it is writable; OSError naming the folder otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OSError(error.errno, f"cannot write into folder {path}: {error.strerror or error}") from None
    return path


def write_run_outputs(out_dir: str | os.PathLike, *, adv_png: bytes, metrics: Mapping,
                      arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str],
                      extra_pngs: Mapping[str, bytes] | None = None) -> dict[str, Path]:
    """Write one attacked image's files into `out_dir`: adv.png and the `extra_pngs` ({file name: PNG bytes})
    with `metadata` text chunks, metrics.json, arrays.npz. Returns {file name: path}. Figures are saved
    separately (gse_algo.figures.save_figure)."""
    out = make_dir(out_dir)
    written = {name: write_png(out / name, png, metadata) for name, png in (extra_pngs or {}).items()}
    return {**written, "adv.png": write_png(out / "adv.png", adv_png, metadata),
            "metrics.json": write_json(out / "metrics.json", metrics),
            "arrays.npz": write_npz(out / "arrays.npz", arrays)}


_UNSAFE = re.compile(r"[^\w.-]+")  # \w: letters (any script), digits and _
RESULT_MARKER = "metrics.json"  # a folder holding it is a result folder, which --overwrite may replace


def safe_folder_name(stem: str) -> str:
    """A file stem as one folder name: runs of characters other than letters, digits, '_', '.', '-' become '_',
    leading dots are dropped ('..' and '.' name no folder of their own), at most 100 characters, else 'image'."""
    return _UNSAFE.sub("_", stem).lstrip(".")[:100] or "image"


def result_folder(out: Path, name: str, overwrite: bool, taken: set[str]) -> tuple[Path, str | None]:
    """The folder OUT/<name> for one result and a note when it differs from the plain choice.

    An existing folder is kept: the result goes to <name>-2, -3, ... instead, unless `overwrite` is set and the
    folder is an earlier result (a real folder holding RESULT_MARKER, not a link), which is then replaced. `taken` holds the names already
    used in this run (compared case-insensitively); the chosen one is added.
    """
    def free(candidate: str) -> bool:
        return candidate.lower() not in taken and not os.path.lexists(out / candidate)

    chosen, n = name, 2
    replaceable = (overwrite and not (out / name).is_symlink() and (out / name / RESULT_MARKER).is_file()
                   and name.lower() not in taken)
    while not (replaceable and chosen == name) and not free(chosen):
        chosen, n = f"{name}-{n}", n + 1
    taken.add(chosen.lower())
    note = None
    if chosen != name and os.path.lexists(out / name):
        kept = "is not a result folder, so it is kept" if overwrite else "exists (--overwrite replaces it)"
        note = f"{out / name} {kept}; writing {out / chosen}"
    elif replaceable and os.path.lexists(out / name):
        note = f"replacing {out / name}"
    return out / chosen, note


@contextmanager
def staged_folder(final: Path, replace: bool = False) -> Iterator[Path]:
    """Write a result into a hidden folder beside `final` and move it to `final` only once complete.

    On any error or interrupt the hidden folder is removed and `final` is left as it was. With `replace`, an
    earlier result at `final` is moved aside first and deleted only once the new one is in place.
    """
    stage = make_dir(final.with_name(f".{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:6]}"))
    try:
        yield stage
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:6]}") if replace and final.exists() else None
        if aside is not None:
            os.replace(final, aside)
        try:
            os.replace(stage, final)
        except BaseException:
            if aside is not None:
                os.replace(aside, final)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

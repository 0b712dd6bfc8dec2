"""Session files: a whole run in one zip (session.json + arrays.npz + image.png), no pickle, written atomically.

Qt-free: it reads and writes a RunHistory, the engine's result record and plain dicts. Members:
- session.json: FORMAT, VERSION, what was run (the `info` dict below) and the result's scalar fields;
- arrays.npz: the model input image the views show, the trace (`RunHistory.to_arrays`, prefix "trace_"), the
  result's arrays (prefix "result_" / "steps_" for the per-search-step records) and the integers of the finalized
  8- and 16-bit files ("file_8bit" uint8, "file_16bit" uint16, [3,H,W], when the run made them); numeric dtypes only;
- image.png: the opened image file's pixels as a lossless 16-bit PNG, so the run can be repeated without it.

`info` holds: image_name, image_path, model_spec, model_name, class_names, targeted, label, clean_class,
top_classes, top_probs, params (GSEParams fields of the run), preset, device, cam (the CAM panel's settings or None);
the CAM array itself, when one was shown, is `cam` in arrays.npz.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gse_algo.export import atomic_write_bytes, json_bytes, npz_bytes
from gse_algo.params import RANGES, GSEParams
from gse_algo.safe_zip import read_member, read_npz
from gse_algo.snapshot import GSEResult, StepRecord
from gse_desktop.history import RunHistory

FORMAT = "gse-desktop-session"
VERSION = 1
SUFFIX = ".gses"
MEMBERS = ("session.json", "arrays.npz", "image.png")
REQUIRED_INFO = {"image_name": str, "model_spec": str, "model_name": str, "class_names": list, "targeted": bool,
                 "label": int, "clean_class": int, "top_classes": list, "top_probs": list, "params": dict}
_RESULT_ARRAYS = ("x_adv", "delta", "success", "adv_pred", "chosen_step", "lambda0")
_RESULT_SCALARS = ("n_forward_backward", "n_forward", "time_s")
_STEP_FIELDS = tuple(f.name for f in fields(StepRecord))
# Size limits, checked on the zip and .npy headers before anything is decompressed or allocated.
MAX_FILE_BYTES = 1 << 30
LIMITS = {"session.json": 16 << 20, "arrays.npz": 512 << 20, "image.png": 256 << 20}  # uncompressed members
MAX_ARRAY_BYTES = 256 << 20  # one array in arrays.npz
MAX_ARRAYS_BYTES = 512 << 20  # every array together
MAX_SNAPSHOTS = 200_000
MAX_BATCH = 64
MAX_CLASSES = 100_000
INF_ALLOWED = {"trace_log10_lambda", "trace_scalar_lambda_b", "steps_lambda_b"}  # lambda may overflow (pitfall 15)


class SessionError(Exception):
    """A session file that cannot be written or read; the text is one readable line."""


class Cancelled(Exception):
    """Raised by a `progress` callback to stop reading or writing a session (or another long file job): nothing is
    returned and no file is written."""


Progress = Callable[[float], None]  # called with the share done; it may raise Cancelled
FILE_ARRAYS = {8: ("file_8bit", np.uint8), 16: ("file_16bit", np.uint16)}


@dataclass
class Session:
    """One saved run. `image` is the float32 [H,W,3] model input the views show; `source_png` the opened file."""

    history: RunHistory
    image: np.ndarray
    source_png: bytes
    info: dict
    cam: np.ndarray | None = None  # the CAM shown when it was saved, float32 [H,W]
    files: dict[int, np.ndarray] = field(default_factory=dict)  # bits -> the finalized file's integers [3,H,W]


def save_session(path: str | os.PathLike, session: Session, progress: Progress | None = None) -> Path:
    """Write the session to `path` atomically (an existing file is replaced only once the new one is complete);
    `progress` hears of each stage."""
    report = progress or (lambda _: None)
    arrays = {"image": np.asarray(session.image, np.float32)}
    if session.cam is not None:
        arrays["cam"] = np.asarray(session.cam, np.float32)
    arrays.update({name: np.asarray(session.files[bits], dtype) for bits, (name, dtype) in FILE_ARRAYS.items()
                   if bits in session.files})
    arrays.update({f"trace_{k}": v for k, v in session.history.to_arrays().items()})
    report(0.2)
    result = session.history.result
    meta = {"format": FORMAT, "version": VERSION, "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": dict(session.info.get("versions") or {}), "info": session.info, "result": None}
    if result is not None:
        arrays.update(_result_arrays(result))
        meta["result"] = {name: getattr(result, name) for name in _RESULT_SCALARS}
    packed = npz_bytes(arrays)
    report(0.9)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("session.json", json_bytes(meta), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("arrays.npz", packed)  # already compressed
        zf.writestr("image.png", session.source_png)
    report(1.0)  # the last chance to cancel: the file is there once it returns
    return atomic_write_bytes(path, buffer.getvalue())


def load_session(path: str | os.PathLike, progress: Progress | None = None) -> Session:
    """Read a session file; SessionError with a one-line reason for anything that is not a complete, valid session.

    Nothing is decompressed or allocated before its size is checked (LIMITS, gse_algo.safe_zip), and the whole
    session (types, shapes, ranges, class indices, finite values) is checked before it is returned. `progress`
    hears of each stage and of the trace being rebuilt; Cancelled raised by it passes through.
    """
    path = Path(path)
    report = progress or (lambda _: None)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SessionError(f"{path.name}: the session file is larger than {MAX_FILE_BYTES >> 20} MiB")
        with zipfile.ZipFile(path) as zf:
            missing = [name for name in MEMBERS if name not in zf.namelist()]
            if missing:
                raise SessionError(f"{path.name}: not a GSE session (missing {', '.join(missing)})")
            meta = json.loads(read_member(zf, "session.json", LIMITS["session.json"]).decode("utf-8"))
            _check_meta(path, meta)
            arrays = read_npz(read_member(zf, "arrays.npz", LIMITS["arrays.npz"]), MAX_ARRAY_BYTES,
                              MAX_ARRAYS_BYTES)
            source_png = read_member(zf, "image.png", LIMITS["image.png"])
        report(0.2)
        return _build(meta, arrays, source_png, lambda f: report(0.2 + 0.8 * f))
    except (SessionError, Cancelled):
        raise
    except FileNotFoundError:
        raise SessionError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SessionError(f"{path}: a folder, not a session file") from None
    except zipfile.BadZipFile:
        raise SessionError(f"{path.name}: not a GSE session file (not a zip archive, or a damaged one)") from None
    except OSError as error:
        raise SessionError(f"{path.name}: cannot read the session ({error.strerror or error})") from None
    except RecursionError:
        raise SessionError(f"{path.name}: damaged session file (session.json is nested too deeply)") from None
    except MemoryError:
        raise SessionError(f"{path.name}: not enough memory to read the session") from None
    except Exception as error:  # noqa: BLE001 - zipfile, zlib, json and numpy raise many types for damaged data
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise SessionError(f"{path.name}: damaged session file ({reason})") from None


def _check_meta(path: Path, meta: object) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SessionError(f"{path.name}: not a GSE session (session.json has no '{FORMAT}' format tag)")
    if meta.get("version") != VERSION:
        raise SessionError(f"{path.name}: session format version {meta.get('version')!r:.40}; "
                           f"this program reads version {VERSION}")
    info = meta.get("info")
    if not isinstance(info, dict):
        raise SessionError(f"{path.name}: damaged session file (no run description)")
    for key, kind in REQUIRED_INFO.items():
        if not isinstance(info.get(key), kind) or (kind is int and isinstance(info[key], bool)):
            raise SessionError(f"{path.name}: damaged session file (info.{key} missing or not a {kind.__name__})")


def _build(meta: dict, arrays: dict[str, np.ndarray], source_png: bytes, progress: Progress) -> Session:
    info = meta["info"]
    params = check_info(info)
    image = arrays.get("image")
    if image is None or image.dtype != np.float32 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the image array is missing or not float32 [H,W,3] "
                         f"({None if image is None else (image.shape, str(image.dtype))})")
    check_arrays(arrays, len(info["class_names"]), params, image.shape[:2])
    history = RunHistory.from_arrays({k[len("trace_"):]: v for k, v in arrays.items() if k.startswith("trace_")},
                                     progress)
    if not len(history):
        raise ValueError("the session holds no iterations")
    if history.shape[-2:] != image.shape[:2]:
        raise ValueError("the trace and the image have different sizes")
    cam = arrays.get("cam")
    if cam is not None and cam.shape != image.shape[:2]:
        raise ValueError(f"the CAM has shape {cam.shape}, the image {image.shape[:2]}")
    if meta.get("result") is not None:
        history.set_result(_result(arrays, meta["result"], image.shape[:2]))
    files = {bits: arrays[name] for bits, (name, _) in FILE_ARRAYS.items() if name in arrays}
    return Session(history, image, source_png, info, cam, files)


def check_info(info: dict) -> GSEParams:
    """ValueError unless the run description is consistent (class indices, probabilities, parameters, CAM
    settings); returns the run's parameters."""
    names = info["class_names"]
    if not (2 <= len(names) <= MAX_CLASSES and all(isinstance(n, str) for n in names)):
        raise ValueError(f"info.class_names must be 2 to {MAX_CLASSES} strings")
    for key in ("label", "clean_class"):
        _class_index(info[key], len(names), f"info.{key}")
    top, probs = info["top_classes"], info["top_probs"]
    if not (1 <= len(top) == len(probs) <= len(names)):
        raise ValueError("info.top_classes and info.top_probs must be lists of the same length")
    for i, (cls, prob) in enumerate(zip(top, probs)):
        _class_index(cls, len(names), f"info.top_classes[{i}]")
        if not _number(prob) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"info.top_probs[{i}] is not a probability ({prob!r:.40})")
    params = info["params"]
    missing = sorted(set(RANGES) - set(params))
    if missing:
        raise ValueError(f"info.params lacks {', '.join(missing)}")
    unknown = sorted(set(params) - {f.name for f in fields(GSEParams)})
    if unknown:
        raise ValueError(f"info.params holds unknown fields ({', '.join(unknown)[:120]})")
    run_params = GSEParams(**params)  # validate: types and ranges, no string conversion
    for key in ("image_path", "preset", "device"):
        if info.get(key) is not None and not isinstance(info[key], str):
            raise ValueError(f"info.{key} must be a string")
    shown = info.get("shown")
    if shown is not None and not (isinstance(shown, list) and len(shown) == 2 and all(_integer(v) for v in shown)):
        raise ValueError("info.shown must be [step, iteration]")
    _check_cam_state(info.get("cam"), len(names))
    return run_params


def _check_cam_state(cam: object, n_classes: int) -> None:
    """The CAM panel's settings: None or a dict whose known keys have their types."""
    if cam is None:
        return
    if not isinstance(cam, dict):
        raise ValueError(f"info.cam must be the CAM settings or null, not a {type(cam).__name__}")
    for key in ("method", "layer", "class_role", "image"):
        if cam.get(key) is not None and not isinstance(cam[key], str):
            raise ValueError(f"info.cam.{key} must be a string")
    if cam.get("class_index") is not None:
        _class_index(cam["class_index"], n_classes, "info.cam.class_index")
    for key, low, high in (("top_percent", 0, 100), ("opacity", 0, 1)):
        if cam.get(key) is not None and not (_number(cam[key]) and low <= cam[key] <= high):
            raise ValueError(f"info.cam.{key} must be a number in [{low}, {high}]")
    for key in ("overlap", "interpretability_score"):
        values = cam.get(key)
        if values is not None and not (isinstance(values, dict)
                                       and all(v is None or _number(v) for v in values.values())):
            raise ValueError(f"info.cam.{key} must map names to numbers")
    shown = cam.get("shown_cam")
    if shown is not None:
        if not (isinstance(shown, dict) and all(isinstance(shown.get(k), str) for k in ("image", "method", "layer"))):
            raise ValueError("info.cam.shown_cam must name the image, method and layer")
        _class_index(shown.get("class_index"), n_classes, "info.cam.shown_cam.class_index")


def check_arrays(arrays: dict[str, np.ndarray], n_classes: int, params: GSEParams, size: tuple[int, int]) -> None:
    """ValueError unless the arrays are finite (NaN nowhere; +inf only where lambda may overflow, pitfall 15),
    images in [0,1], class indices in range, and the trace's shape, steps and iterations fit the run."""
    for name, array in arrays.items():
        if array.dtype.kind == "f":
            bad = np.isnan(array).any() if name in INF_ALLOWED else not np.isfinite(array).all()
            if bad:
                raise ValueError(f"array {name} holds {'NaN' if name in INF_ALLOWED else 'NaN or inf'} values")
    for name in ("image", "cam", "result_x_adv"):
        if name in arrays and arrays[name].size and not (arrays[name].min() >= 0 and arrays[name].max() <= 1):
            raise ValueError(f"array {name} has values outside [0, 1]")
    for name in ("trace_scalar_pred", "trace_scalar_top_classes", "result_adv_pred"):
        if name in arrays and not _indices_in(arrays[name], 0, n_classes):
            raise ValueError(f"array {name} holds class indices outside 0..{n_classes - 1}")
    shape = arrays.get("trace_shape")
    if shape is None or shape.dtype.kind not in "iu" or shape.shape != (4,):
        raise ValueError("the trace has no [B, C, H, W] shape")
    b, c, h, w = (int(v) for v in shape)
    if c != 3 or (h, w) != tuple(size) or not 1 <= b <= MAX_BATCH:
        raise ValueError(f"the trace's shape {[b, c, h, w]} does not fit the image {list(size)}")
    for name, low in (("trace_scalar_acp", 0), ("trace_scalar_anc", 0), ("trace_scalar_d20", -1)):
        if name in arrays and not _indices_in(arrays[name], low, h * w + 1):  # counts of pixels, clusters, patches
            raise ValueError(f"array {name} holds counts outside {low}..{h * w}")
    for name, dtype in FILE_ARRAYS.values():
        if name in arrays and (arrays[name].dtype != dtype or arrays[name].shape != (3, h, w)):
            raise ValueError(f"array {name} is not {np.dtype(dtype).name} [3, {h}, {w}]")
    pixels = b * h * w
    for name, tail in (("trace_log10_lambda", (b, h, w)), ("trace_frozen_bits", ((pixels + 7) // 8,))):
        if name not in arrays or arrays[name].ndim != 1 + len(tail) or arrays[name].shape[1:] != tail:
            raise ValueError(f"array {name} does not fit the trace's shape")
    steps, iterations = arrays.get("trace_step"), arrays.get("trace_iteration")
    if steps is None or iterations is None or len(steps) > MAX_SNAPSHOTS:
        raise ValueError(f"the trace must list the step and iteration of at most {MAX_SNAPSHOTS:,} snapshots")
    if not (_indices_in(steps, 0, params.search_steps) and _indices_in(iterations, 0, params.iters)):
        raise ValueError("the trace's steps or iterations are outside the run's search steps and iterations")
    if "result_chosen_step" in arrays and not _indices_in(arrays["result_chosen_step"], -1, params.search_steps):
        raise ValueError("array result_chosen_step is outside the run's search steps")


def _indices_in(array: np.ndarray, low: int, high: int) -> bool:
    return array.dtype.kind in "iu" and (array.size == 0 or (int(array.min()) >= low and int(array.max()) < high))


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _class_index(value: object, n_classes: int, what: str) -> None:
    if not (_integer(value) and 0 <= value < n_classes):
        raise ValueError(f"{what} {value!r:.40} is not a class index of the {n_classes} class names")


def _result_arrays(result: GSEResult) -> dict[str, np.ndarray]:
    out = {}
    for name in _RESULT_ARRAYS:
        out[f"result_{name}"] = np.asarray(getattr(result.to_numpy(), name))
    for name in _STEP_FIELDS:
        out[f"steps_{name}"] = np.array([getattr(record, name) for record in result.steps])
    return out


def _result(arrays: dict[str, np.ndarray], scalars: dict, size: tuple[int, int]) -> GSEResult:
    if not isinstance(scalars, dict) or not all(_number(scalars.get(name)) and scalars[name] >= 0
                                                for name in _RESULT_SCALARS):
        raise ValueError(f"the result must give {', '.join(_RESULT_SCALARS)} as numbers >= 0")
    values = {name: arrays[f"result_{name}"] for name in _RESULT_ARRAYS}
    if values["x_adv"].ndim != 4 or values["x_adv"].shape[-2:] != size or values["delta"].shape != values["x_adv"].shape:
        raise ValueError(f"the result's image has shape {values['x_adv'].shape}, not [B,3,{size[0]},{size[1]}]")
    n_steps = len(arrays["steps_step"])
    steps = tuple(StepRecord(step=int(arrays["steps_step"][i]),
                             **{name: arrays[f"steps_{name}"][i] for name in _STEP_FIELDS if name != "step"})
                  for i in range(n_steps))
    return GSEResult(**values, steps=steps, **{name: scalars[name] for name in _RESULT_SCALARS})

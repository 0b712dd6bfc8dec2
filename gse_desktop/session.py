"""Session files: the runs of one image in one zip (session.json + arrays.npz + image.png), no pickle, written
atomically.

Qt-free: it reads and writes RunHistory objects, the engine's result records and plain dicts. Members:
- session.json: FORMAT, VERSION, `runs` (per run: what was run, the `info` dict below, and the result's scalar
  fields), `shown` (the run on screen) and `compared` (the two runs compared, A first, when a pair was);
- arrays.npz: the model input image the views show (`image`) and per run i, prefixed "r{i}_": the trace
  (`RunHistory.to_arrays`, "trace_"), the result's arrays ("result_" / "steps_" for the per-search-step records),
  the CAM shown ("cam"), the integers of the finalized 8- and 16-bit files ("file_8bit" uint8, "file_16bit"
  uint16, [3,H,W], when the run made them) and its model input when it differs from the session's ("image");
  numeric dtypes only;
- image.png: the opened image file's pixels as a lossless 16-bit PNG, so the runs can be repeated without it.

`info` holds: name (the run list's), attack, attack_title, views (what the attack shows beyond every run's
views), settings (the registry's values), measured (gse_desktop.records.Measured as a dict, or None), image_name,
image_path, model_spec, model_name, class_names, targeted, label, clean_class, top_classes, top_probs, params (GSE
only: the GSEParams fields of the run), preset, device, cam (the CAM panel's settings or None). Format 1 files
(one GSE run, arrays without the prefix) are read too.
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
from gse_algo.safe_zip import read_member, read_npz, repeated, unique_members
from gse_algo.snapshot import GSEResult, StepRecord
from gse_desktop.history import RunHistory
from gse_desktop.records import GSE
from gse_desktop.state import MAX_KEPT_RUNS, MAX_NAME, run_name

FORMAT = "gse-desktop-session"
VERSION = 2
READABLE = (1, 2)  # format 1: one GSE run
SUFFIX = ".gses"
MEMBERS = ("session.json", "arrays.npz", "image.png")
REQUIRED_INFO = {"image_name": str, "model_spec": str, "model_name": str, "class_names": list, "targeted": bool,
                 "label": int, "clean_class": int, "top_classes": list, "top_probs": list}
MEASURED_FIELDS = {"success": bool, "adv_class": int, "acp": int, "channel_l0": int, "anc": int, "d20": int,
                   "l2": float, "linf": float, "fools_at_8bit": bool, "time_s": float, "n_forward": int,
                   "n_backward": int}
MAX_SETTINGS = 64  # parameters of one attack
MAX_TEXT = 200  # characters of a name, an attack's title or a setting's text
_RESULT_ARRAYS = ("x_adv", "delta", "success", "adv_pred", "chosen_step", "lambda0")
_RESULT_SCALARS = ("n_forward_backward", "n_forward", "time_s")
_STEP_FIELDS = tuple(f.name for f in fields(StepRecord))
# Size limits, checked on the zip and .npy headers before anything is decompressed or allocated.
MAX_FILE_BYTES = 1 << 30
LIMITS = {"session.json": 16 << 20, "arrays.npz": 512 << 20, "image.png": 256 << 20}  # uncompressed members
MAX_ARRAY_BYTES = 256 << 20  # one array in arrays.npz
MAX_ARRAYS_BYTES = 512 << 20  # every array together
ARRAYS_PER_RUN = 48  # a run writes 41: its trace, result, search steps, CAM, files and model input
MAX_ARRAYS = 1 + MAX_KEPT_RUNS * ARRAYS_PER_RUN  # members of arrays.npz (the session's image and every run's)
MAX_SNAPSHOTS = 200_000
MAX_BATCH = 64
MAX_CLASSES = 100_000
MAX_LAYERS = 100_000  # module names of a model (the CAM panel's layer list)
INF_ALLOWED = {"trace_log10_lambda", "trace_scalar_lambda_b", "steps_lambda_b"}  # lambda may overflow (pitfall 15)
FLOAT_ARRAYS = ("cam", "result_x_adv", "result_delta", "trace_values", "trace_log10_lambda")  # written as floats
NAN_ALLOWED = {"trace_scalar_lambda_b", "trace_scalar_cw_loss", "result_lambda0"}  # a library attack has none


class SessionError(Exception):
    """A session file that cannot be written or read; the text is one readable line."""


class Cancelled(Exception):
    """Raised by a `progress` callback to stop reading or writing a session (or another long file job): nothing is
    returned and no file is written."""


Progress = Callable[[float], None]  # called with the share done; it may raise Cancelled
FILE_ARRAYS = {8: ("file_8bit", np.uint8), 16: ("file_16bit", np.uint16)}


@dataclass
class SavedRun:
    """One run of a session: its frames (and result), its description (`info`), the CAM shown (float32 [H,W])."""

    history: RunHistory
    info: dict
    cam: np.ndarray | None = None
    image: np.ndarray | None = None  # its model input where it differs from the session's (another model's size)
    files: dict[int, np.ndarray] = field(default_factory=dict)  # bits -> the finalized file's integers [3,H,W]


@dataclass
class Session:
    """The runs of one image. `image` is the float32 [H,W,3] model input the views show; `source_png` the opened
    file; `runs[shown]` is the run on screen; `compared` the indices of the two runs compared (A, B), if any."""

    image: np.ndarray
    source_png: bytes
    runs: list[SavedRun]
    shown: int = 0
    compared: tuple[int, int] | None = None

    @property
    def history(self) -> RunHistory:
        return self.runs[self.shown].history

    @property
    def info(self) -> dict:
        return self.runs[self.shown].info

    @property
    def cam(self) -> np.ndarray | None:
        return self.runs[self.shown].cam

    @property
    def files(self) -> dict[int, np.ndarray]:
        return self.runs[self.shown].files


def save_session(path: str | os.PathLike, session: Session, progress: Progress | None = None) -> Path:
    """Write the session to `path` atomically (an existing file is replaced only once the new one is complete);
    `progress` hears of each stage."""
    report = progress or (lambda _: None)
    if not 1 <= len(session.runs) <= MAX_KEPT_RUNS or not 0 <= session.shown < len(session.runs):
        raise ValueError(f"a session holds 1 to {MAX_KEPT_RUNS} runs, one of them shown")
    if session.compared is not None and not _pair(list(session.compared), len(session.runs)):
        raise ValueError("the runs compared are not two of the session's runs")
    arrays = {"image": np.asarray(session.image, np.float32)}
    runs = []
    for i, run in enumerate(session.runs):
        prefix = f"r{i}_"
        for name, array in (("cam", run.cam), ("image", run.image)):
            if array is not None:
                arrays[prefix + name] = np.asarray(array, np.float32)
        arrays.update({prefix + name: np.asarray(run.files[bits], dtype) for bits, (name, dtype) in FILE_ARRAYS.items()
                       if bits in run.files})
        arrays.update({f"{prefix}trace_{k}": v for k, v in run.history.to_arrays().items()})
        report(0.8 * (i + 1) / len(session.runs))
        result = run.history.result
        if result is not None:
            arrays.update({prefix + k: v for k, v in _result_arrays(result).items()})
        runs.append({"info": run.info,
                     "result": None if result is None else {name: getattr(result, name) for name in _RESULT_SCALARS}})
    meta = {"format": FORMAT, "version": VERSION, "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": dict(session.info.get("versions") or {}), "runs": runs, "shown": session.shown,
            **({} if session.compared is None else {"compared": list(session.compared)})}
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
    hears of each stage and of the traces being rebuilt; Cancelled raised by it passes through.
    """
    report = progress or (lambda _: None)
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SessionError(f"{path.name}: the session file is larger than {MAX_FILE_BYTES >> 20} MiB")
        with zipfile.ZipFile(path) as zf:
            names = {member.filename for member in unique_members(zf)}
            missing = [name for name in MEMBERS if name not in names]
            if missing:
                raise SessionError(f"{path.name}: not a GSE session (missing {', '.join(missing)})")
            meta = json.loads(read_member(zf, "session.json", LIMITS["session.json"]).decode("utf-8"),
                              object_pairs_hook=_unique_keys)
            _check_meta(path, meta)
            arrays = read_npz(read_member(zf, "arrays.npz", LIMITS["arrays.npz"]), MAX_ARRAY_BYTES,
                              MAX_ARRAYS_BYTES, MAX_ARRAYS)
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


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object of session.json; ValueError for a key given twice (json would keep the last silently)."""
    twice = repeated(key for key, _ in pairs)
    if twice is not None:
        raise ValueError(f"session.json gives the key {twice!r:.40} twice")
    return dict(pairs)


def _check_meta(path: Path, meta: object) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SessionError(f"{path.name}: not a GSE session (session.json has no '{FORMAT}' format tag)")
    if meta.get("version") not in READABLE:
        raise SessionError(f"{path.name}: session format version {meta.get('version')!r:.40}; "
                           f"this program reads versions {', '.join(map(str, READABLE))}")
    runs = _saved_runs(meta)
    if not isinstance(runs, list) or not 1 <= len(runs) <= MAX_KEPT_RUNS:
        raise SessionError(f"{path.name}: damaged session file (not 1 to {MAX_KEPT_RUNS} runs)")
    for i, run in enumerate(runs):
        info = run.get("info") if isinstance(run, dict) else None
        if not isinstance(info, dict):
            raise SessionError(f"{path.name}: damaged session file (run {i + 1} has no description)")
        for key, kind in REQUIRED_INFO.items():
            if not isinstance(info.get(key), kind) or (kind is int and isinstance(info[key], bool)):
                raise SessionError(f"{path.name}: damaged session file (info.{key} missing or not a {kind.__name__})")
    shown = meta.get("shown", 0)
    if not (_integer(shown) and 0 <= shown < len(runs)):
        raise SessionError(f"{path.name}: damaged session file (the run shown is not one of its runs)")
    if "compared" in meta and not _pair(meta["compared"], len(runs)):
        raise SessionError(f"{path.name}: damaged session file (the runs compared are not two of its runs)")


def _pair(value: object, n_runs: int) -> bool:
    """Two different run indices of a session with n_runs runs."""
    return (isinstance(value, list) and len(value) == 2 and all(_integer(v) and 0 <= v < n_runs for v in value)
            and value[0] != value[1])


def _saved_runs(meta: dict) -> object:
    """The runs of session.json: format 2's list, or format 1's one run."""
    if meta["version"] == 1:
        return [{"info": meta.get("info"), "result": meta.get("result")}]
    return meta.get("runs")


def _check_image(image: np.ndarray | None) -> None:
    if image is None or image.dtype != np.float32 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the image array is missing or not float32 [H,W,3] "
                         f"({None if image is None else (image.shape, str(image.dtype))})")


def _build(meta: dict, arrays: dict[str, np.ndarray], source_png: bytes, progress: Progress) -> Session:
    image = arrays.get("image")
    _check_image(image)
    saved_runs, runs = _saved_runs(meta), []
    for i, saved in enumerate(saved_runs):
        prefix = "" if meta["version"] == 1 else f"r{i}_"
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and k != "image"}
        try:
            runs.append(_run(saved, {"image": image, **own}, image,
                             lambda f, i=i: progress((i + f) / len(saved_runs))))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ValueError(f"run {i + 1}: {error}") from None
    compared = meta.get("compared")
    return Session(image, source_png, runs, int(meta.get("shown", 0)),
                   None if compared is None else (int(compared[0]), int(compared[1])))


def _run(saved: dict, arrays: dict[str, np.ndarray], shared: np.ndarray, progress: Progress) -> SavedRun:
    """One run from its arrays (prefix removed); its `image` is the session's unless it saved its own."""
    info, image = saved["info"], arrays["image"]
    _check_image(image)
    limits = check_info(info)
    check_arrays(arrays, len(info["class_names"]), limits, image.shape[:2], info.get("attack", GSE) != GSE)
    history = RunHistory.from_arrays({k[len("trace_"):]: v for k, v in arrays.items() if k.startswith("trace_")},
                                     progress)
    if not len(history):
        raise ValueError("the session holds no iterations")
    if history.shape[-2:] != image.shape[:2]:
        raise ValueError("the trace and the image have different sizes")
    cam = arrays.get("cam")
    if cam is not None and cam.shape != image.shape[:2]:
        raise ValueError(f"the CAM has shape {cam.shape}, the image {image.shape[:2]}")
    if saved.get("result") is not None:
        history.set_result(_result(arrays, saved["result"], image.shape[:2]))
    files = {bits: arrays[name] for bits, (name, _) in FILE_ARRAYS.items() if name in arrays}
    return SavedRun(history, info, cam, None if image is shared else image, files)


def check_info(info: dict) -> tuple[int, int]:
    """ValueError unless the run description is consistent (class indices, probabilities, attack and parameters,
    measured metrics, CAM settings); returns the (search steps, iterations) a trace of the run can hold."""
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
    limits = _check_attack(info)
    for key in ("image_path", "preset", "device"):
        if info.get(key) is not None and not isinstance(info[key], str):
            raise ValueError(f"info.{key} must be a string")
    shown = info.get("shown")
    if shown is not None and not (isinstance(shown, list) and len(shown) == 2 and all(_integer(v) for v in shown)):
        raise ValueError("info.shown must be [step, iteration]")
    _check_cam_state(info.get("cam"), len(names))
    _check_measured(info.get("measured"), len(names))
    _check_read_back(info)
    return limits


def _check_read_back(info: dict) -> None:
    """The optional fields the app reads back (gse_desktop.session_records): thread count, seed, library versions,
    the model's layers and CAM layer, the engine's record."""
    for key, low in (("threads", 1), ("seed", 0)):
        if key in info and not (_integer(info[key]) and info[key] >= low):
            raise ValueError(f"info.{key} must be an integer >= {low} (got {info[key]!r:.40})")
    versions = info.get("versions") or {}
    if not (isinstance(versions, dict) and len(versions) <= MAX_SETTINGS
            and all(isinstance(v, str) and len(v) <= MAX_TEXT for v in versions.values())):
        raise ValueError("info.versions must map library names to version strings")
    layers = info.get("layers") or []
    if not (isinstance(layers, list) and len(layers) <= MAX_LAYERS and all(isinstance(n, str) for n in layers)):
        raise ValueError(f"info.layers must be a list of at most {MAX_LAYERS:,} layer names")
    for key, kind in (("cam_layer", str), ("record", dict)):
        if info.get(key) is not None and not isinstance(info[key], kind):
            raise ValueError(f"info.{key} must be a {'string' if kind is str else 'JSON object'} or null")


def _check_attack(info: dict) -> tuple[int, int]:
    """The attack's name, title, views and settings; a GSE run's parameters (GSEParams checks them)."""
    attack = info.get("attack", GSE)
    if not (isinstance(attack, str) and 0 < len(attack) <= MAX_TEXT and attack.replace("_", "").isalnum()):
        raise ValueError("info.attack must be an attack's registry name")
    name, title = info.get("name"), info.get("attack_title")
    if name is not None and not (isinstance(name, str) and run_name(name) == name):
        raise ValueError(f"info.name must be one line of at most {MAX_NAME} printable characters, spaces single "
                         f"({name!r:.40})")
    if title is not None and not (isinstance(title, str) and len(title) <= MAX_TEXT and title.isprintable()):
        raise ValueError(f"info.attack_title must be one line of at most {MAX_TEXT} printable characters")
    views = info.get("views", [])
    if not (isinstance(views, list) and len(views) <= 8 and all(isinstance(v, str) and len(v) <= 40 for v in views)):
        raise ValueError("info.views must be a short list of names")
    settings = info.get("settings", {})
    if not (isinstance(settings, dict) and len(settings) <= MAX_SETTINGS
            and all(isinstance(k, str) and len(k) <= 40 and k.isidentifier() and _setting(v)
                    for k, v in settings.items())):
        raise ValueError(f"info.settings must map at most {MAX_SETTINGS} names to numbers, strings or booleans")
    if attack != GSE:
        return 1, MAX_SNAPSHOTS  # one "search step": the frames of the library call
    params = info.get("params")
    if not isinstance(params, dict):
        raise ValueError("info.params (the GSE parameters) is missing")
    missing = sorted(set(RANGES) - set(params))
    if missing:
        raise ValueError(f"info.params lacks {', '.join(missing)}")
    unknown = sorted(set(params) - {f.name for f in fields(GSEParams)})
    if unknown:
        raise ValueError(f"info.params holds unknown fields ({', '.join(unknown)[:120]})")
    run_params = GSEParams(**params)  # validate: types and ranges, no string conversion
    return run_params.search_steps, run_params.iters


def _setting(value: object) -> bool:
    return value is None or isinstance(value, bool) or _number(value) or (isinstance(value, str)
                                                                           and len(value) <= MAX_TEXT)


def _check_measured(measured: object, n_classes: int) -> None:
    """None, or a Measured record: every field with its type, sizes and counts >= 0."""
    if measured is None:
        return
    if not (isinstance(measured, dict) and set(measured) == set(MEASURED_FIELDS)):
        raise ValueError(f"info.measured must hold {', '.join(MEASURED_FIELDS)}")
    for key, kind in MEASURED_FIELDS.items():
        value = measured[key]
        ok = isinstance(value, bool) if kind is bool else (_integer(value) if kind is int else _number(value))
        if not ok or (kind is not bool and value < 0):
            raise ValueError(f"info.measured.{key} must be a {'boolean' if kind is bool else 'number >= 0'}")
    _class_index(measured["adv_class"], n_classes, "info.measured.adv_class")


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


def check_arrays(arrays: dict[str, np.ndarray], n_classes: int, limits: tuple[int, int], size: tuple[int, int],
                 library: bool = False) -> None:
    """ValueError unless the arrays are finite (NaN nowhere but, for a library attack, in what only GSE has; +inf
    only where lambda may overflow, pitfall 15), images in [0,1], class indices in range, and the trace's shape,
    steps and iterations fit the run (`limits`: its search steps and iterations)."""
    for name in FLOAT_ARRAYS:
        if name in arrays and arrays[name].dtype.kind != "f":
            raise ValueError(f"array {name} holds {arrays[name].dtype}, not floating-point values")
    for name, array in arrays.items():
        if array.dtype.kind == "f":
            values = array[~np.isnan(array)] if library and name in NAN_ALLOWED else array
            bad = np.isnan(values).any() if name in INF_ALLOWED else not np.isfinite(values).all()
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
    pixels = b * h * w
    for name, tail in (("trace_log10_lambda", (b, h, w)), ("trace_frozen_bits", ((pixels + 7) // 8,))):
        if name not in arrays or arrays[name].ndim != 1 + len(tail) or arrays[name].shape[1:] != tail:
            raise ValueError(f"array {name} does not fit the trace's shape")
    steps, iterations = arrays.get("trace_step"), arrays.get("trace_iteration")
    if steps is None or iterations is None or len(steps) > MAX_SNAPSHOTS:
        raise ValueError(f"the trace must list the step and iteration of at most {MAX_SNAPSHOTS:,} snapshots")
    if not (_indices_in(steps, 0, limits[0]) and _indices_in(iterations, 0, limits[1])):
        raise ValueError("the trace's steps or iterations are outside the run's search steps and iterations")
    if "result_chosen_step" in arrays and not _indices_in(arrays["result_chosen_step"], -1, limits[0]):
        raise ValueError("array result_chosen_step is outside the run's search steps")
    for name, low in (("trace_scalar_acp", 0), ("trace_scalar_anc", 0), ("trace_scalar_d20", -1)):
        if name in arrays and not _indices_in(arrays[name], low, h * w + 1):  # counts of pixels, clusters, patches
            raise ValueError(f"array {name} holds counts outside {low}..{h * w}")
    for name, dtype in FILE_ARRAYS.values():
        if name in arrays and (arrays[name].dtype != dtype or arrays[name].shape != (3, h, w)):
            raise ValueError(f"array {name} is not {np.dtype(dtype).name} [3, {h}, {w}]")


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
    x_adv, delta = values["x_adv"], values["delta"]
    if x_adv.ndim != 4 or x_adv.shape[-2:] != size or delta.shape != x_adv.shape:
        raise ValueError(f"the result's image and perturbation have shapes {x_adv.shape} and {delta.shape}, not "
                         f"[B,3,{size[0]},{size[1]}] both")
    n_steps = len(arrays["steps_step"])
    steps = tuple(StepRecord(step=int(arrays["steps_step"][i]),
                             **{name: arrays[f"steps_{name}"][i] for name in _STEP_FIELDS if name != "step"})
                  for i in range(n_steps))
    return GSEResult(**values, steps=steps, **{name: scalars[name] for name in _RESULT_SCALARS})

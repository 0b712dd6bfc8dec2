"""Session files: a whole run in one zip (session.json + arrays.npz + image.png), no pickle, written atomically.

Qt-free: it reads and writes a RunHistory, the engine's result record and plain dicts. Members:
- session.json: FORMAT, VERSION, what was run (the `info` dict below) and the result's scalar fields;
- arrays.npz: the model input image the views show, the trace (`RunHistory.to_arrays`, prefix "trace_") and the
  result's arrays (prefix "result_" / "steps_" for the per-search-step records); numeric dtypes only;
- image.png: the opened image file's pixels as a lossless 16-bit PNG, so the run can be repeated without it.

`info` holds: image_name, image_path, model_spec, model_name, class_names, targeted, label, clean_class,
top_classes, top_probs, params (GSEParams fields of the run), preset, device, cam (the CAM panel's settings or None);
the CAM array itself, when one was shown, is `cam` in arrays.npz.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gse_algo.export import atomic_write_bytes, json_bytes, npz_bytes, versions
from gse_algo.params import GSEParams
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


class SessionError(Exception):
    """A session file that cannot be written or read; the text is one readable line."""


@dataclass
class Session:
    """One saved run. `image` is the float32 [H,W,3] model input the views show; `source_png` the opened file."""

    history: RunHistory
    image: np.ndarray
    source_png: bytes
    info: dict
    cam: np.ndarray | None = None  # the CAM shown when it was saved, float32 [H,W]


def save_session(path: str | os.PathLike, session: Session) -> Path:
    """Write the session to `path` atomically (an existing file is replaced only once the new one is complete)."""
    arrays = {"image": np.asarray(session.image, np.float32)}
    if session.cam is not None:
        arrays["cam"] = np.asarray(session.cam, np.float32)
    arrays.update({f"trace_{k}": v for k, v in session.history.to_arrays().items()})
    result = session.history.result
    meta = {"format": FORMAT, "version": VERSION, "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(), "info": session.info, "result": None}
    if result is not None:
        arrays.update(_result_arrays(result))
        meta["result"] = {name: getattr(result, name) for name in _RESULT_SCALARS}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("session.json", json_bytes(meta), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("arrays.npz", npz_bytes(arrays))  # already compressed
        zf.writestr("image.png", session.source_png)
    return atomic_write_bytes(path, buffer.getvalue())


def load_session(path: str | os.PathLike) -> Session:
    """Read a session file; SessionError with a one-line reason for anything that is not a complete session."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            missing = [name for name in MEMBERS if name not in zf.namelist()]
            if missing:
                raise SessionError(f"{path.name}: not a GSE session (missing {', '.join(missing)})")
            meta = json.loads(zf.read("session.json").decode("utf-8"))
            _check_meta(path, meta)
            with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            source_png = zf.read("image.png")
        return _build(meta, arrays, source_png)
    except SessionError:
        raise
    except FileNotFoundError:
        raise SessionError(f"{path}: no such file") from None
    except zipfile.BadZipFile:
        raise SessionError(f"{path.name}: not a GSE session file (not a zip archive, or a truncated one)") from None
    except OSError as error:
        raise SessionError(f"{path.name}: cannot read the session ({error.strerror or error})") from None
    except (KeyError, ValueError, IndexError, TypeError, EOFError, zipfile.LargeZipFile) as error:
        raise SessionError(f"{path.name}: damaged session file ({error})") from None


def _check_meta(path: Path, meta: object) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SessionError(f"{path.name}: not a GSE session (session.json has no '{FORMAT}' format tag)")
    if meta.get("version") != VERSION:
        raise SessionError(f"{path.name}: session format version {meta.get('version')!r}; "
                           f"this program reads version {VERSION}")
    info = meta.get("info")
    if not isinstance(info, dict):
        raise SessionError(f"{path.name}: damaged session file (no run description)")
    for key, kind in REQUIRED_INFO.items():
        if not isinstance(info.get(key), kind):
            raise SessionError(f"{path.name}: damaged session file (info.{key} missing or not a {kind.__name__})")


def _build(meta: dict, arrays: dict[str, np.ndarray], source_png: bytes) -> Session:
    info = meta["info"]
    GSEParams().replace(**info["params"])  # ValueError for parameters this version does not know
    history = RunHistory.from_arrays({k[len("trace_"):]: v for k, v in arrays.items() if k.startswith("trace_")})
    image = arrays["image"]
    if image.dtype != np.float32 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the image array has shape {image.shape} and dtype {image.dtype}, not float32 [H,W,3]")
    if not len(history):
        raise ValueError("the session holds no iterations")
    if history.shape[-2:] != image.shape[:2]:
        raise ValueError("the trace and the image have different sizes")
    cam = arrays.get("cam")
    if cam is not None and cam.shape != image.shape[:2]:
        raise ValueError(f"the CAM has shape {cam.shape}, the image {image.shape[:2]}")
    if meta.get("result") is not None:
        history.set_result(_result(arrays, meta["result"], image.shape[:2]))
    return Session(history, image, source_png, info, cam)


def _result_arrays(result: GSEResult) -> dict[str, np.ndarray]:
    out = {}
    for name in _RESULT_ARRAYS:
        out[f"result_{name}"] = np.asarray(getattr(result.to_numpy(), name))
    for name in _STEP_FIELDS:
        out[f"steps_{name}"] = np.array([getattr(record, name) for record in result.steps])
    return out


def _result(arrays: dict[str, np.ndarray], scalars: dict, size: tuple[int, int]) -> GSEResult:
    values = {name: arrays[f"result_{name}"] for name in _RESULT_ARRAYS}
    if values["x_adv"].ndim != 4 or values["x_adv"].shape[-2:] != size or values["delta"].shape != values["x_adv"].shape:
        raise ValueError(f"the result's image has shape {values['x_adv'].shape}, not [B,3,{size[0]},{size[1]}]")
    n_steps = len(arrays["steps_step"])
    steps = tuple(StepRecord(step=int(arrays["steps_step"][i]),
                             **{name: arrays[f"steps_{name}"][i] for name in _STEP_FIELDS if name != "step"})
                  for i in range(n_steps))
    return GSEResult(**values, steps=steps, **{name: scalars[name] for name in _RESULT_SCALARS})

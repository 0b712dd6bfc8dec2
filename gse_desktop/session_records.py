"""The app state's records of a reopened session (gse_desktop.session's Session -> records.py and state.py)."""

from __future__ import annotations

import math

import numpy as np

from gse_algo.defaults import IS_PERCENTILES
from gse_algo.params import GSEParams
from gse_desktop.records import Final, ModelInfo, OpenedImage, Prediction, RunDescription, RunSpec
from gse_desktop.session import Session
from gse_desktop.state import CamKey, CamState


def session_records(session: Session) -> tuple[OpenedImage, RunDescription, CamState]:
    """The state's records of a reopened session (ValueError/KeyError/TypeError for inconsistent contents)."""
    info, history = session.info, session.history
    image = session.image
    size = (image.shape[0], image.shape[1])
    layer = info.get("cam_layer") or ((info.get("cam") or {}).get("layer")) or ""
    layers = tuple(info.get("layers") or [layer])
    model = ModelInfo(info["model_spec"], info["model_name"], tuple(info["class_names"]), size, layer, layers,
                      str(info.get("device", "cpu")))
    clean = Prediction(np.asarray(info["top_classes"], np.int64), np.asarray(info["top_probs"], np.float64))
    opened = OpenedImage(str(info.get("image_path") or info["image_name"]), info["image_name"],
                         (image.shape[1], image.shape[0]), session.source_png, image, model, clean)
    target = info["label"] if info["targeted"] else None
    params = GSEParams().replace(**info["params"])
    spec = RunSpec(opened.path, info["model_spec"], model.device, target, params, None,
                   int(info.get("threads", 1)), int(info.get("seed", 0)))
    run = RunDescription(spec, model, image, int(info["label"]), clean, bool(info["targeted"]), params,
                         info.get("preset"), dict(info.get("versions") or {}))
    return opened, run, _cam_state(info.get("cam"), session, history)


def _cam_state(saved: object, session: Session, history) -> CamState:
    saved = saved if isinstance(saved, dict) else {}
    cam = CamState(top_percent=int(saved.get("top_percent") or 20), opacity=float(saved.get("opacity", 0.6)))
    shown = saved.get("shown_cam")
    if session.cam is not None and isinstance(shown, dict):
        key = CamKey(str(shown["image"]), int(shown["class_index"]), str(shown["method"]), str(shown["layer"]))
        cam.cache[key] = session.cam
        cam.shown = cam.selection = key
    scores = saved.get("interpretability_score") or {}
    if scores and history.result is not None:
        values = [math.nan if scores.get(str(p)) is None else float(scores[str(p)]) for p in IS_PERCENTILES]
        cam.final = Final.from_delta(session.image, np.asarray(history.result.delta[0]), values)
    return cam

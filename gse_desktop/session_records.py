"""The app state's records of a reopened session (gse_desktop.session's Session -> records.py and state.py): the
opened image, and per saved run the parts of a KeptRun (its description, frames, engine record, files, measured
metrics and CAM state)."""

from __future__ import annotations

import math

import numpy as np

from gse_algo.defaults import IS_PERCENTILES
from gse_algo.params import GSEParams
from gse_desktop.records import (GSE, GSE_INFO, AttackInfo, Final, Measured, ModelInfo, OpenedImage, Prediction,
                                 RunDescription, RunSpec)
from gse_desktop.session import SavedRun, Session
from gse_desktop.state import CamKey, CamState

COUNTS = ("time_s", "n_forward", "n_backward")  # Measured's own fields; the rest of the flat dict is its metrics


def session_image(session: Session) -> OpenedImage:
    """The opened image of a reopened session, with the model of its shown run."""
    info, image = session.info, session.image
    return OpenedImage(str(info.get("image_path") or info["image_name"]), info["image_name"],
                       (image.shape[1], image.shape[0]), session.source_png, image, _model(info, image),
                       _clean(info))


def run_parts(session: Session, saved: SavedRun) -> dict:
    """The KeptRun fields of one saved run (ValueError/KeyError/TypeError for inconsistent contents)."""
    info, history = saved.info, saved.history
    image = saved.image if saved.image is not None else session.image
    model = _model(info, image)
    target = info["label"] if info["targeted"] else None
    params = GSEParams().replace(**info["params"]) if info.get("params") else None
    attack = info.get("attack", GSE)
    spec = RunSpec(str(info.get("image_path") or info["image_name"]), info["model_spec"], model.device, target,
                   params or GSEParams(), None, int(info.get("threads", 1)), int(info.get("seed", 0)), attack=attack,
                   settings=dict(info.get("settings") or {}))
    described = GSE_INFO if attack == GSE and "views" not in info else AttackInfo(
        attack, str(info.get("attack_title") or attack), "", "", (), views=frozenset(info.get("views") or ()))
    run = RunDescription(spec, model, image, int(info["label"]), _clean(info), bool(info["targeted"]), params,
                         info.get("preset"), dict(info.get("versions") or {}), described, spec.settings)
    measured = info.get("measured")
    return {"name": str(info.get("name") or described.title), "description": run, "history": history,
            "record": info.get("record") if isinstance(info.get("record"), dict) else {},
            "files": dict(saved.files),
            "measured": Measured(**measured_fields(measured)) if measured else None,
            "cam": _cam_state(info.get("cam"), saved, image)}


def measured_dict(measured: Measured) -> dict:
    """A Measured record as the flat dict sessions keep (session.MEASURED_FIELDS)."""
    return {**measured.metrics, **{name: getattr(measured, name) for name in COUNTS}}


def measured_fields(flat: dict) -> dict:
    """The inverse of measured_dict: Measured's constructor arguments."""
    return {"metrics": {k: v for k, v in flat.items() if k not in COUNTS}, **{k: flat[k] for k in COUNTS}}


def _model(info: dict, image: np.ndarray) -> ModelInfo:
    layer = info.get("cam_layer") or ((info.get("cam") or {}).get("layer")) or ""
    layers = tuple(info.get("layers") or [layer])
    return ModelInfo(info["model_spec"], info["model_name"], tuple(info["class_names"]),
                     (image.shape[0], image.shape[1]), layer, layers, str(info.get("device", "cpu")))


def _clean(info: dict) -> Prediction:
    return Prediction(np.asarray(info["top_classes"], np.int64), np.asarray(info["top_probs"], np.float64))


def _cam_state(saved: object, run: SavedRun, image: np.ndarray) -> CamState:
    saved = saved if isinstance(saved, dict) else {}
    cam = CamState(top_percent=int(saved.get("top_percent") or 20), opacity=float(saved.get("opacity", 0.6)))
    shown = saved.get("shown_cam")
    if run.cam is not None and isinstance(shown, dict):
        key = CamKey(str(shown["image"]), int(shown["class_index"]), str(shown["method"]), str(shown["layer"]))
        cam.cache[key] = run.cam
        cam.shown = cam.selection = key
    scores = saved.get("interpretability_score") or {}
    if scores and run.history.result is not None:
        values = [math.nan if scores.get(str(p)) is None else float(scores[str(p)]) for p in IS_PERCENTILES]
        cam.final = Final.from_delta(image, np.asarray(run.history.result.delta[0]), values)
    return cam

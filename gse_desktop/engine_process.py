"""The engine process: models, image decoding, attacks and CAM/IS jobs, strictly one at a time (imports torch).

Started by gse_desktop.engine.EngineClient with the `spawn` method. It reads commands `(kind, id, payload)` from
one queue and answers with events `(kind, id, payload)` on another (plain NumPy data and the records of
gse_desktop.records). While an attack or a CAM runs, commands are read between iterations (or batches): pause,
resume, step, stop and cancel act at once; anything else waits its turn. So grad-cam never hooks a model while the
attack uses it, and a hanging or crashing model takes only this process down (the client replaces it).

Events: ready (with the registry's attacks and the model catalogue); opened / open_failed; status, prepared,
snapshot, calls (a library attack's forward/backward counts), finished ((result, record, files, Measured) or None
when stopped), failed; job_progress, job_done, job_failed, job_cancelled; weights_missing (after the failure, when
a torchvision model's weights file is neither in the hub folder nor downloadable: where it belongs).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gse_algo import images, metrics, quantize
from gse_algo.attack import check_logits, check_targets
from gse_algo.attacks import get_attack, iterate_attack
from gse_algo.attacks.gse import gse_params
from gse_algo.attacks.library import ModelCall
from gse_algo.cam import CAMCancelled, CAMError, compute_cam, model_layers
from gse_algo.export import versions
from gse_algo.models import ModelError
from gse_algo.params import resolve_preset
from gse_algo.record import build_record
from gse_algo.registry_run import baseline_record
from gse_algo.runtime import Runtime
from gse_algo.snapshot import Snapshot
from gse_algo.weights import MissingWeights, catalogue, install
from gse_desktop.engine_attacks import (LiveFrames, attack_info, attack_infos, library_result, measured,
                                        registry_settings, without_overhead)
from gse_desktop.history import derived
from gse_desktop.records import (GSE, PREVIEW_SIZE, Final, ModelInfo, OpenedImage, Prediction, RunDescription,
                                 RunSpec)

Loader = Callable[[str, str], object]  # (model spec, device) -> gse_algo.models.LoadedModel
PARENT_CHECK_S = 1.0  # how often an idle engine checks that the app is still there
MODEL_CACHE = 2  # loaded models kept (e.g. the one in use and the previous one)
CALLS_S = 0.25  # a library attack's counts go to the app at least this often
USER_ERRORS = (images.ImageError, ModelError, CAMError, ValueError, OSError)


def one_line(error: BaseException) -> str:
    """A user-facing error's text as one line; anything else with its type, which says more than its text."""
    text = " ".join(str(error).split())
    return text if isinstance(error, USER_ERRORS) and text else f"{type(error).__name__}: {text}"


def _load(spec: str, device: str) -> object:
    from gse_algo.models import load_model

    return load_model(spec, device=device)


class Stopped(Exception):
    """The current run was stopped (or its job cancelled)."""


class GSEWire:
    """GSE's snapshots for the app, the lambda map and frozen region only when they changed (the client re-links
    them); it remembers each search step's last iteration for the record."""

    def __init__(self) -> None:
        self.last_lambda = self.last_frozen = None
        self.last_iteration: dict[int, int] = {}

    def wire(self, snap: Snapshot, force: bool = False) -> tuple:
        new_lambda, new_frozen = snap.lambda_map is not self.last_lambda, snap.frozen is not self.last_frozen
        self.last_lambda, self.last_frozen = snap.lambda_map, snap.frozen
        self.last_iteration[snap.step] = snap.iteration
        wire = dataclasses.replace(snap, lambda_map=snap.lambda_map if new_lambda else None,
                                   frozen=snap.frozen if new_frozen else None)
        return wire, derived(snap), new_lambda, new_frozen


class Engine:
    def __init__(self, commands, events, loader: Loader | None = None) -> None:
        self.commands, self.events = commands, events
        self.loader = loader or _load
        self.models: dict[tuple[str, str], tuple[object, ModelInfo]] = {}
        self.pending: deque = deque()
        self.parent = os.getppid()
        self.run_id: int | None = None  # the attack in progress
        self.paused = self.stepping = self.stopped = False
        self.job_id: int | None = None  # the job in progress
        self.cancelled = False

    # -- plumbing ------------------------------------------------------------------------------------------------
    def emit(self, kind: str, ident: int, payload: object = None) -> None:
        self.events.put((kind, ident, payload))

    def serve(self) -> None:
        torch.set_grad_enabled(True)
        self.emit("ready", 0, {"pid": os.getpid(), "versions": versions(), "devices": _devices(),
                               "models": catalogue(), "attacks": attack_infos()})
        handlers = {"open": (self.open, "open_failed"), "run": (self.run, "failed"), "job": (self.job, "job_failed")}
        while True:
            command = self.pending.popleft() if self.pending else self._next_command()
            if command is None:
                return  # the app has gone
            kind, ident, payload = command
            if kind == "shutdown":
                return
            if kind == "cancel":
                self.emit("job_cancelled", ident)
                continue
            if kind not in handlers:
                continue  # a control for a run or job that has already ended
            handler, failure = handlers[kind]
            try:
                handler(ident, payload)
            except Stopped:
                pass
            except Exception as error:  # every model/image/engine error becomes a message for the app
                if not isinstance(error, USER_ERRORS):
                    traceback.print_exc()  # a bug, not a bad input: keep the details on stderr
                self.emit(failure, ident, one_line(error))
                self._missing_weights(ident, error)
            finally:
                self.run_id = self.job_id = None

    def _next_command(self):
        while True:
            try:
                return self.commands.get(timeout=PARENT_CHECK_S)
            except queue.Empty:
                if os.getppid() != self.parent:
                    return None

    def _control(self, command) -> None:
        """Apply a command that arrived while something runs; queue the rest for later."""
        kind, ident, _ = command
        if kind in ("pause", "resume", "step", "stop") and ident == self.run_id:
            if kind == "pause":
                self.paused = True
            elif kind == "stop":
                self.stopped = True
            else:  # resume, or one more iteration then pause again
                self.paused, self.stepping = False, kind == "step"
        elif kind == "cancel":
            if ident == self.job_id:
                self.cancelled = True
            else:
                self.pending = deque(c for c in self.pending if not (c[0] == "job" and c[1] == ident))
            self.emit("job_cancelled", ident)
        elif kind == "shutdown":
            self.pending.appendleft(command)
            self.stopped = self.cancelled = True
        elif kind not in ("pause", "resume", "step", "stop"):
            self.pending.append(command)

    def _poll(self, wait: bool = True) -> None:
        """Read every waiting command; while paused (and `wait`), wait for the next one (or for the app to go)."""
        while True:
            waiting = wait and self.paused and not self.stopped
            try:
                command = self.commands.get(block=waiting, timeout=PARENT_CHECK_S if waiting else None)
            except queue.Empty:
                if not waiting:
                    return
                if os.getppid() != self.parent:
                    self.stopped = self.cancelled = True
                    return
                continue
            self._control(command)

    def _missing_weights(self, ident: int, error: BaseException) -> None:
        if isinstance(error, MissingWeights):
            self.emit("weights_missing", ident, {"arch": error.arch, "path": str(error.path),
                                                 "message": one_line(error)})

    # -- models and images ---------------------------------------------------------------------------------------
    def model(self, spec: str, device: str) -> tuple[object, ModelInfo]:
        key = (spec, device)
        if key not in self.models:
            loaded = self.loader(spec, device)
            layers = model_layers(loaded.net)
            if loaded.cam_layer not in layers:
                layers.insert(0, loaded.cam_layer)
            info = ModelInfo(spec, loaded.name, tuple(loaded.class_names), tuple(loaded.input_size),
                             loaded.cam_layer, tuple(layers), device)
            while len(self.models) >= MODEL_CACHE:
                self.models.pop(next(iter(self.models)))
            self.models[key] = (loaded, info)
        return self.models[key]

    def open(self, ident: int, payload: dict) -> None:
        """Decode an image file; with the model (when it loads) also its model input and the clean prediction."""
        path = payload["path"]
        rgb = images.read_image(path)
        source = images.encode_png16(rgb.transpose(2, 0, 1))
        size = (rgb.shape[1], rgb.shape[0])
        try:
            loaded, info = self.model(payload["model_spec"], payload["device"])
        except Exception as error:  # the image is still worth showing; the message says why there is no model
            scale = min(1.0, PREVIEW_SIZE / max(size))
            preview = _hwc(images.to_tensor(rgb, (max(1, round(size[1] * scale)), max(1, round(size[0] * scale)))))
            self.emit("opened", ident, OpenedImage(str(path), Path(path).name, size, source, None, None, None,
                                                   one_line(error), preview))
            self._missing_weights(ident, error)
            return
        x = images.to_tensor(rgb, info.input_size)
        clean = self._predict(loaded, x[None].to(loaded.device))
        self.emit("opened", ident, OpenedImage(str(path), Path(path).name, size, source, _hwc(x), info, clean))

    @staticmethod
    def _predict(loaded, x: torch.Tensor) -> Prediction:
        with torch.no_grad():
            logits = loaded.model(x)
        check_logits(logits, "on this image")
        probs = torch.softmax(logits, dim=1)[0]
        top = probs.topk(min(5, probs.numel()))
        return Prediction(top.indices.cpu().numpy(), top.values.cpu().numpy())

    # -- attacks -------------------------------------------------------------------------------------------------
    def run(self, run_id: int, spec: RunSpec) -> None:
        """Any registered attack through gse_algo.attacks.iterate_attack, so every run is measured and counted the
        same way; GSE's snapshots are the engine's own, a library attack's come from its forward calls."""
        self.run_id, self.paused, self.stepping, self.stopped = run_id, False, False, False
        runtime = Runtime(threads=spec.threads, seed=spec.seed, device=spec.device)
        runtime.apply()
        if spec.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(spec.device))
        if (spec.model_spec, spec.device) not in self.models:
            self.emit("status", run_id, f"loading model {spec.model_spec} …")
        loaded, info = self.model(spec.model_spec, spec.device)
        x = images.load_image(spec.image_path, info.input_size)[None].to(loaded.device)
        if spec.quantize:  # the image an 8-bit file holds, as gse-attack attacks it (gse_algo.quantize)
            x = quantize.to_grid(x, 8)
        clean = self._predict(loaded, x)
        targeted = spec.target is not None
        label = loaded.class_index(spec.target) if targeted else clean.top
        if targeted:
            check_targets(torch.tensor([clean.top]), torch.tensor([label]))
        attack = get_attack(spec.attack)
        labels = torch.tensor([label], device=x.device)
        run = iterate_attack(attack.name, loaded.model, x, labels, targeted, registry_settings(spec), trace=True,
                             seed=spec.seed)  # seeded after the model's loading, which may draw numbers
        gse = attack.name == GSE
        params = gse_params(run.settings, targeted, info.input_size) if gse else None
        preset = resolve_preset(spec.preset, info.input_size) if gse and spec.preset else None
        self.emit("prepared", run_id, RunDescription(spec, info, _hwc(x[0]), label, clean, targeted, params, preset,
                                                     {**versions(), "torch_threads": str(torch.get_num_threads())},
                                                     attack_info(attack), dict(run.settings)))
        frames = GSEWire() if gse else LiveFrames(loaded.model, x, labels, targeted)
        overhead = self._drive(run_id, run, frames)
        if self.stopped:
            self.emit("finished", run_id, None)
            return
        result = without_overhead(run.result, overhead)
        grids = {bits: quantize.finalize(loaded.model, x, labels, targeted, result.x_adv, bits)
                 for bits in quantize.BITS} if spec.quantize else {}
        name = Path(spec.image_path).name
        if gse:
            native = result.native
            chosen = int(native.chosen_step[0])
            shown = {"step": chosen, "iteration": frames.last_iteration.get(chosen, 0)} if chosen >= 0 else {}
            record = build_record(loaded, name, preset or "custom", x, label if targeted else None, native, shown,
                                  params, runtime, grids).to_json()
            out = native.to_numpy()
        else:  # the returned example is the run's last frame; the record is gse-attack --attack's
            self.emit("snapshot", run_id, frames.wire(result.x_adv))
            record = baseline_record(loaded, name, attack, x, label if targeted else None, result, runtime, grids)
            out = library_result(result, x)
        files = {bits: grid.integers()[0] for bits, grid in grids.items()}  # what adv8.png / adv.png hold
        self.emit("finished", run_id, (out, record, files, measured(result)))  # plain data: no torch

    def _drive(self, run_id: int, run, frames) -> float:
        """Iterate the attack, handing each frame to the app and obeying pause/step/stop between items (GSE's
        iterations, a library attack's forward calls); returns the seconds spent here, pauses included."""
        overhead, calls_at = 0.0, 0.0
        try:
            for item in run:
                start = time.perf_counter()
                self._poll(wait=False)
                payload = None if self.stopped else frames.wire(item, force=self.paused or self.stepping)
                if payload is not None:
                    self.emit("snapshot", run_id, payload)
                    self.paused = self.paused or self.stepping
                    self.stepping = False
                if isinstance(item, ModelCall) and (payload is not None or start - calls_at >= CALLS_S):
                    self.emit("calls", run_id, (item.n_forward, item.n_backward))
                    calls_at = start
                if payload is not None or self.paused:
                    self._poll()
                overhead += time.perf_counter() - start
                if self.stopped:
                    break
        finally:
            run.close()
        return overhead

    # -- CAM and IS jobs -----------------------------------------------------------------------------------------
    def job(self, job_id: int, payload: dict) -> None:
        self.job_id, self.cancelled = job_id, False
        if payload["kind"] == "weights":  # a weights file the user picked, checked and put where torchvision looks
            self.emit("job_done", job_id, str(install(payload["arch"], payload["path"])))
            return
        loaded, _ = self.model(payload["model_spec"], payload["device"])
        if payload["kind"] == "cam":
            result = self._cam(job_id, loaded, payload)
        else:
            result = self._final(loaded, payload)
        self.emit("job_done", job_id, result)

    def _cancelled(self) -> bool:
        self._poll()
        return self.cancelled

    def _cam(self, job_id: int, loaded, p: dict) -> np.ndarray:
        try:
            return compute_cam(loaded.model, loaded.net, _chw(p["image"], loaded), p["class_index"], p["method"],
                               layer=p["layer"], reshape=loaded.cam_reshape, batch_size=p.get("batch_size", 8),
                               progress=lambda f: self.emit("job_progress", job_id, f), cancel=self._cancelled)
        except CAMCancelled:
            raise Stopped from None

    def _final(self, loaded, p: dict) -> Final:
        """IS of the clean class against `goal` (the target, or the class after the attack), for the run's delta."""
        x = _chw(p["clean"], loaded)
        d = torch.as_tensor(np.asarray(p["delta"], np.float32)).to(loaded.device)
        labels = torch.tensor([p["clean_class"], p["goal"]], device=x.device)
        scores = metrics.interpretability_score(loaded.model, x[None], d[None], labels[:1], labels[1:])[0]
        return Final.from_delta(p["clean"], p["delta"], scores)


def _hwc(x: torch.Tensor) -> np.ndarray:
    """[3,H,W] tensor -> float32 [H,W,3] NumPy copy."""
    return x.detach().permute(1, 2, 0).cpu().numpy().astype(np.float32, copy=True)


def _chw(image: np.ndarray, loaded) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)).to(loaded.device)


def _devices() -> list[str]:
    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))] if torch.cuda.is_available() else ["cpu"]

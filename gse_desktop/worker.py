"""The only place where the engine meets a thread: a QObject worker on a QThread, and the controller that owns it.

The worker loads the model (cached between runs), reads the image, then drives `iterate_gse` and hands over every
snapshot (already CPU NumPy copies) with its derived metrics (ACP, ANC, d2,0: computed here, not in the GUI thread),
tagged with the run id. Stop and pause are plain threading.Events checked at
each iteration boundary, so they act without the worker's event loop. Closing the generator stops the engine.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from gse_algo.params import GSEParams, PRESETS
from gse_desktop.history import derived

Loader = Callable[[str, str], object]  # (model spec, device) -> LoadedModel


def default_threads() -> int:
    """Torch threads for the attack: all cores but one, which the GUI keeps (it stays responsive during a run)."""
    return max(1, (os.cpu_count() or 1) - 1)


AUTO = "auto"  # the preset that follows the model's input size


def auto_preset(input_size: tuple[int, int]) -> str:
    """'cifar10' for small (<= 64 px) inputs, else 'imagenet'."""
    return "cifar10" if max(input_size) <= 64 else "imagenet"


def resolve_preset(preset: str, input_size: tuple[int, int]) -> str:
    """The preset a run uses: AUTO becomes the one for the model's input size."""
    return auto_preset(input_size) if preset == AUTO else preset


@dataclass
class RunRequest:
    """Everything one run needs, read from the controls in the GUI thread."""

    image_path: str
    model_spec: str
    device: str = "cpu"
    target: int | str | None = None  # None: untargeted
    params: GSEParams = field(default_factory=GSEParams)
    preset: str | None = None  # 'auto' or one of PRESETS: the preset fields follow the model's input size
    threads: int = field(default_factory=default_threads)


@dataclass(frozen=True)
class Prepared:
    """What the GUI needs before the first snapshot: the model input image, labels, the clean top-5."""

    model: object
    image: np.ndarray  # float32 [H,W,3] in [0,1], at the model's input size
    label: int  # the true/clean class (untargeted) or the target class
    clean_class: int
    targeted: bool
    top_classes: np.ndarray
    top_probs: np.ndarray
    params: GSEParams


class AttackWorker(QObject):
    """Runs one attack; lives in its own QThread and puts (run_id, kind, payload) events on its queue.

    Events are pulled by the controller's GUI-thread timer instead of crossing threads as queued signals with
    Python payloads (PySide6 6.8+ has had reference-count bugs there, PYSIDE-3124); kinds: status, prepared,
    snapshot ((Snapshot, history.derived(snapshot))), finished (GSEResult or None when stopped), failed (a one-line
    message).
    """

    def __init__(self, run_id: int, request: RunRequest, loader: Loader, model: object | None = None,
                 model_lock: threading.Lock | None = None) -> None:
        super().__init__()  # no parent: moveToThread would fail silently with one
        self.run_id = run_id
        self.request = request
        self.loader = loader
        self.model = model
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stop_event = threading.Event()
        self.resume_event = threading.Event()
        self.resume_event.set()
        self.step_once = False
        self.active_seconds = 0.0  # from the first iteration to the result, pauses excluded
        self.model_lock = model_lock or threading.Lock()  # held for the whole run: no CAM job meanwhile

    # -- called from the GUI thread -----------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()
        self.resume_event.set()

    def pause(self) -> None:
        self.resume_event.clear()

    def resume(self) -> None:
        self.step_once = False
        self.resume_event.set()

    def step(self) -> None:
        """Run one more iteration, then pause."""
        self.step_once = True
        self.resume_event.set()

    # -- worker thread ------------------------------------------------------------------------------------------
    def _emit(self, kind: str, payload: object) -> None:
        self.events.put((self.run_id, kind, payload))

    @Slot()
    def run(self) -> None:
        torch.set_grad_enabled(True)  # grad mode and the thread count are per thread
        torch.set_num_threads(max(1, self.request.threads))
        try:
            with self.model_lock:
                self._run()
        except Exception as exc:  # every engine/model/image error becomes a message, never a crash
            traceback.print_exc()
            self._emit("failed", f"{type(exc).__name__}: {exc}")
        finally:
            self.thread().quit()

    def _run(self) -> None:
        from gse_algo.attack import iterate_gse
        from gse_algo.images import load_image

        req = self.request
        device = torch.device(req.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # the current device is thread-local
        if self.model is None:
            self._emit("status", f"loading model {req.model_spec} ...")
            self.model = self.loader(req.model_spec, str(device))
        model = self.model
        x = load_image(req.image_path, model.input_size).unsqueeze(0).to(device)
        with torch.no_grad():
            probs = torch.softmax(model.model(x), dim=1)[0]
        top = probs.topk(min(5, probs.numel()))
        clean = int(top.indices[0])
        targeted = req.target is not None
        label = model.class_index(req.target) if targeted else clean
        params = req.params
        if req.preset is not None:
            params = params.with_preset(resolve_preset(req.preset, model.input_size), targeted)
        self._emit("prepared", Prepared(model, x[0].permute(1, 2, 0).cpu().numpy().copy(), label, clean, targeted,
                                        top.indices.cpu().numpy(), top.values.cpu().numpy(), params))
        if self.stop_event.is_set():
            self._emit("finished", None)
            return
        run = iterate_gse(model.model, x, torch.tensor([label], device=device), targeted=targeted, params=params,
                          trace=True)
        try:
            while not self.stop_event.is_set():
                started = time.perf_counter()
                snap = next(run, None)
                if snap is not None:
                    self._emit("snapshot", (snap, derived(snap)))
                self.active_seconds += time.perf_counter() - started
                if snap is None:
                    break
                if self.step_once:
                    self.step_once = False
                    self.resume_event.clear()
                self.resume_event.wait()
        finally:
            run.close()
        self._emit("finished", None if self.stop_event.is_set() else run.result)


class RunController(QObject):
    """Starts runs, hands out run ids, caches the loaded model, and relays only the current run's events.

    A GUI-thread timer drains the current worker's queue every POLL_MS; each event becomes one of the signals
    below (emitted in the GUI thread). Events of a stopped or replaced run are never relayed.
    """

    POLL_MS = 15
    status = Signal(str)
    prepared = Signal(object)
    snapshot = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    idle = Signal()

    def __init__(self, loader: Loader | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.loader = loader or _load_model
        self.run_id = 0
        self.worker: AttackWorker | None = None
        self._cache: tuple[tuple[str, str], object] | None = None
        self.model_lock = threading.Lock()  # one user of a model at a time: a run or a CAM job (gse_desktop.jobs)
        self._alive: dict[QThread, AttackWorker] = {}  # keeps stopping workers and threads alive until they end
        self._timer = QTimer(self, interval=self.POLL_MS)
        self._timer.timeout.connect(self.poll)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, request: RunRequest) -> int:
        """Stop any current run and start a new one; returns its id."""
        self.stop()
        self.run_id += 1
        key = (request.model_spec, request.device)
        cached = self._cache[1] if self._cache and self._cache[0] == key else None
        worker = AttackWorker(self.run_id, request, self.loader, cached, self.model_lock)
        thread = QThread()
        worker.moveToThread(thread)
        thread.started.connect(worker.run)  # both live in the new thread: a direct call, no payload
        thread.finished.connect(self._reap)
        self._alive[thread] = worker
        self.worker = worker
        thread.start()
        self._timer.start()
        return self.run_id

    def stop(self) -> None:
        """Ask the current run to stop at its next iteration boundary; its later events are dropped."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
            self._timer.stop()
            self.idle.emit()

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.pause()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.resume()

    def step(self) -> None:
        if self.worker is not None:
            self.worker.step()

    def wait(self, ms: int = 30000) -> bool:
        """Block until every worker thread has ended (used at exit and in tests)."""
        return all(t.wait(ms) for t in list(self._alive))

    @property
    def active_seconds(self) -> float:
        return self.worker.active_seconds if self.worker else 0.0

    @Slot()
    def poll(self) -> None:
        """Relay the current run's queued events, in order."""
        worker = self.worker
        while worker is not None and worker is self.worker:
            try:
                run_id, kind, payload = worker.events.get_nowait()
            except queue.Empty:
                return
            if run_id != self.run_id:
                continue
            if kind == "prepared":
                self._cache = ((worker.request.model_spec, worker.request.device), payload.model)
            if kind in ("finished", "failed"):
                self.worker = None
                self._timer.stop()
            getattr(self, kind).emit(payload)
            if self.worker is None:
                self.idle.emit()

    @Slot()
    def _reap(self) -> None:
        for thread in [t for t in self._alive if t.isFinished()]:
            del self._alive[thread]


def _load_model(spec: str, device: str) -> object:
    from gse_algo.models import load_model

    return load_model(spec, device=device)

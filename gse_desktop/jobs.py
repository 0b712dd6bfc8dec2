"""Model jobs after a run (CAMs, the interpretability score), run in worker threads, one model user at a time.

grad-cam hooks the model and calls eval()/zero_grad(), so a job must never run while the attack (or another job)
uses the same model object: every job holds the run controller's `model_lock`, which the attack worker holds for
its whole run. A job waiting for the lock gives up as soon as it is cancelled. Jobs run on plain Python threads
that touch no Qt object; like the attack worker they put (job id, kind, payload) events on a queue that a
GUI-thread timer drains, and the events of a cancelled job are dropped. The GUI thread never runs torch.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from gse_algo import metrics
from gse_algo.cam import CAMCancelled, compute_cam

# task(progress(fraction), cancelled() -> bool) -> result; runs in the job's thread
Task = Callable[[Callable[[float], None], Callable[[], bool]], object]
LOCK_POLL_S = 0.05


@dataclass(frozen=True)
class Final:
    """The end of a run as the CAM panel needs it: the returned adversarial example and its IS."""

    adversarial: np.ndarray  # float32 [H,W,3] in [0,1]
    delta: np.ndarray  # float32 [C,H,W], adversarial - clean
    scores: np.ndarray  # IS per percentile of metrics.IS_PERCENTILES (NaN where delta = 0)

    @classmethod
    def from_delta(cls, clean: np.ndarray, delta: np.ndarray, scores: np.ndarray) -> "Final":
        """From the clean image [H,W,3] and the returned perturbation [C,H,W]."""
        delta = np.asarray(delta, np.float32)
        return cls((clean + delta.transpose(1, 2, 0)).astype(np.float32), delta, np.asarray(scores))


def _tensor(image: np.ndarray, model) -> torch.Tensor:
    """[H,W,3] NumPy image -> [3,H,W] float32 tensor on the model's device."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)).to(model.device)


def cam_task(model, image: np.ndarray, class_index: int, method: str, layer: str, batch_size: int = 8) -> Task:
    """A job computing one CAM ([H,W] in [0,1]) of `image` ([H,W,3]) with gse_algo.cam.compute_cam.

    batch_size: masked/ablated inputs per pass of ScoreCAM/AblationCAM; small, so that a cancel acts soon.
    """

    def task(progress: Callable[[float], None], cancelled: Callable[[], bool]) -> np.ndarray:
        return compute_cam(model.model, model.net, _tensor(image, model), class_index, method, layer=layer,
                           reshape=model.cam_reshape, batch_size=batch_size, progress=progress, cancel=cancelled)

    return task


def final_task(model, clean: np.ndarray, delta: torch.Tensor | np.ndarray, clean_class: int, goal: int) -> Task:
    """A job turning the run's delta (the first of a [B,C,H,W] batch) into a `Final`: IS of the clean class
    against `goal` (the target class, or the class after the attack when untargeted)."""

    def task(progress: Callable[[float], None], cancelled: Callable[[], bool]) -> Final:
        d = torch.as_tensor(delta)[0].detach().to(model.device, torch.float32)
        x = _tensor(clean, model)
        labels = torch.tensor([clean_class, goal], device=x.device)
        scores = metrics.interpretability_score(model.model, x[None], d[None], labels[:1], labels[1:])[0]
        return Final.from_delta(clean, d.cpu().numpy(), scores)

    return task


class ModelJobs(QObject):
    """Runs tasks in threads under `lock`; relays progress(job, fraction), done(job, result), failed(job, text)."""

    POLL_MS = 30
    progress = Signal(int, float)
    done = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, lock: threading.Lock, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lock = lock
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.next_id = 0
        self.live: dict[int, threading.Event] = {}  # job id -> its cancel event, for jobs whose events count
        self.threads: list[threading.Thread] = []
        self._timer = QTimer(self, interval=self.POLL_MS)
        self._timer.timeout.connect(self.poll)

    @property
    def busy(self) -> bool:
        """Some job has not reported yet (cancelled ones do not count)."""
        return bool(self.live)

    def submit(self, task: Task) -> int:
        """Start a job (it waits for the model lock); returns its id."""
        self.next_id += 1
        cancel = threading.Event()
        self.live[self.next_id] = cancel
        thread = threading.Thread(target=self._work, args=(self.next_id, task, cancel), daemon=True,
                                  name=f"model-job-{self.next_id}")
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()
        self._timer.start()
        return self.next_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job (or all): it stops at its next check, and nothing more is heard of it."""
        for key in [job_id] if job_id is not None else list(self.live):
            event = self.live.pop(key, None)
            if event is not None:
                event.set()
        if not self.live:
            self._timer.stop()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until every job thread has ended (tests, exit)."""
        for thread in self.threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in self.threads)

    def _work(self, job_id: int, task: Task, cancel: threading.Event) -> None:
        while not self.lock.acquire(timeout=LOCK_POLL_S):
            if cancel.is_set():
                return
        try:
            torch.set_grad_enabled(True)  # grad mode is per thread
            result = task(lambda f: self.events.put((job_id, "progress", f)), cancel.is_set)
            self.events.put((job_id, "done", result))
        except CAMCancelled:
            pass
        except Exception as exc:  # a bad layer or model becomes a message, never a crash
            traceback.print_exc()
            self.events.put((job_id, "failed", f"{type(exc).__name__}: {exc}"))
        finally:
            self.lock.release()

    @Slot()
    def poll(self) -> None:
        """Relay the live jobs' events, in order."""
        while True:
            try:
                job_id, kind, payload = self.events.get_nowait()
            except queue.Empty:
                break
            if job_id not in self.live:
                continue
            if kind != "progress":
                del self.live[job_id]
            getattr(self, kind).emit(job_id, payload)
        if not self.live:
            self._timer.stop()

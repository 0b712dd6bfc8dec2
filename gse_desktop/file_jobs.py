"""Long file work (sessions, composite figures, animations) in a process of its own, so the window never freezes.

The window prepares the data (NumPy arrays, records and strings) and hands it to a one-process pool started with
`spawn`; the drawing (matplotlib, Pillow), the session packing and checking, and the writing happen there.
`FileWorker.poll`, called from a GUI timer, reports each job's progress and, once finished, its outcome to its
callbacks. A job reports progress with `report(fraction)`, which also stops it (raising session.Cancelled) once
`FileWorker.cancel` was asked for it. The job functions are module-level so that they pickle; with `wait=True` the
callers run them in-process instead (scripts and tests), where `report` does nothing.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from gse_algo import animation, compare_figure, figures
from gse_desktop.session import Cancelled, Session, load_session, save_session

_channel: dict = {}  # in the worker process: the progress queue, the cancelled job's token, the running job's token


def _init_worker(progress, cancelled) -> None:
    _channel.update(progress=progress, cancelled=cancelled, token=None)


def _run(token: int, job: Callable, args: tuple):
    _channel["token"] = token
    return job(*args)


def report(fraction: float) -> None:
    """The running job's progress (in the worker process; nothing elsewhere); Cancelled once it was cancelled."""
    token = _channel.get("token")
    if token is None:
        return
    if _channel["cancelled"].value == token:
        raise Cancelled
    _channel["progress"].put((token, float(fraction)))


def write_session(path: str, session: Session) -> str:
    save_session(path, session, report)
    return f"session saved to {path}"


def read_session(path: str) -> Session:
    return load_session(path, report)


def write_figure(data: figures.FigureData, panels: list[str], path: str, dpi: int, metadata: dict) -> str:
    """The composite figure as PNG / SVG / PDF (by suffix)."""
    figures.save_figure(figures.composite_figure(data, panels), path, dpi=dpi, metadata=metadata)
    return f"figure ({', '.join(panels)}) saved to {path}"


def write_animation(frames: list[animation.FrameData], panels: list[str], path: str, fps: float, columns: int,
                    metadata: dict) -> str:
    """A GIF (.gif, each frame labelled) or a strip (.png/.svg/.pdf, labels as titles) of the chosen panels."""
    gif = Path(path).suffix.lower() == ".gif"
    pictures = animation.render_frames(frames, panels, labels=gif, progress=report)
    if gif:
        animation.save_gif(pictures, path, fps)
    else:
        strip = animation.frame_strip(pictures, [frame.label for frame in frames], columns=columns)
        figures.save_figure(strip, path, dpi=150, metadata=metadata)
    return f"{len(frames)} frames saved to {path}"


def write_comparison(x: np.ndarray, runs: list[compare_figure.ComparedRun], class_names: list[str], title: str,
                     path: str, dpi: int, metadata: dict) -> str:
    """The comparison figure of runs of one image (gse_algo.compare_figure, as gse-compare draws it), by suffix."""
    figure = compare_figure.comparison_figure(x, runs, class_names=class_names, title=title)
    figures.save_figure(figure, path, dpi=dpi, metadata=metadata)
    return f"comparison figure ({' vs '.join(r.label for r in runs)}) saved to {path}"


class FileWorker:
    """One background process for file jobs (started on first use); `poll` calls back finished jobs in order."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._context = multiprocessing.get_context("spawn")
        self._progress = self._context.Queue()
        self._cancelled = self._context.Value("q", 0)
        self._tokens = itertools.count(1)
        self._jobs: list[tuple[int, Future, Callable[[Future], None], Callable[[float], None] | None]] = []

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def submit(self, job: Callable, *args: object, on_done: Callable[[Future], None],
               on_progress: Callable[[float], None] | None = None) -> int:
        """Queue `job(*args)`; returns its token (for `cancel`)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=_init_worker,
                                             initargs=(self._progress, self._cancelled))
        token = next(self._tokens)
        self._jobs.append((token, self._pool.submit(_run, token, job, args), on_done, on_progress))
        return token

    def cancel(self, token: int) -> None:
        """Stop job `token` at its next progress report (one not started yet never starts)."""
        self._cancelled.value = token
        for entry in self._jobs:
            if entry[0] == token:
                entry[1].cancel()

    def poll(self) -> None:
        callbacks = {token: on_progress for token, _, _, on_progress in self._jobs}
        while True:
            try:
                token, fraction = self._progress.get_nowait()
            except queue.Empty:
                break
            if callbacks.get(token) is not None:
                callbacks[token](fraction)
        while self._jobs and self._jobs[0][1].done():
            _, future, on_done, _ = self._jobs.pop(0)
            on_done(future)

    def shutdown(self) -> None:
        """Stop the process: jobs not started are dropped, a running one is waited for (it writes atomically)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._jobs = []


def outcome(future: Future) -> tuple[object, BaseException | None]:
    """(result, None), or (None, the error) for a failed job, or (None, Cancelled()) for a cancelled one."""
    if future.cancelled():
        return None, Cancelled()
    error = future.exception()
    return (None, error) if error is not None else (future.result(), None)


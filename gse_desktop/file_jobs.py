"""Long file work (composite figures, animations) in a process of its own, so the window never freezes.

The window prepares the data (NumPy arrays and strings, cheap) and hands it to a one-process pool started with
`spawn`; the drawing (matplotlib, Pillow) and the writing happen there. `FileWorker.poll`, called from a GUI timer,
reports each finished job to its callback. The job functions are module-level so that they pickle; with
`wait=True` the callers run them in-process instead (scripts and tests).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np

from gse_algo import figures


def write_figure(data: figures.FigureData, panels: list[str], path: str, dpi: int, metadata: dict) -> str:
    """The composite figure as PNG / SVG / PDF (by suffix)."""
    figures.save_figure(figures.composite_figure(data, panels), path, dpi=dpi, metadata=metadata)
    return f"figure ({', '.join(panels)}) saved to {path}"


def write_animation(x: np.ndarray, frames: list[tuple[np.ndarray, np.ndarray, str]], path: str, fps: float,
                    columns: int, metadata: dict) -> str:
    """A GIF (.gif, each frame labelled) or a strip (.png/.svg/.pdf, labels as titles) of (delta, mask, label)."""
    gif = Path(path).suffix.lower() == ".gif"
    limit = max(float(np.abs(figures.signed_perturbation(delta)).max()) for delta, _, _ in frames)
    scale = max(1, 256 // x.shape[1])
    pictures = [figures.render_frame(x, delta, mask, limit=limit, label=label if gif else "", scale=scale)
                for delta, mask, label in frames]
    if gif:
        figures.save_gif(pictures, path, fps)
    else:
        strip = figures.frame_strip(pictures, [label for _, _, label in frames], columns=columns)
        figures.save_figure(strip, path, dpi=150, metadata=metadata)
    return f"{len(frames)} frames saved to {path}"


class FileWorker:
    """One background process for file jobs (started on first use); `poll` calls back finished jobs in order."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: list[tuple[Future, Callable[[Future], None]]] = []

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def submit(self, job: Callable, *args: object, on_done: Callable[[Future], None]) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._jobs.append((self._pool.submit(job, *args), on_done))

    def poll(self) -> None:
        while self._jobs and self._jobs[0][0].done():
            future, on_done = self._jobs.pop(0)
            on_done(future)

    def shutdown(self) -> None:
        """Stop the process: jobs not started are dropped, a running one is waited for (it writes atomically)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._jobs = []

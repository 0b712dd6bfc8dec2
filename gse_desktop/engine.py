"""The engine client (Qt-free, torch-free): starts the engine process, sends it commands, hands back its events.

One client drives everything that needs the model (image decoding, attacks, CAM and IS jobs), so there is one
pattern for all of them. The process is started with the `spawn` method (never `fork` under Qt) and replaced when
it dies (segfault, out of memory, abort in a TorchScript model) or does not answer Stop within `grace_s` (a forward
pass that hangs); `poll` then reports `engine_lost` with the reason, followed by a `ready` of the new process.

Events are `Event(kind, id, payload)`; see gse_desktop.engine_process for the kinds. Snapshot events come back as
`(Snapshot, derived metrics)` with the lambda map and frozen region shared with the previous snapshot while they
did not change, as the engine made them (the run history relies on that to store them once).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import queue
import time
from collections.abc import Callable
from typing import NamedTuple

from gse_desktop.records import RunSpec

GRACE_S = 3.0  # how long Stop may take before the engine process is replaced
SHUTDOWN_S = 5.0
MAX_EVENTS = 2000  # per poll, so that a flood of snapshots never blocks the GUI for long


class Event(NamedTuple):
    kind: str
    ident: int
    payload: object


def _serve(commands, events, loader, setup) -> None:
    """The engine process's entry point (torch is imported there, not here)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the app's to handle
    from gse_desktop.engine_process import Engine

    if setup is not None:
        setup()

    Engine(commands, events, loader).serve()


class EngineClient:
    """`loader(spec, device)` replaces gse_algo.models.load_model in the engine (a picklable, module-level function:
    tests pass a tiny model); `setup()`, if given, runs in the engine process before it serves (tests register a
    stand-in attack with it); `grace_s` bounds how long a Stop may take."""

    def __init__(self, loader: Callable | None = None, grace_s: float = GRACE_S,
                 setup: Callable[[], None] | None = None) -> None:
        self.loader, self.grace_s, self.setup = loader, grace_s, setup
        self._context = multiprocessing.get_context("spawn")
        self._ids = itertools.count(1)
        self.process = None
        self.ready = False
        self.info: dict = {}  # the ready event's payload: pid, versions, devices
        self._run: int | None = None  # the run the engine works on (from start until finished/failed)
        self._stop_deadline: float | None = None
        self._lost: list[Event] = []
        self._last_maps: tuple = (None, None)  # the last snapshot's lambda map and frozen region
        self.start()

    # -- process life cycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._commands, self._events = self._context.Queue(), self._context.Queue()
        self.process = self._context.Process(target=_serve, args=(self._commands, self._events, self.loader, self.setup),
                                             name="gse-engine", daemon=True)
        self.process.start()
        self.ready = False
        self._run, self._stop_deadline = None, None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def _replace(self, reason: str) -> None:
        """Kill the engine process (if it still runs) and start a fresh one; poll reports `engine_lost`."""
        run = self._run
        if self.alive:
            self.process.kill()
        self.process.join(SHUTDOWN_S)
        self._close_queues()
        self._lost.append(Event("engine_lost", run or 0, reason))
        self.start()

    def shutdown(self, timeout: float = SHUTDOWN_S) -> None:
        """Stop the engine process cleanly (killing it after `timeout`); nothing is left running."""
        if self.process is None:
            return
        if self.alive:
            self._send("shutdown", 0)
            self.process.join(timeout)
        if self.alive:
            self.process.kill()
            self.process.join(timeout)
        self._close_queues()
        self.process = None
        self.ready = False

    def _close_queues(self) -> None:
        for q in (self._commands, self._events):
            q.cancel_join_thread()  # never block on data meant for a process that is gone
            q.close()

    # -- commands ------------------------------------------------------------------------------------------------
    def _send(self, kind: str, ident: int, payload: object = None) -> None:
        if self.process is None:
            self.start()
        self._commands.put((kind, ident, payload))

    def open_image(self, path: str, model_spec: str, device: str) -> int:
        """Decode an image (and its model input); answered by `opened` or `open_failed` with the returned id."""
        ident = next(self._ids)
        self._send("open", ident, {"path": str(path), "model_spec": model_spec, "device": device})
        return ident

    def start_run(self, spec: RunSpec) -> int:
        """Start an attack (after whatever the engine is doing); its events carry the returned id."""
        ident = next(self._ids)
        self._run, self._stop_deadline = ident, None
        self._send("run", ident, spec)
        return ident

    def pause(self, run_id: int) -> None:
        self._send("pause", run_id)

    def resume(self, run_id: int) -> None:
        self._send("resume", run_id)

    def step(self, run_id: int) -> None:
        """One more iteration, then pause."""
        self._send("step", run_id)

    def stop(self, run_id: int) -> None:
        """Stop at the next iteration; if the engine has not finished the run within grace_s, it is replaced."""
        self._send("stop", run_id)
        if run_id == self._run and self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.grace_s

    def submit(self, kind: str, payload: dict) -> int:
        """A job ('cam', 'final' or 'weights', see engine_process), run after whatever the engine is doing."""
        ident = next(self._ids)
        self._send("job", ident, {**payload, "kind": kind})
        return ident

    def cancel(self, job_id: int) -> None:
        self._send("cancel", job_id)

    # -- events --------------------------------------------------------------------------------------------------
    def poll(self, max_events: int = MAX_EVENTS) -> list[Event]:
        """The events that have arrived (at most max_events), in order; replaces a dead or hanging engine."""
        out, self._lost = self._lost, []
        while self.process is not None and len(out) < max_events:
            try:
                kind, ident, payload = self._events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if kind == "ready":
                self.ready, self.info = True, payload
            elif kind == "snapshot":
                payload = self._shared(payload)
            elif kind in ("finished", "failed") and ident == self._run:
                self._run, self._stop_deadline = None, None
            out.append(Event(kind, ident, payload))
        if self.process is not None and not out:
            if not self.alive:
                code = self.process.exitcode
                self._replace(f"the engine process ended unexpectedly (exit code {code}); a new one is starting")
            elif self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                self._replace(f"the model did not stop within {self.grace_s:g} s, so the engine was restarted")
        return out

    def _shared(self, payload: tuple) -> tuple:
        """(wire snapshot, derived, new lambda?, new frozen?) -> (Snapshot, derived), re-linking the shared maps."""
        wire, extra, new_lambda, new_frozen = payload
        lam = wire.lambda_map if new_lambda else self._last_maps[0]
        frozen = wire.frozen if new_frozen else self._last_maps[1]
        self._last_maps = (lam, frozen)
        return dataclasses.replace(wire, lambda_map=lam, frozen=frozen), extra

    @property
    def busy_run(self) -> int | None:
        """The id of the run the engine is working on, None when none."""
        return self._run

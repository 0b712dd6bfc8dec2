"""The application state (Qt-free, like napari's components): the one owner of everything the window shows.

It owns the current image and its model input, the runs of that image (`runs`: KeptRun, each the one owner of its
description, RunHistory, engine record, measured metrics and CAM state; `shown` is the one on screen, `run`,
`history`, `record`, `files` and `cam` are its parts), the cursor (search step, iteration) with the rule "follow
live until the user moves it", the CAM selection and its cache (a shown map always carries the key that produced
it) and the pair of runs compared. Views subscribe to its events and render; exports and sessions read it;
nothing reads state back from widgets.

It talks to the engine through an EngineClient-like object (`open_image`, `start_run`, `pause`, `resume`, `step`,
`stop`, `submit`, `cancel`) and is fed the client's events through `handle` (the Qt layer polls the client on a
timer; tests can feed events by hand).

Events (`state.events.connect(name, callback)`):
  engine(ready: bool)      the engine became ready, or was lost and is restarting
  image()                  a new image (or session) replaced everything: every view resets
  run()                    a run was prepared (state.run is its description)
  history()                snapshots were added to state.history
  cursor()                 state.cursor changed
  status()                 state.status / state.message changed
  result()                 the run finished (state.history.result) or ended
  cam()                    the CAM selection, cache, job or IS changed
  weights_missing(info)    a torchvision model's weights are missing: {"arch", "path" (where they belong), "message"}
  weights_installed(arch, path)  a weights file the user picked for `arch` is now where torchvision looks
  runs()                   the run list changed (a run kept, removed or renamed; another one shown)
  compare()                the compared pair changed (state.compared)
  error(text)              something failed: one line for the user; the state is as it was
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from gse_algo.defaults import EXPENSIVE_METHODS
from gse_desktop.history import RunHistory
from gse_desktop.records import Final, Measured, OpenedImage, RunDescription, RunSpec

CAM_IMAGES = ("clean", "adversarial")
CAM_BATCH = 4  # masked/ablated inputs per pass of ScoreCAM/AblationCAM: small, so that a cancel acts soon
IDLE, OPENING, LOADING, RUNNING, PAUSED, STOPPED, FINISHED, FAILED = (
    "idle", "opening", "loading", "running", "paused", "stopped", "finished", "failed")
ACTIVE = (LOADING, RUNNING, PAUSED)
MAX_KEPT_RUNS = 20  # runs of the current image kept for comparison; the oldest goes first (each holds its history)
MAX_NAME = 80  # characters of a run's name


class Events:
    """A tiny event hub: callbacks per event name, called in the order they were connected."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable]] = defaultdict(list)

    def connect(self, name: str, callback: Callable) -> None:
        self._callbacks[name].append(callback)

    def disconnect(self, name: str, callback: Callable) -> None:
        self._callbacks[name].remove(callback)

    def emit(self, name: str, *args: object) -> None:
        for callback in list(self._callbacks[name]):
            callback(*args)


@dataclass(frozen=True)
class CamKey:
    """What a CAM shows: computed on `image` ('clean' / 'adversarial') for class `class_index`."""

    image: str
    class_index: int
    method: str
    layer: str


@dataclass
class CamState:
    selection: CamKey | None = None  # what the user asks for
    shown: CamKey | None = None  # the key of the map on screen (may lag behind the selection while one computes)
    cache: dict[CamKey, np.ndarray] = field(default_factory=dict)
    job: tuple[int, CamKey] | None = None
    progress: float = 0.0
    final: Final | None = None  # the returned example and its IS
    final_job: int | None = None
    top_percent: int = 20
    opacity: float = 0.6
    message: str = ""

    @property
    def map(self) -> np.ndarray | None:
        return self.cache.get(self.shown) if self.shown is not None else None


def run_name(text: str) -> str:
    """The name a run gets from `text` (the run list's rename, a session's name): one line of printable characters,
    spaces collapsed, at most MAX_NAME characters ('' when nothing is left)."""
    printable = "".join(ch for ch in str(text) if ch.isprintable() or ch.isspace())
    return " ".join(printable.split())[:MAX_NAME]


@dataclass(eq=False)
class KeptRun:
    """One run of the current image: what ran, every frame, the engine's record and measured metrics, its CAM.
    `key` identifies it in this window; `name` is the user's (renamable)."""

    key: int
    name: str = ""
    description: RunDescription | None = None  # None until the engine has prepared the run
    history: RunHistory = field(default_factory=RunHistory)
    record: dict = field(default_factory=dict)  # the engine's metrics record (gse_algo.record, as JSON)
    files: dict[int, np.ndarray] = field(default_factory=dict)  # bits -> the integers of the adversarial file
    measured: Measured | None = None  # the registry's metrics, time and counts (None: stopped or failed)
    cam: CamState = field(default_factory=CamState)
    calls: tuple[int, int] | None = None  # a library attack's forward/backward counts so far

    def outcome(self) -> tuple[np.ndarray, int]:
        """(delta [C,H,W], class) where the run ended: its returned example, else (stopped) its latest iterate."""
        result = self.history.result
        if result is not None:
            return np.asarray(result.delta[0]), int(result.adv_pred[0])
        last = self.history.frame(*self.history.latest())
        return last.delta[0], int(last.pred[0])


def _part(name: str, doc: str) -> property:
    """A part of the shown run, read and written through `AppState.shown`."""
    return property(lambda self: getattr(self.shown, name), lambda self, value: setattr(self.shown, name, value),
                    doc=doc)


class AppState:
    run = _part("description", "The shown run's RunDescription (None before the engine prepared it).")
    history = _part("history", "The shown run's RunHistory.")
    record = _part("record", "The shown run's engine record.")
    files = _part("files", "The shown run's adversarial file integers per bit depth.")
    cam = _part("cam", "The shown run's CAM state.")

    def __init__(self, engine) -> None:
        self.engine = engine
        self.events = Events()
        self.engine_ready = bool(getattr(engine, "ready", False))  # a shared client may be ready already
        self.attacks: list = list(getattr(engine, "info", {}).get("attacks", []))  # AttackInfo, from the engine
        self.image: OpenedImage | None = None
        self._keys = itertools.count(1)
        self.shown = KeptRun(next(self._keys))
        self.cursor: tuple[int, int] | None = None
        self.follow = True
        self.runs: list[KeptRun] = []  # the kept runs of the image, oldest first (the shown one may be new)
        self.compared: tuple[int, int] | None = None  # keys of the two runs compared
        self.session_path: str | None = None  # the session file the shown run came from (or was saved to)
        self.unsaved = False  # a run ended or the run list changed since the runs were saved: discarding asks first
        self.status, self.message = IDLE, ""
        self.run_id: int | None = None
        self.spec: RunSpec | None = None  # what the current/last Run asked for
        self._opening: int | None = None
        self._weights_job: tuple[int, str] | None = None  # (job, arch)
        self._active_s, self._resumed_at = 0.0, None  # run time, pauses excluded

    # -- image ---------------------------------------------------------------------------------------------------
    def open_image(self, path: str, model_spec: str, device: str) -> None:
        """Ask the engine to decode `path`; the state switches when it answers (see `_opened`), else stays."""
        if self.active:
            self.stop()
        self._opening = self.engine.open_image(path, model_spec, device)
        self._set_status(OPENING, f"opening {path} …")

    def _opened(self, opened: OpenedImage) -> None:
        self._clear_run()
        self.image, self.session_path, self.unsaved = opened, None, False
        self._set_runs([])
        note = f" — no model: {opened.model_error}" if opened.model_error else ""
        w, h = opened.file_size
        self._set_status(IDLE, f"image {opened.name} ({w}x{h}){note}")
        self.events.emit("image")

    def new_run(self, **parts: object) -> KeptRun:
        """A KeptRun with this window's next key (sessions make their runs with it)."""
        return KeptRun(next(self._keys), **parts)

    def show_session(self, image: OpenedImage, runs: list[KeptRun], shown: KeptRun, path: str,
                     cursor: tuple[int, int] | None, compared: tuple[int, int] | None = None) -> None:
        """Switch to a reopened session's runs in one step (it was read and checked completely before); `shown`
        (one of `runs`) is on screen at `cursor`, and the keys `compared` (two of `runs`, A first) are compared."""
        if self.active:
            self.stop()
        self._clear_run()
        self._opening = None  # an image asked for before (at start-up, say) no longer replaces the session
        self.image, self.session_path, self.unsaved = image, path, False
        self.compared = compared
        self._set_runs(runs)
        self._show(shown, cursor, f"session {path}")
        self.events.emit("compare")  # after the shown run's views: a compared pair comes on screen

    def show_kept(self, key: int) -> None:
        """Show one of the kept runs (not while a run is active: its frames go to the run on screen)."""
        if self.active:
            self.events.emit("error", "stop the run first to show another one")
            return
        kept = self.kept(key)
        if kept is not self.shown:
            self._leave_cam()
            self._show(kept, None, f"showing {kept.name}")
            self._resume_cam()

    def _show(self, kept: KeptRun, cursor: tuple[int, int] | None, message: str) -> None:
        self.shown, self.follow, self.run_id = kept, False, None
        self.cursor = cursor if cursor is not None and self._valid(*cursor) else self._chosen_position()
        self._set_status(FINISHED if kept.history.result is not None else STOPPED, message)
        for event in ("image", "run", "history", "result", "cursor", "cam", "runs"):
            self.events.emit(event)

    def _clear_run(self) -> None:
        self._leave_cam()
        self.shown, self.cursor, self.follow = KeptRun(next(self._keys)), None, True
        self.run_id = None

    def discard_unsaved(self) -> None:
        """The user chose to drop the unsaved runs (quitting)."""
        self.unsaved = False
        self.events.emit("status")

    def mark_saved(self, path: str) -> None:
        """The kept runs are now in the session file `path`."""
        self.unsaved, self.session_path = False, path
        self.events.emit("status")

    # -- the run list --------------------------------------------------------------------------------------------
    def kept(self, key: int) -> KeptRun:
        """The kept run with this key (KeyError when there is none)."""
        for kept in self.runs:
            if kept.key == key:
                return kept
        raise KeyError(f"no run {key} in this window")

    def rename_run(self, key: int, name: str) -> None:
        """Give a kept run the name run_name(name); a name with nothing left in it changes nothing."""
        name = run_name(name)
        if name:
            self.kept(key).name = name
            self.unsaved = True
            self.events.emit("runs")
            if self.compared is not None and key in self.compared:
                self.events.emit("compare")

    def remove_run(self, key: int) -> None:
        """Forget a kept run; removing the one on screen shows the newest remaining one (or nothing)."""
        kept = self.kept(key)
        if kept is self.shown and self.active:
            self.events.emit("error", "stop the run first to remove it")
            return
        self._set_runs([k for k in self.runs if k is not kept])
        self.unsaved = True
        if kept is self.shown:
            self._leave_cam()
            if self.runs:
                self._show(self.runs[-1], None, f"removed {kept.name}")
                self._resume_cam()
            else:
                self._clear_run()
                self._set_status(IDLE, f"removed {kept.name}")
                self.events.emit("image")

    def compare(self, keys: tuple[int, int] | None) -> None:
        """Compare two kept runs (A, B), or stop comparing (None)."""
        if keys is not None:
            keys = (self.kept(keys[0]).key, self.kept(keys[1]).key)
        if keys != self.compared:
            self.compared = keys
            self.events.emit("compare")

    def _set_runs(self, runs: list[KeptRun]) -> None:
        self.runs = list(runs)[-MAX_KEPT_RUNS:]
        keys = {k.key for k in self.runs}
        if self.compared is not None and not set(self.compared) <= keys:
            self.compared = None
            self.events.emit("compare")
        self.events.emit("runs")

    # -- runs ----------------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def start_run(self, spec: RunSpec) -> None:
        if self.image is None:
            self.events.emit("error", "open an image first")
            return
        if self.active:
            self.stop()
        self._clear_run()
        self.spec = spec
        self.session_path = None
        self.run_id = self.engine.start_run(spec)
        self.events.emit("runs")  # the run shown is no longer one of the list
        self._active_s, self._resumed_at = 0.0, None
        self._set_status(LOADING, "preparing the run …")
        self.events.emit("image")  # the previous run's displays go (the image stays)

    def pause(self) -> None:
        if self.status == RUNNING:
            self.engine.pause(self.run_id)
            self._pause_clock()
            self._set_status(PAUSED, "paused")

    def resume(self) -> None:
        if self.status == PAUSED:
            self.engine.resume(self.run_id)
            self._resumed_at = time.perf_counter()
            self._set_status(RUNNING, "running")

    def step(self) -> None:
        """One more iteration, then pause."""
        if self.status in (RUNNING, PAUSED):
            self.engine.step(self.run_id)
            self._pause_clock()
            self._set_status(PAUSED, "paused (one more iteration)")

    def stop(self) -> None:
        """Stop the run at its next iteration; what it produced stays."""
        if self.active:
            self.engine.stop(self.run_id)
            unit = "frames" if self.run is not None and not self.run.attack.has_search else "iterations"
            self._ended(STOPPED, f"stopped after {len(self.history)} {unit}")

    def elapsed(self) -> float:
        """Seconds the run has been running, pauses excluded."""
        running = time.perf_counter() - self._resumed_at if self._resumed_at is not None else 0.0
        return self._active_s + running

    def _pause_clock(self) -> None:
        self._active_s = self.elapsed()
        self._resumed_at = None

    def _ended(self, status: str, message: str) -> None:
        self._pause_clock()
        self.run_id = None if status != FINISHED else self.run_id
        ran = self.run is not None and len(self.history) > 0
        self.unsaved = self.unsaved or ran
        self._set_status(status, message)
        if ran:
            if not self.shown.name:
                self.shown.name = self._default_name(self.run)
            if self.shown not in self.runs:
                self._set_runs([*self.runs, self.shown])
            self._start_cam()
        self.events.emit("result")

    def _default_name(self, run: RunDescription) -> str:
        """'GSE 2': the attack's title and its number among this image's runs."""
        taken = {k.name for k in self.runs}
        number = 1 + sum(1 for k in self.runs if k.description is not None and k.description.attack.name == run.attack.name)
        while f"{run.attack.title} {number}" in taken:
            number += 1
        return f"{run.attack.title} {number}"

    # -- cursor --------------------------------------------------------------------------------------------------
    def move_cursor(self, step: int, iteration: int, user: bool = True) -> None:
        """Show (step, iteration), clamped to what exists; a user's move stops following the live run."""
        steps = self.history.steps
        if not steps:
            return
        step = min(max(step, steps[0]), steps[-1])
        if step not in steps:
            return
        iteration = min(max(iteration, 0), self.history.n_iterations(step) - 1)
        if user:
            self.follow = False
        if (step, iteration) != self.cursor:
            self.cursor = (step, iteration)
            self.events.emit("cursor")

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if follow and self.history.latest() is not None:
            self.move_cursor(*self.history.latest(), user=False)

    def frame(self):
        """The decoded snapshot at the cursor (None when nothing is shown)."""
        return self.history.frame(*self.cursor) if self.cursor is not None else None

    def _valid(self, step: int, iteration: int) -> bool:
        return step in self.history.steps and 0 <= iteration < self.history.n_iterations(step)

    def _chosen_position(self) -> tuple[int, int] | None:
        result = self.history.result
        chosen = int(result.chosen_step[0]) if result is not None else -1
        if chosen >= 0 and chosen in self.history.steps:
            return chosen, self.history.n_iterations(chosen) - 1
        return self.history.latest()

    # -- engine events -------------------------------------------------------------------------------------------
    def handle(self, events: list) -> None:
        """Apply a batch of engine events (from EngineClient.poll) in order."""
        added = False
        for kind, ident, payload in events:
            if kind == "snapshot":
                if ident == self.run_id and self.active:
                    self.history.add(*payload)
                    added = True
                continue
            if added:
                self._after_snapshots()
                added = False
            getattr(self, f"_on_{kind}")(ident, payload)
        if added:
            self._after_snapshots()

    def _after_snapshots(self) -> None:
        self.events.emit("history")
        if self.follow:
            self.move_cursor(*self.history.latest(), user=False)

    def _on_ready(self, _ident: int, payload: dict) -> None:
        self.engine_ready = True
        self.attacks = list((payload or {}).get("attacks", self.attacks))
        self.events.emit("engine", True)

    def _on_calls(self, ident: int, counts: tuple[int, int]) -> None:
        if ident == self.run_id and self.active:
            self.shown.calls = (int(counts[0]), int(counts[1]))
            self.events.emit("status")

    def _on_engine_lost(self, ident: int, reason: str) -> None:
        self.engine_ready = False
        self.events.emit("engine", False)
        self.cam.job = None
        self.cam.final_job = None
        if self.active and ident == self.run_id:
            self._ended(FAILED, f"the run ended: {reason}")
        if self._opening is not None:
            self._opening = None
            self._set_status(IDLE, "")
        self.events.emit("error", reason)

    def _on_opened(self, ident: int, opened: OpenedImage) -> None:
        if ident == self._opening:
            self._opening = None
            self._opened(opened)

    def _on_open_failed(self, ident: int, text: str) -> None:
        if ident == self._opening:
            self._opening = None
            self._set_status(IDLE if self.history.result is None else FINISHED, "")
            self.events.emit("error", text)

    def _on_status(self, ident: int, text: str) -> None:
        if ident == self.run_id and self.active:
            self._set_status(self.status, text)

    def _on_prepared(self, ident: int, run: RunDescription) -> None:
        if ident != self.run_id or not self.active:
            return
        self.run = run
        if self.image is not None and run.model != self.image.model:  # the model input of this model
            self.image = replace(self.image, model_input=run.image, model=run.model, clean=run.clean,
                                 model_error=None)
        self._resumed_at = time.perf_counter()
        mode = f"target {run.label} ({run.model.class_name(run.label)})" if run.targeted else "untargeted"
        self._set_status(RUNNING if self.status == LOADING else self.status, f"running {run.attack.title}, {mode}")
        self.events.emit("run")

    def _on_finished(self, ident: int, payload) -> None:
        if ident != self.run_id or payload is None:
            return  # a stopped run's last word (its displays were already kept)
        result, self.record, self.files, self.shown.measured = payload
        self.history.set_result(result)
        if self.follow and self._chosen_position() is not None:
            self.move_cursor(*self._chosen_position(), user=False)
        adv = int(result.adv_pred[0])
        names = self.run.model if self.run else None
        fools = self.record.get("fools_at_8bit")
        verdict = "still fools" if fools else "no longer fools"
        saved = "" if fools is None else f"; as an 8-bit PNG it {verdict} the model"
        chosen = f", search step {int(result.chosen_step[0]) + 1} chosen" if self.run.attack.has_search else ""
        outcome = (f"success: now {adv} ({names.class_name(adv) if names else adv}){chosen}{saved}"
                   if result.success[0] else "no adversarial example found")
        self._ended(FINISHED, f"done in {self.elapsed():.1f} s — {outcome}")

    def _on_failed(self, ident: int, text: str) -> None:
        if ident == self.run_id and self.active:
            self._ended(FAILED, f"the run failed: {text}")
            self.events.emit("error", f"the run failed: {text}")

    # -- weights files -------------------------------------------------------------------------------------------
    def _on_weights_missing(self, _ident: int, info: dict) -> None:
        self.events.emit("weights_missing", info)

    def install_weights(self, arch: str, path: str) -> None:
        """Have the engine check the weights file `path` and put it where torchvision looks for `arch`'s."""
        self._weights_job = (self.engine.submit("weights", {"arch": arch, "path": path}), arch)
        self._set_status(self.status, f"checking and installing {path} for {arch} …")

    # -- CAM -----------------------------------------------------------------------------------------------------
    def _job_payload(self) -> dict:
        return {"model_spec": self.run.spec.model_spec, "device": self.run.spec.device}

    def _start_cam(self) -> None:
        """A run has ended: compute its IS and the default CAM (GradCAM of the clean class on the clean image)."""
        self.cam = CamState(top_percent=self.cam.top_percent, opacity=self.cam.opacity)
        self._resume_cam()

    def _resume_cam(self) -> None:
        """The shown run's IS (unless known) and its selected CAM (the default GradCAM when none is)."""
        run, cam = self.run, self.cam
        if run is None or not len(self.history):
            return
        if cam.final is None:
            delta, adv_class = self._after_attack()
            goal = run.label if run.targeted else adv_class
            cam.final_job = self.engine.submit("final", {**self._job_payload(), "clean": run.image, "delta": delta,
                                                         "clean_class": run.clean_class, "goal": goal})
        self.select_cam(cam.selection or CamKey("clean", run.clean_class, "GradCAM", run.model.cam_layer))

    def _leave_cam(self) -> None:
        """The shown run goes off screen: its CAM jobs are cancelled (they start again when it comes back)."""
        self._cancel_cam_jobs()
        self.cam.job, self.cam.final_job, self.cam.progress = None, None, 0.0

    def _after_attack(self) -> tuple[np.ndarray, int]:
        return self.shown.outcome()

    def cam_classes(self) -> list[tuple[str, int]]:
        """(role, class index) the CAM can show: the clean class, the class after the attack, the target."""
        run = self.run
        if run is None:
            return []
        roles = [("clean", run.clean_class)]
        if self.history.latest() is not None:
            roles.append(("after attack", self._after_attack()[1]))
        if run.targeted:
            roles.append(("target", run.label))
        return roles

    def select_cam(self, key: CamKey, force: bool = False) -> None:
        """Show the CAM of `key`: from the cache, else computed (ScoreCAM/AblationCAM only when forced)."""
        cam = self.cam
        cam.selection = key
        if key in cam.cache:
            self.cancel_cam()  # a map nobody asks for any more would hold up the engine
            cam.shown, cam.message = key, ""
        elif cam.job is not None and cam.job[1] == key:
            pass
        elif self.active or self.run is None:
            cam.message = "CAMs are computed when a run has ended."
        elif key.image == "adversarial" and cam.final is None:
            cam.message = "waiting for the adversarial example …"
        elif key.method in EXPENSIVE_METHODS and not force:
            cam.message = f"{key.method} costs one forward pass per channel of the layer: press Compute."
        else:
            self.cancel_cam()
            picture = self.run.image if key.image == "clean" else cam.final.adversarial
            cam.job = (self.engine.submit("cam", {**self._job_payload(), "image": picture,
                                                  "class_index": key.class_index, "method": key.method,
                                                  "layer": key.layer, "batch_size": CAM_BATCH}), key)
            cam.progress = 0.0
            cam.message = f"computing {key.method} …" + (f" (the map shown is still {describe(cam.shown)})"
                                                          if cam.shown is not None else "")
        self.events.emit("cam")

    def cancel_cam(self) -> None:
        if self.cam.job is not None:
            self.engine.cancel(self.cam.job[0])
            self.cam.message = f"{self.cam.job[1].method} cancelled"
            self.cam.job, self.cam.progress = None, 0.0
            self.events.emit("cam")

    def set_cam_view(self, top_percent: int | None = None, opacity: float | None = None) -> None:
        if top_percent is not None:
            self.cam.top_percent = int(top_percent)
        if opacity is not None:
            self.cam.opacity = float(opacity)
        self.events.emit("cam")

    def _cancel_cam_jobs(self) -> None:
        for job in (self.cam.job[0] if self.cam.job else None, self.cam.final_job):
            if job is not None:
                self.engine.cancel(job)

    def _on_job_progress(self, ident: int, fraction: float) -> None:
        if self.cam.job is not None and ident == self.cam.job[0]:
            self.cam.progress = fraction
            self.events.emit("cam")

    def _on_job_done(self, ident: int, result) -> None:
        cam = self.cam
        if self._weights_job is not None and ident == self._weights_job[0]:
            arch, self._weights_job = self._weights_job[1], None
            self._set_status(self.status, f"weights installed at {result}: {arch} works offline now")
            self.events.emit("weights_installed", arch, result)
        elif ident == cam.final_job:
            cam.final, cam.final_job = result, None
            if cam.selection is not None and cam.selection not in cam.cache:
                self.select_cam(cam.selection)  # an adversarial-image CAM waited for it
            self.events.emit("cam")
        elif cam.job is not None and ident == cam.job[0]:
            key = cam.job[1]
            cam.cache[key], cam.job, cam.progress = result, None, 1.0
            if key == cam.selection:
                cam.shown, cam.message = key, ""
            self.events.emit("cam")

    def _on_job_failed(self, ident: int, text: str) -> None:
        cam = self.cam
        if self._weights_job is not None and ident == self._weights_job[0]:
            self._weights_job = None
            self.events.emit("error", f"weights not installed: {text}")
            return
        if ident == cam.final_job:
            cam.final_job = None
        elif cam.job is not None and ident == cam.job[0]:
            cam.job = None
        else:
            return
        cam.message = text
        self.events.emit("cam")
        self.events.emit("error", f"CAM: {text}")

    def _on_job_cancelled(self, _ident: int, _payload: object) -> None:
        pass

    # -- status --------------------------------------------------------------------------------------------------
    def _set_status(self, status: str, message: str) -> None:
        self.status, self.message = status, message
        self.events.emit("status")


def describe(key: CamKey | None, names=None) -> str:
    """'GradCAM of class 3 (clean image, layer features.18)' — what a CAM key shows, for captions and messages."""
    if key is None:
        return "no CAM"
    name = f" {names.class_name(key.class_index)}" if names is not None else ""
    return f"{key.method} of class {key.class_index}{name} ({key.image} image, layer {key.layer})"

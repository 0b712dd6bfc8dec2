"""The app state without Qt (as napari tests its components): events, cursor rules, transactional opens, CAM keys.

Engine events are fed by hand; the engine is a recorder of commands.
"""

import subprocess
import sys

import numpy as np

from conftest import RecordingEngine
from gse_algo.params import GSEParams
from gse_algo.snapshot import GSEResult, Snapshot, SparseDelta
from gse_desktop.records import Final, ModelInfo, OpenedImage, Prediction, RunDescription, RunSpec
from gse_desktop.state import AppState, CamKey

MODEL = ModelInfo("tiny", "tiny", tuple(f"class {i}" for i in range(10)), (4, 4), "0", ("0", "2"), "cpu")


def opened(name="a.png"):
    return OpenedImage(name, name, (4, 4), b"png", np.zeros((4, 4, 3), np.float32), MODEL,
                       Prediction(np.array([3, 1]), np.array([0.9, 0.1])))


def description(spec):
    return RunDescription(spec, MODEL, np.zeros((4, 4, 3), np.float32), 3, Prediction(np.array([3]), np.array([1.0])),
                          False, spec.params, None)


def snapshot(step, iteration, pixels=(0,), success=False):
    delta = SparseDelta((1, 3, 4, 4), np.array(pixels, np.int64), np.full((len(pixels), 3), 0.1, np.float32))
    one = np.ones(1)
    return Snapshot(step, iteration, 1, delta, np.ones((1, 4, 4), np.float32), None, one, one, one, one, one, one,
                    np.array([5]), np.array([[5, 3]]), np.array([[0.6, 0.4]]), np.array([success]), np.array([True]))


def extra(snap):
    n = len(snap.delta.pixels)
    return {"acp": np.array([n]), "anc": np.array([1]), "d20": np.array([-1])}


class Recorder:
    def __init__(self, state):
        self.seen = []
        for name in ("image", "run", "history", "cursor", "status", "result", "cam", "error", "engine"):
            state.events.connect(name, lambda *args, name=name: self.seen.append(name))


def ready_state():
    state = AppState(RecordingEngine())
    state.open_image("a.png", "tiny", "cpu")
    state.handle([("opened", 1, opened())])
    return state


def start(state, iters=5):
    state.start_run(RunSpec("a.png", "tiny", params=GSEParams(iters=iters, search_steps=2, k_hat=1), preset=None))
    run_id = state.run_id
    state.handle([("prepared", run_id, description(state.spec))])
    return run_id


def feed(state, run_id, positions):
    state.handle([("snapshot", run_id, (s, extra(s))) for s in (snapshot(*p) for p in positions)])


def imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_state_needs_neither_qt_nor_torch_and_the_window_no_torch():
    assert not {m for m in imported_by("gse_desktop.state") if m.split(".")[0] in ("PySide6", "torch")}
    assert "torch" not in imported_by("gse_desktop.main_window")  # the window shows before torch is loaded


def test_open_switches_only_when_the_engine_answers_and_a_failure_changes_nothing():
    state = AppState(RecordingEngine())
    seen = Recorder(state)
    state.open_image("a.png", "tiny", "cpu")
    assert state.image is None and state.engine.commands[0][:2] == ("open", "a.png")
    state.handle([("opened", 1, opened())])
    assert state.image.name == "a.png" and seen.seen.count("image") == 1
    run_id = start(state)
    feed(state, run_id, [(0, 0), (0, 1)])
    state.stop()
    history = state.history
    state.open_image("bad.png", "tiny", "cpu")
    state.handle([("open_failed", state._opening, "bad.png: not an image file")])
    assert state.image.name == "a.png" and state.history is history and len(state.runs) == 1
    assert seen.seen[-1] == "error"
    state.open_image("b.png", "tiny", "cpu")
    state.handle([("opened", 999, opened("stale.png")), ("opened", state._opening, opened("b.png"))])
    assert state.image.name == "b.png" and len(state.history) == 0 and state.runs == [] and state.cursor is None


def test_the_cursor_follows_the_live_run_until_the_user_moves_it():
    state = ready_state()
    run_id = start(state)
    seen = Recorder(state)
    feed(state, run_id, [(0, 0), (0, 1), (0, 2)])
    assert state.cursor == (0, 2) and state.follow
    assert seen.seen == ["history", "cursor"]  # one batch of events: one of each
    state.move_cursor(0, 1)
    assert state.cursor == (0, 1) and not state.follow
    feed(state, run_id, [(0, 3), (1, 0)])
    assert state.cursor == (0, 1)
    state.move_cursor(7, 99)  # clamped to what exists
    assert state.cursor == (1, 0)
    state.set_follow(True)
    feed(state, run_id, [(1, 1)])
    assert state.cursor == (1, 1)


def test_events_of_another_run_are_ignored_and_stop_keeps_the_history():
    state = ready_state()
    first = start(state)
    feed(state, first, [(0, 0)])
    second = start(state)
    assert ("stop", first) in state.engine.commands
    feed(state, first, [(0, 0), (0, 1)])
    state.handle([("finished", first, None), ("failed", first, "late")])
    assert len(state.history) == 0 and state.active and state.run_id == second
    feed(state, second, [(0, 0), (0, 1)])
    state.stop()
    assert state.status == "stopped" and len(state.history) == 2
    state.handle([("finished", second, None)])  # the engine's answer to Stop changes nothing
    assert state.status == "stopped" and len(state.history) == 2


def test_pause_time_is_not_counted_and_a_finished_run_shows_its_chosen_step(monkeypatch):
    import gse_desktop.state as module

    now = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: now[0])
    state = ready_state()
    run_id = start(state)  # running from t = 0
    now[0] = 10.0
    state.pause()
    assert state.status == "paused"
    now[0] = 20.0
    state.resume()
    feed(state, run_id, [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])
    now[0] = 50.0
    result = GSEResult(np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 4, 4)), np.array([True]), np.array([5]),
                       np.array([0]), np.ones(1))
    state.move_cursor(1, 0)
    state.set_follow(True)
    state.handle([("finished", run_id, (result, {"fools_at_8bit": False}, {}, None))])
    assert state.status == "finished" and state.cursor == (0, 1)  # following: the engine's choice
    assert state.elapsed() == 40.0 and "done in 40.0 s" in state.message
    assert "as an 8-bit PNG it no longer fools the model" in state.message and state.record["fools_at_8bit"] is False
    kinds = [c[1] for c in state.engine.commands if c[0] == "job"]
    assert kinds == ["final", "cam"]  # the IS and the default CAM are asked for once the run has ended


def test_cam_keys_cache_and_what_is_shown_while_another_map_computes():
    state = ready_state()
    run_id = start(state)
    feed(state, run_id, [(0, 0)])
    state.stop()
    final_job, cam_job = [i + 1 for i, c in enumerate(state.engine.commands) if c[0] == "job"]
    grad = CamKey("clean", 3, "GradCAM", "0")
    assert state.cam.job == (cam_job, grad) and state.cam.shown is None
    state.handle([("job_done", cam_job, np.full((4, 4), 0.5, np.float32))])
    assert state.cam.shown == grad and state.cam.map[0, 0] == 0.5
    score = CamKey("clean", 3, "ScoreCAM", "0")
    state.select_cam(score)
    assert "press Compute" in state.cam.message and state.cam.job is None
    state.select_cam(score, force=True)
    assert state.cam.shown == grad and "still GradCAM" in state.cam.message  # the map on screen keeps its key
    score_job = state.cam.job[0]
    state.cancel_cam()
    assert ("cancel", score_job) in state.engine.commands
    state.handle([("job_done", score_job, np.zeros((4, 4), np.float32))])  # too late: dropped
    assert score not in state.cam.cache and state.cam.shown == grad
    adversarial = CamKey("adversarial", 3, "GradCAM", "2")
    state.select_cam(adversarial)
    assert "waiting for the adversarial example" in state.cam.message
    state.handle([("job_done", final_job, Final.from_delta(np.zeros((4, 4, 3)), np.zeros((3, 4, 4)), [0.1] * 5))])
    assert state.cam.job[1] == adversarial  # asked for as soon as the example is there
    state.select_cam(grad)
    assert state.cam.shown == grad and state.cam.job is None  # from the cache, the other job cancelled


def test_a_lost_engine_ends_the_run_with_a_message_and_keeps_what_arrived():
    state = ready_state()
    run_id = start(state)
    feed(state, run_id, [(0, 0), (0, 1)])
    seen = Recorder(state)
    state.handle([("engine_lost", run_id, "the engine process ended unexpectedly (exit code -6)")])
    assert state.status == "failed" and len(state.history) == 2 and not state.engine_ready
    assert "error" in seen.seen and "exit code -6" in state.message
    state.handle([("ready", 0, {})])
    assert state.engine_ready

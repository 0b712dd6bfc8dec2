"""The engine runs every registered attack through the registry (in-process here, with scripted commands): GSE's
snapshots stay the engine's own; a library attack's forward calls become live frames with its counts, and pause,
step and stop act between forward calls."""

import queue

import numpy as np
import pytest
import torch

import fake_attack
from conftest import loader
from test_engine import modules_needed
from gse_algo import images, quantize
from gse_algo.attack import iterate_gse
from gse_algo.attacks import REGISTRY
from gse_algo.attacks.library import ModelCall
from gse_algo.params import GSEParams
from gse_desktop.engine_attacks import LEVEL, LiveFrames
from gse_desktop.engine_process import Engine
from gse_desktop.records import RunSpec


NEVER = 10 ** 9  # a command only a blocking read (a paused or idle engine) gets


class Script:
    """The engine's command queue: the run first, then each (after n snapshots, command) once that many snapshot
    events exist; a blocking read (a paused or idle engine) takes the next command at once."""

    def __init__(self, events: list, run: tuple, later: list[tuple[int, tuple]]) -> None:
        self.events, self.todo = events, [(0, run), *later, (NEVER, ("shutdown", 0, None))]

    def get(self, block=True, timeout=None):
        if self.todo and (block or sum(e[0] == "snapshot" for e in self.events) >= self.todo[0][0]):
            return self.todo.pop(0)[1]
        raise queue.Empty


class Events(list):
    def put(self, event):
        self.append(event)


def serve(spec: RunSpec, later=()) -> list:
    events = Events()
    Engine(Script(events, ("run", 1, spec), list(later)), events, loader).serve()
    failed = [e for e in events if e[0] == "failed"]
    assert not failed, failed
    return events


def payloads(events, kind):
    return [payload for k, _, payload in events if k == kind]


@pytest.fixture
def fake():
    fake_attack.register()
    yield fake_attack.FAKE
    REGISTRY.pop(fake_attack.NAME)


def test_gse_through_the_registry_gives_the_engine_s_own_snapshots(image_file):
    params = GSEParams(iters=12, search_steps=2, k_hat=4, sigma=0.01, mu=0.1)
    events = serve(RunSpec(image_file, "tiny", params=params, preset=None))
    model = loader("tiny", "cpu")
    x = quantize.to_grid(images.load_image(image_file, (16, 16))[None], 8)
    label = int(model.model(x).argmax())
    direct = iterate_gse(model.model, x, torch.tensor([label]), False, params, trace=True)
    expected = list(direct)
    got = [snap for snap, *_ in payloads(events, "snapshot")]
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert (a.step, a.iteration, a.phase) == (b.step, b.iteration, b.phase)
        np.testing.assert_array_equal(a.delta.dense(), b.delta.dense())
    (description,) = payloads(events, "prepared")
    assert description.attack.name == "gse" and description.params == params
    result, record, _, measured = payloads(events, "finished")[0]
    np.testing.assert_array_equal(result.x_adv, direct.result.x_adv.numpy())
    assert measured.n_backward == direct.result.n_forward_backward and record["acp"] == measured.metrics["acp"]
    assert payloads(events, "calls") == []  # GSE reports its iterations, not forward calls


def test_a_library_attack_streams_its_iterates_and_is_measured(image_file, fake):
    steps = 5
    events = serve(RunSpec(image_file, "tiny", attack=fake.name, settings={"steps": steps, "pixels": 2}))
    (description,) = payloads(events, "prepared")
    assert description.attack.title == "fake-sparse" and description.params is None
    assert description.settings == {"steps": steps, "pixels": 2, "size": 0.5}
    snaps = [snap for snap, *_ in payloads(events, "snapshot")]
    # one frame per step (the calls on a batch of two are not iterates), then the returned images
    assert [s.iteration for s in snaps] == list(range(steps + 1)) and {s.step for s in snaps} == {0}
    assert all(s.lambda_map is None and s.frozen is None and s.phase == 0 for s in snaps)
    assert [len(s.delta.pixels) for s in snaps[:2]] == [0, 2]  # the first call sees the clean image
    result, record, files, measured = payloads(events, "finished")[0]
    np.testing.assert_allclose(snaps[-1].delta.dense(), result.delta, atol=1e-7)
    # every step: one forward with a backward pass and one forward on the batch of two
    assert (measured.n_forward, measured.n_backward) == (2 * steps, steps)
    assert (2 * steps - 2, steps - 1) in payloads(events, "calls")  # the last frame's: before the last step's calls
    changed = np.abs(result.delta[0]).sum(axis=0) > 0
    assert measured.metrics["acp"] == record["acp"] == int(changed.sum()) <= 2 * steps
    assert set(files) == {8, 16} and record["attack"]["name"] == fake.name and record["time_s"] == measured.time_s
    needed = set().union(*(modules_needed(payload) for _, _, payload in events))
    assert "torch" not in needed and {"gse_algo", "gse_desktop", "numpy"} >= needed - {"builtins", "copyreg"}


def test_pause_step_and_stop_act_between_forward_calls(image_file, fake):
    spec = RunSpec(image_file, "tiny", attack=fake.name, settings={"steps": 50})
    # paused after the 2nd frame; a blocking read then gets Step (one more frame, paused again), then Stop
    events = serve(spec, [(2, ("pause", 1, None)), (NEVER, ("step", 1, None)), (NEVER, ("stop", 1, None))])
    assert len(payloads(events, "snapshot")) == 3
    assert payloads(events, "finished") == [None]


def test_live_frames_thin_out_as_a_run_goes_on():
    x = torch.zeros(1, 3, 4, 4)
    frames = LiveFrames(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3)).eval(), x,
                        torch.tensor([0]), False)
    taken = [n for n in range(400) if frames.from_call(ModelCall(n, 0, x + n / 1000)) is not None]
    assert LEVEL == 50
    expected = [*range(50), *range(51, 150, 2), *range(153, 350, 4), *range(357, 400, 8)]
    assert taken == expected
    assert frames.from_call(ModelCall(400, 0, torch.zeros(2, 3, 4, 4))) is None  # not the images' shape
    assert frames.from_call(ModelCall(401, 0, x), force=True) is not None  # a paused run shows where it is


def test_a_random_attack_repeats_with_its_seed_whether_the_model_was_loaded_or_cached(image_file):
    pytest.importorskip("torchattacks")
    spec = RunSpec(image_file, "tiny", attack="pixle", settings={"restarts": 3, "max_iterations": 5}, seed=7)
    events = Events()
    # the second run starts once the engine is idle again: the model is cached by then (loading it drew numbers)
    Engine(Script(events, ("run", 1, spec), [(NEVER - 1, ("run", 2, spec))]), events, loader).serve()
    assert not [e for e in events if e[0] == "failed"]
    first, second = (payload[0].x_adv for kind, _, payload in events if kind == "finished")
    assert np.abs(first - x_clean(image_file)).sum() > 0  # Pixle moved pixels
    np.testing.assert_array_equal(first, second)


def x_clean(image_file):
    return quantize.to_grid(images.load_image(image_file, (16, 16))[None], 8).numpy()

"""Fixtures for the desktop tests: offscreen Qt, isolated settings, one engine process shared by the windows,
a tiny random-weight model (what the engine's loader returns), a generated image."""

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

SIZE = 16
TIMEOUT = 30000  # ms for a run of the tiny model (and its CAM jobs) to end
START_TIMEOUT = 120000  # ms for a new engine process to be ready (imports torch; slow on a busy machine)
HANG, CRASH, SLOW, MISSING = "hang", "crash", "slow", "nonsense"  # model specs the test loader makes odd models of
NO_WEIGHTS = "resnet18"  # the test loader acts as if this model's weights were neither here nor downloadable


def tiny_model():
    """3->8 conv, pool, linear to 10 classes on 16x16 inputs; fixed random weights."""
    import torch

    from gse_algo.models import LoadedModel, Normalized

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 16, 10)).eval()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return LoadedModel("tiny", net, Normalized(net, mean, std).eval(), [f"class {i}" for i in range(10)], (SIZE, SIZE),
                       mean, std, "0", None)


def misbehave(how: str, after: int = 3):
    """A forward pre-hook: every pass sleeps 0.3 s (SLOW), or after `after` passes hangs (HANG) or aborts (CRASH)."""
    calls = []

    def hook(module, inputs):
        calls.append(1)
        if how == SLOW:
            time.sleep(0.3)
        elif len(calls) > after:
            if how == HANG:
                while True:
                    time.sleep(1)
            os.abort()

    return hook


def loader(spec: str, device: str):
    """The engine's model loader in the tests (module level: the engine process imports it)."""
    from gse_algo.models import ModelError

    if spec == MISSING:
        raise ModelError(f"no model named {spec!r}")
    if spec == NO_WEIGHTS:
        from gse_algo.weights import MissingWeights, checkpoint_path, default_entry

        raise MissingWeights(spec, checkpoint_path(default_entry(spec)), "no network")
    model = tiny_model()
    if spec in (HANG, CRASH, SLOW):
        model.net.register_forward_pre_hook(misbehave(spec))
    return model.to(device)


@pytest.fixture(scope="session")
def engine():
    """One engine process for the windows of the whole session (each test's ids are its own)."""
    from fake_attack import register
    from gse_desktop.engine import EngineClient

    client = EngineClient(loader, setup=register)  # the engine knows a stand-in library attack too
    yield client
    client.shutdown()


def wait_ready(qtbot, window) -> None:
    """The engine is ready and the window shows its image."""
    qtbot.waitUntil(lambda: window.state.engine_ready and window.state.image is not None
                    and window.state.status not in ("opening",), timeout=START_TIMEOUT)


def run_to_end(qtbot, window) -> None:
    """Press Run and wait until the run is over."""
    window.controls.run_button.click()
    assert window.state.active
    qtbot.waitUntil(lambda: not window.state.active and window.engine.busy_run is None, timeout=TIMEOUT)


def wait_idle(qtbot, window) -> None:
    """The run and every model job after it are over; the CAM panel shows a CAM."""
    qtbot.waitUntil(lambda: not window.state.active, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.state.cam.final is not None and window.state.cam.map is not None
                    and window.state.cam.job is None, timeout=TIMEOUT)


def finished_run(qtbot, window) -> None:
    """Press Run and wait for a run that finished with a result and no error message."""
    run_to_end(qtbot, window)
    assert window.state.history.result is not None and window.messages == []


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return str(path)


def make_window(qtbot, engine, settings_path, image=None, **options):
    """A main window on the shared engine, its messages recorded instead of shown."""
    from gse_desktop.main_window import MainWindow

    settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
    w = MainWindow(settings, engine=engine, image=image, **options)
    w.messages = []
    w.show_error = w.messages.append
    w.questions = []  # the unsaved-run question: recorded and answered "discard" (tests that mind replace it)
    w.ask_unsaved = lambda action: (w.questions.append(action), "discard")[1]
    w.offers = []  # the missing-weights offer: recorded, no file picked
    w.offer_weights = lambda info: w.offers.append(info)
    qtbot.addWidget(w)
    return w


@pytest.fixture
def window(qtbot, tmp_path, image_file, engine):
    """The main window on the tiny model and image, small parameters, ready to run."""
    w = make_window(qtbot, engine, tmp_path / "settings.ini", image_file, model="tiny")
    spins = w.controls.spins
    w.controls.preset_combo.setCurrentText("custom")
    for name, value in (("iters", 30), ("search_steps", 3), ("k_hat", 5), ("sigma", 0.01), ("mu", 0.1)):
        spins[name].setValue(value)
    wait_ready(qtbot, w)
    yield w
    w.state.stop()
    qtbot.waitUntil(lambda: (engine.poll(), engine.busy_run is None)[1], timeout=TIMEOUT)


class RecordingEngine:
    """An engine client that records the commands it gets and never answers (a session must open without it)."""

    ready, info, busy_run = True, {"devices": ["cpu"]}, None

    def __init__(self) -> None:
        self.commands: list[tuple] = []
        self._id = 0

    def _record(self, *command) -> int:
        self._id += 1
        self.commands.append(command)
        return self._id

    def open_image(self, *args):
        return self._record("open", *args)

    def start_run(self, *args):
        return self._record("run", *args)

    def submit(self, *args):
        return self._record("job", *args)

    def pause(self, ident):
        self._record("pause", ident)

    def resume(self, ident):
        self._record("resume", ident)

    def step(self, ident):
        self._record("step", ident)

    def stop(self, ident):
        self._record("stop", ident)

    def cancel(self, ident):
        self._record("cancel", ident)

    def poll(self):
        return []

    def shutdown(self):
        pass

"""Fixtures for the desktop tests: offscreen Qt, isolated settings, a tiny random-weight model, a generated image."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from gse_algo.models import LoadedModel, Normalized  # noqa: E402

SIZE = 16
TIMEOUT = 20000  # ms for a run of the tiny model (and its CAM jobs) to end


def run_to_end(qtbot, window) -> None:
    """Press Run and wait until the run is over."""
    window.controls.run_button.click()
    assert window.controller.running
    qtbot.waitUntil(lambda: not window.controller.running, timeout=TIMEOUT)


def wait_idle(qtbot, window) -> None:
    """The run and every model job after it are over; the CAM panel shows a CAM."""
    qtbot.waitUntil(lambda: not window.controller.running, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.cam_panel.final is not None and window.cam_panel.cam is not None
                    and not window.cam_jobs.busy, timeout=TIMEOUT)


def finished_run(qtbot, window) -> None:
    """Press Run and wait for a run that finished with a result and no error message."""
    run_to_end(qtbot, window)
    assert window.history.result is not None and window.messages == []


def tiny_model() -> LoadedModel:
    """3->8 conv, pool, linear to 10 classes on 16x16 inputs; fixed random weights."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 16, 10)).eval()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return LoadedModel("tiny", net, Normalized(net, mean, std).eval(), [f"class {i}" for i in range(10)], (SIZE, SIZE),
                       mean, std, "0", None)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def window(qtbot, tmp_path, image_file):
    """The main window on the tiny model and image, small parameters, messages recorded instead of shown."""
    from gse_desktop.main_window import MainWindow

    loads = []

    def loader(spec, device):
        loads.append((spec, device))
        return tiny_model()

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings, loader=loader, image=image_file)
    w.loads = loads
    w.messages = []
    w.show_error = w.messages.append
    spins = w.controls.spins
    w.controls.preset_combo.setCurrentText("custom")
    for name, value in (("iters", 30), ("search_steps", 3), ("k_hat", 5), ("sigma", 0.01), ("mu", 0.1)):
        spins[name].setValue(value)
    qtbot.addWidget(w)
    yield w
    w.controller.stop()
    assert w.controller.wait(10000)

"""GUI benchmark: start-up, live redraws, event-loop lateness, app vs headless attack time, stop, memory.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py [--iters 200] [--search-steps 10]
                                                                        [--threads 1] [--repeats 1]

Default image and model (mobilenet_v2), imagenet preset (the full default run unless told otherwise). Prints, in
one run of this script:
- window on screen: seconds from launching `gse-desktop`'s code in a fresh interpreter to the first shown window;
  whether torch was imported by then; the engine's "ready" and the image shown;
- first live mask: seconds from Run to the first snapshot drawn;
- attack time in the app / the same attack headless at the same thread count (both: the engine's own GSEResult
  time_s; the headless run is a plain `iterate_gse` with the full trace on the same 8-bit grid image in a fresh
  process), goal <= 1.05;
- redraws per second during the run (goal >= 10) and the lateness of a 10 ms GUI timer (goal p95 <= 50 ms), also
  during a composite figure and a GIF export, and during a session save and a session open (file worker);
- search-step switching: seconds from a PageDown / PageUp key to the other step drawn (goal <= 0.2 s);
- Stop -> idle: seconds from Stop to the engine's answer (goal <= 0.5 s), and with a model that hangs (goal <= 5 s);
- memory: resident set of the GUI process and of the engine process during the run.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "desktop"))  # the hanging test model for the Stop measurement

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gse_algo.defaults import DEFAULT_IMAGE, DEFAULT_MODEL  # noqa: E402

STARTUP = """
import time; t0 = time.perf_counter()
import sys
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QSettings
app = QApplication([])
from gse_desktop.main_window import MainWindow
w = MainWindow(QSettings(sys.argv[1], QSettings.Format.IniFormat))
w.show(); app.processEvents()
shown = time.perf_counter() - t0
torch_loaded = "torch" in sys.modules
while not (w.state.engine_ready and w.state.image is not None):
    app.processEvents(); time.sleep(0.01)
print(shown, torch_loaded, time.perf_counter() - t0, flush=True)
w.close()
import os; os._exit(0)  # measured; skip the interpreter's teardown of Qt objects
"""
HEADLESS = """
import sys, torch
from gse_algo import GSEParams, iterate_gse, load_image, load_model
from gse_algo.defaults import DEFAULT_IMAGE
from gse_algo.quantize import to_grid
torch.set_num_threads(int(sys.argv[1])); params = GSEParams.preset("imagenet").replace(iters=int(sys.argv[2]),
                                                                                     search_steps=int(sys.argv[3]))
m = load_model(); x = to_grid(load_image(DEFAULT_IMAGE, m.input_size)[None], 8)  # as the app (quantisation-aware)
with torch.no_grad(): y = m.model(x).argmax(1)
run = iterate_gse(m.model, x, y, params=params, trace=True)
n = sum(1 for _ in run)
print(run.result.time_s, n)
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Lateness:
    """A 10 ms timer in the GUI thread; records how late each tick is."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.timer = QTimer(interval=10, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.last = time.perf_counter()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.late.append((now - self.last - 0.010) * 1000)
        self.last = now

    def start(self) -> None:
        self.late, self.last = [], time.perf_counter()
        self.timer.start()

    def stop(self) -> str:
        self.timer.stop()
        late = np.array(self.late[1:] or [np.nan])
        return f"p50 {np.percentile(late, 50):.1f} ms, p95 {np.percentile(late, 95):.1f} ms, max {late.max():.1f} ms"


def spin(app: QApplication, until, timeout: float = 1800.0) -> float:
    start = time.perf_counter()
    while not until() and time.perf_counter() - start < timeout:
        app.processEvents()
        time.sleep(0.002)
    return time.perf_counter() - start


def startup(tmp: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", STARTUP, str(Path(tmp) / "startup.ini")], capture_output=True,
                         text=True, env=env, check=True).stdout.split()
    launch = time.perf_counter() - started - float(out[2])  # interpreter start-up before the script's first line
    print(f"window on screen {launch + float(out[0]):.2f} s after launch (goal <= 3 s); torch imported by then: "
          f"{out[1]}; engine ready and image shown after {launch + float(out[2]):.1f} s")


def app_run(app: QApplication, tmp: str, args) -> float:
    """The full run in the window; returns the engine's attack time."""
    from gse_desktop.main_window import MainWindow

    window = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat), image=str(DEFAULT_IMAGE),
                        model=DEFAULT_MODEL)
    window.ask_unsaved = lambda action: "discard"  # the benchmark's runs are not kept
    window.resize(1600, 960)
    window.show()
    spin(app, lambda: window.state.engine_ready and window.state.image is not None)
    c = window.controls
    c.preset_combo.setCurrentText("imagenet")
    c.spins["iters"].setValue(args.iters)
    c.spins["search_steps"].setValue(args.search_steps)
    c.threads_spin.setValue(args.threads)
    draws = []
    show = window.views.show_frame
    window.views.show_frame = lambda frame, image=0: (draws.append(time.perf_counter()), show(frame, image))
    lateness, memory = Lateness(), []
    sampler = QTimer(interval=1000)
    sampler.timeout.connect(lambda: memory.append((rss_mb(os.getpid()), rss_mb(window.engine.info["pid"]))))
    pressed = time.perf_counter()
    window.start_run()
    lateness.start()
    sampler.start()
    first = spin(app, lambda: bool(draws))
    spin(app, lambda: not window.state.active)
    run_lateness = lateness.stop()
    sampler.stop()
    result = window.state.history.result
    seconds = time.perf_counter() - pressed
    print(f"first live mask {first:.2f} s after Run (goal <= 2 s)")
    print(f"app run: engine time {result.time_s:.1f} s, {len(window.state.history)} snapshots, wall {seconds:.1f} s; "
          f"redraws {len(draws) / seconds:.1f} per second (goal >= 10); lateness during the run: {run_lateness} "
          f"(goal p95 <= 50 ms)")
    gui, engine = np.array(memory).max(axis=0) if memory else (np.nan, np.nan)
    print(f"memory during the run: GUI process {gui:.0f} MB, engine process {engine:.0f} MB (resident, peak of "
          f"1 s samples)")
    spin(app, lambda: window.state.cam.map is not None, 120)
    for what, export in (("composite figure", lambda p: window.files.export_figure(p / "f.png", wait=False)),
                         ("GIF", lambda p: window.files.export_animation(p / "a.gif", None, 10, wait=False))):
        lateness.start()  # as from the menu: the file worker draws and writes
        started = time.perf_counter()
        QTimer.singleShot(20, lambda: export(Path(tmp)))
        spin(app, lambda: False, 0.05)
        spin(app, lambda: not window.files.worker.busy, 300)
        print(f"lateness during the {what} export ({time.perf_counter() - started:.1f} s): {lateness.stop()}")
    session_lateness(app, window, Path(tmp) / "run.gses", lateness)
    step_switching(app, window)
    stop_times = []
    for _ in range(3):
        window.start_run()
        spin(app, lambda: len(window.state.history) >= 5)
        window.state.stop()
        stop_times.append(spin(app, lambda: window.engine.busy_run is None))
    print(f"Stop -> engine idle: {', '.join(f'{t:.2f}' for t in stop_times)} s (goal <= 0.5 s); torch imported in the "
          f"GUI process after the run, the CAM and the exports: {'torch' in sys.modules}")
    window.close()
    window.engine.shutdown()
    return result.time_s


def session_lateness(app: QApplication, window, path: Path, lateness: Lateness) -> None:
    """Save and open the run's session from the menu's path (the file worker), then the same on the GUI thread."""
    for what, action in (("session save", lambda: window.files.save_session(path, wait=False)),
                         ("session open", lambda: window.files.open_session(path, wait=False))):
        lateness.start()
        started = time.perf_counter()
        QTimer.singleShot(20, action)
        spin(app, lambda: False, 0.05)
        spin(app, lambda: not window.files.worker.busy, 300)
        print(f"lateness during the {what} ({time.perf_counter() - started:.1f} s, {len(window.state.history)} "
              f"snapshots, {path.stat().st_size / 2**20:.1f} MB): {lateness.stop()}")
    started = time.perf_counter()
    window.files.open_session(path)
    print(f"the same session opened on the GUI thread (wait=True, as before): {time.perf_counter() - started:.1f} s")


def step_switching(app: QApplication, window) -> None:
    """PageDown through every search step and PageUp back, each until the other step is drawn."""
    from PySide6.QtTest import QTest

    steps = window.state.history.steps
    window.timeline.go(steps[0], 0)
    window.redraw_now()
    window.view_area.setFocus()
    times = []
    for key, target in [(Qt.Key.Key_PageDown, s) for s in steps[1:]] + [(Qt.Key.Key_PageUp, s) for s in
                                                                        reversed(steps[:-1])]:
        started = time.perf_counter()
        QTest.keyClick(window.view_area, key)
        spin(app, lambda: window.views.frame is not None and window.views.frame.step == target, 10)
        app.processEvents()  # the paint
        times.append(time.perf_counter() - started)
    print(f"search-step switching (PageDown/PageUp, {len(times)} switches, CAM shown): median "
          f"{np.median(times):.3f} s, max {max(times):.3f} s (goal <= 0.2 s)")


def hanging_stop(app: QApplication, tmp: str) -> None:
    from conftest import HANG, loader

    from gse_desktop.main_window import MainWindow

    window = MainWindow(QSettings(str(Path(tmp) / "h.ini"), QSettings.Format.IniFormat), image=str(DEFAULT_IMAGE),
                        model=HANG, loader=loader)
    window.ask_unsaved = lambda action: "discard"
    spin(app, lambda: window.state.engine_ready and window.state.image is not None)
    window.controls.preset_combo.setCurrentText("custom")
    window.start_run()
    spin(app, lambda: window.state.run is not None)
    time.sleep(1.0)  # the model's forward pass hangs now
    window.state.stop()
    waited = spin(app, lambda: window.engine.busy_run is None, 30)
    print(f"Stop -> idle with a hanging model: {waited:.2f} s, the engine process replaced (goal <= 5 s)")
    window.close()
    window.engine.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--search-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"{DEFAULT_MODEL} on {DEFAULT_IMAGE.name}, imagenet preset, iters={args.iters}, "
          f"search_steps={args.search_steps}, torch threads={args.threads}; {platform.processor() or 'CPU'}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        startup(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", HEADLESS, str(args.threads), str(args.iters),
                              str(args.search_steps)], capture_output=True, text=True, env=env, check=True)
        headless_s, n = out.stdout.split()
        print(f"headless run: {float(headless_s):.1f} s, {n} snapshots")
        app_s = app_run(app, tmp, args)
        print(f"attack time in the app / headless: {app_s / float(headless_s):.3f} (goal <= 1.05)")
        hanging_stop(app, tmp)
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

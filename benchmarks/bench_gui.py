"""GUI benchmark: event-loop latency during a run, and the attack's time in the app vs headless.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py [--iters 60] [--search-steps 3]
                                                                        [--threads N] [--repeats 3] [--target K]

Default image and model (mobilenet_v2), the imagenet preset with fewer iterations. Both sides attack the same
model object, image, label and parameters with the full trace, in a thread of their own that sets grad mode and
torch's thread count (both are per thread), and are timed from the first iteration to the result:
- headless: a plain thread drains `iterate_gse`;
- app: the main window (offscreen) runs the attack in its worker (the time is the worker's `active_seconds`) while
  a 10 ms timer in the GUI thread records its lateness.
One untimed headless run warms up first (the first iterations of a process can be many times slower: lazy memory,
oneDNN set-up), then headless and app runs alternate `--repeats` times. Goals: p95 lateness <= 50 ms,
app / headless <= 1.05. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gse_algo.attack import iterate_gse  # noqa: E402
from gse_algo.images import DEFAULT_IMAGE, load_image  # noqa: E402
from gse_algo.models import DEFAULT_MODEL, load_model  # noqa: E402
from gse_algo.params import GSEParams  # noqa: E402
from gse_desktop.worker import default_threads  # noqa: E402


def headless(model, params: GSEParams, threads: int, target: int | None = None) -> tuple[float, int]:
    """(seconds from the first iteration to the result, snapshots) of one traced run in a thread of its own."""
    out: list = []

    def attack() -> None:
        torch.set_grad_enabled(True)
        torch.set_num_threads(threads)
        x = load_image(DEFAULT_IMAGE, model.input_size).unsqueeze(0)  # as the worker prepares the run
        with torch.no_grad():
            label = model.model(x).argmax(1) if target is None else torch.tensor([target])
        start = time.perf_counter()
        run = iterate_gse(model.model, x, label, targeted=target is not None, params=params, trace=True)
        n = sum(1 for _ in run)
        out.append((time.perf_counter() - start, n))

    thread = threading.Thread(target=attack)
    thread.start()
    thread.join()
    return out[0]


def settle(app: QApplication, seconds: float = 0.5) -> None:
    """Let the event loop handle start-up work (first layout and paint) for a while."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def in_app(app: QApplication, model, params: GSEParams, threads: int,
           target: int | None = None) -> tuple[float, int, list[float]]:
    """(the worker's seconds from the first iteration to the result, snapshots, timer lateness in ms)."""
    from gse_desktop.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat),
                            loader=lambda spec, device: model, image=str(DEFAULT_IMAGE))
        window.show()
        c = window.controls
        c.preset_combo.setCurrentText("custom")
        for name, value in params.as_dict().items():
            c.spins[name].setValue(value)
        c.threads_spin.setValue(threads)
        if target is not None:
            c.set_target(target)
        if c.params() != params or c.device_combo.currentText() != "cpu" or c.target() != target:
            raise SystemExit(f"the app would run other parameters: {c.params()} on {c.device_combo.currentText()}")
        settle(app)  # the window is laid out and painted before Run is pressed, as for a user
        late: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            late.append((now - last[0] - 0.010) * 1000)
            last[0] = now

        timer = QTimer(interval=10, timerType=Qt.TimerType.PreciseTimer)
        timer.timeout.connect(tick)
        loop = QEventLoop()
        window.controller.finished.connect(lambda _: loop.quit())
        window.controller.failed.connect(lambda text: (print("run failed:", text), loop.quit()))
        window.start_run()
        worker = window.controller.worker
        timer.start()
        loop.exec()
        timer.stop()
        n = len(window.history)
        app.processEvents()  # the CAM panel starts its jobs once a run is over; closing cancels them
        window.close()
        window.controller.wait()
        window.cam_jobs.wait()  # none may overlap the next measurement
    return worker.active_seconds, n, late[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--search-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=int, help="a targeted attack on this class (longer runs)")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    model = load_model(DEFAULT_MODEL)
    params = GSEParams.preset("imagenet", targeted=args.target is not None).replace(iters=args.iters,
                                                                                  search_steps=args.search_steps)
    print(f"{DEFAULT_MODEL} on {DEFAULT_IMAGE.name}, imagenet preset, iters={args.iters}, "
          f"search_steps={args.search_steps}, target {args.target}, torch threads={args.threads}; "
          f"{platform.processor() or 'CPU'}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    headless(model, params, args.threads, args.target)  # warm-up
    ratios, late = [], []
    for r in range(args.repeats):
        t_head, n_head = headless(model, params, args.threads, args.target)
        t_app, n_app, lateness = in_app(app, model, params, args.threads, args.target)
        ratios.append(t_app / t_head)
        late += lateness
        print(f"run {r + 1}: headless {t_head:.2f} s / {n_head} snapshots "
              f"({1000 * t_head / n_head:.0f} ms/iteration), app {t_app:.2f} s / {n_app} snapshots "
              f"({1000 * t_app / n_app:.0f} ms/iteration): ratio {t_app / t_head:.3f}")
    late_ms = np.array(late)
    print(f"app / headless time ratio: median {statistics.median(ratios):.3f} over {len(ratios)} pairs "
          f"(goal <= 1.05)")
    print(f"event-loop lateness of a 10 ms timer: p50 {np.percentile(late_ms, 50):.1f} ms, "
          f"p95 {np.percentile(late_ms, 95):.1f} ms, max {late_ms.max():.1f} ms over {late_ms.size} ticks "
          f"(goal p95 <= 50 ms); load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

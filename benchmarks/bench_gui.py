"""GUI benchmark: event-loop latency during a run, and the attack's time in the app vs headless.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py [--iters 60] [--search-steps 3] [--threads N]

Default image and model (mobilenet_v2), the imagenet preset with fewer iterations. Headless: the generator with
trace=True drained in the main thread at the same torch thread count. App: the main window (offscreen) running
the same attack in its worker while a 10 ms QTimer records its lateness. Goals: p95 lateness <= 50 ms,
app / headless <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gse_algo.attack import iterate_gse  # noqa: E402
from gse_algo.images import DEFAULT_IMAGE, load_image  # noqa: E402
from gse_algo.models import DEFAULT_MODEL, load_model  # noqa: E402
from gse_algo.params import GSEParams  # noqa: E402
from gse_desktop.worker import default_threads  # noqa: E402


def headless(model, params: GSEParams, threads: int) -> tuple[float, int]:
    torch.set_num_threads(threads)
    x = load_image(DEFAULT_IMAGE, model.input_size).unsqueeze(0)
    with torch.no_grad():
        label = model.model(x).argmax(1)
    start = time.perf_counter()
    run = iterate_gse(model.model, x, label, params=params, trace=True)
    n = sum(1 for _ in run)
    return time.perf_counter() - start, n


def in_app(model, params: GSEParams, threads: int) -> tuple[float, int, np.ndarray]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from gse_desktop.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat),
                            loader=lambda spec, device: model)
        window.show()
        c = window.controls
        c.preset_combo.setCurrentText("custom")
        for name, value in params.as_dict().items():
            c.spins[name].setValue(value)
        c.threads_spin.setValue(threads)
        late: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            late.append(now - last[0] - 0.010)
            last[0] = now

        timer = QTimer(interval=10)
        timer.timeout.connect(tick)
        done: list[float] = []
        window.controller.finished.connect(lambda _: done.append(time.perf_counter()))
        start = time.perf_counter()
        window.start_run()
        timer.start()
        while not done:
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        n = len(window.history)
        window.close()
        window.controller.wait()
    return done[0] - start, n, np.array(late[1:]) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--search-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    model = load_model(DEFAULT_MODEL)
    params = GSEParams.preset("imagenet").replace(iters=args.iters, search_steps=args.search_steps)
    print(f"{DEFAULT_MODEL} on {DEFAULT_IMAGE.name}, imagenet preset, iters={args.iters}, "
          f"search_steps={args.search_steps}, torch threads={args.threads}, {os.cpu_count()} cores")
    headless(model, params.replace(iters=3, search_steps=1), args.threads)  # warm-up
    t_head, n_head = headless(model, params, args.threads)
    t_app, n_app, late = in_app(model, params, args.threads)
    print(f"headless: {t_head:.2f} s for {n_head} snapshots ({1000 * t_head / n_head:.1f} ms/iteration)")
    print(f"app:      {t_app:.2f} s for {n_app} snapshots ({1000 * t_app / n_app:.1f} ms/iteration)")
    print(f"app / headless time ratio: {t_app / t_head:.3f}  (goal <= 1.05)")
    print(f"event-loop lateness of a 10 ms timer: p50 {np.percentile(late, 50):.1f} ms, "
          f"p95 {np.percentile(late, 95):.1f} ms, max {late.max():.1f} ms over {late.size} ticks  (goal p95 <= 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the main window during and after a run on the default image and model (offscreen).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py [--search-steps N]

Writes docs/screenshot_running.png (grabbed once the run is in phase 2 of a search step),
docs/screenshot_done.png (after the run, showing the search step the engine chose) and docs/screenshot_cam.png
(the CAM comparison tab once the automatic GradCAM after the run has arrived). Settings are isolated in a
temporary ini file, so the user's own settings are neither read nor changed.
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

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

DOCS = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search-steps", type=int, help="fewer outer steps than the preset's 10 (said on screen)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from gse_desktop.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window.resize(1600, 960)
        window.show()
        if args.search_steps:
            window.controls.spins["search_steps"].setValue(args.search_steps)
        window.start_run()
        start, running_shot = time.perf_counter(), False
        while window.controller.running and time.perf_counter() - start < args.timeout:
            app.processEvents()
            time.sleep(0.005)
            latest = window.history.latest()
            if not running_shot and latest and window.prepared and latest[1] >= window.prepared.params.k_hat + 20:
                window._redraw()
                app.processEvents()
                window.grab().save(str(DOCS / "screenshot_running.png"))
                running_shot = True
                print(f"running screenshot at step {latest[0]}, iteration {latest[1]}")
        for _ in range(20):
            app.processEvents()
        if args.search_steps:
            window.message.setText(window.message.text() + f"  [screenshot run: {args.search_steps} search steps]")
        window.grab().save(str(DOCS / "screenshot_done.png"))
        print(f"done in {time.perf_counter() - start:.0f} s: {window.message.text()}")
        print(f"history: {len(window.history)} snapshots, {window.history.nbytes() / 2**20:.1f} MB")
        start = time.perf_counter()
        while window.cam_panel.cam_array() is None and time.perf_counter() - start < 120:
            app.processEvents()
            time.sleep(0.01)
        window.bottom_tabs.setCurrentIndex(1)
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(DOCS / "screenshot_cam.png"))
        window.close()
        window.controller.wait()
        window.cam_jobs.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

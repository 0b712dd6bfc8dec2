"""Render the main window during and after a run on the default image and model (offscreen).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py [--search-steps N] [--width W --height H]
                                                                          [--suffix _WxH]

Writes docs/screenshot_running{suffix}.png (grabbed once the run is in phase 2 of a search step),
docs/screenshot_done{suffix}.png (after the run, the search step the engine chose), docs/screenshot_amplified{suffix}.png
(the same with View > Amplified difference, zoomed to the support) and docs/screenshot_cam{suffix}.png
(the CAM comparison tab once the automatic GradCAM after the run has arrived). With `--compare B` it runs GSE, then
B (an attack name with optional settings, `sigma_zero` or `gse:reg=l0,k_hat=20`), selects both runs and writes
docs/screenshot_compare{suffix}.png (the comparison, zoomed to the supports) instead. Settings are isolated in a
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
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--suffix", default="", help="added to the file names (e.g. _1280x720)")
    parser.add_argument("--compare", metavar="B", help="compare a GSE run with attack B (name[:key=value,...])")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from gse_desktop.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window.ask_unsaved = lambda action: "discard"  # the screenshot run is not kept
        window.resize(args.width, args.height)
        window.docks.arrange()  # the default layout for this size
        window.show()
        state = window.state

        def wait(until, timeout=args.timeout) -> None:
            start = time.perf_counter()
            while not until() and time.perf_counter() - start < timeout:
                app.processEvents()
                time.sleep(0.005)

        wait(lambda: state.engine_ready and state.image is not None)
        if args.search_steps:
            window.controls.spins["search_steps"].setValue(args.search_steps)
        if args.compare:
            compare(window, args.compare, wait, app, DOCS / f"screenshot_compare{args.suffix}.png")
        else:
            screenshots(window, args, wait, app)
        window.close()
        window.engine.shutdown()
    return 0


def screenshots(window, args, wait, app) -> None:
    """One GSE run: running, done, amplified and CAM screenshots."""
    state = window.state
    window.start_run()
    start = time.perf_counter()
    wait(lambda: state.run is not None and (state.history.latest() or (0, 0))[1] >= state.run.params.k_hat + 20)
    window.redraw_now()
    app.processEvents()
    window.grab().save(str(DOCS / f"screenshot_running{args.suffix}.png"))
    print(f"running screenshot at {state.history.latest()}")
    wait(lambda: not state.active)
    window.redraw_now()
    for _ in range(20):
        app.processEvents()
    if args.search_steps:
        window.message.setText(window.message.text() + f"  [screenshot run: {args.search_steps} search steps]")
    window.grab().save(str(DOCS / f"screenshot_done{args.suffix}.png"))
    window.amplify_action.setChecked(True)  # View > Amplified difference, zoomed to the support
    window.zoom_to_support()
    for _ in range(20):
        app.processEvents()
    window.grab().save(str(DOCS / f"screenshot_amplified{args.suffix}.png"))
    window.amplify_action.setChecked(False)
    window.views.fit()
    print(f"done in {time.perf_counter() - start:.0f} s: {window.message.text()}")
    print(f"history: {len(state.history)} snapshots, {state.history.nbytes() / 2**20:.1f} MB")
    wait(lambda: state.cam.map is not None, 120)
    window.docks["cam"].raise_()
    window.redraw_now()
    for _ in range(20):
        app.processEvents()
    window.grab().save(str(DOCS / f"screenshot_cam{args.suffix}.png"))


def compare(window, second: str, wait, app, path: Path) -> None:
    """GSE as the controls are, then `second` (name[:key=value,...]); both selected, the comparison grabbed."""
    state, controls = window.state, window.controls
    for attack in ("gse", second):
        name, _, pairs = attack.partition(":")
        settings = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        if not controls.attack_picker.select(name):
            raise SystemExit(f"attack {name!r} is not available here")
        for key, value in settings.items():
            if name != "gse":
                controls.attack_picker.forms[name].fields[key].set_value(value)
            elif key == "reg":
                controls.reg_combo.setCurrentText(value)
            else:
                controls.spins[key].setValue(float(value))
        start = time.perf_counter()
        window.start_run()
        wait(lambda: not state.active)
        print(f"{attack}: {time.perf_counter() - start:.0f} s: {window.message.text()}")
    window.docks["runs"].raise_()
    window.run_list.select([state.runs[0].key, state.runs[1].key])
    window.redraw_now()
    for _ in range(10):
        app.processEvents()
    window.compare_view.zoom_button.click()
    for _ in range(30):
        app.processEvents()
    window.grab().save(str(path))


if __name__ == "__main__":
    sys.exit(main())

"""`gse-desktop [IMAGE] [--model ...] [--target ...] [--run]`: open the main window."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

SETTINGS_ENV = "GSE_DESKTOP_SETTINGS"  # an .ini path that replaces the user's settings (tests, screenshots)


def make_settings() -> QSettings:
    """The user's settings, or an ini file named by $GSE_DESKTOP_SETTINGS."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("gse-desktop", "gse-desktop")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gse-desktop", description="Watch the GSE sparse attack work, live.")
    parser.add_argument("image", nargs="?", help="image file or session (.gses); default: the last image, else the "
                                                "bundled example")
    parser.add_argument("--model", help="torchvision model name or checkpoint file (default: mobilenet_v2)")
    parser.add_argument("--target", help="target class, by index or name (default: untargeted)")
    parser.add_argument("--run", action="store_true", help="start the attack at once")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("gse-desktop")
    app.setApplicationName("gse-desktop")
    from gse_desktop.main_window import MainWindow
    from gse_desktop.session import SUFFIX

    session = args.image if args.image and args.image.lower().endswith(SUFFIX) else None
    window = MainWindow(make_settings(), image=None if session else args.image, model=args.model, target=args.target)
    window.show()
    window.views.setFocus()  # the timeline keys act while the focus is in the views area
    if session:
        window.open_session(session)  # in the file worker, with progress and Cancel
    if args.run:
        window.run_when_ready()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and a kill close the window, and so the engine, cleanly
        signal.signal(sig, lambda *_: window.close())
    wake = QTimer(interval=200)  # Python runs signal handlers only between Qt events
    wake.timeout.connect(lambda: None)
    wake.start()
    code = app.exec()
    window.engine.shutdown()  # no engine process outlives the app
    return code


if __name__ == "__main__":
    sys.exit(main())

"""`gse-desktop [IMAGE] [--model ...] [--target ...] [--run]`: open the main window."""

from __future__ import annotations

import argparse
import os
import sys

from PySide6.QtCore import QSettings
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
    parser.add_argument("image", nargs="?", help="image file (default: the last one, else the bundled example)")
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

    window = MainWindow(make_settings(), image=args.image, model=args.model, target=args.target)
    window.show()
    window.views.setFocus()  # the timeline keys act while the focus is in the views area
    if args.run:
        window.start_run()
    code = app.exec()
    window.controller.stop()
    window.cam_jobs.cancel()
    window.controller.wait()  # the worker ends at its next iteration boundary
    window.cam_jobs.wait()  # a CAM job ends at its next batch
    return code


if __name__ == "__main__":
    sys.exit(main())

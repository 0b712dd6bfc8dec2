"""One status line on a terminal stream: rewritten in place on a terminal (at most every TTY_S seconds), a new
line every PIPE_S seconds otherwise (a log file). Used by gse-attack's and gse-study's progress reports."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

TTY_S = 0.2
PIPE_S = 10.0
WIDTH = 79


class StatusLine:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = -math.inf  # the first update is shown at once
        self.width = WIDTH  # the longest line so far: a shorter one is padded to cover it

    def show(self, text: str | Callable[[], str], force: bool = False) -> None:
        """Show `text` (a callable is only called when the line is due) unless the last line is too recent."""
        now = time.perf_counter()
        if not force and now - self.shown < (TTY_S if self.tty else PIPE_S):
            return
        self.shown = now
        text = text() if callable(text) else text
        self.width = max(self.width, len(text))
        self.stream.write(f"\r{text:<{self.width}}" if self.tty else text + "\n")
        self.stream.flush()

    def done(self) -> None:
        """Clear the line on a terminal (a log keeps its lines)."""
        if self.tty:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()

"""The `gse-attack`, `gse-compare` and `gse-study` entry points: signals are set up before torch is imported, so
Ctrl-C or SIGTERM at any time gives one line and a clean exit (128 + the signal number), never a traceback."""

from __future__ import annotations

import importlib
import signal
import sys


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def interrupt_exit(error: KeyboardInterrupt, prog: str = "gse-attack") -> int:
    """Print the one line for an interrupt and return its exit status (130 for Ctrl-C, 143 for SIGTERM)."""
    signum = getattr(error, "signum", signal.SIGINT)
    print(f"{prog}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    return 128 + signum


def attack_main(argv: list[str] | None = None) -> int:
    """gse-attack: SIGINT and SIGTERM raise Interrupted from here on; then the command line runs."""
    return _main("gse_algo.cli", "gse-attack", argv)


def compare_main(argv: list[str] | None = None) -> int:
    """gse-compare, with the same signal handling."""
    return _main("gse_algo.compare_cli", "gse-compare", argv)


def _main(module: str, prog: str, argv: list[str] | None) -> int:
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)
    try:
        command = importlib.import_module(module)  # imports torch: seconds during which Ctrl-C must stay quiet too
    except KeyboardInterrupt as error:
        return interrupt_exit(error, prog)
    return command.main(argv)


def study_main(argv: list[str] | None = None) -> int:
    """gse-study, with the same signal handling."""
    return _main("gse_algo.study.cli", "gse-study", argv)


if __name__ == "__main__":
    sys.exit(attack_main())

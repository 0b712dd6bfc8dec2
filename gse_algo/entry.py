"""The `gse-attack` entry point: signals are set up before torch is imported, so Ctrl-C or SIGTERM at any time
gives one line and a clean exit (128 + the signal number), never a traceback."""

from __future__ import annotations

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
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)
    try:
        from gse_algo import cli  # imports torch: seconds during which Ctrl-C must stay quiet too
    except KeyboardInterrupt as error:
        return interrupt_exit(error)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(attack_main())

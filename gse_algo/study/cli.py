"""`gse-study run STUDY.toml --out DIR` runs (or resumes) a study; `gse-study run --images ... --attack ...` builds
one from flags instead; `gse-study report DIR` writes DIR/report/ (summary tables and plots).
Exit status: 0 done, 2 bad input (one message, before any work), 130/143 interrupted (finished rows are kept).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gse_algo.entry import interrupt_exit
from gse_algo.study import StudyError
from gse_algo.study.spec import load_study, parse_study

PROG = "gse-study"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, like every other bad input
        raise StudyError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run or resume a study")
    run.add_argument("study", nargs="?", help="a study file (TOML); or give --images, --model and --attack")
    run.add_argument("--out", required=True, help="the study folder (created; a folder of the same study resumes)")
    run.add_argument("--save-arrays", action="store_true", help="also write each row's x and x_adv (.npz)")
    run.add_argument("--ray", action="store_true", help="run the batches on Ray (RAY_ADDRESS also turns it on)")
    run.add_argument("--ray-address", help="the Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    flags = run.add_argument_group("a study from flags (instead of a file)")
    flags.add_argument("--images", help="bundled, reference, a folder or a .csv of path,label")
    flags.add_argument("--limit", type=int, help="the first N images")
    flags.add_argument("--model", help="reference, a torchvision model name or a model file")
    flags.add_argument("--paper", action="store_true", help="the paper's preprocessing (0.5/0.5, 256x256)")
    flags.add_argument("--attack", action="append", default=[], help="a registered attack (repeatable)")
    flags.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a fixed setting")
    flags.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,..", help="a swept setting")
    flags.add_argument("--targeted", help="all, paper, or comma-separated classes (default: untargeted)")
    flags.add_argument("--threads", type=int, default=1)
    flags.add_argument("--device", default="cpu")
    flags.add_argument("--seed", type=int, default=0)
    flags.add_argument("--batch-size", default="auto")
    report = commands.add_parser("report", help="summary tables and plots of a study folder")
    report.add_argument("folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "report":
            from gse_algo.study.report import write_report

            written = write_report(Path(args.folder))
            print(f"{PROG}: report written: {', '.join(str(p) for p in written[:3])}"
                  f"{f' and {len(written) - 3} more' if len(written) > 3 else ''}")
            return 0
        return _run(args)
    except (StudyError, ValueError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through gse_algo.entry
        print(f"{PROG}: finished rows are kept; run the same command again to resume", file=sys.stderr)
        return interrupt_exit(error, PROG)


def _run(args: argparse.Namespace) -> int:
    from gse_algo.images import ImageError
    from gse_algo.models import ModelError
    from gse_algo.study.runner import run_study

    if args.study and (args.images or args.model or args.attack):
        raise StudyError("give a study file or --images/--model/--attack, not both")
    study = load_study(args.study) if args.study else parse_study(study_from_flags(args), Path.cwd(), "flags")
    use_ray = args.ray or bool(args.ray_address) or bool(os.environ.get("RAY_ADDRESS"))
    try:
        outcome = run_study(study, Path(args.out), save_arrays=args.save_arrays, use_ray=use_ray,
                            address=args.ray_address)
    except (ImageError, ModelError) as error:
        raise StudyError(str(error)) from None
    except Exception as error:  # a worker's failure on Ray comes back as Ray's own error type
        if type(error).__module__.startswith("ray"):
            cause = getattr(error, "cause", None) or error  # RayTaskError holds the worker's own exception
            raise StudyError(f"a Ray worker failed: {' '.join(str(cause).split())[:400]}") from None
        raise
    skipped = f", {outcome.skipped_images} image(s) left out (study.json says why)" if outcome.skipped_images else ""
    print(f"{PROG}: {outcome.rows} rows in {Path(args.out) / 'rows.csv'} ({outcome.new} new, "
          f"{outcome.seconds:.0f} s){skipped}; next: {PROG} report {args.out}")
    return 0


def study_from_flags(args: argparse.Namespace) -> dict:
    """The dict a study file would hold, from the flags (checked by the same parse_study)."""
    missing = [flag for flag, value in (("--images", args.images), ("--model", args.model),
                                        ("--attack", args.attack)) if not value]
    if missing:
        raise StudyError(f"without a study file, give {', '.join(missing)}")
    settings = dict(_pair(item, "--set") for item in args.set)
    grid = {name: [_value(v) for v in text.split(",")] for name, text in (_pair(g, "--grid", raw=True)
                                                                          for g in args.grid)}
    data: dict = {"images": {"source": args.images}, "model": {"name": args.model},
                  "attacks": [{"name": name, "settings": settings, "grid": grid} for name in args.attack],
                  "threads": args.threads, "device": args.device, "seed": args.seed,
                  "batch_size": args.batch_size if args.batch_size == "auto" else _value(args.batch_size)}
    if args.limit is not None:
        data["images"]["limit"] = args.limit
    if args.paper:
        data["model"]["preprocessing"] = "paper"
    if args.targeted:
        data["targeted"] = args.targeted if args.targeted in ("all", "paper") else \
            [_value(c) for c in args.targeted.split(",")]
    return data


def _pair(item: str, flag: str, raw: bool = False) -> tuple[str, object]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise StudyError(f"{flag} expects NAME=VALUE, got {item!r}")
    return name.strip(), value.strip() if raw else _value(value.strip())


def _value(text: str) -> object:
    """A flag's value as TOML would type it: integer, float, true/false, else the text."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)

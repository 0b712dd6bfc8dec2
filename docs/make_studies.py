"""Run the three next-check studies (studies/*.toml) in-process and on a local Ray, check that the two give equal
rows, and copy each report (summary.md, plots) into docs/studies/<name>/. Prints one line per study.
Usage: python docs/make_studies.py [--runs runs] [NAME ...]   (needs Ray: pip install 'gse-desktop[ray]')
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from gse_algo.study.report import write_report
from gse_algo.study.runner import run_study
from gse_algo.study.spec import load_study
from gse_algo.study.table import KEY, read_rows

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("blur_ablation", "k_hat", "object_density")
COMPARED = ("acp", "anc", "d20", "l2")


def compare(a: Path, b: Path) -> str:
    """How the rows of two folders of one study agree: same success per row, sizes equal or within 5%."""
    left = {tuple(r[k] for k in KEY): r for r in read_rows(a)[1]}
    right = {tuple(r[k] for k in KEY): r for r in read_rows(b)[1]}
    if left.keys() != right.keys():
        return f"DIFFERENT row keys ({len(left)} vs {len(right)} rows)"
    success = sum(left[k]["success"] == right[k]["success"] for k in left)
    equal = sum(all(left[k][c] == right[k][c] for c in COMPARED) for k in left)
    close = sum(all(abs(left[k][c] - right[k][c]) <= 0.05 * abs(left[k][c]) + 1e-9 for c in COMPARED) for k in left)
    return f"{len(left)} rows: same success {success}, sizes equal {equal}, within 5% {close}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("names", nargs="*", default=list(STUDIES))
    args = parser.parse_args()
    for name in args.names:
        study = load_study(ROOT / "studies" / f"{name}.toml")
        here, there = Path(args.runs) / name, Path(args.runs) / f"{name}-ray"
        times = []
        for folder, use_ray in ((here, False), (there, True)):
            start = time.perf_counter()
            run_study(study, folder, use_ray=use_ray)
            times.append(time.perf_counter() - start)
        write_report(here)
        docs = ROOT / "docs" / "studies" / name
        docs.mkdir(parents=True, exist_ok=True)
        for file in (here / "report").iterdir():
            if file.suffix in (".md", ".png"):
                shutil.copy(file, docs / file.name)
        print(f"{name}: in-process {times[0]:.0f} s, Ray {times[1]:.0f} s; {compare(here, there)}", flush=True)


if __name__ == "__main__":
    main()

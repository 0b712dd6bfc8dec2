"""Each phase-1 regulariser (l0, l1, l1/2, l2/3) on the public reference set: prints a Markdown table.

The 24 CIFAR-10 images of ../shared/reference with the authors' ResNet20, attacked as one batch, untargeted
(against the clean prediction) and targeted at (clean + 1) mod 10, with the official cifar10 preset; as in
tests/algo/test_reference.py. Means of ACP, ANC, d2,0 and l2 are over the successful attacks; l2 in [0,1] units
(half the paper's). "official" rows: the authors' code (l1/2) from the reference file, for comparison.
Usage: python benchmarks/regularisers.py [--regs l0,l1,l1/2,l2/3] [--runs untargeted,targeted_p1] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from gse_algo import metrics
from gse_algo.attack import gse_attack
from gse_algo.models import load_model
from gse_algo.params import GSEParams
from gse_algo.prox import REGULARISERS
from gse_algo.runtime import Runtime, default_threads

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "public_cifar_resnet20.npz"
CHECKPOINT = SHARED / "models" / "resnet20_cifar10_gse.pt"
RUNS = {"untargeted": False, "targeted_p1": True}
HEADER = "| regulariser | run | ASR | mean ACP | mean ANC | mean d2,0 | mean l2 | time / image |\n|---|---|---|---|---|---|---|---|"


def row(reg: str, run: str, success: np.ndarray, values: list, seconds: float) -> str:
    """One table line; values = [acp, anc, d20, l2] per image, averaged over the successful ones."""
    ok = np.asarray(success, dtype=bool)
    means = [np.asarray(v, dtype=np.float64)[ok].mean() if ok.any() else np.nan for v in values]
    cells = [f"{m:.2f}" for m in means[:3]] + [f"{means[3]:.3f}"]
    return f"| {reg} | {run} | {ok.mean():.0%} | {' | '.join(cells)} | {seconds / len(ok):.2f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regs", default=",".join(REGULARISERS))
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    Runtime(threads=args.threads).apply()
    public = np.load(REFERENCE)
    model = load_model(str(CHECKPOINT)).model
    x = torch.from_numpy(public["images_uint8"]).permute(0, 3, 1, 2).float() / 255.0
    lines = [HEADER]
    for run in args.runs.split(","):
        targeted = RUNS[run]
        official = {k: public[f"{run}_{k}"] for k in ("success", "acp", "anc", "d20", "l2")}
        lines.append(row("official l1/2", run, official["success"],
                         [official["acp"], official["anc"], official["d20"], official["l2"] / 2],
                         float(public[f"{run}_time_s"])))
        for reg in args.regs.split(","):
            params = GSEParams.preset("cifar10", targeted=targeted).replace(reg=reg)
            result = gse_attack(model, x, torch.from_numpy(public[f"{run}_y"]), targeted, params)
            values = [metrics.acp(result.delta), metrics.anc(result.delta), metrics.d20(result.delta).numpy(),
                      metrics.l2(result.delta)]
            lines.append(row(params.reg, run, result.success, values, result.time_s))
            print(lines[-1], flush=True)
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, {platform.processor() or 'CPU'}, "
          f"torch {torch.__version__}, {args.threads} thread(s), 24 images as one batch, cifar10 preset\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

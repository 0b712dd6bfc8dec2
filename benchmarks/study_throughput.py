"""Study throughput in-process: images per second with the images batched vs one image at a time, through the
real study path (gse_algo.study.runner.run_study), and whether the two give the same rows.

--data reference (default): the 24 public CIFAR-sized images, the authors' ResNet20, cifar10 preset, untargeted.
--data photos: the bundled 224-px photos, MobileNetV2, imagenet preset (slow on a CPU: ~1 minute per image).
Prints a Markdown table; one run, ratios from it (this VM's speed drifts, see README "Speed").
Usage: python benchmarks/study_throughput.py [--data reference|photos] [--threads N] [--limit N]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from gse_algo.study.runner import run_study
from gse_algo.study.spec import parse_study
from gse_algo.study.table import read_rows

SETS = {"reference": ("reference", "reference", "cifar10"), "photos": ("bundled", "mobilenet_v2", "imagenet")}


def run(data: str, batch: int, threads: int, limit: int | None, folder: Path) -> tuple[float, list[dict]]:
    source, model, preset = SETS[data]
    study = parse_study({"images": {"source": source, **({"limit": limit} if limit else {})},
                         "model": {"name": model}, "threads": threads, "batch_size": batch,
                         "attacks": [{"name": "gse", "settings": {"preset": preset}}]}, Path.cwd())
    start = time.perf_counter()
    run_study(study, folder)
    return time.perf_counter() - start, read_rows(folder)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(SETS), default="reference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        n = None
        results = {}
        for mode in ("batched", "one at a time"):
            size = 1 if mode == "one at a time" else 256
            seconds, rows = run(args.data, size, args.threads, args.limit, Path(tmp) / mode.replace(" ", "_"))
            n = len(rows)
            results[mode] = (seconds, {r["image"]: r for r in rows})
    print(f"{args.data}, {n} images, {args.threads} thread(s), torch {torch.__version__}, {platform.machine()}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d} (wall time of run_study: model loading and planning included)\n")
    print("| mode | wall | images/s | s/image | fwd+bwd passes (batched calls) |\n|---|---|---|---|---|")
    for mode, (seconds, rows) in results.items():
        passes = sum({r["batch"]: r["batch_backward"] for r in rows.values()}.values())
        print(f"| {mode} | {seconds:.1f} s | {n / seconds:.3g} | {seconds / n:.3g} | {passes} |")
    (batched, a), (single, b) = results.values()
    same = sum(a[k]["success"] == b[k]["success"] for k in a)
    equal = sum(a[k]["acp"] == b[k]["acp"] for k in a)
    print(f"\nbatched / one at a time: {single / batched:.2f}x the throughput; same success {same}/{n}, "
          f"same ACP {equal}/{n} (batching changes the float noise, README 'Reproducible runs')")


if __name__ == "__main__":
    main()

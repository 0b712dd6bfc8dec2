"""How the torch thread count changes a run's outcome (ACP, ANC, chosen search step); prints Markdown tables.

--data reference (default): the 24 CIFAR-10 images of ../shared/reference with the authors' ResNet20, untargeted,
cifar10 preset, attacked as one batch (~30 s per run on 2 cores). --data photos: the bundled photos with
MobileNetV2, imagenet preset, one image at a time (~60 s per image and thread count on 2 cores).
Each thread count is compared with the first one, image by image.
Usage: python benchmarks/thread_spread.py [--data reference|photos] [--threads 1,2,4] [--dtype float32|float64]
       [PHOTO ...]
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
from gse_algo.images import load_image
from gse_algo.models import load_model
from gse_algo.params import GSEParams
from gse_algo.runtime import DTYPES, Runtime

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "public_cifar_resnet20.npz"
CHECKPOINT = ROOT.parent / "shared" / "models" / "resnet20_cifar10_gse.pt"


def reference_set() -> tuple[torch.nn.Module, list[torch.Tensor], GSEParams]:
    images = np.load(REFERENCE)["images_uint8"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return load_model(str(CHECKPOINT)).model, [x], GSEParams.preset("cifar10")


def photos(names: list[str]) -> tuple[torch.nn.Module, list[torch.Tensor], GSEParams]:
    loaded = load_model()
    paths = [ROOT / "resources" / name for name in names] or sorted((ROOT / "resources").glob("*.jpg"))
    return loaded.model, [load_image(p, loaded.input_size)[None] for p in paths], GSEParams.preset("imagenet")


def outcomes(model: torch.nn.Module, batches: list[torch.Tensor], params: GSEParams) -> dict[str, np.ndarray]:
    """Per image: ACP, ANC, d2,0, chosen step, l2, and the stop iteration of every search step."""
    rows = []
    for x in batches:
        with torch.no_grad():
            y = model(x).argmax(1)
        r = gse_attack(model, x, y, params=params)
        stops = np.stack([s.stop_iteration for s in r.steps], axis=1)
        rows.append({"acp": metrics.acp(r.delta), "anc": metrics.anc(r.delta), "d20": metrics.d20(r.delta).numpy(),
                     "chosen": r.chosen_step, "l2": metrics.l2(r.delta), "stops": stops})
    return {k: np.concatenate([row[k] for row in rows]) for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("reference", "photos"), default="reference")
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("photos", nargs="*", help="with --data photos: file names in resources/ (default: all)")
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    dtype = DTYPES[args.dtype]
    model, batches, params = reference_set() if args.data == "reference" else photos(args.photos)
    model.to(dtype)
    batches = [x.to(dtype) for x in batches]
    print(f"{args.data}, {args.dtype}, torch {torch.__version__}, {platform.machine()}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d}; equal: images with the same value as the first run "
          f"({counts[0]} thread(s))\n")
    print("| threads | mean ACP | mean ANC | mean d2,0 | mean l2 | ACP equal | ANC equal | chosen step equal | "
          "every stop iteration equal |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    results = []  # (threads, outcomes); a count may repeat (the run-to-run check)
    for threads in counts:
        Runtime(threads=threads, dtype=args.dtype).apply()
        o = outcomes(model, batches, params)
        results.append((threads, o))
        first = results[0][1]
        n = len(first["acp"])
        equal = [int((o[k] == first[k]).sum()) for k in ("acp", "anc", "chosen")]
        stops_equal = int((o["stops"] == first["stops"]).all(axis=1).sum())
        print(f"| {threads} | {o['acp'].mean():.2f} | {o['anc'].mean():.2f} | {o['d20'].mean():.1f} | "
              f"{o['l2'].mean():.4f} | {equal[0]}/{n} | {equal[1]}/{n} | {equal[2]}/{n} | {stops_equal}/{n} |",
              flush=True)
    for i in range(n):
        if any(o["acp"][i] != first["acp"][i] for _, o in results):
            print(f"image {i}: " + "; ".join(f"{t} threads: ACP {o['acp'][i]}, ANC {o['anc'][i]}, step {o['chosen'][i]}"
                                             for t, o in results))


if __name__ == "__main__":
    main()

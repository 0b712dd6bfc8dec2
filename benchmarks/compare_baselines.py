"""GSE against each registered baseline, untargeted: prints one Markdown table (ASR, mean sizes, seconds per image).

Two sets: the public reference images (24 CIFAR-10 crops of ../shared/reference, the authors' ResNet20, one batch)
and the bundled photos (resources/*.jpg at 224 px on the 8-bit grid, MobileNetV2, one batch). Every attack runs
through the registry (gse_algo.attacks.run_attack), so every result is measured by the same code; means of the
sizes are over the successful images (the paper's convention), l2 in [0,1] units (half the paper's). The budgets
below are this benchmark's choice (the library defaults are in the registry): smaller on the photos, where one
forward + backward pass of MobileNetV2 on the batch costs ~0.4 s here; SparseFool is left out on the photos (its
DeepFool step takes one backward pass per class, 1000 on ImageNet, per iteration).
Usage: python benchmarks/compare_baselines.py [--sets cifar,photos] [--attacks gse,sigma_zero,...] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from gse_algo import quantize
from gse_algo.attacks import attack_names, get_attack, run_attack
from gse_algo.attacks.measure import predictions, summary
from gse_algo.images import load_image
from gse_algo.models import load_model
from gse_algo.runtime import Runtime, default_threads

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "public_cifar_resnet20.npz"
CHECKPOINT = SHARED / "models" / "resnet20_cifar10_gse.pt"
BUDGETS = {  # set -> attack -> settings (None: not run on that set)
    "cifar": {"gse": {}, "sigma_zero": {"num_steps": 1000}, "fmn": {"steps": 1000},
              "str_attack": {"binary_search_steps": 2, "max_iterations": 300, "retrain": False}, "vfga": {},
              "pdpgd": {"num_steps": 500, "proximal_operator": "l2/3"}, "sparsefool": {}, "pixle": {}},
    "photos": {"gse": {}, "sigma_zero": {"num_steps": 150}, "fmn": {"steps": 150},
               "str_attack": {"binary_search_steps": 1, "max_iterations": 100, "retrain": False},
               "vfga": {"max_iter": 60}, "pdpgd": {"num_steps": 150, "proximal_operator": "l2/3"},
               "sparsefool": None, "pixle": {}},
}
HEADER = ("| set | attack | settings (beyond the library's defaults) | ASR | mean ACP | mean channel-L0 | mean ANC | "
          "mean d2,0 | mean l2 | s / image |\n|---|---|---|---|---|---|---|---|---|---|")


def cifar() -> tuple[torch.nn.Module, torch.Tensor]:
    public = np.load(REFERENCE)
    x = torch.from_numpy(public["images_uint8"]).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return load_model(str(CHECKPOINT)).model, x


def photos() -> tuple[torch.nn.Module, torch.Tensor]:
    loaded = load_model()
    x = torch.stack([load_image(p, loaded.input_size) for p in sorted((ROOT / "resources").glob("*.jpg"))])
    return loaded.model, quantize.to_grid(x, 8)  # as gse-attack and gse-compare attack them


def row(set_name: str, attack: str, settings: dict, result, n: int) -> str:
    s = summary(list(result.metrics))
    shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults" + (" (preset)" if attack == "gse" else "")
    cells = [f"{s['asr']:.0%}"] + ["–" if math.isnan(s[k]) else f"{s[k]:.2f}" for k in ("acp", "channel_l0", "anc",
                                                                                         "d20")]
    cells += ["–" if math.isnan(s["l2"]) else f"{s['l2']:.3f}", f"{result.time_s / n:.2f}"]
    return f"| {set_name} | {get_attack(attack).title} | {shown} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(BUDGETS))
    parser.add_argument("--attacks", default=",".join(attack_names()))
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    loaders = {"cifar": cifar, "photos": photos}
    lines = [HEADER]
    for set_name in args.sets.split(","):
        model, x = loaders[set_name]()
        labels = predictions(model, x)
        for attack in args.attacks.split(","):
            settings = BUDGETS[set_name][attack]
            if settings is None:
                continue
            Runtime(threads=args.threads, seed=0).apply()  # each attack as if it ran alone
            result = run_attack(attack, model, x, labels, False, settings)
            lines.append(row(set_name, attack, settings, result, len(x)))
            print(lines[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f} "
          f"at the end, torch {torch.__version__}, {args.threads} thread(s), untargeted, each set as one batch\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

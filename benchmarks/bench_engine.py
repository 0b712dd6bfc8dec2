"""Engine benchmark: prints ratios from one run (shared, noisy machines: compare ratios, not seconds).

For one image at a time (the app's case), on the default model and on the CIFAR-10 ResNet20:
- overhead = wall time / (forward+backward passes the engine made x one measured forward+backward at batch 1),
  goal <= 1.15 (the few forward-only passes are counted as full passes' worth of nothing: they are overhead);
- trace ratio = wall time with the full trace the app uses / without a trace, goal <= 1.05;
and the time per image of the public reference set attacked as one batch.
Usage: python benchmarks/bench_engine.py [--steps N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gse_algo.attack import iterate_gse
from gse_algo.images import DEFAULT_IMAGE, load_image
from gse_algo.models import load_model
from gse_algo.params import GSEParams

SHARED = Path(__file__).resolve().parents[2] / "shared"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward_time(model: torch.nn.Module, x: torch.Tensor, repeats: int = 30) -> float:
    """Median seconds of one forward + input-gradient backward at batch 1."""
    times = []
    for i in range(repeats + 3):
        sync(x.device)
        start = time.perf_counter()
        leaf = x.detach().requires_grad_(True)
        torch.autograd.grad(model(leaf).max(1).values.sum(), leaf)
        sync(x.device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_run(model, x, y, params, trace: bool) -> tuple[float, object]:
    sync(x.device)
    start = time.perf_counter()
    run = iterate_gse(model, x, y, params=params, trace=trace)
    for _ in run:
        pass
    sync(x.device)
    return time.perf_counter() - start, run.result


def bench_single(name: str, model: torch.nn.Module, x: torch.Tensor, params: GSEParams) -> None:
    with torch.no_grad():
        y = model(x).argmax(1)
    before = forward_backward_time(model, x)
    t_plain, result = timed_run(model, x, y, params, trace=False)
    t_trace, _ = timed_run(model, x, y, params, trace=True)
    t_fb = (before + forward_backward_time(model, x)) / 2  # measured around the runs: drift shows as a bad ratio
    passes = result.n_forward_backward
    print(f"{name}: {passes} fwd+bwd + {result.n_forward} fwd-only passes, one fwd+bwd {t_fb * 1e3:.1f} ms")
    print(f"  wall {t_plain:.2f} s no trace, {t_trace:.2f} s full trace")
    print(f"  overhead ratio wall / (passes x fwd+bwd) = {t_plain / (passes * t_fb):.3f}  (goal <= 1.15)")
    print(f"  trace ratio full trace / no trace     = {t_trace / t_plain:.3f}  (goal <= 1.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="search steps (default 10, the official value)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}{' ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}")

    mobilenet = load_model(device=device)
    image = load_image(DEFAULT_IMAGE, mobilenet.input_size)[None].to(device)
    bench_single(f"mobilenet_v2 224x224 ({DEFAULT_IMAGE.name}, preset imagenet, {args.steps} search steps)",
                 mobilenet.model, image, GSEParams.preset("imagenet", search_steps=args.steps))

    checkpoint = SHARED / "models" / "resnet20_cifar10_gse.pt"
    reference = SHARED / "reference" / "public_cifar_resnet20.npz"
    if not checkpoint.is_file():
        print("ResNet20: ../shared/models missing, skipped")
        return
    resnet20 = load_model(str(checkpoint), device=device).model
    batch = torch.from_numpy(np.load(reference)["images_uint8"]).permute(0, 3, 1, 2).float().div(255).to(device)
    params = GSEParams.preset("cifar10", search_steps=args.steps)
    bench_single(f"resnet20 32x32 (public image 9, preset cifar10, {args.steps} search steps)",
                 resnet20, batch[9:10], params)
    with torch.no_grad():
        labels = resnet20(batch).argmax(1)
    t_batch, result = timed_run(resnet20, batch, labels, params, trace=False)
    print(f"resnet20 public set as one batch of {len(batch)}: {t_batch / len(batch):.3f} s per image "
          f"({result.success.sum()}/{len(batch)} successes)")


if __name__ == "__main__":
    main()

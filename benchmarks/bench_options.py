"""Forward+backward options on the default run's model (MobileNetV2, 224x224, batch 1): prints ratios.

Variants: float32 eager (the baseline), float64 eager, channels-last memory format, torch.compile (CPU inductor).
Each is timed over alternating rounds (the fastest round of each counts; this machine drifts), and compared with the
baseline's input gradient: "identical" means bit-equal, which adopting a variant as the default would require.
Usage: python benchmarks/bench_options.py [--rounds N] [--passes N] [--threads N] [--no-compile]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from gse_algo.images import DEFAULT_IMAGE, load_image
from gse_algo.models import load_model
from gse_algo.runtime import Runtime, default_threads


def gradient(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    logits = model(leaf)
    (grad,) = torch.autograd.grad(logits[0, 0] - logits[0, 1], leaf)
    return grad


def seconds_per_pass(model: torch.nn.Module, x: torch.Tensor, passes: int) -> float:
    start = time.perf_counter()
    for _ in range(passes):
        gradient(model, x)
    return (time.perf_counter() - start) / passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    Runtime(threads=args.threads).apply()
    base = load_model().model
    x = load_image(DEFAULT_IMAGE, (224, 224))[None]
    variants = {"float32 eager": (base, x), "float64 eager": (copy.deepcopy(base).double(), x.double()),
                "channels-last": (copy.deepcopy(base).to(memory_format=torch.channels_last),
                                  x.contiguous(memory_format=torch.channels_last))}
    if not args.no_compile:
        start = time.perf_counter()
        compiled = torch.compile(base)
        gradient(compiled, x)
        print(f"torch.compile: first pass (compilation) {time.perf_counter() - start:.0f} s")
        variants["torch.compile"] = (compiled, x)
    reference = gradient(base, x)
    for name, (model, inp) in variants.items():
        grad = gradient(model, inp)
        diff = float((grad.double() - reference.double()).abs().max())
        print(f"{name}: input gradient {'identical' if diff == 0 else f'differs by up to {diff:.2e}'}")
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, (model, inp) in variants.items():
            best[name] = min(best[name], seconds_per_pass(model, inp, args.passes))
    print(f"\n| variant | one fwd+bwd (fastest round) | ratio to float32 eager |\n|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds * 1000:.1f} ms | {seconds / best['float32 eager']:.2f} |")
    print(f"\n{args.threads} thread(s), torch {torch.__version__}, {args.rounds} rounds x {args.passes} passes")


if __name__ == "__main__":
    main()

"""A stand-in library attack for the desktop tests: one blocking call, as a library makes it, that changes the
`pixels` pixels with the largest loss gradient by `size` per step, one model call (with a backward pass) per step
and one extra call on a batch of another shape (not an iterate); untargeted only. It runs through
gse_algo.attacks.library.drive like the real baselines. `register()` adds it to the registry of the process
that calls it (the tests' engine process: EngineClient(setup=register))."""

from __future__ import annotations

import torch

from gse_algo.attacks import REGISTRY
from gse_algo.attacks.base import AttackSpec, Param
from gse_algo.attacks.library import drive

NAME = "fake_sparse"


def _greedy(images: torch.Tensor, labels: torch.Tensor, steps: int, pixels: int, size: float):
    def call(model: torch.nn.Module) -> torch.Tensor:
        x = images.clone()
        for _ in range(steps):
            leaf = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(leaf), labels)
            (grad,) = torch.autograd.grad(loss, leaf)
            model(torch.cat([x, x]))  # a call on another batch shape: not an iterate
            strength = grad.abs().sum(dim=1).flatten(1)  # [B, H*W]
            chosen = torch.zeros_like(strength, dtype=torch.bool)
            chosen.scatter_(1, strength.topk(pixels, dim=1).indices, True)
            step = size * grad.sign() * chosen.view(len(x), 1, *x.shape[-2:])
            x = (x + step).clamp(0, 1)
        return x
    return call


def run(model, images, labels, targeted, settings, trace=False):
    return (yield from drive(_greedy(images, labels, settings["steps"], settings["pixels"], settings["size"]),
                             model))


FAKE = AttackSpec(
    name=NAME, title="fake-sparse", source="tests/desktop/fake_attack.py", norm="l0 (pixels)",
    params=(Param("steps", int, 6, "model calls (steps) of the attack", 1, 100),
            Param("pixels", int, 3, "pixels changed per step", 1, 256),
            Param("size", float, 0.5, "change per pixel and step", 0.0, 1.0, low_ok=False)),
    run=run, targeted=False, notes="a test's stand-in for a library attack")


def register() -> None:
    REGISTRY.setdefault(NAME, FAKE)

"""How many images a study attacks at once: as many as a memory bound allows (GSE is batched per image).

The bound counts what one image costs during a forward+backward pass: every module's output (autograd keeps them
for the backward pass) plus the input gradient, found by one forward pass at batch 1 with hooks, plus the
attack's own working tensors (delta, its previous value, the gradient, the lambda map and masks: about
WORKING_COPIES images). It is an estimate, not a measurement of the allocator.
"""

from __future__ import annotations

import torch
from torch import nn

WORKING_COPIES = 12  # image-sized tensors GSE keeps per image (delta, z_old, grad, x_adv, lambda, masks, ...)
AUTOGRAD_FACTOR = 2  # activations kept for the backward pass, and their gradients during it
MAX_AUTO_BATCH = 256  # more gives no speed-up on a CPU and makes a lost batch (Ctrl-C) expensive


def bytes_per_image(model: nn.Module, input_size: tuple[int, int], device: torch.device,
                    dtype: torch.dtype = torch.float32) -> int:
    """Estimated bytes one image needs during an attack on `model` (see the module docstring)."""
    total = 0

    def count(_module: nn.Module, _inputs: tuple, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros((1, 3, *input_size), device=device, dtype=dtype))
    finally:
        for hook in hooks:
            hook.remove()
    image = 3 * input_size[0] * input_size[1] * torch.finfo(dtype).bits // 8
    return AUTOGRAD_FACTOR * total + WORKING_COPIES * image


def auto_batch_size(model: nn.Module, input_size: tuple[int, int], device: torch.device, memory_mb: int,
                    dtype: torch.dtype = torch.float32) -> int:
    """The largest batch whose estimate fits in memory_mb, between 1 and MAX_AUTO_BATCH."""
    per_image = bytes_per_image(model, input_size, device, dtype)
    return max(1, min(MAX_AUTO_BATCH, (memory_mb << 20) // per_image))

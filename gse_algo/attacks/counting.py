"""Count the model's forward calls and backward passes the same way for every attack (issue: equal terms).

`CountedModel` wraps any [0,1] classifier: each call of forward counts one (batched) forward pass, and a hook on
the output counts each backward pass that flows through it. `before_forward` (if given) runs first: the library
driver uses it to hand control back to the caller at every forward call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class CountedModel(nn.Module):
    def __init__(self, model: nn.Module, before_forward: Callable[[torch.Tensor], None] | None = None) -> None:
        super().__init__()
        self.model = model
        self.before_forward = before_forward
        self.n_forward = 0
        self.n_backward = 0
        self.training = model.training  # a wrapper, not a layer: the wrapped model's mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.before_forward is not None:
            self.before_forward(x)
        self.n_forward += 1
        out = self.model(x)
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: torch.Tensor) -> torch.Tensor:
        self.n_backward += 1
        return grad

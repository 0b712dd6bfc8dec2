"""The engine never reports success from non-finite logits or from a target the model already predicts, and every
GSE parameter has a range that is checked before any work."""

from __future__ import annotations

import pytest
import torch

from bad_input import Tiny
from gse_algo.attack import gse_attack, iterate_gse
from gse_algo.params import RANGES, GSEParams

X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
FAST = GSEParams(iters=5, search_steps=2)


class NaNWhenPerturbed(torch.nn.Module):
    """Finite logits on the clean images, NaN as soon as any pixel moves (an overflow inside the model)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        moved = (x - X[: len(x)]).abs().flatten(1).amax(1, keepdim=True) > 0
        return torch.where(moved, torch.full_like(z, float("nan")), z)


def test_a_targeted_attack_on_the_predicted_class_is_refused():
    model = Tiny().eval()
    clean = model(X).argmax(1)
    other = (clean + 1) % 3
    with pytest.raises(ValueError, match=r"already predicts the target class for image\(s\) \[1\]"):
        gse_attack(model, X, torch.stack([other[0], clean[1]]), targeted=True, params=FAST)
    assert gse_attack(model, X, other, targeted=True, params=FAST) is not None  # real targets run


def test_nan_logits_at_the_start_are_refused():
    model = Tiny().eval()
    with torch.no_grad():
        model.fc.bias[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite logits on the clean images"):
        gse_attack(model, X, torch.tensor([0, 1]), params=FAST)


def test_nan_logits_during_the_run_stop_it():
    model = NaNWhenPerturbed().eval()
    run = iterate_gse(model, X, model(X).argmax(1), params=FAST)
    with pytest.raises(ValueError, match="NaN or infinite logits at search step 0, iteration 0"):
        list(run)
    assert run.result is None  # no result, so no success to report


@pytest.mark.parametrize("name", RANGES)
def test_every_parameter_has_a_checked_range(name):
    kind, low, high, low_ok = RANGES[name]
    too_big = int(high) + 1 if kind is int else high * 2
    below = low - 1 if low_ok else low
    for bad in (too_big, below, True, "1"):
        with pytest.raises(ValueError, match=name):
            GSEParams(**{name: bad})
    GSEParams(**{name: kind(high) if name != "blur_size" else 101})  # the bounds themselves are allowed

"""Float64 runs: float64 in, float64 out, no float32 step (checked against a float64 hand computation)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gse_algo import models
from gse_algo.attack import iterate_gse
from gse_algo.params import GSEParams


class Linear(nn.Module):
    def __init__(self, n_in, n_classes=4, seed=0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_classes, n_in, generator=g, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.randn(n_classes, generator=g, dtype=dtype), requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def numpy_prox(v: np.ndarray, lam: float, reg: str) -> np.ndarray:
    """Soft thresholding, or half thresholding as spec 1.3 writes it, in plain NumPy float64."""
    a = np.abs(v)
    if reg == "l1":
        return np.sign(v) * np.maximum(a - lam / 2, 0)
    keep = a > 54 ** (1 / 3) / 4 * lam ** (2 / 3)
    phi = np.arccos(np.clip(lam / 8 * (np.where(keep, a, 1) / 3) ** -1.5, -1, 1))
    return np.where(keep, np.sign(v) * 2 / 3 * a * (1 + np.cos(2 * np.pi / 3 - 2 * phi / 3)), 0)


@pytest.mark.parametrize("reg", ["l1/2", "l1"])
def test_first_iterate_equals_a_float64_hand_computation(reg):
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = Linear(3 * 6 * 6).eval()
    y = model(x).argmax(1)
    params = GSEParams(sigma=0.05, mu=4.0, k_hat=3, iters=1, search_steps=3, reg=reg)  # step 0: sigma, not 10 sigma
    run = iterate_gse(model, x, y, params=params)
    snap = list(run)[0]
    assert (snap.step, snap.iteration) == (0, 0)
    w, xn = model.weight.numpy(), x.numpy().reshape(2, -1)
    for b in range(2):
        logits = xn[b] @ w.T + model.bias.numpy()
        other = max((k for k in range(4) if k != y[b]), key=lambda k: logits[k])
        g = w[y[b]] - w[other]  # gradient of the CW margin (positive: the clean class wins)
        g_max = np.abs(g).max()
        star = 8 / math.sqrt(54) * math.sqrt(params.sigma) * g_max ** 1.5 if reg == "l1/2" else 2 * g_max
        lam0 = 0.01 * star
        a0 = 2 / (1 + math.sqrt(5))  # t: 1 -> (1 + sqrt 5) / 2
        z = numpy_prox(-params.sigma * g, lam0 * params.sigma, reg)
        expected = np.clip(xn[b] + a0 * z, 0, 1) - xn[b]
        assert run.result.lambda0[b] == pytest.approx(lam0, rel=1e-14)
        np.testing.assert_allclose(snap.delta.dense()[b].reshape(-1), expected, rtol=0, atol=1e-15)
        assert np.count_nonzero(expected) > 0


def test_every_output_is_float64():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = Linear(3 * 8 * 8, seed=2).eval()
    y = model(x).argmax(1)
    run = iterate_gse(model, x, y, params=GSEParams(sigma=0.01, k_hat=3, iters=12, search_steps=3))
    snaps = list(run)
    assert any(s.phase == 2 for s in snaps)
    for s in snaps:
        assert s.delta.values.dtype == s.lambda_map.dtype == np.float64
        for name in ("lambda_b", "sigma_b", "margin", "cw_loss", "l2", "l2_term", "top_probs"):
            assert getattr(s, name).dtype == np.float64, name
    result = run.result
    assert result.x_adv.dtype == result.delta.dtype == torch.float64 and result.lambda0.dtype == np.float64
    assert all(r.lambda_b.dtype == r.sigma_b.dtype == np.float64 for r in result.steps)


def test_float32_runs_keep_float32_snapshots():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    model = Linear(3 * 8 * 8, seed=2, dtype=torch.float32).eval()
    snap = next(iter(iterate_gse(model, x, model(x).argmax(1), params=GSEParams(iters=2, search_steps=1))))
    assert snap.delta.values.dtype == snap.lambda_map.dtype == np.float32


def test_a_model_of_another_dtype_is_refused_with_a_clear_message():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    model = Linear(3 * 4 * 4, dtype=torch.float32).eval()
    with pytest.raises(ValueError, match="images are float64 but the model's weight is float32"):
        list(iterate_gse(model, x, torch.tensor([0])))


def test_loaded_model_converts_with_exact_normalisation_constants():
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    model = models.Normalized(net, models.IMAGENET_MEAN, models.IMAGENET_STD).eval()
    loaded = models.LoadedModel("tiny", net, model, ["a", "b", "c"], (8, 8), models.IMAGENET_MEAN,
                                models.IMAGENET_STD, "0", None)
    assert loaded.to(dtype=torch.float64) is loaded
    assert all(t.dtype == torch.float64 for t in [*model.parameters(), *model.buffers()])
    assert model.mean.flatten().tolist() == list(models.IMAGENET_MEAN)  # 0.485 exactly, not float32's 0.48500001
    assert model.std.flatten().tolist() == list(models.IMAGENET_STD)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    expected = net((x - torch.tensor(models.IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1))
                   / torch.tensor(models.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1))
    assert torch.equal(model(x), expected) and model(x).dtype == torch.float64
    run = iterate_gse(model, x, model(x).argmax(1), params=GSEParams(iters=3, search_steps=1))
    list(run)
    assert run.result.x_adv.dtype == torch.float64
    loaded.to(dtype=torch.float32)
    assert model.mean.dtype == torch.float32 and model.mean.flatten().tolist() == pytest.approx(models.IMAGENET_MEAN)

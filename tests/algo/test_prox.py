"""The 1/2-quasinorm prox and lambda_0 against the spec's table (1.3), brute force and the closed form (1.4)."""

import math

import numpy as np
import pytest
import torch

from gse_algo.prox import half_threshold, lambda_zero, prox_half

V = [-2.0, -0.5, -0.05, 0.0, 0.01, 0.3, 0.6, 1.0, 5.0]
TABLE = {  # spec 1.3, checked there against brute-force minimisation
    0.01: [-1.998231, -0.496452, -0.037004, 0, 0, 0.295400, 0.596764, 0.997497, 4.998882],
    0.1: [-1.982243, -0.463270, 0, 0, 0, 0.250000, 0.566793, 0.974677, 4.988807],
    1.0: [-1.814402, 0, 0, 0, 0, 0, 0, 0.701516, 4.886910],
}


@pytest.mark.parametrize("lam", sorted(TABLE))
def test_prox_matches_spec_table(lam):
    out = prox_half(torch.tensor(V, dtype=torch.float64), torch.tensor(lam, dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), TABLE[lam], atol=2e-6)


def test_thresholds():
    for lam, tau in [(0.01, 0.0438603), (0.1, 0.2035813), (1.0, 0.9449408)]:
        assert float(half_threshold(torch.tensor(lam, dtype=torch.float64))) == pytest.approx(tau, abs=1e-7)


def test_prox_is_global_minimiser_by_brute_force():
    grid = np.linspace(-3, 3, 600001)
    for lam in (0.05, 0.4, 1.3):
        for v in np.linspace(-2.5, 2.5, 41):
            objective = (grid - v) ** 2 + lam * np.sqrt(np.abs(grid))
            best = grid[np.argmin(objective)]
            u = float(prox_half(torch.tensor([v], dtype=torch.float64), torch.tensor(lam, dtype=torch.float64)))
            assert abs(u - best) < 5e-5 or math.isclose((u - v) ** 2 + lam * math.sqrt(abs(u)), objective.min(), abs_tol=1e-9)


def test_prox_odd_zero_region_and_jump():
    lam = torch.tensor(0.3, dtype=torch.float64)
    v = torch.linspace(-2, 2, 401, dtype=torch.float64)
    out = prox_half(v, lam)
    assert torch.allclose(prox_half(-v, lam), -out)
    tau = half_threshold(lam)
    assert torch.equal(out == 0, v.abs() <= tau)
    just_above = tau * (1 + 1e-7)
    assert float(prox_half(just_above.view(1), lam)) == pytest.approx(2 / 3 * float(just_above), rel=1e-3)


def test_prox_per_entry_lambda_and_infinite_lambda():
    v = torch.tensor([[0.5, 0.5, 0.5]])
    lam = torch.tensor([[0.0, 0.1, math.inf]])
    out = prox_half(v, lam)
    assert out[0, 0] == 0.5 and 0 < out[0, 1] < 0.5 and out[0, 2] == 0
    assert torch.isfinite(out).all()


def test_lambda_zero_closed_form_equals_bisection():
    torch.manual_seed(0)
    g = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    sigma = 0.005
    lam0 = lambda_zero(g, sigma)
    for b in range(3):
        lb, ub = 0.0, 0.001  # the official bisection (spec 1.4)
        while prox_half(sigma * g[b], torch.tensor(ub * sigma, dtype=torch.float64)).abs().sum() > 0:
            ub *= 2
        for _ in range(50):
            mid = (lb + ub) / 2
            if prox_half(sigma * g[b], torch.tensor(mid * sigma, dtype=torch.float64)).abs().sum() == 0:
                ub = mid
            else:
                lb = mid
        assert float(lam0[b]) == pytest.approx(0.01 * (lb + ub) / 2, rel=1e-9)


def test_lambda_zero_of_zero_gradient_is_tiny():
    assert float(lambda_zero(torch.zeros(1, 3, 4, 4), 0.005)[0]) == pytest.approx(0.01 * 0.001 * 2.0 ** -51)

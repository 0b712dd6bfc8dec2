"""The lambda update (spec 1.5) and the momentum weights (spec 1.6)."""

import numpy as np
import pytest
import torch

from gse_algo.attack import momentum_weights
from gse_algo.lambda_map import adjust_lambda, gaussian_kernel_1d


def test_kernel_weights():
    expected = [0.120078, 0.233881, 0.292082, 0.233881, 0.120078]
    np.testing.assert_allclose(gaussian_kernel_1d(5, 1.5, torch.float64).numpy(), expected, atol=1e-6)


def test_seven_by_seven_example():
    lam = torch.ones(1, 7, 7, dtype=torch.float64)
    delta = torch.zeros(1, 3, 7, 7, dtype=torch.float64)
    delta[0, 1, 3, 3] = 0.2  # one channel is enough to mark the pixel
    delta[0, 0, 0, 0] = -0.1
    out = adjust_lambda(lam, delta, q=0.25)[0]
    expected = {(3, 3): 0.921394, (0, 0): 0.921394, (1, 1): 0.935350, (2, 4): 0.948137, (5, 5): 0.985786,
                (0, 3): 4.0, (6, 6): 4.0}
    for (r, c), value in expected.items():
        assert float(out[r, c]) == pytest.approx(value, abs=1e-6), (r, c)


def test_lambda_update_keeps_infinity():
    lam = torch.full((1, 6, 6), float("inf"))
    delta = torch.zeros(1, 3, 6, 6)
    delta[0, :, 2, 2] = 1.0
    out = adjust_lambda(lam, delta, q=0.25)
    assert torch.isinf(out).all() and not torch.isnan(out).any()


def test_momentum_weights():
    expected = [0.618034, 0.737640, 0.797707, 0.834565, 0.859698, 0.878014]
    np.testing.assert_allclose(momentum_weights(6), expected, atol=1e-6)

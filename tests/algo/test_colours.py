"""The one colour convention: level rules and lookup tables (Qt-free)."""

import matplotlib
import numpy as np
import pytest

from gse_algo import colours, figures


def test_perturbation_levels_are_symmetric_round_and_saturate_nothing():
    assert colours.perturbation_levels(np.array([[0.013, -0.04]])) == (-0.05, 0.05)
    assert colours.perturbation_levels(np.array([[0.2]])) == (-0.2, 0.2)
    assert colours.perturbation_levels(np.zeros((2, 2)))[1] == pytest.approx(1e-6)


def test_lambda_levels_span_the_finite_values():
    assert colours.lambda_levels(np.array([-2.0, np.inf, 1.5])) == (-2.0, 1.5)
    assert colours.lambda_levels(np.array([np.inf])) == (0.0, 1.0)
    low, high = colours.lambda_levels(np.array([3.0, 3.0]))
    assert low == 3.0 and high > low


def test_the_perturbation_table_has_exactly_zero_in_the_middle_and_the_sqrt_stretch():
    lut = colours.lookup_table("perturbation")
    rdbu = matplotlib.colormaps["RdBu_r"]
    middle = len(lut) // 2
    np.testing.assert_array_equal(lut[middle], np.round(np.array(rdbu(0.5)) * 255).astype(np.uint8))
    quarter = round(0.625 * (len(lut) - 1))  # value +L/4 -> colour-map position 0.5 + sqrt(1/4) / 2 = 0.75
    np.testing.assert_allclose(lut[quarter, :3] / 255, rdbu(0.75)[:3], atol=1 / 255)


def test_the_figure_uses_the_same_rules():
    signed = np.array([[0.013, -0.04]])
    assert figures.perturbation_norm(colours.perturbation_levels(signed)[1]).vmax == 0.05
    _, norm = figures.lambda_norm(np.array([[0.01, np.inf], [1.0, 10.0]]))
    assert (norm.vmin, norm.vmax) == pytest.approx((0.01, 10.0))

"""ACP, ANC, d_{2,0} and IS on hand-made cases (spec 2.2, 2.4)."""

import numpy as np
import pytest
import torch

from gse_algo import metrics


def delta_with(pixels, size=32):
    d = torch.zeros(1, 3, size, size)
    for r, c in pixels:
        d[0, 0, r, c] = 0.1
    return d


@pytest.mark.parametrize("pixels,expected", [
    ([(0, 0)], 1), ([(10, 10)], 64), ([(10, 10), (10, 11)], 72),
    ([(r, c) for r in range(12, 16) for c in range(12, 16)], 121),
    ([(r, c) for r in range(32) for c in range(32)], 625), ([], 0),
])
def test_d20_examples(pixels, expected):
    assert int(metrics.d20(delta_with(pixels))[0]) == expected


def test_acp_counts_pixels_not_entries():
    d = torch.zeros(1, 3, 8, 8)
    d[0, :, 1, 1] = 0.2  # three channels, one pixel
    d[0, 2, 5, 5] = -0.1  # one channel only
    assert metrics.acp(d).tolist() == [2]


def test_anc_four_connectivity():
    assert metrics.anc(delta_with([(3, 3), (4, 4)])).tolist() == [2]  # diagonal neighbours
    assert metrics.anc(delta_with([(3, 3), (4, 3), (5, 3), (5, 4)])).tolist() == [1]  # L-shape
    assert metrics.anc(delta_with([])).tolist() == [0]


def test_l2_and_asr():
    d = torch.zeros(2, 3, 4, 4)
    d[0, 0, 0, 0], d[0, 1, 0, 0] = 3.0, 4.0
    assert metrics.l2(d).tolist() == [5.0, 0.0]
    assert metrics.asr([True, False, True, True]) == 0.75


def test_percentile_threshold_follows_official_indexing():
    values = torch.tensor([0.0, -2.0, 1.0, 3.0, 0.0, 5.0])
    # sorted nonzeros [-2, 1, 3, 5], with a leading 0: a = [0, -2, 1, 3, 5], n = 5
    assert float(metrics.percentile_threshold(values, 50)) == 3.0  # a[ceil(2.5)] = a[3]
    assert float(metrics.percentile_threshold(values, 90)) == 5.0  # a[ceil(4.5)] = a[5] -> clipped to the last


class Linear(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_interpretability_score_on_a_linear_model():
    # Logits = W x: dZ_t/dx = W_t and dZ_y/dx = W_y, so ASM = W_t * |W_y| is known by hand.
    w = torch.zeros(2, 4)
    w[0] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # true class y = 0
    w[1] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # target t = 1 -> ASM = [4, 3, 2, 1]
    x = torch.zeros(1, 1, 2, 2)
    delta = torch.tensor([[[[3.0, 0.0], [0.0, 4.0]]]])  # energy 9 on the top entry, 16 on the last
    score = metrics.interpretability_score(Linear(w), x, delta, torch.tensor([0]), torch.tensor([1]), [50])
    # a = [0, 1, 2, 3, 4], nu_50 = a[ceil(2.5)] = 3 -> region = {ASM > 3} = entry 0 -> IS = 3 / 5
    assert score[0, 0] == pytest.approx(0.6)
    zero = metrics.interpretability_score(Linear(w), x, torch.zeros_like(delta), torch.tensor([0]), torch.tensor([1]))
    assert np.isnan(zero).all()

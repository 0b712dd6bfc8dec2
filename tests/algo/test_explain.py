"""Overlap of a perturbation with the salient CAM region and its cluster table, on hand-computed cases."""

import math

import numpy as np
import pytest

from gse_algo.explain import cluster_table, overlap, overlap_curve, overlap_curve_sparse, salient_region
from gse_algo.metrics import anc

RAMP = np.arange(16, dtype=np.float32).reshape(4, 4)  # the top 25% (4 pixels) is the bottom row


def two_pixel_delta() -> np.ndarray:
    """(3,0) = (3,4): energy 25, inside the top-25% region; (0,0) = (0,12): energy 144, outside."""
    delta = np.zeros((2, 4, 4), dtype=np.float32)
    delta[:, 3, 0] = (3, 4)
    delta[:, 0, 0] = (0, 12)
    return delta


def test_salient_region_top_rows_and_sizes():
    np.testing.assert_array_equal(salient_region(RAMP, 25), np.arange(16).reshape(4, 4) >= 12)
    assert salient_region(RAMP, 10).sum() == 2  # ceil(1.6)
    assert salient_region(RAMP, 100).all()
    assert salient_region(RAMP, 1e-9).sum() == 1


def test_salient_region_ties_in_raster_order():
    np.testing.assert_array_equal(salient_region(np.zeros((2, 3)), 50), [[True, True, True], [False] * 3])
    np.testing.assert_array_equal(salient_region(np.array([[1.0, 0.0], [1.0, 1.0]]), 50),
                                  [[True, False], [True, False]])


def test_overlap_hand_computed():
    result = overlap(two_pixel_delta(), RAMP, 25)
    assert result["pixel_share"] == pytest.approx(1 / 2)   # 1 of the 2 perturbed pixels is in the region
    assert result["l2_share"] == pytest.approx(5 / 13)     # sqrt(25 / (25 + 144))
    assert result["iou"] == pytest.approx(1 / 5)           # |M & R| = 1, |M | R| = 2 + 4 - 1


def test_overlap_is_scale_free_and_whole_region_gives_one():
    delta = two_pixel_delta()
    assert overlap(delta * 1e-3, RAMP, 25) == pytest.approx(overlap(delta, RAMP, 25))
    assert overlap(delta, RAMP, 100) == pytest.approx({"pixel_share": 1, "l2_share": 1, "iou": 2 / 16})


def test_zero_delta_gives_nan():
    result = overlap(np.zeros((3, 4, 4)), RAMP, 25)
    assert all(math.isnan(v) for v in result.values())


def test_overlap_curve_over_iterations():
    inside = np.zeros((2, 4, 4))
    inside[1, 3, 2] = -0.5
    steps = [np.zeros((2, 4, 4)), two_pixel_delta(), inside]
    curve = overlap_curve(steps, RAMP, 25)
    assert np.isnan(curve["pixel_share"][0]) and np.isnan(curve["iou"][0])
    np.testing.assert_allclose(curve["pixel_share"][1:], [1 / 2, 1])
    np.testing.assert_allclose(curve["l2_share"][1:], [5 / 13, 1])
    np.testing.assert_allclose(curve["iou"][1:], [1 / 5, 1 / 4])
    stacked = overlap_curve(np.stack(steps), RAMP, 25)
    for key in curve:
        np.testing.assert_array_equal(stacked[key], curve[key])
    sparse = [(np.flatnonzero(np.abs(d).sum(axis=0)), d.reshape(2, -1).T[np.abs(d).sum(axis=0).ravel() > 0])
              for d in steps]  # (flat pixels, values [n, C]) as the run history stores them
    from_sparse = overlap_curve_sparse(sparse, RAMP, 25)
    for key in curve:
        np.testing.assert_allclose(from_sparse[key], curve[key], equal_nan=True)
    with pytest.raises(ValueError, match="outside"):
        overlap_curve_sparse([(np.array([16]), np.ones((1, 2)))], RAMP, 25)


def hand_drawn() -> tuple[np.ndarray, np.ndarray]:
    """Diagonal neighbours (0,0), (1,1): two clusters; an L (2,3),(3,3),(4,3),(4,4),(4,5): one cluster."""
    delta = np.zeros((3, 6, 6))
    for r, c in [(2, 3), (3, 3), (4, 3), (4, 4), (4, 5)]:
        delta[0, r, c] = 1.0            # energy 5 in all
    delta[1, 0, 0] = 2.0                # energy 4
    delta[0, 1, 1], delta[2, 1, 1] = -1.0, 1.0  # energy 2
    cam = np.arange(36).reshape(6, 6) / 35  # cam[r, c] = (6r + c) / 35
    return delta, cam


def test_cluster_table_hand_drawn():
    delta, cam = hand_drawn()
    rows = cluster_table(delta, cam)
    assert len(rows) == 3 == anc(delta[None])[0]
    big, first, second = rows  # by size; the two single pixels keep raster order
    assert (big["size"], big["bbox"], big["label"]) == (5, (2, 3, 4, 5), 3)
    assert (first["size"], first["bbox"], second["bbox"]) == (1, (0, 0, 0, 0), (1, 1, 1, 1))
    assert [r["energy_share"] for r in rows] == pytest.approx([5 / 11, 4 / 11, 2 / 11])
    assert [r["mean_cam"] for r in rows] == pytest.approx([(15 + 21 + 27 + 28 + 29) / 5 / 35, 0, 7 / 35])


def test_cluster_table_empty_for_zero_delta():
    assert cluster_table(np.zeros((3, 5, 5)), np.ones((5, 5))) == []


@pytest.mark.parametrize("call, message", [
    (lambda: salient_region(RAMP, 0), "top_percent"),
    (lambda: salient_region(RAMP, 120), "top_percent"),
    (lambda: salient_region(np.full((2, 2), np.nan), 50), "finite"),
    (lambda: overlap(np.zeros((3, 4, 5)), RAMP, 25), "same H,W"),
    (lambda: overlap_curve(np.zeros((3, 4, 4)), RAMP, 25), "T,C,H,W"),
    (lambda: cluster_table(np.zeros((4, 4)), RAMP), "C,H,W"),
])
def test_bad_input_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()

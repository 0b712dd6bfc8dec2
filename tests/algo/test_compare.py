"""Comparison rules on hand-made supports and values."""

import math

import numpy as np
import pytest

from gse_algo.compare import BOTH, NEITHER, ONLY_A, ONLY_B, better, overlay_codes, support_iou


def test_overlay_marks_only_a_only_b_and_both():
    a = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
    b = np.array([[0, 1, 1], [0, 0, 0]], dtype=bool)
    assert overlay_codes(a, b).tolist() == [[ONLY_A, BOTH, ONLY_B], [NEITHER, NEITHER, NEITHER]]
    assert support_iou(a, b) == pytest.approx(1 / 3)


def test_iou_of_empty_supports_is_nan_and_shapes_must_match():
    empty = np.zeros((2, 2), bool)
    assert math.isnan(support_iou(empty, empty))
    assert support_iou(empty, np.eye(2, dtype=bool)) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        overlay_codes(empty, np.zeros((3, 3), bool))


def test_better_follows_each_metrics_direction():
    assert better("acp", 10, 20) == "a"
    assert better("success", False, True) == "b"
    assert better("l2", 0.5, 0.5) is None
    assert better("acp", None, 3) is None and better("acp", math.nan, 3) is None
    assert better("colour", 1, 2) is None

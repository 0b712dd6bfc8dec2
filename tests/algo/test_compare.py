"""Comparison rules on hand-made supports and values."""

import math

import numpy as np
import pytest

from gse_algo.compare import (BOTH, MAX_RINGS, NEITHER, ONLY_A, ONLY_B, better, overlay_codes, small_clusters,
                              support_iou)


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


def test_small_clusters_are_given_up_beyond_max_rings():
    codes = np.zeros((128, 128), np.uint8)
    lone = [(r, c) for r in range(0, 128, 4) for c in range(0, 128, 4)][:MAX_RINGS + 1]
    for r, c in lone:
        codes[r, c] = ONLY_A
    assert small_clusters(codes) == []  # 301 rings would cover the image
    codes[lone[-1]] = NEITHER
    assert len(small_clusters(codes)) == MAX_RINGS

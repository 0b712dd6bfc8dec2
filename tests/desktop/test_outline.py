"""Mask outlines: the edges between pixels in and out of the mask, counted by hand."""

import numpy as np

from gse_desktop.panels.outline import mask_edges


def segments(mask):
    x, y = mask_edges(np.array(mask, bool))
    return {tuple(sorted(((x[i], y[i]), (x[i + 1], y[i + 1])))) for i in range(0, len(x), 2)}


def test_one_pixel_has_four_unit_edges():
    assert segments([[0, 0, 0], [0, 1, 0], [0, 0, 0]]) == {((1, 1), (2, 1)), ((1, 2), (2, 2)), ((1, 1), (1, 2)),
                                                           ((2, 1), (2, 2))}


def test_a_two_pixel_bar_at_the_border_and_an_empty_mask():
    edges = segments([[1, 1], [0, 0]])
    assert len(edges) == 6  # top 2, bottom 2, left 1, right 1; none between the two pixels of the bar
    assert ((1, 0), (1, 1)) not in edges and ((0, 0), (1, 0)) in edges and ((1, 1), (2, 1)) in edges
    assert segments([[0, 0], [0, 0]]) == set()

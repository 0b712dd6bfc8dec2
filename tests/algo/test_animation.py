"""Animation frames of the chosen panels (titles and colour bars sized to the frame), GIF, frame strip."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from gse_algo import animation

RNG = np.random.default_rng(0)


def frame(h=4, w=5, j=0, value=0.1, label="step 1, iteration 1", **extra):
    x = np.full((h, w, 3), 0.5, np.float32)
    delta = np.zeros((3, h, w), np.float32)
    delta[:, 1, 1] = value
    delta[:, 2, 3] = -value
    return animation.FrameData(x, delta, np.abs(delta).sum(axis=0) > 0, label, **extra)


def dark_rows(band: np.ndarray) -> int:
    """How many rows of a white band hold dark (text) pixels."""
    return int((band.min(axis=2) < 100).any(axis=1).sum())


def panel_top(picture: np.ndarray) -> int:
    """The first row of the panels: under the top of the grey frame drawn round each (column 0 is its left side)."""
    return int(np.nonzero((picture[:, 0] == 160).all(axis=1))[0][0]) + 1


def test_panels_side_by_side_in_the_figures_colours_and_text_sized_to_the_panel():
    picture = animation.render_frames([frame()], ["perturbation", "mask"], labels=False)[0]
    scale = animation.PANEL_PX // 5  # 4x5 pixels enlarged to about PANEL_PX
    w = 5 * scale
    assert picture.dtype == np.uint8 and picture.shape[1] > 2 * w
    top = panel_top(picture)
    title = picture[:top]
    assert dark_rows(title) >= w / 30  # the title's letters are about 1/16 of the panel wide
    perturbation = picture[top:top + 4 * scale:scale, 1:1 + w:scale].astype(int)
    red, blue, zero = perturbation[1, 1], perturbation[2, 3], perturbation[0, 0]
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50 and abs(zero[0] - zero[2]) < 8  # zero: the white middle
    left = 1 + w + (picture.shape[1] - 2 - 2 * w)  # the mask panel after the gap
    mask = picture[top:top + 4 * scale:scale, left:left + w:scale]
    assert mask[1, 1].tolist() == [0, 0, 0] and mask[0, 0].tolist() == [255, 255, 255]
    below = picture[top + 4 * scale + 1:]
    assert dark_rows(below) >= w / 30  # the colour bar's tick labels


def test_levels_are_fixed_over_the_frames():
    frames = [frame(value=0.01), frame(value=0.04)]
    pictures = animation.render_frames(frames, ["perturbation"], labels=False)
    scale = animation.PANEL_PX // 5
    top = panel_top(pictures[0])
    weak, strong = (p[top + 1 * scale, 1 + 1 * scale].astype(int) for p in pictures)
    assert strong[2] < weak[2] - 30  # the same value range: the larger change is the deeper red


def test_panels_are_checked():
    with pytest.raises(ValueError, match="choose panels"):
        animation.render_frames([frame()], ["histogram"])
    with pytest.raises(ValueError, match="choose panels"):
        animation.render_frames([frame()], [])
    with pytest.raises(ValueError, match="computed CAM"):
        animation.render_frames([frame()], ["cam"])
    cam = animation.render_frames([frame(cam=RNG.random((4, 5)), log10_lambda=np.full((4, 5), -2.0))],
                                  ["cam", "lambda", "original"])
    assert cam[0].shape[1] > 3 * animation.PANEL_PX * 0.9


def test_select_frames():
    assert animation.select_frames(10, 3) == [0, 3, 6, 9]
    assert animation.select_frames(12, 5) == [0, 5, 10, 11]
    assert animation.select_frames(0, 5) == []
    with pytest.raises(ValueError):
        animation.select_frames(5, 0)


def test_gif_has_one_frame_per_state_and_stays_small(tmp_path):
    x = RNG.random((8, 8, 3)).astype(np.float32)
    frames = []
    for j in range(7):
        delta = np.zeros((3, 8, 8), np.float32)
        delta[:, : j + 1, :2] = 0.05
        frames.append(animation.FrameData(x, delta, np.abs(delta).sum(axis=0) > 0, f"iteration {j}"))
    pictures = animation.render_frames(frames)
    path = animation.save_gif(pictures, tmp_path / "run.gif", fps=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 7
        assert gif.size == (pictures[0].shape[1], pictures[0].shape[0])
        assert gif.info["duration"] == 250
    pixels = 7 * pictures[0].shape[0] * pictures[0].shape[1]
    assert path.stat().st_size < pixels / 20  # < 0.4 bits a pixel: one palette, unchanged regions cost nothing
    assert os.listdir(tmp_path) == ["run.gif"]


def test_frame_strip_shows_every_selected_frame():
    frames = [np.full((6, 9, 3), 40 * i, dtype=np.uint8) for i in range(6)]
    chosen = animation.select_frames(len(frames), 2)
    fig = animation.frame_strip([frames[i] for i in chosen], [f"it {i}" for i in chosen], columns=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["it 0", "it 2", "it 4", "it 5"]  # the last one always shown

"""Composite figure, colour scales, saving with provenance, animation frames, GIF and frame strip."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from gse_algo import figures

RNG = np.random.default_rng(0)
H, W = 20, 24


def _data(**changes) -> figures.FigureData:
    x = RNG.random((3, H, W)).astype(np.float32)
    delta = np.zeros_like(x)
    delta[:, 5:9, 6:12] = 0.02 * RNG.standard_normal((3, 4, 6))
    lam = np.full((H, W), 0.01)
    lam[0, 0] = np.inf
    values = dict(x=x, x_adv=np.clip(x + delta, 0, 1), lambda_map=lam, cam=RNG.random((H, W)),
                  captions={"original": "cat (3), p = 0.9", "mask": "ACP = 24 px\nANC = 1"}, title="a test")
    values.update(changes)
    return figures.FigureData(**values)


def test_parse_panels():
    assert figures.parse_panels("mask, original") == ["mask", "original"]
    assert figures.parse_panels("all") == list(figures.PANELS)
    assert figures.parse_panels("default") == list(figures.DEFAULT_PANELS)
    with pytest.raises(ValueError, match="unknown figure panel.*histogram"):
        figures.parse_panels("original,histogram")
    with pytest.raises(ValueError, match="twice"):
        figures.parse_panels("mask,mask")


def test_signed_perturbation_keeps_the_largest_magnitude_channel():
    delta = np.zeros((3, 1, 2))
    delta[:, 0, 0] = [0.1, -0.3, 0.2]
    delta[:, 0, 1] = [0.0, 0.05, -0.01]
    np.testing.assert_allclose(figures.signed_perturbation(delta), [[-0.3, 0.05]])


def test_perturbation_scale_is_symmetric_and_square_root_stretched():
    norm = figures.perturbation_norm(0.04)
    # sign(v) sqrt|v| mapped linearly from [-0.2, 0.2] to [0, 1]: 0.01 -> (0.1 + 0.2) / 0.4
    np.testing.assert_allclose(norm(np.array([-0.04, 0.0, 0.01, 0.04])), [0.0, 0.5, 0.75, 1.0])


def test_lambda_scale_masks_inf_and_spans_the_finite_values():
    values, norm = figures.lambda_norm(np.array([[0.1, np.inf], [10.0, 1.0]]))
    assert values.mask.tolist() == [[False, True], [False, False]]
    assert (norm.vmin, norm.vmax) == (0.1, 10.0)
    np.testing.assert_allclose(norm(1.0), 0.5)  # log scale: 1 is halfway between 0.1 and 10


def test_composite_png_size_dpi_and_text_chunks(tmp_path):
    fig = figures.composite_figure(_data(), ["original", "perturbation", "lambda", "cam", "mask"], panel_inches=2.0)
    width_in, height_in = fig.get_size_inches()
    assert width_in == pytest.approx(10.0)
    meta = {"Model": "tiny", "Parameters": '{"mu": 4.0}', "Iteration": "step 0, iteration 3", "Title": "t"}
    path = figures.save_figure(fig, tmp_path / "fig.png", dpi=150, metadata=meta)
    with Image.open(path) as image:
        assert image.size[0] == pytest.approx(width_in * 150, abs=1)
        assert image.size[1] == pytest.approx(height_in * 150, abs=1)
        assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # stored as dots per metre
        assert {key: image.text[key] for key in meta} == meta


def test_panel_order_and_selection():
    fig = figures.composite_figure(_data(), ["mask", "original"])
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]
    assert titles == [figures.TITLES["mask"], figures.TITLES["original"]]
    with pytest.raises(ValueError, match="'cam' needs data"):
        figures.composite_figure(_data(cam=None), ["original", "cam"])


def test_svg_parses_and_pdf_is_written(tmp_path):
    fig = figures.composite_figure(_data(), figures.DEFAULT_PANELS)
    svg = figures.save_figure(fig, tmp_path / "fig.svg", metadata={"Title": "GSE figure", "Model": "tiny"})
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "GSE figure" in svg.read_text() and "Model: tiny" in svg.read_text()
    pdf = figures.save_figure(fig, tmp_path / "fig.pdf", metadata={"Title": "GSE figure"})
    assert pdf.read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="use .png, .svg or .pdf"):
        figures.save_figure(fig, tmp_path / "fig.jpg")


def test_unwritable_figure_path_gives_error_and_no_file(tmp_path):
    fig = figures.composite_figure(_data(), ["original"])
    target = tmp_path / "missing" / "fig.png"
    with pytest.raises(OSError, match="cannot write .*fig.png"):
        figures.save_figure(fig, target)
    assert not target.parent.exists()


def test_render_frame_layout_and_colours():
    x = np.full((3, 4, 5), 0.5)
    delta = np.zeros((3, 4, 5))
    delta[:, 1, 1] = 0.1
    delta[:, 2, 3] = -0.1
    frame = figures.render_frame(x, delta, scale=2)
    assert frame.dtype == np.uint8 and frame.shape == (8, 2 * (3 * 5 + 2 * 2), 3)
    perturbation = frame[::2, ::2][:, 5 + 2:5 + 2 + 5].astype(int)  # the middle third, at scale 1
    red, blue = perturbation[1, 1], perturbation[2, 3]
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    mask = frame[::2, ::2][:, -5:]
    assert mask[1, 1].tolist() == [0, 0, 0] and mask[0, 0].tolist() == [255, 255, 255]
    labelled = figures.render_frame(x, delta, label="step 0, iteration 1")
    assert labelled.shape[0] == 4 + 16


def test_select_frames():
    assert figures.select_frames(10, 3) == [0, 3, 6, 9]
    assert figures.select_frames(12, 5) == [0, 5, 10, 11]
    assert figures.select_frames(0, 5) == []
    with pytest.raises(ValueError):
        figures.select_frames(5, 0)


def test_gif_has_one_frame_per_state(tmp_path):
    x = RNG.random((3, 8, 8))
    frames = []
    for j in range(7):
        delta = np.zeros_like(x)
        delta[:, : j + 1, :2] = 0.05
        frames.append(figures.render_frame(x, delta, limit=0.05, label=f"iteration {j}", scale=3))
    path = figures.save_gif(frames, tmp_path / "run.gif", fps=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 7
        assert gif.size == (frames[0].shape[1], frames[0].shape[0])
        assert gif.info["duration"] == 250
    assert os.listdir(tmp_path) == ["run.gif"]


def test_frame_strip_shows_every_selected_frame():
    frames = [np.full((6, 9, 3), 40 * i, dtype=np.uint8) for i in range(6)]
    chosen = figures.select_frames(len(frames), 2)
    fig = figures.frame_strip([frames[i] for i in chosen], [f"it {i}" for i in chosen], columns=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["it 0", "it 2", "it 4", "it 5"]  # the last one always shown


def test_amplified_difference_dims_the_image_and_lifts_the_perturbation_by_a_round_gain():
    from gse_algo.figures import AMPLIFY_DIM, amplified_difference

    x = np.full((3, 4, 4), 0.5, np.float32)
    delta = np.zeros((3, 4, 4), np.float32)
    delta[0, 1, 2] = 0.004  # 1/250: invisible as it is
    delta[2, 3, 3] = -0.002
    image, gain = amplified_difference(x, delta)
    # 99th percentile of {0.004, 0.002} = 0.00398; 0.6 / 0.00398 = 150.8 -> 100 (1, 2 or 5 x 10^n, rounded down)
    assert gain == 100
    assert image[1, 2, 0] == pytest.approx(AMPLIFY_DIM * 0.5 + 0.4)
    assert image[3, 3, 2] == pytest.approx(AMPLIFY_DIM * 0.5 + 0.2)
    assert image[0, 0, 1] == pytest.approx(AMPLIFY_DIM * 0.5)
    assert amplified_difference(x, np.zeros_like(delta))[1] == 1.0

"""Composite figure, colour scales, saving with provenance, the amplified difference."""

from __future__ import annotations

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

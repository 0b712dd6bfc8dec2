"""The comparison figure on hand-made runs: the overlay's colours and counts, the IoU, the marked best values."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from gse_algo import compare
from gse_algo.compare_figure import ComparedRun, best_runs, comparison_figure
from gse_algo.figures import save_figure

METRICS = {"success": True, "adv_class": 1, "acp": 0, "channel_l0": 0, "anc": 0, "d20": 0, "l2": 0.0, "linf": 0.0,
           "fools_at_8bit": True}


def run(label, x, pixels, **metrics):
    """A run changing channel 0 of the given (row, column) pixels to 0.5; metrics as given (a mapping)."""
    x_adv = x.copy()
    for r, c in pixels:
        x_adv[0, r, c] = 0.5
    return ComparedRun(label, x_adv, {**METRICS, **metrics}, 1.0)


@pytest.fixture
def x():
    return np.zeros((3, 6, 6), dtype=np.float32)


def test_the_overlay_shows_only_a_only_b_and_both_in_their_colours(x):
    a = run("A", x, [(0, 0), (1, 1), (2, 2)], acp=3)
    b = run("B", x, [(2, 2), (5, 5)], acp=2)
    fig = comparison_figure(x, [a, b], class_names=["cat", "dog"])
    (overlay,) = [ax for ax in fig.axes if ax.get_title().startswith("supports:")]
    assert overlay.get_title() == "supports: A vs B\nIoU = 0.25"  # |{(2,2)}| / |{4 pixels}|
    picture = overlay.images[0].get_array()
    rgb = {code: np.array([int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)]) for code, c in compare.OVERLAY_COLOURS.items()}
    for (r, c), code in {(0, 0): compare.ONLY_A, (1, 1): compare.ONLY_A, (2, 2): compare.BOTH,
                         (5, 5): compare.ONLY_B}.items():
        np.testing.assert_allclose(picture[r, c], rgb[code])
    grey = picture[3, 3]
    assert grey[0] == grey[1] == grey[2]  # untouched pixels: the clean image in grey
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legend == ["only A (2 px)", "only B (1 px)", "both (1 px)"]
    titles = [ax.get_title() for ax in fig.axes]
    assert "dog (fooled)" in titles and "original" in titles


def test_clusters_too_small_to_see_get_a_ring_in_their_colour():
    x = np.zeros((3, 128, 128), dtype=np.float32)
    blob = [(r, c) for r in range(40, 50) for c in range(40, 50)]  # 10 px: wider than 128 / 40, no ring
    a = run("A", x, blob + [(100, 20)], acp=101)  # and one lone pixel
    b = run("B", x, [(10, 10), (10, 11), (90, 100), (45, 45)], acp=4)  # a 2-pixel cluster, a lone one, one in both
    fig = comparison_figure(x, [a, b])
    (overlay,) = [ax for ax in fig.axes if ax.get_title().startswith("supports:")]
    rings = {((p.center[0], p.center[1]), p.get_edgecolor()[:3]) for p in overlay.patches}
    rgb = {code: tuple(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)) for code, c in compare.OVERLAY_COLOURS.items()}
    # centres at (column, row); the pixel in both rings as 'both', and the blob's hole at (45, 45) is not 'only A'
    expected = {((20, 100), rgb[compare.ONLY_A]), ((10.5, 10), rgb[compare.ONLY_B]), ((100, 90), rgb[compare.ONLY_B]),
                ((45, 45), rgb[compare.BOTH])}
    assert {(c, tuple(round(v, 6) for v in e)) for c, e in rings} == \
        {(c, tuple(round(v, 6) for v in e)) for c, e in expected}
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legend[-1] == "ring: a cluster too small to see"


def test_small_images_get_no_rings(x):
    fig = comparison_figure(x, [run("A", x, [(0, 0)], acp=1), run("B", x, [(5, 5)], acp=1)])
    (overlay,) = [ax for ax in fig.axes if ax.get_title().startswith("supports:")]
    assert not overlay.patches
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert len(legend) == 3


def test_each_perturbation_has_its_own_scale_and_says_it(x):
    small, large = x.copy(), x.copy()
    small[0, 1, 1], large[0, 2, 2] = 0.04, 0.9  # the same pixel count, amplitudes 20x apart
    fig = comparison_figure(x, [ComparedRun("A", small, {**METRICS, "acp": 1}, 1.0),
                                ComparedRun("B", large, {**METRICS, "acp": 1}, 1.0)])
    panels = {ax.get_title().split(":")[0]: ax for ax in fig.axes if ax.get_title().startswith("δ")}
    assert set(panels) == {"δ, ±0.05", "δ, ±1"}  # colours.nice_bound of 0.04 and 0.9
    for title, bound in (("δ, ±0.05", 0.05), ("δ, ±1", 1.0)):
        norm = panels[title].images[0].norm
        assert (norm.vmin, norm.vmax) == pytest.approx((-bound, bound))  # each change at the top of its own scale


def test_long_names_are_cut_so_the_figure_keeps_its_layout(x):
    name = "GSE with a name of eighty characters, as the run list allows: " + "x" * 18
    fig = comparison_figure(x, [run(name, x, [(0, 0)], acp=1), run("sigma-zero 1", x, [(5, 5)], acp=1)],
                            title="t " * 100)  # 200 characters
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels[0] == name[:19] + "…" and labels[1] == "sigma-zero 1"
    assert fig._suptitle.get_text() == "t " * 47 + "…"  # 95 characters
    assert any(ax.get_title().startswith("supports: rows 1 and 2\n") for ax in fig.axes)  # the legend names them
    (table,) = [t for ax in fig.axes for t in ax.tables]
    assert table[1, 0].get_text().get_text() == name[:19] + "…"


def test_the_best_value_of_each_column_is_marked_and_failed_runs_sizes_are_not_ranked(x):
    a = ComparedRun("A", x, {**METRICS, "acp": 5, "l2": 0.2}, 2.0, 100, 100)
    b = ComparedRun("B", x, {**METRICS, "acp": 3, "l2": 0.9}, 1.0, 100, 50)
    c = ComparedRun("C", x, {**METRICS, "success": False, "acp": 1, "l2": 0.1}, 3.0, 10, 10)
    runs = [a, b, c]
    assert best_runs(runs, "acp") == {1}  # C's 1 pixel does not count: C failed
    assert best_runs(runs, "l2") == {0}
    assert best_runs(runs, "success") == {0, 1}
    assert best_runs(runs, "time_s") == {1}
    assert best_runs(runs, "n_forward") == {2}  # counts and time are ranked for every run
    assert best_runs(runs, "fools_at_8bit") == set()  # a tie marks nothing
    fig = comparison_figure(x, runs)
    (table,) = [t for ax in fig.axes for t in ax.tables]
    header = [table[0, col].get_text().get_text() for col in range(12)]
    assert header[:3] == ["attack", "fooled", "ACP"] and header[6] == "l2"
    bold = {(row, col) for (row, col), cell in table.get_celld().items() if cell.get_text().get_fontweight() == "bold"}
    assert (2, 2) in bold and (1, 2) not in bold and (3, 2) not in bold  # ACP: B (row 2) only
    assert (1, 6) in bold and (3, 6) not in bold  # l2: A
    assert table[3, 2].get_text().get_text() == "1"  # C's value is still shown


def test_one_run_has_no_overlay_and_the_figure_saves_as_png_and_svg(x, tmp_path):
    fig = comparison_figure(x.transpose(1, 2, 0), [("only", x.transpose(1, 2, 0), METRICS, 0.5)])  # [H,W,C], tuple
    assert not [ax for ax in fig.axes if ax.get_title().startswith("supports:")]
    save_figure(fig, tmp_path / "c.png", dpi=50, metadata={"Title": "t"})
    save_figure(fig, tmp_path / "c.svg")
    with Image.open(tmp_path / "c.png") as png:
        assert png.text["Title"] == "t"
    assert ET.parse(tmp_path / "c.svg").getroot().tag.endswith("svg")
    with pytest.raises(ValueError, match="at least one run"):
        comparison_figure(x, [])
    with pytest.raises(ValueError, match="the clean image's shape"):
        comparison_figure(x, [("bad", x[:, :3], METRICS, 0.5)])

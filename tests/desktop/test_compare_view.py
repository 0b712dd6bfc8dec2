"""The comparison of two runs on hand-made supports: the three-colour overlay pixel by pixel, the IoU, the better
value marked per metric, and square pixels with linked zoom in every comparison view."""

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from conftest import RecordingEngine, make_window
from gse_algo.params import GSEParams
from gse_algo.snapshot import Snapshot, SparseDelta
from gse_algo.compare import BOTH, ONLY_A, ONLY_B, OVERLAY_COLOURS
from gse_desktop.compare_view import MARK, CompareImages
from gse_desktop.history import RunHistory
from gse_desktop.records import Measured, ModelInfo, OpenedImage, Prediction, RunDescription, RunSpec
from test_geometry import assert_square_and_whole, settle

H = W = 32
GREY = 0.6  # the clean image everywhere
A_PIXELS = [(0, 0), (0, 1), (1, 1)]
B_PIXELS = [(1, 1), (2, 2)]
MODEL = ModelInfo("tiny", "tiny", tuple(f"class {i}" for i in range(10)), (H, W), "0", ("0",), "cpu")
CLEAN = Prediction(np.array([3]), np.array([1.0]))


def history_of(pixels):
    """One frame whose delta is +0.1 in every channel of `pixels` (row, column)."""
    flat = np.array([r * W + c for r, c in pixels], np.int64)
    delta = SparseDelta((1, 3, H, W), flat, np.full((len(flat), 3), 0.1, np.float32))
    one = np.ones(1)
    history = RunHistory()
    history.add(Snapshot(0, 0, 0, delta, None, None, one, one, one, one, one, one, np.array([5]), np.array([[5, 3]]),
                         np.array([[0.6, 0.4]]), np.array([True]), np.array([False])),
                {"acp": np.array([len(flat)]), "anc": np.array([1]), "d20": np.array([1])})
    return history


def measured(success, acp, l2, time_s, n_forward):
    metrics = {"success": success, "adv_class": 5, "acp": acp, "channel_l0": 3 * acp, "anc": 1, "d20": 4, "l2": l2,
               "linf": 0.1, "fools_at_8bit": success}
    return Measured(metrics, time_s, n_forward, n_forward - 1)


def compared_window(qtbot, tmp_path, a_measured, b_measured):
    window = make_window(qtbot, RecordingEngine(), tmp_path / "s.ini")
    image = np.full((H, W, 3), GREY, np.float32)
    opened = OpenedImage("grey.png", "grey.png", (W, H), b"", image, MODEL, CLEAN)
    runs = []
    for name, pixels, m, saved_fools in (("first", A_PIXELS, a_measured, True), ("second", B_PIXELS, b_measured, False)):
        spec = RunSpec("grey.png", "tiny", params=GSEParams(iters=4, search_steps=1), preset=None)
        description = RunDescription(spec, MODEL, image, 3, CLEAN, False, spec.params, None)
        runs.append(window.state.new_run(name=name, description=description, history=history_of(pixels), measured=m,
                                         record={"fools_at_8bit": saved_fools}))
    window.state.show_session(opened, runs, runs[0], "hand-made", None)
    window.state.compare((runs[0].key, runs[1].key))
    return window


def shown_at(qtbot, window, size):
    """The window on screen at `size`, laid out."""
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    settle()
    return window


def table(view):
    t = view.table
    return {t.item(r, 0).text(): (t.item(r, 1).text(), t.item(r, 2).text()) for r in range(t.rowCount())}


def test_the_overlay_has_three_colours_and_the_iou_counts_pixels(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    view = window.compare_view
    assert window.central.currentWidget() is view
    picture = view.images.items["overlay"].image
    blue, vermillion, yellow = (0x00, 0x72, 0xB2), (0xD5, 0x5E, 0x00), (0xF0, 0xE4, 0x42)  # Okabe-Ito
    expected = np.full((H, W, 3), 0.3 + 0.4 * GREY, np.float32)  # the clean image in faint grey
    for r, c in [(0, 0), (0, 1)]:
        expected[r, c] = np.divide(blue, 255)  # only A
    expected[2, 2] = np.divide(vermillion, 255)  # only B
    expected[1, 1] = np.divide(yellow, 255)  # both
    np.testing.assert_allclose(picture, expected, atol=1e-6)
    assert view.iou == pytest.approx(1 / 4)  # both: 1 pixel; either: 4
    legend = view.legend.text()
    for entry in ("only A (2 px)", "only B (1 px)", "both (1 px)"):  # a line never breaks inside an entry
        assert entry.replace(" ", "&nbsp;") in legend
    assert "0.250" in legend
    for side, pixels in (("a", A_PIXELS), ("b", B_PIXELS)):
        adversarial = view.images.items[f"adv_{side}"].image
        changed = {tuple(p) for p in np.argwhere(np.abs(adversarial - GREY).sum(axis=2) > 1e-6)}
        assert changed == set(pixels)
        assert np.allclose(adversarial[pixels[0]], GREY + 0.1)


def test_the_better_value_is_marked(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    rows = table(window.compare_view)
    assert rows["ACP (pixels)"] == ("3", "2" + MARK)  # fewer pixels: B
    assert rows["l2 ([0,1] units)"] == ("0.3000" + MARK, "0.5000")  # smaller l2: A
    assert rows["time (s)"] == ("1.00" + MARK, "2.00") and rows["forward calls"] == ("10" + MARK, "20")
    assert rows["success"] == ("yes", "yes") and rows["class after"] == ("5", "5")  # a tie, and not ranked
    assert rows["saved 8-bit PNG fools"] == ("yes" + MARK, "no")  # the engine record's verdict
    tips = [window.compare_view.table.item(row, 0).toolTip() for row in range(window.compare_view.table.rowCount())]
    assert all(tips) and "4-connected" in tips[list(rows).index("ANC (clusters)")]
    window.compare_view.swap()
    assert table(window.compare_view)["ACP (pixels)"] == ("2" + MARK, "3")


def test_a_failed_run_s_sizes_are_not_ranked(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(False, 1, 0.1, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    rows = table(window.compare_view)
    assert rows["success"] == ("no", "yes" + MARK)
    assert rows["ACP (pixels)"] == ("1", "2") and rows["l2 ([0,1] units)"] == ("0.1000", "0.5000")  # not ranked
    assert rows["time (s)"] == ("1.00" + MARK, "2.00")  # time and counts are ranked either way


def test_the_comparison_exports_as_one_figure(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    png = tmp_path / "pair.png"
    assert window.files.export_comparison(png), window.messages
    with Image.open(png) as image:
        assert image.size[0] > 300 and "first vs second on grey.png" in image.info["Title"]
    svg = tmp_path / "pair.svg"
    assert window.files.export_comparison(svg, wait=False)  # drawn in the file worker, as the menu does it
    qtbot.waitUntil(lambda: "saved to" in window.message.text() and svg.exists(), timeout=60000)
    assert window.messages == [] and b"<svg" in svg.read_bytes()[:1000]
    window.state.kept(window.state.compared[1]).measured = None  # a stopped run has nothing measured
    assert not window.files.export_comparison(tmp_path / "none.png")
    assert "second was stopped" in window.messages[-1] and not (tmp_path / "none.png").exists()
    window.files.worker.shutdown()


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_comparison_views_have_square_pixels_and_a_linked_zoom(qtbot, tmp_path, size):
    window = shown_at(qtbot, compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10),
                                             measured(True, 2, 0.5, 2.0, 20)), size)
    images = window.compare_view.images
    assert_square_and_whole(images, (H, W))
    for plot in images.plots.values():
        assert min(plot.vb.width(), plot.vb.height()) >= 80  # every view keeps a usable size
    overlay = images.plots["overlay"].vb
    overlay.scaleBy((0.5, 0.5), center=QPointF(2, 2))
    overlay.sigRangeChangedManually.emit(overlay.state["mouseEnabled"])  # what a mouse wheel emits
    settle()
    scales = {round(p.vb.viewPixelSize()[0], 6) for p in images.plots.values()}
    centres = {tuple(np.round(p.vb.viewRect().center().toTuple(), 3)) for p in images.plots.values()}
    assert len(scales) == 1 and len(centres) == 1
    assert all(a == pytest.approx(1, abs=1e-3) for a, _ in images.pixel_geometry().values())
    window.compare_view.zoom_button.click()  # rows and columns 0..2 hold a change of A or B
    settle()
    for name, (aspect, (x0, x1, y0, y1)) in images.pixel_geometry().items():
        assert aspect == pytest.approx(1, abs=1e-3) and x0 <= 0 and x1 >= 3 and y0 <= 0 and y1 >= 3, name
        assert min(x1 - x0, y1 - y0) <= 1.1 * (3 + 2 * 4)  # the box and a 4-pixel margin, not the whole image
    window.compare_view.fit_button.click()
    settle()
    assert_square_and_whole(images, (H, W))


def test_clusters_too_small_to_see_get_a_ring_in_their_colour(qtbot):
    images = CompareImages()
    qtbot.addWidget(images)
    side = 128
    x = np.full((side, side, 3), GREY, np.float32)
    codes = np.zeros((side, side), np.uint8)
    codes[40:50, 40:50] = ONLY_A  # 10 px wide: larger than 128 / 40, no ring
    codes[100, 20] = ONLY_B  # a lone pixel
    codes[10, 10:12] = BOTH  # two pixels side by side
    zero = np.zeros((3, side, side), np.float32)
    images.show_pair(x, (zero, zero), codes)
    ring = images.rings.data
    centres = {(float(r["x"]), float(r["y"])) for r in ring}
    assert centres == {(20.5, 100.5), (11.0, 10.5)}  # pixel (r, c) spans [c, c+1] x [r, r+1]
    colours = {(float(r["x"]), float(r["y"])): r["pen"].color().name() for r in ring}
    assert colours == {(20.5, 100.5): OVERLAY_COLOURS[ONLY_B].lower(), (11.0, 10.5): OVERLAY_COLOURS[BOTH].lower()}
    assert images.rings.opts["size"] == pytest.approx(2 * side / 45) and all(r["size"] == -1 for r in ring)  # -1: that size
    images.show_pair(x[:32, :32], (zero[:, :32, :32], zero[:, :32, :32]), codes[:32, :32])
    assert len(images.rings.data) == 0  # a 32 px image: its pixels show well enough


def test_names_are_shown_as_typed(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    a = window.state.compared[0]
    window.state.rename_run(a, "<b>x</b> & y")
    assert "A: &lt;b&gt;x&lt;/b&gt; &amp; y" in window.compare_view.title.text()  # not bold "x": the typed text
    window.state.show_kept(window.state.compared[1])
    window.state.show_kept(a)
    assert "<b>x</b> & y" in window.message.text() and window.message.textFormat() == Qt.TextFormat.PlainText


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_the_metrics_table_fills_its_column_and_nothing_is_cut(qtbot, tmp_path, size):
    window = shown_at(qtbot, compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1234.5, 10),
                                             measured(True, 2, 0.5, 2.0, 20)), size)
    table = window.compare_view.table
    side, split = table.parentWidget(), table.parentWidget().parentWidget()
    assert side.width() >= max(330, split.width() // 4 - 10)  # a quarter of a wide window, 330 px at least
    header = table.horizontalHeader()
    assert header.length() == table.viewport().width()  # the metric column takes what A and B leave, no strip
    for column in range(table.columnCount()):  # no cell cut: each column as wide as its widest text
        assert header.sectionSize(column) >= table.sizeHintForColumn(column), column
    assert table.verticalScrollBar().maximum() == 0  # every metric visible without scrolling
    window.compare_view.swap()  # a refill keeps the layout
    settle()
    assert header.length() == table.viewport().width()

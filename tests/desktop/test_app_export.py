"""Exports from the File menu: single views, the composite figure, animations, raw data; failures and cancels."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog

from conftest import TIMEOUT, finished_run, wait_idle
from gse_algo.images import read_image
from gse_desktop import export_dialog
from gse_desktop.export import CHOSEN

PROVENANCE = ("Software", "Creation Time", "Model", "Parameters", "Iteration")


@pytest.fixture
def done(qtbot, window):
    """The window after a finished two-step run, shown at the chosen result."""
    window.controls.spins["search_steps"].setValue(2)
    finished_run(qtbot, window)
    wait_idle(qtbot, window)  # the default CAM is there
    return window


def text_chunks(path):
    with Image.open(path) as image:
        image.load()
        return dict(image.text)


def test_single_views_as_png_with_size_and_provenance_and_as_svg(done, tmp_path):
    frame = done.state.frame()
    for name in ("perturbation", "images", "l2"):
        path = tmp_path / f"{name}.png"
        assert done.files.export_view(name, path, width=640), done.messages
        with Image.open(path) as image:
            assert image.width == 640 and image.height > 10
        info = text_chunks(path)
        assert all(key in info for key in PROVENANCE)
        assert info["Model"] == "tiny" and info["View"] == name
        assert info["Iteration"] == f"search step {frame.step + 1}, iteration {frame.iteration + 1}"  # from 1
        assert json.loads(info["Parameters"])["iters"] == 30
    for name in ("original", "margin", "plots"):
        path = tmp_path / f"{name}.svg"
        assert done.files.export_view(name, path), done.messages
        assert ET.parse(path).getroot().tag.endswith("svg")
    assert not done.files.export_view("nonsense", tmp_path / "x.png") and "no view" in done.messages[-1]


def test_composite_figure_png_svg_pdf(done, tmp_path):
    dpi = 80
    panels = ["mask", "original", "cam", "lambda"]
    assert done.files.export_figure(tmp_path / "f.png", panels, CHOSEN, dpi), done.messages
    with Image.open(tmp_path / "f.png") as image:
        assert image.width == round(2.6 * 4 * dpi)  # figures.composite_figure: 2.6 inches per panel
    info = text_chunks(tmp_path / "f.png")
    assert all(key in info for key in PROVENANCE) and info["Panels"] == "mask,original,cam,lambda"
    assert info["Threads"] == "1" and info["Seed"] == "0" and info["Device"] == "cpu"
    step = int(done.state.history.result.chosen_step[0])
    assert info["Iteration"] == f"search step {step + 1}, iteration {done.state.history.n_iterations(step)}"
    assert done.files.export_figure(tmp_path / "f.svg")
    assert ET.parse(tmp_path / "f.svg").getroot().tag.endswith("svg")
    assert done.files.export_figure(tmp_path / "f.pdf")
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")


def test_figure_data_is_the_shown_iterate(done):
    done.timeline.go(0, 3)
    data, frame, m = done.files.figure_data()
    assert (frame.step, frame.iteration) == (0, 3)
    np.testing.assert_array_equal(data.x, done.state.run.image)
    np.testing.assert_allclose(data.x_adv, np.clip(done.state.run.image + frame.delta[0].transpose(1, 2, 0), 0, 1))
    assert m["acp"] == int(frame.mask.sum()) and m["l2"] == pytest.approx(np.linalg.norm(data.x_adv - data.x),
                                                                          rel=1e-5)
    chosen, _, _ = done.files.figure_data(CHOSEN)
    result = done.state.history.result
    np.testing.assert_allclose(chosen.x_adv, np.asarray(result.x_adv[0]).transpose(1, 2, 0), atol=1e-6)


def test_animation_gif_has_every_nth_frame_and_the_last(done, tmp_path):
    step = done.state.history.steps[0]
    n = done.state.history.n_iterations(step)
    every = 3
    expected = len(range(0, n, every)) + (1 if (n - 1) % every else 0)
    assert done.files.export_animation(tmp_path / "a.gif", step, every), done.messages
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == expected
    total = sum(len(range(0, done.state.history.n_iterations(s), 7)) + (1 if (done.state.history.n_iterations(s) - 1) % 7 else 0)
                for s in done.state.history.steps)
    assert done.files.export_animation(tmp_path / "all.gif", None, 7)
    with Image.open(tmp_path / "all.gif") as gif:
        assert gif.n_frames == total
    assert done.files.export_animation(tmp_path / "strip.png", step, every)
    assert "Software" in text_chunks(tmp_path / "strip.png")
    assert not done.files.export_animation(tmp_path / "b.gif", 99, 1) and "no search step 100" in done.messages[-1]


def test_data_export_16bit_png_npz_json(done, tmp_path):
    assert done.files.export_data(tmp_path / "out", CHOSEN), done.messages
    out = tmp_path / "out"
    expected = done.state.files[16].transpose(1, 2, 0) / 65535  # the 16-bit file the engine finalized
    np.testing.assert_allclose(read_image(out / "adv.png"), expected, atol=1e-7)
    assert all(key in text_chunks(out / "adv.png") for key in PROVENANCE)
    with np.load(out / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["mask"].shape == (16, 16) and arrays["x_adv"].shape == (3, 16, 16)
        assert int(arrays["mask"].sum()) == json.loads((out / "metrics.json").read_text())["acp"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["params"]["units_0_1"]["iters"] == 30 and m["model"] == "tiny" and m["threads"] == 1 and m["seed"] == 0
    assert isinstance(m["fools_at_8bit"], bool)  # the engine's record of the returned example, as gse-attack writes
    # quantisation-aware by default: the 8-bit file decodes to the engine's integers, which fool the model when it
    # says so, and every pixel off the support equals original.png
    adv8 = np.asarray(Image.open(out / "adv8.png").convert("RGB"))
    original = np.asarray(Image.open(out / "original.png").convert("RGB"))
    np.testing.assert_array_equal(adv8, done.state.files[8].transpose(1, 2, 0))
    np.testing.assert_array_equal(original, np.round(done.state.run.image * 255).astype(np.uint8))
    support = np.abs(np.asarray(done.state.history.result.delta[0])).sum(axis=0) > 0
    np.testing.assert_array_equal(adv8[~support], original[~support])
    assert m["fools_at_8bit"] == m["eight_bit"]["success"]


def test_unwritable_paths_give_a_message_and_no_file(done, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    calls = [lambda p: done.files.export_view("mask", p / "v.png"), lambda p: done.files.export_view("mask", p / "v.svg"),
             lambda p: done.files.export_figure(p / "f.png"), lambda p: done.files.export_animation(p / "a.gif"),
             lambda p: done.files.export_data(p / "data")]
    for call in calls:
        done.messages.clear()
        assert not call(blocker)
        assert len(done.messages) == 1 and "a file" in done.messages[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_cancelled_dialogs_do_nothing(done, tmp_path, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    monkeypatch.setattr(QDialog, "exec", lambda self: QDialog.DialogCode.Accepted)
    text, before = done.message.text(), sorted(tmp_path.rglob("*"))
    for action in (export_dialog._export_figure, export_dialog._export_animation, export_dialog._export_view,
                   export_dialog._export_data, export_dialog.save_session_dialog):
        action(done.files)
    monkeypatch.setattr(QDialog, "exec", lambda self: QDialog.DialogCode.Rejected)
    export_dialog._export_figure(done.files)
    assert done.messages == [] and done.message.text() == text and sorted(tmp_path.rglob("*")) == before


def test_figure_dialog_options_follow_the_list(done):
    dialog = export_dialog.FigureDialog(True, done)
    names = [dialog.panel_list.item(i).text() for i in range(dialog.panel_list.count())]
    assert dialog.options()["panels"] == names[:5] and dialog.options()["suffix"] == ".png"
    moved = dialog.panel_list.takeItem(3)  # "mask" to the front
    dialog.panel_list.insertItem(0, moved)
    dialog.chosen.setChecked(True)
    dialog.format_combo.setCurrentText("SVG")
    options = dialog.options()
    assert options["panels"][:2] == ["mask", "original"] and options["which"] == CHOSEN and options["suffix"] == ".svg"


def test_saving_and_exports_are_offered_only_with_a_run(qtbot, window):
    menu = window.menuBar().actions()[0].menu()
    export = next(a.menu() for a in menu.actions() if a.text() == "Export")
    save = next(a for a in menu.actions() if a.text() == "Save session…")
    pair = next(a for a in export.actions() if a.text().startswith("Comparison"))
    assert not save.isEnabled() and not any(a.isEnabled() for a in export.actions())
    finished_run(qtbot, window)
    assert save.isEnabled() and all(a.isEnabled() for a in export.actions() if a is not pair)
    assert not pair.isEnabled()  # the comparison needs two runs compared
    finished_run(qtbot, window)
    window.state.compare((window.state.runs[0].key, window.state.runs[1].key))
    assert pair.isEnabled()


def test_the_file_menu_has_the_entries(done):
    menu = done.menuBar().actions()[0].menu()
    texts = [a.text() for a in menu.actions()]
    assert texts[:4] == ["Open image…", "Open session…", "Save session…", "Open study…"] and "Quit" in texts
    export = next(a.menu() for a in menu.actions() if a.text() == "Export")
    assert len(export.actions()) == 5 and export.actions()[-1].text().startswith("Comparison")


def test_the_figure_caption_names_the_cam_on_screen_not_the_pickers(qtbot, done):
    """Pick HiResCAM, then ScoreCAM and cancel it: the figure shows HiResCAM and says so."""
    cam = done.state.cam
    run = done.state.run
    key = cam.shown
    done.state.select_cam(type(key)(key.image, key.class_index, "HiResCAM", key.layer))
    qtbot.waitUntil(lambda: cam.shown.method == "HiResCAM", timeout=TIMEOUT)
    done.state.select_cam(type(key)(key.image, key.class_index, "ScoreCAM", key.layer), force=True)
    assert "the map shown is still HiResCAM" in cam.message
    done.state.cancel_cam()
    data, _, _ = done.files.figure_data()
    assert data.captions["cam"].startswith("HiResCAM") and "ScoreCAM" not in data.captions["cam"]
    np.testing.assert_array_equal(data.cam, cam.cache[cam.shown])
    assert done.files.info()["cam"]["method"] == "HiResCAM" and run.model.name == "tiny"


def test_the_menu_draws_figures_and_animations_in_the_file_worker(qtbot, done, tmp_path):
    """wait=False (the menu's path): the window returns at once; the files and the message come when written."""
    assert done.files.export_figure(tmp_path / "w.png", wait=False)
    assert done.files.export_animation(tmp_path / "w.gif", None, 5, wait=False)
    assert done.files.export_figure(tmp_path / "no" / "dir" / "w.png", wait=False)  # fails in the worker
    assert "drawing the figure" in done.message.text() and not done.files.progress.isHidden()
    qtbot.waitUntil(lambda: not done.files.worker.busy, timeout=120000)
    with Image.open(tmp_path / "w.png") as image:
        assert image.width > 100
    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.n_frames >= 2
    assert len(done.messages) == 1 and "figure not saved" in done.messages[0] and "w.png" in done.messages[0]


def svg_size_px(path):
    """(width, height) of an SVG's page in CSS pixels (96 per inch)."""
    root = ET.parse(path).getroot()
    size = []
    for key in ("width", "height"):
        value = root.get(key)
        size.append(float(value[:-2]) * 96 / 25.4 if value.endswith("mm") else float(value.rstrip("px")))
    return tuple(size)


def rendered_svg(path, size):
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    image = QImage(*size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    QSvgRenderer(str(path)).render(painter)
    painter.end()
    return np.frombuffer(image.constBits(), np.uint8).reshape(size[1], size[0], 4)


@pytest.mark.parametrize("name", ["plots", "images", "l2", "perturbation"])
def test_svg_views_have_the_widget_size_and_the_drawing_fills_the_page(done, tmp_path, name):
    done.resize(1280, 720)
    done.redraw_now()
    path = tmp_path / f"{name}.svg"
    assert done.files.export_view(name, path), done.messages
    width, height = svg_size_px(path)
    widget = {"plots": done.plots, "images": done.views}.get(name)
    if widget is not None:  # a whole grid: the page is the widget's visible size
        assert width == pytest.approx(widget.viewport().width(), abs=2)
        assert height == pytest.approx(widget.viewport().height(), abs=2)
    assert 20 < width < 2000 and 20 < height < 2000
    pixels = rendered_svg(path, (round(width), round(height)))
    h, w = pixels.shape[:2]
    for quarter in (pixels[:h // 2, :w // 2], pixels[:h // 2, w // 2:], pixels[h // 2:, :w // 2],
                    pixels[h // 2:, w // 2:]):
        assert quarter[..., 3].any(), "every quarter of the page holds some of the drawing"


def test_colour_bars_on_the_views_follow_the_figures_convention(done, tmp_path):
    """Perturbation: RdBu_r, levels +-(smallest 1/2/5 x 10^k >= max |delta|), colour ~ sqrt; lambda: viridis on the
    finite log10 range; CAM: jet on [0, 1]. The app's bars, its views and the composite figure agree."""
    import matplotlib

    from gse_algo import figures

    done.redraw_now()
    views, frame = done.views, done.state.frame()
    delta = frame.delta[0]
    peak = np.abs(delta).max()
    bound = min(m * 10.0 ** k for k in range(-7, 2) for m in (1, 2, 5) if m * 10.0 ** k >= peak * (1 - 1e-9))
    assert views.bars["perturbation"].levels() == pytest.approx((-bound, bound))
    log_lam = frame.log10_lambda[0][np.isfinite(frame.log10_lambda[0])]
    expected_lambda = (log_lam.min(), max(log_lam.max(), log_lam.min() + 1e-3))
    assert views.bars["lambda"].levels() == pytest.approx(expected_lambda)
    assert views.bars["cam"].levels() == (0.0, 1.0)
    for name, bar in views.bars.items():
        assert tuple(views.items[name].levels) == pytest.approx(bar.levels()), name  # the bar sets its view
    lut = views.bars["perturbation"].colorMap().getLookupTable(0.0, 1.0, 5, alpha=False)  # -L, -L/2, 0, L/2, L
    rdbu = matplotlib.colormaps["RdBu_r"]
    expected = [rdbu(float(0.5 + 0.5 * np.sign(u) * abs(u) ** 0.5))[:3] for u in (-1, -0.5, 0, 0.5, 1)]
    np.testing.assert_allclose(lut / 255, expected, atol=2 / 255)
    jet = views.bars["cam"].colorMap().getLookupTable(0.0, 1.0, 3, alpha=False)
    np.testing.assert_allclose(jet / 255, [matplotlib.colormaps["jet"](v)[:3] for v in (0.0, 0.5, 1.0)], atol=2 / 255)
    data, _, _ = done.files.figure_data()
    fig = figures.composite_figure(data, ["perturbation", "cam"])
    panel = {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_title()}
    perturbation, cam = panel[figures.TITLES["perturbation"]].images[0], panel[figures.TITLES["cam"]].images[1]
    assert perturbation.norm.vmax == pytest.approx(bound) and perturbation.cmap.name == "RdBu_r"
    assert (cam.norm.vmin, cam.norm.vmax) == (0, 1) and cam.cmap.name == "jet"


def test_an_exported_view_carries_its_colour_bar(done, tmp_path):
    done.redraw_now()
    views = done.views
    path = tmp_path / "cam.png"
    assert done.files.export_view("cam", path, width=600), done.messages
    plot, bar = views.plots["cam"].sceneBoundingRect(), views.bars["cam"].sceneBoundingRect()
    both = plot.united(bar)
    with Image.open(path) as image:
        assert image.height == round(600 * both.height() / both.width())
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    for colour in ((0, 0, 128), (128, 0, 0)):  # jet at 0 and at 1: only the bar draws them unblended
        assert (np.abs(pixels - colour).max(axis=1) <= 12).any(), colour


def test_the_animation_shows_the_chosen_panels_and_stays_small(done, tmp_path):
    from gse_algo.animation import PANEL_PX

    step = done.state.history.steps[0]
    path = tmp_path / "panels.gif"
    assert done.files.export_animation(path, step, 1, panels=["perturbation", "cam"]), done.messages
    with Image.open(path) as gif:
        width, height, n = gif.width, gif.height, gif.n_frames
    assert 2 * PANEL_PX <= width < 3 * PANEL_PX  # two 16-pixel panels enlarged to PANEL_PX, side by side
    assert n == done.state.history.n_iterations(step)
    assert path.stat().st_size < n * width * height / 8  # under a bit a pixel
    assert done.files.export_animation(tmp_path / "strip.png", step, 5, panels=["lambda", "original"])
    assert text_chunks(tmp_path / "strip.png")["Panels"] == "lambda,original"
    assert not done.files.export_animation(tmp_path / "x.gif", step, 1, panels=["histogram"])
    assert "choose panels" in done.messages[-1]


def test_the_animation_dialog_offers_the_panels(done):
    dialog = export_dialog.AnimationDialog(done.state.history.steps, has_cam=False)
    assert dialog.options()["panels"] == ["adversarial", "perturbation", "mask"]
    cam = dialog.panel_list.findItems("cam", Qt.MatchFlag.MatchExactly)[0]
    cam.setCheckState(Qt.CheckState.Checked)
    assert "cam" not in dialog.options()["panels"]  # no CAM computed: the panel is offered disabled
    assert dialog.step_combo.itemText(1) == "search step 1"

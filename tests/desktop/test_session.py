"""Session files: a run saved and reopened shows the same views and numbers; bad files change nothing."""

import io
import zipfile

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from conftest import TIMEOUT, finished_run, tiny_model, wait_idle
from gse_desktop.main_window import MainWindow
from gse_desktop.session import SessionError, load_session

def fresh_window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings, loader=lambda spec, device: pytest.fail("a session must open without the model"))
    w.messages = []
    w.show_error = w.messages.append
    qtbot.addWidget(w)
    return w


def shown(window):
    """What the user sees: every image view's pixels, the plotted curves, both tables, the timeline."""
    views = {name: None if item.image is None else item.image.copy() for name, item in window.views.items.items()}
    curves = {name: tuple(np.copy(a) for a in curve.getData()) for name, curve in window.plots.curves.items()}
    tables = [[t.item(r, c).text() if t.item(r, c) else "" for r in range(t.rowCount()) for c in range(t.columnCount())]
              for t in (window.top_table, window.search_table)]
    return views, curves, tables, window.timeline.label.text()


def assert_same(a, b):
    for name in a[0]:
        assert (a[0][name] is None) == (b[0][name] is None), name
        if a[0][name] is not None:
            assert a[0][name].dtype == b[0][name].dtype and np.array_equal(a[0][name], b[0][name]), name
    for name in a[1]:
        for x, y in zip(a[1][name], b[1][name]):
            assert np.array_equal(x, y, equal_nan=True), name
    assert a[2:] == b[2:]


def test_round_trip_shows_identical_views_and_numbers(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    path = tmp_path / "run.gses"
    assert window.files.save_session(path) and window.messages == []
    assert zipfile.is_zipfile(path)
    positions = [(s, j) for s in window.history.steps for j in (0, window.history.n_iterations(s) // 2,
                                                                window.history.n_iterations(s) - 1)]
    before = {}
    for position in positions:
        window.timeline.go(*position)
        before[position] = shown(window)
    again = fresh_window(qtbot, tmp_path)
    assert again.files.open_session(path), again.messages
    assert again.messages == [] and again.controller._cache is None  # nothing was loaded
    assert len(again.history) == len(window.history)
    assert [r.d20.tolist() for r in again.history.result.steps] == [r.d20.tolist() for r in window.history.result.steps]
    assert again.views.frame.step == int(window.history.result.chosen_step[0])
    assert again.controls.params() == window.prepared.params
    for position in positions:
        again.timeline.go(*position)
        assert_same(before[position], shown(again))


def cam_shown(window):
    """What the CAM panel shows: the CAM view and the image under it, the outline, the numbers, clusters, curve."""
    panel = window.cam_panel
    table = [[panel.cluster_view.item(r, c).text() for c in range(panel.cluster_view.columnCount())]
             for r in range(panel.cluster_view.rowCount())]
    return {"cam": window.views.items["cam"].image.copy(), "base": panel.base.image.copy(),
            "outline": panel.outline.data.copy(), "numbers": panel.numbers.text(), "clusters": table,
            "curve": [np.copy(a) for a in panel.l2_curve.getData() + panel.pixel_curve.getData()],
            "title": window.views.plots["cam"].titleLabel.text, "opacity": window.views.items["cam"].opacity()}


def test_a_reopened_session_shows_the_saved_cam_and_its_numbers(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    wait_idle(qtbot, window)  # the panel resets its pickers when the run hands over: only change them after
    panel = window.cam_panel
    panel.class_combo.setCurrentIndex(1)  # the class after the attack, on the adversarial image
    panel.image_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: panel.cam_key is not None and panel.cam_key[:2] == ("adversarial", panel.class_combo
                                                                                 .itemData(1)[1]), timeout=TIMEOUT)
    panel.q_spin.setValue(30)
    panel.opacity.setValue(40)
    chosen = int(window.history.result.chosen_step[0])
    positions = [(chosen, window.history.n_iterations(chosen) - 1), (window.history.steps[0], 0)]
    window.timeline.go(*positions[0])
    assert window.files.save_session(tmp_path / "cam.gses")
    state = panel.state()
    before = {}
    for position in positions:
        window.timeline.go(*position)
        before[position] = cam_shown(window)
    assert "IS of the result" in before[positions[0]]["numbers"] and before[positions[0]]["clusters"]
    again = fresh_window(qtbot, tmp_path)  # its model loader fails the test
    assert again.files.open_session(tmp_path / "cam.gses") and again.messages == []
    restored = again.cam_panel
    assert restored.state() == state
    assert not again.cam_jobs.busy and not restored.compute_button.isEnabled()
    for combo in (restored.method_combo, restored.layer_combo, restored.class_combo, restored.image_combo):
        assert not combo.isEnabled() and "open the model" in combo.toolTip()
    assert restored.q_spin.isEnabled() and restored.opacity.isEnabled()
    for position in positions:
        again.timeline.go(*position)
        after = cam_shown(again)
        for name, value in before[position].items():
            if name == "curve":
                assert all(np.array_equal(a, b) for a, b in zip(value, after[name])), position
            elif isinstance(value, np.ndarray):
                assert value.dtype == after[name].dtype and np.array_equal(value, after[name]), (name, position)
            else:
                assert value == after[name], (name, position)
    again.controller.loader = lambda spec, device: tiny_model()
    again.controls.run_button.click()  # with the model back, the pickers work again
    qtbot.waitUntil(lambda: not again.controller.running and restored.cam is not None and not again.cam_jobs.busy,
                    timeout=TIMEOUT)
    assert restored.method_combo.isEnabled() and "open the model" not in restored.method_combo.toolTip()
    assert restored.cam_key[2] == "GradCAM" and again.messages == []


def test_a_reopened_session_saves_again_unchanged(qtbot, window, tmp_path):
    window.controls.spins["search_steps"].setValue(1)
    finished_run(qtbot, window)
    assert window.files.save_session(tmp_path / "a.gses")
    again = fresh_window(qtbot, tmp_path)
    assert again.files.open_session(tmp_path / "a.gses")
    assert again.files.save_session(tmp_path / "b.gses")
    a, b = load_session(tmp_path / "a.gses"), load_session(tmp_path / "b.gses")
    assert a.info == b.info and a.source_png == b.source_png and np.array_equal(a.image, b.image)
    for key, value in a.history.to_arrays().items():
        assert np.array_equal(value, b.history.to_arrays()[key]), key


def damaged_files(tmp_path, good: bytes):
    rng = np.random.default_rng(1)
    (tmp_path / "truncated.gses").write_bytes(good[: len(good) // 2])
    (tmp_path / "random.gses").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.gses").write_bytes(b"")
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tmp_path / "pickle.gses", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "arrays.npz":
                buffer = io.BytesIO()
                np.savez(buffer, image=np.array([{"evil": 1}], dtype=object))  # an object array needs pickle
                data = buffer.getvalue()
            dst.writestr(name, data)
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tmp_path / "version.gses", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b'"version": 1', b'"version": 99') if name == "session.json" else data)
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tmp_path / "missing.gses", "w") as dst:
        dst.writestr("session.json", src.read("session.json"))
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tmp_path / "shapes.gses", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "arrays.npz":
                with np.load(io.BytesIO(data)) as npz:
                    arrays = {k: npz[k] for k in npz.files}
                arrays["trace_support_pixels"] = arrays["trace_support_pixels"][:-1]
                buffer = io.BytesIO()
                np.savez(buffer, **arrays)
                data = buffer.getvalue()
            dst.writestr(name, data)
    return {"truncated": "not a zip", "random": "not a zip", "empty": "not a zip", "pickle": "damaged",
            "version": "version 99", "missing": "missing arrays.npz, image.png", "shapes": "damaged"}


def test_damaged_or_foreign_files_give_a_message_and_keep_the_state(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    good = tmp_path / "good.gses"
    assert window.files.save_session(good)
    state = shown(window)
    history = window.history
    for name, words in damaged_files(tmp_path, good.read_bytes()).items():
        with pytest.raises(SessionError, match=words):
            load_session(tmp_path / f"{name}.gses")
        window.messages.clear()
        assert not window.files.open_session(tmp_path / f"{name}.gses")
        assert len(window.messages) == 1 and f"{name}.gses" in window.messages[0]
        assert "Traceback" not in window.messages[0]
        assert window.history is history
        assert_same(state, shown(window))
    assert not window.files.open_session(tmp_path / "nowhere.gses") and "no such file" in window.messages[-1]


def test_saving_to_an_unwritable_place_leaves_no_file(qtbot, window, tmp_path):
    window.controls.spins["search_steps"].setValue(1)
    finished_run(qtbot, window)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")  # works as root too, unlike a read-only folder
    before = sorted(tmp_path.rglob("*"))
    for target in (blocker / "run.gses", tmp_path / "no" / "such" / "dir" / "run.gses"):
        window.messages.clear()
        assert not window.files.save_session(target)
        assert len(window.messages) == 1 and "session not saved" in window.messages[0] and target.name in window.messages[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_nothing_to_save_before_a_run(window, tmp_path):
    assert not window.files.save_session(tmp_path / "x.gses")
    assert window.messages and "run the attack first" in window.messages[0]
    assert not (tmp_path / "x.gses").exists()


def test_a_session_reopens_at_the_iteration_shown_when_saved(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    step = window.history.steps[0]
    position = (step, window.history.n_iterations(step) // 2)
    window.timeline.go(*position)
    path = tmp_path / "here.gses"
    assert window.files.save_session(path)
    again = fresh_window(qtbot, tmp_path)
    assert again.files.open_session(path), again.messages
    assert (again.views.frame.step, again.views.frame.iteration) == position
    assert_same(shown(window), shown(again))

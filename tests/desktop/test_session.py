"""Session files: a run saved and reopened shows the same views and numbers; bad files change nothing."""

import io
import zipfile

import numpy as np
import pytest

from conftest import TIMEOUT, RecordingEngine, finished_run, make_window, wait_idle
from gse_desktop.session import SessionError, load_session
from gse_desktop.state import CamKey


def fresh_window(qtbot, tmp_path):
    """A window whose engine never answers: what a reopened session shows needs no model."""
    return make_window(qtbot, RecordingEngine(), tmp_path / "other.ini")


def go(window, position):
    window.timeline.go(*position)
    window.redraw_now()


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
    history = window.state.history
    positions = [(s, j) for s in history.steps for j in (0, history.n_iterations(s) // 2, history.n_iterations(s) - 1)]
    before = {}
    for position in positions:
        go(window, position)
        before[position] = shown(window)
    again = fresh_window(qtbot, tmp_path)
    assert again.files.open_session(path), again.messages
    again.redraw_now()
    assert again.messages == [] and [c[0] for c in again.engine.commands] == ["open"]  # only the start-up image
    assert len(again.state.history) == len(history)
    assert [r.d20.tolist() for r in again.state.history.result.steps] == [r.d20.tolist() for r in history.result.steps]
    assert again.controls.params() == window.state.run.params
    assert "run.gses" in again.windowTitle() and "tiny" in again.windowTitle()
    for position in positions:
        go(again, position)
        assert_same(before[position], shown(again))


def cam_shown(window):
    """What the CAM panel shows: the CAM view and the image under it, the outline, the numbers, clusters, curve."""
    panel = window.cam_panel
    table = [[panel.cluster_view.item(r, c).text() for c in range(panel.cluster_view.columnCount())]
             for r in range(panel.cluster_view.rowCount())]
    return {"cam": window.views.items["cam"].image.copy(), "base": panel.base.image.copy(),
            "outline": panel.outline.mask.copy(), "numbers": panel.numbers.text(), "clusters": table,
            "curve": [np.copy(a) for a in panel.l2_curve.getData() + panel.pixel_curve.getData()],
            "title": window.views.plots["cam"].titleLabel.text, "opacity": window.views.items["cam"].opacity()}


def test_a_reopened_session_shows_the_saved_cam_and_its_numbers(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    wait_idle(qtbot, window)
    panel, history = window.cam_panel, window.state.history
    panel.class_combo.setCurrentIndex(1)  # the class after the attack, on the adversarial image
    panel.image_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: window.state.cam.shown.image == "adversarial", timeout=TIMEOUT)
    panel.q_spin.setValue(30)
    panel.opacity.setValue(40)
    chosen = int(history.result.chosen_step[0])
    positions = [(chosen, history.n_iterations(chosen) - 1), (history.steps[0], 0)]
    go(window, positions[0])
    assert window.files.save_session(tmp_path / "cam.gses")
    saved = window.files.info()["cam"]
    before = {}
    for position in positions:
        go(window, position)
        before[position] = cam_shown(window)
    assert "IS of the result" in before[positions[0]]["numbers"] and before[positions[0]]["clusters"]
    again = fresh_window(qtbot, tmp_path)  # its engine never answers
    assert again.files.open_session(tmp_path / "cam.gses") and again.messages == []
    assert again.files.info()["cam"] == saved
    assert again.cam_panel.method_combo.isEnabled()  # new CAMs are asked of the engine (it loads the model)
    for position in positions:
        go(again, position)
        after = cam_shown(again)
        for name, value in before[position].items():
            if name == "curve":
                assert all(np.array_equal(a, b) for a, b in zip(value, after[name])), position
            elif isinstance(value, np.ndarray):
                assert value.dtype == after[name].dtype and np.array_equal(value, after[name]), (name, position)
            else:
                assert value == after[name], (name, position)


def test_a_reopened_session_computes_new_cams_with_the_model_loaded_on_demand(qtbot, window, tmp_path, engine):
    finished_run(qtbot, window)
    wait_idle(qtbot, window)
    assert window.files.save_session(tmp_path / "s.gses")
    window.close()  # one window per engine client: its pump would take the events
    again = make_window(qtbot, engine, tmp_path / "again.ini")
    assert again.files.open_session(tmp_path / "s.gses")
    run = again.state.run
    again.state.select_cam(CamKey("clean", run.clean_class, "GradCAM++", run.model.cam_layer))
    qtbot.waitUntil(lambda: again.state.cam.shown.method == "GradCAM++", timeout=TIMEOUT)
    assert again.messages == [] and not again.state.active


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
            dst.writestr(name, data.replace(b'"version": 2', b'"version": 99') if name == "session.json" else data)
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tmp_path / "missing.gses", "w") as dst:
        dst.writestr("session.json", src.read("session.json"))
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tmp_path / "shapes.gses", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "arrays.npz":
                with np.load(io.BytesIO(data)) as npz:
                    arrays = {k: npz[k] for k in npz.files}
                arrays["r0_trace_support_pixels"] = arrays["r0_trace_support_pixels"][:-1]
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
    history = window.state.history
    for name, words in damaged_files(tmp_path, good.read_bytes()).items():
        with pytest.raises(SessionError, match=words):
            load_session(tmp_path / f"{name}.gses")
        window.messages.clear()
        assert not window.files.open_session(tmp_path / f"{name}.gses")
        assert len(window.messages) == 1 and f"{name}.gses" in window.messages[0]
        assert "Traceback" not in window.messages[0]
        assert window.state.history is history
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
    step = window.state.history.steps[0]
    position = (step, window.state.history.n_iterations(step) // 2)
    go(window, position)
    path = tmp_path / "here.gses"
    assert window.files.save_session(path)
    again = fresh_window(qtbot, tmp_path)
    assert again.files.open_session(path), again.messages
    again.redraw_now()
    assert (again.views.frame.step, again.views.frame.iteration) == position
    assert_same(shown(window), shown(again))


def test_open_and_save_in_the_file_worker_with_progress(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    path = tmp_path / "bg.gses"
    fractions = []
    window.files.progress.set_fraction = fractions.append
    assert window.files.save_session(path, wait=False)
    assert not window.files.progress.isHidden() and "saving bg.gses" in window.message.text()
    qtbot.waitUntil(lambda: not window.files.worker.busy, timeout=TIMEOUT)
    assert path.exists() and window.files.progress.isHidden() and not window.state.unsaved
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    again = fresh_window(qtbot, tmp_path)
    fractions.clear()
    again.files.progress.set_fraction = fractions.append
    assert again.files.open_session(path, wait=False)
    assert again.state.history.result is None  # nothing switches before the whole file is read and checked
    qtbot.waitUntil(lambda: again.state.session_path == str(path), timeout=TIMEOUT)
    assert again.messages == [] and len(again.state.history) == len(window.state.history)
    assert fractions and fractions == sorted(fractions)


def test_cancelled_open_and_save_change_nothing_and_write_nothing(qtbot, window, tmp_path):
    import time

    finished_run(qtbot, window)
    good = tmp_path / "good.gses"
    assert window.files.save_session(good)
    before = sorted(tmp_path.rglob("*"))
    history = window.state.history
    files = window.files
    for start in (lambda: files.open_session(good, wait=False), lambda: files.save_session(tmp_path / "new.gses",
                                                                                          wait=False)):
        files.worker.submit(time.sleep, 1.0, on_done=lambda _: None)  # busy: the job below waits its turn
        start()
        files.progress.cancel_button.click()
        qtbot.waitUntil(lambda: not files.worker.busy, timeout=TIMEOUT)
        assert window.message.text().endswith(": cancelled") and files.progress.isHidden()
        assert window.state.history is history and window.messages == []
    assert sorted(tmp_path.rglob("*")) == before  # no session and no temporary file


def test_a_session_keeps_the_finalized_files_and_the_engines_metrics(qtbot, window, tmp_path, monkeypatch):
    finished_run(qtbot, window)
    path = tmp_path / "files.gses"
    assert window.files.save_session(path)
    session = load_session(path)
    for bits in (8, 16):
        np.testing.assert_array_equal(session.files[bits], window.state.files[bits])
    from gse_desktop import history as history_module

    monkeypatch.setattr(history_module, "derived", lambda snap: pytest.fail("the saved metrics are recomputed"))
    again = fresh_window(qtbot, tmp_path)
    assert again.files.open_session(path), again.messages
    for a, b in zip(again.state.history.summaries(), window.state.history.summaries()):
        assert a.d20.tolist() == b.d20.tolist()
    step = window.state.history.steps[-1]
    for which in (window, again):
        frame = which.state.history.frame(step, 0)
        assert int(frame.acp[0]) == int(frame.mask[0].sum())
    out = tmp_path / "data"
    assert again.files.export_data(out, "chosen"), again.messages
    assert (out / "adv8.png").exists()  # the reopened run still has the engine's 8-bit file

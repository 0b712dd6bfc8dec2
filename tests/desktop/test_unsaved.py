"""Before runs that were not saved are discarded (open an image or a session, quit), the app asks Save / Discard /
Cancel; a new Run discards nothing (the run list keeps every run). "unsaved" is a fact of the app state, set when a
run ends or the run list changes, cleared by save and open."""

from PySide6.QtWidgets import QApplication, QFileDialog

from conftest import TIMEOUT, finished_run


def answer(window, reply):
    """The unsaved-run question answers `reply`; the actions it was asked before are recorded."""
    window.questions = []
    window.ask_unsaved = lambda action: (window.questions.append(action), reply)[1]


def settle():
    for _ in range(5):
        QApplication.processEvents()


def test_a_finished_run_is_unsaved_until_saved_and_a_reopened_session_is_not(qtbot, window, tmp_path):
    assert not window.state.unsaved
    finished_run(qtbot, window)
    assert window.state.unsaved and window.isWindowModified()
    assert window.files.save_session(tmp_path / "a.gses")
    assert not window.state.unsaved and not window.isWindowModified()
    assert window.state.session_path == str(tmp_path / "a.gses")
    finished_run(qtbot, window)
    assert window.state.unsaved
    assert window.files.open_session(tmp_path / "a.gses")
    assert not window.state.unsaved


def test_cancel_keeps_the_runs_and_discard_goes_on(qtbot, window, tmp_path, image_file):
    finished_run(qtbot, window)
    history = window.state.history
    answer(window, "cancel")
    window.open_image(image_file)
    window.open_session(str(tmp_path / "whatever.gses"))
    assert window.questions == ["opening another image", "opening a session"]
    assert window.state.history is history and not window.state.active and window.state.unsaved
    window.controls.run_button.click()  # a new run drops nothing: no question
    assert window.questions == ["opening another image", "opening a session"] and window.state.active
    qtbot.waitUntil(lambda: not window.state.active, timeout=TIMEOUT)
    assert [k.history for k in window.state.runs][0] is history and len(window.state.runs) == 2
    answer(window, "discard")
    window.open_image(image_file)
    assert window.questions == ["opening another image"]
    qtbot.waitUntil(lambda: window.state.runs == [] and not window.state.unsaved, timeout=TIMEOUT)


def test_save_writes_the_session_first_then_goes_on(qtbot, window, tmp_path, monkeypatch, image_file):
    finished_run(qtbot, window)
    path = tmp_path / "kept.gses"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    answer(window, "save")
    window.open_image(image_file)
    assert window.state.runs  # not yet: the session is written in the file worker first
    qtbot.waitUntil(lambda: window.state.runs == [], timeout=TIMEOUT)  # then the image opened anew
    assert path.exists() and window.messages == []
    finished_run(qtbot, window)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))  # the save dialog cancelled
    runs = list(window.state.runs)
    window.open_image(image_file)
    settle()
    assert window.state.runs == runs and window.state.unsaved


def test_quitting_asks_cancel_stays_discard_and_save_close(qtbot, window, tmp_path, monkeypatch):
    window.show()
    finished_run(qtbot, window)
    answer(window, "cancel")
    window.close()
    settle()
    assert window.isVisible() and window.questions == ["quitting"]
    path = tmp_path / "at-quit.gses"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    answer(window, "save")
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT)
    assert path.exists() and window.questions == ["quitting"]


def test_discard_at_quit_closes_at_once(qtbot, window):
    window.show()
    finished_run(qtbot, window)
    answer(window, "discard")
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT)
    assert window.questions == ["quitting"]

"""The main window end to end on a tiny random-weight model (offscreen, no network, no model download)."""

import numpy as np
from PIL import Image
from PySide6.QtCore import QSettings, Qt

from gse_algo.images import DEFAULT_IMAGE
from gse_algo.models import DEFAULT_MODEL, ModelError
from conftest import TIMEOUT, run_to_end
from gse_desktop.main_window import MainWindow

def test_starts_with_default_image_and_model_without_loading_it(qtbot, tmp_path):
    loads = []
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings, loader=lambda spec, device: loads.append(spec))
    qtbot.addWidget(w)
    assert w.image_path == str(DEFAULT_IMAGE)
    assert w.controls.model_spec() == DEFAULT_MODEL
    assert w.controls.device_combo.currentText() == "cpu"
    assert w.controls.target() is None and w.controls.run_button.isEnabled()
    assert w.views.original is not None and loads == []


def test_open_image_and_a_corrupt_one_loses_nothing(window, tmp_path):
    other = tmp_path / "wide.png"
    Image.fromarray(np.zeros((12, 20, 3), np.uint8)).save(other)
    assert window.open_image(str(other))
    assert window.views.original.shape == (12, 20, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    assert not window.open_image(str(bad))
    assert len(window.messages) == 1 and "bad.png" in window.messages[0]
    assert window.image_path == str(other) and window.views.original.shape == (12, 20, 3)
    assert window.controls.recent_menu.actions()[0].text() == str(other)


def test_run_to_completion_updates_live_views_and_marks_the_chosen_step(qtbot, window):
    shown = []
    original_show = window.views.show_frame
    window.views.show_frame = lambda frame, image=0: (shown.append(frame), original_show(frame, image))
    run_to_end(qtbot, window)
    assert window.messages == []
    result = window.history.result
    assert result is not None and len(window.history) > 0
    assert 1 <= len(shown) <= len(window.history) + 1  # throttled: at most one redraw per snapshot (+ the final)
    assert window.search_table.rowCount() == len(window.history.steps) == len(result.steps)
    assert window.prepared.image.shape == (16, 16, 3)
    if result.success[0]:
        chosen = int(result.chosen_step[0])
        assert window.timeline.chosen_step == chosen
        assert window.search_table.item(chosen, 5).text() == "★ chosen"
        assert window.views.frame.step == chosen  # following: the final view is the engine's choice
        adv = window.views.items["adversarial"].image
        assert not np.allclose(adv, window.prepared.image)
    assert not window.controls.stop_button.isEnabled() and window.controls.run_button.isEnabled()


def test_stepping_changes_what_the_views_show(qtbot, window):
    window.controls.spins["search_steps"].setValue(2)
    run_to_end(qtbot, window)
    counts = {s: window.history.n_iterations(s) for s in window.history.steps}
    assert sorted(counts) == [0, 1]
    long_step = max(counts, key=counts.get)
    last = counts[long_step] - 1
    assert last >= 3
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.views.setFocus()  # the keys act while the focus is in the views area
    window.timeline.go(long_step, 0)
    first = window.views.items["perturbation"].image.copy()
    qtbot.keyClick(window.view_area, Qt.Key.Key_End)
    assert (window.views.frame.step, window.views.frame.iteration) == (long_step, last)
    assert window.timeline.slider.value() == last
    assert not np.array_equal(first, window.views.items["perturbation"].image)
    qtbot.keyClick(window.view_area, Qt.Key.Key_Left)
    assert window.views.frame.iteration == last - 1
    qtbot.keyClick(window.view_area, Qt.Key.Key_Home)
    qtbot.keyClick(window.view_area, Qt.Key.Key_Right)
    assert window.views.frame.iteration == 1
    other = 1 - long_step
    qtbot.keyClick(window.view_area, Qt.Key.Key_PageDown if other > long_step else Qt.Key.Key_PageUp)
    assert window.views.frame.step == other and window.views.frame.iteration == min(1, counts[other] - 1)
    window.timeline.go(long_step, 2)
    assert window.views.frame.iteration == 2 and window.timeline.slider.value() == 2
    assert not window.timeline.follow.isChecked()
    assert window.views.readout(2, 3).count("δ=") == 1


def test_pause_step_stop_and_a_second_run(qtbot, window):
    window.controls.spins["iters"].setValue(400)
    window.controls.spins["kappa"].setValue(5.0)
    window.controls.run_button.click()
    qtbot.waitUntil(lambda: len(window.history) >= 2, timeout=TIMEOUT)
    window.controls.pause_button.click()
    qtbot.wait(200)
    paused_at = len(window.history)
    qtbot.wait(200)
    assert len(window.history) == paused_at and window.controller.running
    window.controls.step_button.click()
    qtbot.waitUntil(lambda: len(window.history) == paused_at + 1, timeout=TIMEOUT)
    qtbot.wait(200)
    assert len(window.history) == paused_at + 1
    window.controls.stop_button.click()
    assert not window.controller.running and window.controls.run_button.isEnabled()
    assert window.controller.wait(5000)
    assert len(window.history) == paused_at + 1  # the stopped run's history stays for stepping
    window.timeline.first()
    assert window.views.frame.iteration == 0
    window.controls.spins["iters"].setValue(20)
    run_to_end(qtbot, window)
    assert window.history.result is not None and window.loads == [(DEFAULT_MODEL, "cpu")]  # the model was cached


def test_close_during_a_run(qtbot, window):
    window.controls.spins["iters"].setValue(5000)
    window.controls.run_button.click()
    qtbot.waitUntil(lambda: len(window.history) >= 1, timeout=TIMEOUT)
    window.close()
    assert not window.isVisible()
    assert window.controller.wait(5000)


def test_a_worker_error_is_a_message_and_the_app_stays_usable(qtbot, window):
    def broken(spec, device):
        raise ModelError(f"no model named {spec!r}")

    window.controller.loader = broken
    window.controls.model_combo.setCurrentText("nonsense")
    run_to_end(qtbot, window)
    assert len(window.messages) == 1 and "no model named 'nonsense'" in window.messages[0]
    assert "Traceback" not in window.messages[0] and window.controls.run_button.isEnabled()


def test_invalid_target_class_in_a_targeted_run(qtbot, window):
    window.controls.set_target(500)  # ImageNet list shown before the tiny 10-class model is loaded
    run_to_end(qtbot, window)
    assert len(window.messages) == 1 and "out of range" in window.messages[0]


def test_signals_of_an_old_run_are_ignored(qtbot, window):
    got = []
    window.controller.snapshot.connect(got.append)
    window.controls.spins["iters"].setValue(5000)
    window.controls.run_button.click()
    old = window.controller.worker
    window.controls.stop_button.click()
    window.controls.run_button.click()
    old.events.put((old.run_id, "snapshot", "stale"))  # late output of the stopped run
    window.controller.worker.events.put((old.run_id, "snapshot", "stale"))  # even when it lands in the new queue
    window.controller.poll()
    assert "stale" not in got and window.controller.run_id == old.run_id + 1
    window.controls.stop_button.click()


def test_settings_are_remembered(qtbot, window, tmp_path):
    window.controls.spins["iters"].setValue(17)
    window.close()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    again = MainWindow(settings, loader=lambda spec, device: None)
    qtbot.addWidget(again)
    assert again.controls.spins["iters"].value() == 17
    assert again.controls.preset_combo.currentText() == "custom"
    assert again.image_path == window.image_path

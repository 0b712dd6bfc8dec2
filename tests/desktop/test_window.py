"""The main window end to end on a tiny random-weight model (offscreen, no network, no model download)."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from conftest import MISSING, NO_WEIGHTS, START_TIMEOUT, TIMEOUT, make_window, run_to_end, wait_ready
from gse_algo.defaults import DEFAULT_IMAGE, DEFAULT_MODEL
from gse_desktop.records import RunSpec


def test_starts_with_the_default_image_and_model(qtbot, tmp_path, engine):
    w = make_window(qtbot, engine, tmp_path / "s.ini", model=None)
    assert w.controls.model_spec() == DEFAULT_MODEL
    assert w.controls.device_combo.currentText() == "cpu"
    assert w.controls.target() is None
    qtbot.waitUntil(lambda: w.state.image is not None, timeout=START_TIMEOUT)  # the tiny loader stands in for it
    assert w.state.image.path == str(DEFAULT_IMAGE)
    assert w.views.original is not None and w.views.original.shape == (16, 16, 3)  # the model input, not the file
    assert "model input" in w.views.plots["original"].titleLabel.text
    assert w.controls.run_button.isEnabled()


def test_open_image_and_a_corrupt_one_loses_nothing(qtbot, window, tmp_path):
    other = tmp_path / "wide.png"
    Image.fromarray(np.zeros((12, 20, 3), np.uint8)).save(other)
    window.open_image(str(other))
    qtbot.waitUntil(lambda: window.state.image.path == str(other), timeout=TIMEOUT)
    assert window.state.image.file_size == (20, 12)
    assert window.views.original.shape == (16, 16, 3)  # resized to the model input
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    window.open_image(str(bad))
    qtbot.waitUntil(lambda: bool(window.messages), timeout=TIMEOUT)
    assert len(window.messages) == 1 and "bad.png" in window.messages[0]
    assert window.state.image.path == str(other)
    assert window.controls.recent_menu.actions()[0].text() == str(other)


def test_run_to_completion_updates_live_views_and_marks_the_chosen_step(qtbot, window):
    shown = []
    original_show = window.views.show_frame
    window.views.show_frame = lambda frame, image=0: (shown.append(frame), original_show(frame, image))
    run_to_end(qtbot, window)
    window.redraw_now()
    assert window.messages == []
    history = window.state.history
    result = history.result
    assert result is not None and len(history) > 0
    assert 1 <= len(shown) <= len(history) + 1  # throttled: at most one redraw per snapshot (+ the final)
    assert window.search_table.rowCount() == len(history.steps) == len(result.steps)
    assert window.state.run.image.shape == (16, 16, 3)
    if result.success[0]:
        chosen = int(result.chosen_step[0])
        assert window.timeline.chosen_step == chosen
        assert window.search_table.item(chosen, 5).text() == "★ chosen"
        assert window.views.frame.step == chosen  # following: the final view is the engine's choice
        adv = window.views.items["adversarial"].image
        assert not np.allclose(adv, window.state.run.image)
    assert not window.controls.stop_button.isEnabled() and window.controls.run_button.isEnabled()


def test_stepping_changes_what_the_views_show(qtbot, window):
    window.controls.spins["search_steps"].setValue(2)
    run_to_end(qtbot, window)
    history = window.state.history
    counts = {s: history.n_iterations(s) for s in history.steps}
    assert sorted(counts) == [0, 1]
    long_step = max(counts, key=counts.get)
    last = counts[long_step] - 1
    assert last >= 3
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.views.setFocus()  # the keys act while the focus is in the views area

    def press(key):
        qtbot.keyClick(window.view_area, key)
        window.redraw_now()

    window.timeline.go(long_step, 0)
    window.redraw_now()
    first = window.views.items["perturbation"].image.copy()
    press(Qt.Key.Key_End)
    assert (window.views.frame.step, window.views.frame.iteration) == (long_step, last) == window.state.cursor
    assert window.timeline.slider.value() == last
    assert not np.array_equal(first, window.views.items["perturbation"].image)
    press(Qt.Key.Key_Left)
    assert window.views.frame.iteration == last - 1
    press(Qt.Key.Key_Home)
    press(Qt.Key.Key_Right)
    assert window.views.frame.iteration == 1
    other = 1 - long_step
    press(Qt.Key.Key_PageDown if other > long_step else Qt.Key.Key_PageUp)
    assert window.views.frame.step == other and window.views.frame.iteration == min(1, counts[other] - 1)
    window.timeline.go(long_step, 2)
    window.redraw_now()
    assert window.views.frame.iteration == 2 and window.timeline.slider.value() == 2
    assert not window.timeline.follow.isChecked() and not window.state.follow
    assert window.views.readout(2, 3).count("δ=") == 1
    assert all(len(v.split(".")[1]) == 3 for v in window.views.readout(2, 3).split("rgb=[")[1].split("]")[0].split(", "))
    window.search_table.cellClicked.emit(other, 0)  # a row of the search table shows its step's last iteration
    assert window.state.cursor == (other, counts[other] - 1)
    window.redraw_now()
    assert window.timeline.step_spin.text() == f"search step {other + 1}"  # numbered from 1, as in the status


def test_pause_step_stop_and_a_second_run(qtbot, window):
    window.controls.spins["iters"].setValue(400)
    window.controls.spins["kappa"].setValue(5.0)
    window.controls.run_button.click()
    history = lambda: window.state.history  # noqa: E731 (a new run makes a new history)
    qtbot.waitUntil(lambda: len(history()) >= 2, timeout=TIMEOUT)
    window.controls.pause_button.click()
    assert window.state.status == "paused" and "paused" in window.message.text()
    qtbot.wait(300)
    paused_at = len(history())
    qtbot.wait(300)
    assert len(history()) == paused_at and window.state.active
    window.controls.step_button.click()
    qtbot.waitUntil(lambda: len(history()) == paused_at + 1, timeout=TIMEOUT)
    qtbot.wait(300)
    assert len(history()) == paused_at + 1
    window.controls.stop_button.click()
    assert not window.state.active and window.controls.run_button.isEnabled()
    assert window.progress.value() <= window.progress.maximum()
    qtbot.waitUntil(lambda: window.engine.busy_run is None, timeout=TIMEOUT)
    assert len(history()) == paused_at + 1  # the stopped run's history stays for stepping
    window.timeline.first()
    window.redraw_now()
    assert window.views.frame.iteration == 0
    window.controls.spins["iters"].setValue(20)
    run_to_end(qtbot, window)
    assert history().result is not None and len(window.state.runs) == 2  # both runs are kept for comparison


def test_a_model_error_is_a_message_and_the_app_stays_usable(qtbot, window):
    window.controls.model_combo.setCurrentText(MISSING)
    run_to_end(qtbot, window)
    assert len(window.messages) == 1 and "no model named 'nonsense'" in window.messages[0]
    assert "Traceback" not in window.messages[0] and window.controls.run_button.isEnabled()
    assert window.state.status == "failed"


def test_invalid_target_class_in_a_targeted_run(qtbot, window):
    window.state.start_run(RunSpec(window.state.image.path, "tiny", target=500))
    qtbot.waitUntil(lambda: not window.state.active, timeout=TIMEOUT)
    assert len(window.messages) == 1 and "out of range" in window.messages[0]


def test_a_target_the_model_already_predicts_is_refused(qtbot, window):
    clean = window.state.image.clean.top
    window.controls.set_target(clean)
    run_to_end(qtbot, window)
    assert len(window.messages) == 1 and "already predicts" in window.messages[0]
    assert window.state.history.result is None


def test_events_of_an_old_run_are_ignored(qtbot, window):
    window.controls.spins["iters"].setValue(5000)
    window.controls.run_button.click()
    old = window.state.run_id
    window.controls.stop_button.click()
    window.controls.run_button.click()
    assert window.state.run_id != old
    before = len(window.state.history)
    window.state.handle([("snapshot", old, None), ("finished", old, None), ("failed", old, "stale")])
    assert len(window.state.history) == before and window.state.active and window.messages == []
    window.controls.stop_button.click()


def test_settings_are_remembered_and_only_a_model_that_worked(qtbot, window, tmp_path, engine):
    window.controls.spins["iters"].setValue(17)
    run_to_end(qtbot, window)  # "tiny" works
    window.controls.model_combo.setCurrentText(MISSING)
    run_to_end(qtbot, window)  # this one does not: it is not remembered
    window.close()
    again = make_window(qtbot, engine, tmp_path / "settings.ini")
    assert again.controls.spins["iters"].value() == 17
    assert again.controls.preset_combo.currentText() == "custom"
    assert again.controls.model_spec() == "tiny"
    wait_ready(qtbot, again)
    assert again.state.image.path == window.state.image.path


def test_a_new_image_clears_every_run_display(qtbot, window, tmp_path):
    run_to_end(qtbot, window)
    qtbot.waitUntil(lambda: window.state.cam.map is not None, timeout=TIMEOUT)
    window.redraw_now()
    assert window.search_table.rowCount() > 0
    other = tmp_path / "other.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(other)
    window.open_image(str(other))
    qtbot.waitUntil(lambda: window.state.image.path == str(other), timeout=TIMEOUT)
    assert window.search_table.rowCount() == 0 and window.timeline.counts == {}
    assert window.top_table.item(0, 2).text() == ""
    assert all(len(c.getData()[0] or []) == 0 for c in window.plots.curves.values())
    assert window.state.cam.map is None and window.views.cam_text.isVisible()
    assert window.state.runs == [] and window.state.cursor is None
    views = window.views  # no old perturbation or lambda map; delta = 0 is the perturbation map's middle (white)
    assert not np.any(views.items["perturbation"].image) and views.bars["perturbation"].levels() == (-1.0, 1.0)
    assert views.items["lambda"].image is None and views.lambda_text.isVisible()
    assert "once GSE runs" in views.lambda_text.textItem.toPlainText() and not views.bars["lambda"].isVisible()


def test_quitting_shuts_the_engine_down_and_leaves_no_process(qtbot, tmp_path, image_file):
    from conftest import loader

    w = make_window(qtbot, None, tmp_path / "own.ini", image_file, model="tiny", loader=loader)
    wait_ready(qtbot, w)
    pid = w.engine.info["pid"]
    w.controls.spins["iters"].setValue(5000)
    w.controls.run_button.click()
    qtbot.waitUntil(lambda: len(w.state.history) > 0, timeout=TIMEOUT)
    w.close()  # during a run
    assert w.engine.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_blur_size_refuses_even_values_as_typed_and_reset_restores_the_preset(qtbot, window):
    c = window.controls
    spin = c.spins["blur_size"]
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), "4")
    spin.interpretText()
    assert spin.value() % 2 == 1  # 4 is not accepted
    c.spins["mu"].setValue(123.0)
    assert c.preset_combo.currentText() == "custom"
    c.reset_to_preset()
    assert c.preset_combo.currentText() == "auto" and c.spins["iters"].value() == 200
    from gse_algo.params import GSEParams

    assert c.spins["mu"].value() == pytest.approx(GSEParams.preset("imagenet").mu)


def test_the_regulariser_is_a_run_parameter_recorded_in_the_run(qtbot, window):
    window.controls.reg_combo.setCurrentText("l1")
    run_to_end(qtbot, window)
    assert window.state.run.params.reg == "l1" and window.messages == []
    assert window.state.record["params"]["units_0_1"]["reg"] == "l1"


def test_the_model_list_marks_offline_models_and_missing_weights_offer_a_file(qtbot, window, tmp_path, image_file):
    import torch

    from gse_algo import offline_weights, weights

    c = window.controls
    names = [c.model_combo.itemText(i) for i in range(c.model_combo.count())]
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    packaged = offline_weights.packaged_weights() is not None
    here = {n: (hub / Path(weights.default_entry(n).url).name).is_file() or (n == "mobilenet_v2" and packaged)
            for n in names}
    assert len(names) > 50 and c.offline == here
    assert [not c.model_combo.itemIcon(i).isNull() for i in range(len(names))] == [here[n] for n in names]
    assert [here[n] for n in names] == sorted(here.values(), reverse=True)  # the offline ones first
    c.model_combo.setCurrentText("mobilenet_v2")
    assert ("works offline" in c.offline_label.text()) == here["mobilenet_v2"]
    c.model_combo.setCurrentText(NO_WEIGHTS)
    assert ("works offline" in c.offline_label.text()) == here[NO_WEIGHTS]
    window.open_image(image_file)
    qtbot.waitUntil(lambda: bool(window.offers), timeout=TIMEOUT)
    expected = Path(weights.default_entry(NO_WEIGHTS).url).name
    message = window.offers[0]["message"]
    assert expected in message and str(hub) in message and "pick a weights file" in message
    picked = tmp_path / "mine.pth"
    torch.save({"w": torch.zeros(1)}, picked)  # a plain state_dict, but not torchvision's resnet18 file
    window.offer_weights = lambda info: str(picked)
    window.controls.run_button.click()  # the run fails for the same reason, and the picked file is checked
    qtbot.waitUntil(lambda: any("weights not installed" in m for m in window.messages), timeout=TIMEOUT)
    refused = next(m for m in window.messages if "weights not installed" in m)
    assert f"not torchvision's {expected}" in refused
    assert (hub / expected).is_file() == here[NO_WEIGHTS]  # nothing was copied there
    assert "Traceback" not in " ".join(window.messages)

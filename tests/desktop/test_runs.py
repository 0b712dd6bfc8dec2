"""Picking an attack, the run list and sessions of several runs, end to end on the tiny model (offscreen): a
stand-in library attack (fake_attack, registered in the tests' engine process) runs through the real engine."""

import json
import re
import zipfile

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from conftest import TIMEOUT, RecordingEngine, make_window, run_to_end
from fake_attack import FAKE
from gse_algo.attacks.base import AttackSpec, Param
from gse_desktop.engine_attacks import attack_info
from gse_desktop.panels.controls import ControlsPanel
from gse_desktop.panels.run_list import NAME_WIDTH
from gse_desktop.records import GSE_INFO
from gse_desktop.session import SessionError, load_session
from test_compare_view import compared_window, measured
from test_geometry import settle


def spec_with_every_kind():
    return AttackSpec(
        name="every_kind", title="every-kind", source="a test", norm="l0", run=None, targeted=False,
        params=(Param("steps", int, 40, "how many steps", 1, 500),
                Param("rate", float, 0.002, "step size", 0.0, 1.0, low_ok=False),
                Param("final_rate", float, None, "last step size", 0.0, 2.0),
                Param("restart", bool, True, "restart when stuck"),
                Param("norm", str, "l0", "which norm", choices=("l0", "l1"))))


def test_the_picker_builds_the_form_from_the_params(qtbot):
    controls = ControlsPanel()
    qtbot.addWidget(controls)
    spec = spec_with_every_kind()
    missing = AttackSpec("absent", "absent", "lib", "l0", (), run=None, requires=("no_such_module_xyz",),
                         extra="baselines")
    picker = controls.attack_picker
    picker.set_attacks([attack_info(spec), attack_info(missing), GSE_INFO])
    assert [picker.combo.itemText(i) for i in range(3)] == ["GSE", "every-kind", "absent"]  # GSE first
    absent = picker.combo.model().item(2)
    assert not absent.isEnabled() and "pip install 'gse-desktop[baselines]'" in absent.toolTip()
    assert not picker.select("absent") and picker.current().name == "gse"
    assert controls.targeted.isEnabled()
    assert picker.select("every_kind")
    fields = picker.forms["every_kind"].fields
    steps, rate, final = (fields[n].editor for n in ("steps", "rate", "final_rate"))
    assert (steps.minimum(), steps.maximum(), steps.value()) == (1, 500, 40)
    assert rate.minimum() == pytest.approx(10.0 ** -rate.decimals()) and rate.maximum() == 1.0  # (0, 1]: 0 refused
    assert rate.value() == pytest.approx(0.002) and rate.decimals() >= 5  # the default shown exactly
    assert steps.toolTip() == "how many steps\nrange: [1, 500]" and "range: (0, 1]" in rate.toolTip()
    assert fields["final_rate"].auto.isChecked() and not final.isEnabled()  # None: the attack chooses
    assert picker.settings() == {"steps": 40, "rate": pytest.approx(0.002), "final_rate": None, "restart": True,
                                 "norm": "l0"}
    fields["final_rate"].auto.setChecked(False)
    final.setValue(0.5)
    fields["norm"].editor.setCurrentText("l1")
    assert picker.settings()["final_rate"] == 0.5 and picker.settings()["norm"] == "l1"
    # untargeted only: the targeted choice and the class list are off, saying why
    assert not controls.targeted.isEnabled() and not controls.class_list.isEnabled()
    assert not controls.class_filter.isEnabled()  # nor a search in a list that is off
    assert controls.targeted.toolTip() == "every-kind supports untargeted runs only"
    assert controls.target() is None
    picker.select("gse")
    assert controls.targeted.isEnabled() and controls.targeted.toolTip() == "" and controls.class_filter.isEnabled()


@pytest.mark.parametrize("key, value", [("steps", "abc"), ("steps", 10**300), ("steps", 10**400), ("steps", 2.5),
                                        ("steps", 9999), ("rate", "nan"), ("rate", 2.0), ("final_rate", "inf"),
                                        ("final_rate", 1e400)])
def test_values_a_field_cannot_show_leave_the_form_as_it_was(qtbot, tmp_path, key, value):
    """A reopened run's settings (a session from elsewhere) or a hand-edited settings file: what a field cannot
    show is left out, the other values are shown, nothing raises."""
    controls = ControlsPanel()
    qtbot.addWidget(controls)
    picker = controls.attack_picker
    picker.set_attacks([attack_info(spec_with_every_kind()), GSE_INFO])
    assert picker.select("every_kind")
    before = picker.settings()
    picker.show_settings("every_kind", {key: value, "norm": "l1"})
    assert picker.settings() == {**before, "norm": "l1"}
    ini = QSettings(str(tmp_path / "edited.ini"), QSettings.Format.IniFormat)
    ini.setValue("attack", "every_kind")
    ini.setValue(f"attacks/every_kind/{key}", str(value))
    picker.restore(ini)
    assert picker.settings() == {**before, "norm": "l1"}


def fake_window(qtbot, engine, tmp_path, image_file):
    w = make_window(qtbot, engine, tmp_path / "settings.ini", image_file, model="tiny")
    qtbot.waitUntil(lambda: w.state.engine_ready and w.state.image is not None
                    and w.controls.attack_picker.combo.findData(FAKE.name) >= 0, timeout=TIMEOUT * 4)
    return w


def small_gse(window, iters=8):
    window.controls.attack_picker.select("gse")
    window.controls.preset_combo.setCurrentText("custom")
    for name, value in (("iters", iters), ("search_steps", 2), ("k_hat", 3), ("sigma", 0.01), ("mu", 0.1)):
        window.controls.spins[name].setValue(value)


def run_fake(qtbot, window, steps=4):
    picker = window.controls.attack_picker
    assert picker.select(FAKE.name)
    picker.forms[FAKE.name].fields["steps"].set_value(steps)
    run_to_end(qtbot, window)
    assert window.messages == []


def cells(window):
    table = window.run_list.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_a_library_attack_runs_live_and_is_kept_with_measured_metrics(qtbot, engine, tmp_path, image_file):
    window = fake_window(qtbot, engine, tmp_path, image_file)
    run_fake(qtbot, window)
    window.redraw_now()
    s = window.state
    kept = s.runs[-1]
    assert kept is s.shown and kept.name == "fake-sparse 1" and kept.description.attack.title == "fake-sparse"
    delta = np.asarray(s.history.result.delta[0])
    changed = int((np.abs(delta).sum(axis=0) > 0).sum())
    assert kept.measured.metrics["acp"] == changed and kept.measured.n_backward == 4
    assert len(s.history) == 5 and s.history.steps == [0]  # 4 iterates and the returned images
    np.testing.assert_allclose(window.views.frame.delta[0], delta, atol=1e-7)  # the views show the result
    assert window.views.lambda_text.isVisible() and "fake-sparse has no λ map" in window.views.lambda_text.textItem.toPlainText()
    assert "no outer search" in window.search_table.item(0, 0).text()
    mask_title = re.sub("<[^>]+>", "", window.views.plots["mask"].titleLabel.text)  # the text without markup
    assert "support" in mask_title and "frozen" not in mask_title and f"({changed} px)" in mask_title  # no phase 2
    assert window.timeline.label.text().startswith("frame 5 / 5") and not window.timeline.step_spin.isVisibleTo(window)
    row = cells(window)[0]
    assert row[0] == "fake-sparse 1" and row[1] == "fake-sparse" and "steps=4" in row[2]
    assert row[4] == str(changed) and row[3] in ("yes", "no")
    figure, data = tmp_path / "figure.png", tmp_path / "data"
    assert window.files.export_figure(figure) and window.files.export_data(data), window.messages
    assert figure.stat().st_size > 0 and (data / "metrics.json").exists()
    arrays = np.load(data / "arrays.npz")
    assert "lambda_map" not in arrays.files and np.allclose(arrays["delta"], delta, atol=1e-6)
    small_gse(window)
    run_to_end(qtbot, window)
    assert [r[0] for r in cells(window)] == ["fake-sparse 1", "GSE 1"] and not window.views.lambda_text.isVisible()
    assert "frozen" in window.views.plots["mask"].titleLabel.text
    assert "k̂=3" in cells(window)[1][2]


def test_runs_are_shown_renamed_removed_and_compared(qtbot, engine, tmp_path, image_file):
    window = fake_window(qtbot, engine, tmp_path, image_file)
    run_fake(qtbot, window)
    small_gse(window)
    run_to_end(qtbot, window)
    s, runs = window.state, window.run_list
    fake, gse = s.runs
    runs.select([fake.key])
    assert s.shown is fake and s.history is fake.history and window.controls.attack().name == "gse"
    window.redraw_now()
    assert window.views.lambda_text.isVisible()
    runs.select([gse.key, fake.key])  # two: compared, A = the first picked
    assert s.compared == (gse.key, fake.key) and window.central.currentWidget() is window.compare_view
    assert window.compare_view.table.rowCount() > 0
    window.compare_view.back_button.click()  # the run's views again; the comparison stays
    assert window.central.currentWidget() is window.view_area and s.compared == (gse.key, fake.key)
    window.show_comparison(True)
    assert window.central.currentWidget() is window.compare_view
    s.rename_run(fake.key, "  greedy   baseline ")
    assert fake.name == "greedy baseline" and cells(window)[0][0] == "greedy baseline"
    assert "greedy baseline" in window.compare_view.title.text()
    runs.table.item(0, 0).setText("edited")  # in place, as a double click edits it
    assert fake.name == "edited"
    runs.select([gse.key])
    runs.remove_button.click()
    assert s.runs == [fake] and s.compared is None and s.shown is fake
    assert [r[0] for r in cells(window)] == ["edited"]


def test_a_session_keeps_every_run(qtbot, engine, tmp_path, image_file):
    window = fake_window(qtbot, engine, tmp_path, image_file)
    run_fake(qtbot, window)
    small_gse(window)
    run_to_end(qtbot, window)
    s = window.state
    s.rename_run(s.runs[0].key, "baseline")
    window.run_list.select([s.runs[0].key])  # the library run on screen when saved
    path = tmp_path / "two.gses"
    assert window.files.save_session(path), window.messages
    recorder = RecordingEngine()
    recorder.info = {**recorder.info, "attacks": [GSE_INFO, attack_info(FAKE)]}  # what the engine would list
    again = make_window(qtbot, recorder, tmp_path / "other.ini")
    assert again.files.open_session(path), again.messages
    a, b = again.state, s
    assert [k.name for k in a.runs] == ["baseline", "GSE 1"] and a.shown is a.runs[0]
    for mine, theirs in zip(a.runs, b.runs):
        assert mine.measured == theirs.measured and mine.description.attack.name == theirs.description.attack.name
        assert mine.description.settings == theirs.description.settings and len(mine.history) == len(theirs.history)
        np.testing.assert_array_equal(mine.history.result.x_adv, theirs.history.result.x_adv)
    assert cells(again) == cells(window)
    assert again.controls.attack().name == FAKE.name  # the shown run's attack and settings in the controls
    again.redraw_now()
    assert again.views.lambda_text.isVisible()
    again.run_list.select([a.runs[1].key])
    assert a.shown.description.params == b.runs[1].description.params


def test_a_session_keeps_the_comparison(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    window.compare_view.swap()  # B, "second", is now A
    path = tmp_path / "pair.gses"
    assert window.files.save_session(path), window.messages
    again = make_window(qtbot, RecordingEngine(), tmp_path / "other.ini")
    assert again.files.open_session(path), again.messages
    s = again.state
    assert [s.kept(key).name for key in s.compared] == ["second", "first"]
    assert again.central.currentWidget() is again.compare_view and "A: second" in again.compare_view.title.text()
    assert again.run_list.selected_keys() == list(s.compared)  # the list shows what is compared
    s.compare(None)
    assert again.files.save_session(path) and again.files.open_session(path) and s.compared is None
    assert again.central.currentWidget() is again.view_area and again.run_list.selected_keys() == [s.shown.key]
    for pair in ([0, 0], [0, 2], [0], "01"):  # not two different runs of the session
        damaged = tmp_path / "damaged.gses"
        with zipfile.ZipFile(path) as zf, zipfile.ZipFile(damaged, "w") as out:
            for member in zf.namelist():
                data = zf.read(member)
                if member == "session.json":
                    data = json.dumps({**json.loads(data), "compared": pair}).encode()
                out.writestr(member, data)
        with pytest.raises(SessionError, match="the runs compared"):
            load_session(damaged)


def test_a_long_name_leaves_the_parameters_their_room(qtbot, tmp_path):
    window = compared_window(qtbot, tmp_path, measured(True, 3, 0.3, 1.0, 10), measured(True, 2, 0.5, 2.0, 20))
    window.resize(1280, 720)
    window.docks.arrange()
    window.show()
    window.docks["runs"].raise_()
    qtbot.waitExposed(window)
    window.state.rename_run(window.state.runs[0].key, "a very long name " * 5)
    settle()
    table, header = window.run_list.table, window.run_list.table.horizontalHeader()
    name = window.state.runs[0].name  # 80 characters
    assert header.sectionSize(0) <= NAME_WIDTH and table.item(0, 0).toolTip().startswith(name)
    assert header.length() <= table.viewport().width()  # no horizontal scrolling
    for column in range(1, table.columnCount()):  # every other column and its title whole
        needed = max(table.sizeHintForColumn(column), header.sectionSizeHint(column))
        assert header.sectionSize(column) >= needed, table.horizontalHeaderItem(column).text()


def test_the_selection_follows_the_runs(qtbot, engine, tmp_path, image_file):
    window = fake_window(qtbot, engine, tmp_path, image_file)
    s, runs = window.state, window.run_list
    run_fake(qtbot, window)
    small_gse(window)
    run_to_end(qtbot, window)
    fake, gse = s.runs
    assert runs.selected_keys() == [gse.key]  # the run that just ended
    runs.select([fake.key, gse.key])
    assert window.central.currentWidget() is window.compare_view
    run_fake(qtbot, window)  # run while the comparison is shown: its views come, then it is selected alone
    third = s.runs[-1]
    assert runs.selected_keys() == [third.key] and s.shown is third and s.compared == (fake.key, gse.key)
    assert window.central.currentWidget() is window.view_area
    runs.select([fake.key, gse.key, third.key])
    assert "3 selected" in runs.note.text() and not runs.compare_button.isEnabled()
    s.rename_run(gse.key, "renamed")  # the same runs stay selected
    assert runs.selected_keys() == [fake.key, gse.key, third.key]
    runs.select([third.key])
    runs.remove_button.click()  # the one shown goes: the newest left is shown and selected
    assert s.shown is gse and runs.selected_keys() == [gse.key] and "2 runs" in runs.note.text()
    s.compare(None)
    window.show_comparison(True)  # key C with nothing compared says why nothing happens
    assert "select two runs" in window.message.text() and window.central.currentWidget() is window.view_area

"""The CAM comparison panel in the main window, on the tiny random-weight model (offscreen, no network)."""

import math
import threading
import time

import numpy as np
import pytest
import torch

import gse_desktop.jobs as jobs_module
from gse_algo.cam import compute_cam
from conftest import TIMEOUT, tiny_model, wait_idle



def run_and_wait_idle(qtbot, window):
    window.controls.run_button.click()
    wait_idle(qtbot, window)


def expected_overlap(delta, cam, q):
    """pixel share, l2 share by hand: the top ceil(q% of H*W) CAM pixels (ties by raster order) as the region."""
    k = math.ceil(q / 100 * cam.size)
    region = np.zeros(cam.size, bool)
    region[np.argsort(-cam.ravel(), kind="stable")[:k]] = True
    region = region.reshape(cam.shape)
    mask = np.abs(delta).sum(axis=0) > 0
    energy = (delta.astype(np.float64) ** 2).sum(axis=0)
    return (mask & region).sum() / mask.sum(), math.sqrt(energy[region].sum() / energy.sum())


def select(combo, data):
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)


def test_after_a_run_the_clean_gradcam_appears_with_is(qtbot, window):
    run_and_wait_idle(qtbot, window)
    panel, p, result = window.cam_panel, window.prepared, window.history.result
    shown = window.views.items["cam"].image
    assert shown.shape == (16, 16) and 0 <= shown.min() and shown.max() <= 1
    assert panel.base.image.shape == (16, 16, 3)
    assert panel.state()["method"] == "GradCAM" and panel.state()["layer"] == p.model.cam_layer == "0"
    x = torch.from_numpy(p.image.transpose(2, 0, 1).copy())
    np.testing.assert_allclose(panel.cam_array(), compute_cam(p.model.model, p.model.net, x, p.clean_class,
                                                              layer="0"), atol=1e-6)
    roles = [panel.class_combo.itemData(i) for i in range(panel.class_combo.count())]
    assert roles == [("clean", p.clean_class), ("after attack", int(result.adv_pred[0]))]
    scores = panel.state()["interpretability_score"]
    assert sorted(scores, key=int) == ["50", "60", "70", "80", "90"]
    assert all(0 <= v <= 1 for v in scores.values())
    assert list(scores.values()) == sorted(scores.values(), reverse=True)  # a larger percentile keeps fewer entries
    np.testing.assert_allclose(panel.final.adversarial, p.image + result.delta[0].numpy().transpose(1, 2, 0),
                               atol=1e-6)
    assert "IS of the result" in panel.numbers.text() and window.messages == []


def test_changing_method_class_and_image_recomputes(qtbot, window):
    run_and_wait_idle(qtbot, window)
    panel, model = window.cam_panel, window.prepared.model
    select(panel.method_combo, "GradCAM++")
    qtbot.waitUntil(lambda: panel.cam_key[2] == "GradCAM++", timeout=TIMEOUT)
    panel.class_combo.setCurrentIndex(1)  # the class after the attack
    qtbot.waitUntil(lambda: panel.cam_key[1] == panel.class_combo.itemData(1)[1], timeout=TIMEOUT)
    panel.image_combo.setCurrentIndex(1)  # the adversarial image
    qtbot.waitUntil(lambda: panel.cam_key[0] == "adversarial", timeout=TIMEOUT)
    assert not window.cam_jobs.busy
    x_adv = torch.from_numpy(panel.final.adversarial.transpose(2, 0, 1).copy())
    expected = compute_cam(model.model, model.net, x_adv, panel.cam_key[1], "GradCAM++", layer="0")
    np.testing.assert_allclose(panel.cam_array(), expected, atol=1e-6)
    np.testing.assert_array_equal(window.views.items["cam"].image, panel.cam_array())
    np.testing.assert_allclose(panel.base.image, np.clip(panel.final.adversarial, 0, 1))
    panel.image_combo.setCurrentIndex(0)
    panel.class_combo.setCurrentIndex(0)
    select(panel.method_combo, "GradCAM")
    assert panel.cam_key == ("clean", window.prepared.clean_class, "GradCAM", "0") and not window.cam_jobs.busy


def test_the_shown_iteration_drives_outline_overlap_clusters_and_curve(qtbot, window):
    window.controls.spins["sigma"].setValue(0.1)
    window.controls.spins["k_hat"].setValue(10)
    window.controls.spins["search_steps"].setValue(7)  # late steps have a large lambda: a sparse, growing support
    run_and_wait_idle(qtbot, window)
    panel, history = window.cam_panel, window.history
    step = max(history.steps, key=lambda s: (history.frame(s, 0).mask.sum() < 64, history.n_iterations(s)))
    last = history.n_iterations(step) - 1
    first_mask, last_mask = history.frame(step, 0).mask[0], history.frame(step, last).mask[0]
    assert 0 < first_mask.sum() < last_mask.sum() < 256  # a support that grows
    numbers = []
    for index, mask in ((0, first_mask), (last, last_mask)):
        window.timeline.go(step, index)
        frame = history.frame(step, index)
        np.testing.assert_array_equal(panel.outline.data[1:-1, 1:-1], mask)
        pixel, l2 = expected_overlap(frame.delta[0], panel.cam_array(), 20)
        assert panel.overlap_now["pixel_share"] == pytest.approx(pixel)
        assert panel.overlap_now["l2_share"] == pytest.approx(l2)
        sizes = [int(panel.cluster_view.item(r, 0).text()) for r in range(panel.cluster_view.rowCount())]
        assert sum(sizes) == mask.sum() and sizes == sorted(sizes, reverse=True)
        assert panel.curve_values["l2_share"][index] == pytest.approx(l2)
        assert panel.cursor.value() == index
        numbers.append(panel.numbers.text())
    assert numbers[0] != numbers[1] and len(panel.curve_values["l2_share"]) == last + 1
    panel.q_spin.setValue(100)  # the region is the whole image: everything perturbed lies in it
    assert panel.overlap_now["pixel_share"] == pytest.approx(1) and panel.overlap_now["l2_share"] == pytest.approx(1)
    assert panel.overlap_now["iou"] == pytest.approx(last_mask.sum() / 256)


@pytest.fixture
def slow_cams(monkeypatch):
    """ScoreCAM & co. one channel per batch and 0.1 s per forward pass, so that a cancel lands in the middle."""
    real = jobs_module.compute_cam

    def slow(*args, progress, **kwargs):
        kwargs["batch_size"] = 1
        return real(*args, progress=lambda f: (time.sleep(0.1), progress(f)), **kwargs)

    monkeypatch.setattr(jobs_module, "compute_cam", slow)


def test_cancelling_an_expensive_method_leaves_the_app_usable(qtbot, window, slow_cams):
    run_and_wait_idle(qtbot, window)
    panel = window.cam_panel
    select(panel.method_combo, "ScoreCAM")
    assert not window.cam_jobs.busy and "press Compute" in panel.message.text()  # not computed on its own
    assert panel.compute_button.isEnabled() and not panel.cancel_button.isEnabled()
    panel.compute_button.click()
    qtbot.waitUntil(lambda: 0 < panel.progress.value() < 100, timeout=TIMEOUT)
    panel.cancel_button.click()
    assert not window.cam_jobs.busy and not panel.cancel_button.isEnabled() and panel.compute_button.isEnabled()
    assert "cancelled" in panel.message.text()
    assert window.cam_jobs.wait(10)  # the job thread ends at its next batch
    assert all(key[2] != "ScoreCAM" for key in panel.cams) and panel.cam_key[2] == "GradCAM"
    select(panel.method_combo, "LayerCAM")
    qtbot.waitUntil(lambda: panel.cam_key[2] == "LayerCAM", timeout=TIMEOUT)
    run_and_wait_idle(qtbot, window)  # a new run gets its default CAM as before
    assert panel.cam_key == ("clean", window.prepared.clean_class, "GradCAM", "0") and window.messages == []


def test_no_cam_job_runs_while_an_attack_runs(qtbot, window, slow_cams):
    """Every forward pass of the model is watched: never two threads in it at once."""
    state = {"active": 0, "overlap": False, "job_passes": 0, "attack_passes": 0}
    guard = threading.Lock()

    def enter(module, inputs):
        with guard:
            state["active"] += 1
            state["overlap"] |= state["active"] > 1
            name = "job_passes" if threading.current_thread().name.startswith("model-job") else "attack_passes"
            state[name] += 1

    def leave(module, inputs, output):
        with guard:
            state["active"] -= 1

    def loader(spec, device):
        model = tiny_model()
        model.model.register_forward_pre_hook(enter)
        model.model.register_forward_hook(leave)
        return model

    window.controller.loader = loader
    run_and_wait_idle(qtbot, window)
    select(window.cam_panel.method_combo, "ScoreCAM")
    window.cam_panel.compute_button.click()
    qtbot.waitUntil(lambda: window.cam_panel.progress.value() > 0, timeout=TIMEOUT)
    attack_before = state["attack_passes"]
    window.controls.run_button.click()  # cancels the CAM job; the attack waits for the model
    assert window.controller.running and not window.cam_jobs.busy
    qtbot.waitUntil(lambda: len(window.history) > 0, timeout=TIMEOUT)
    window._cam_after_run()  # nothing is started while the attack runs
    window.cam_panel.request(force=True)
    assert not window.cam_jobs.busy and window.cam_panel.cam is None
    wait_idle(qtbot, window)
    assert state["attack_passes"] > attack_before and state["job_passes"] > 0
    assert not state["overlap"] and state["active"] == 0

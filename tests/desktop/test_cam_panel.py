"""The CAM comparison panel in the main window, on the tiny random-weight model (offscreen, no network).

The expected maps are computed here, in the test process, on the same tiny model the engine loads.
"""

import math

import numpy as np
import pytest
import torch

from conftest import SLOW, TIMEOUT, tiny_model, wait_idle
from gse_algo.cam import compute_cam
from gse_desktop.state import CamKey


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
    panel, run, result, cam = window.cam_panel, window.state.run, window.state.history.result, window.state.cam
    shown = window.views.items["cam"].image
    assert shown.shape == (16, 16) and 0 <= shown.min() and shown.max() <= 1
    assert panel.base.image.shape == (16, 16, 3)
    assert cam.shown == CamKey("clean", run.clean_class, "GradCAM", "0") and run.model.cam_layer == "0"
    model = tiny_model()
    x = torch.from_numpy(run.image.transpose(2, 0, 1).copy())
    np.testing.assert_allclose(cam.map, compute_cam(model.model, model.net, x, run.clean_class, layer="0"), atol=1e-6)
    roles = [panel.class_combo.itemData(i) for i in range(panel.class_combo.count())]
    assert roles == [("clean", run.clean_class), ("after attack", int(result.adv_pred[0]))]
    scores = window.files.info()["cam"]["interpretability_score"]
    assert sorted(scores, key=int) == ["50", "60", "70", "80", "90"]
    assert all(0 <= v <= 1 for v in scores.values())
    assert list(scores.values()) == sorted(scores.values(), reverse=True)  # a larger percentile keeps fewer entries
    np.testing.assert_allclose(cam.final.adversarial, run.image + result.delta[0].transpose(1, 2, 0), atol=1e-6)
    assert "IS of the result" in panel.numbers.text() and window.messages == []
    title = panel.views.plots["cam"].titleLabel.text  # the title names the map's own key
    assert title.startswith(f"GradCAM: {run.clean_class} ") and "(clean)" in title
    assert "layer 0" in panel.views.plots["cam"].toolTip()


def test_changing_method_class_and_image_recomputes(qtbot, window):
    run_and_wait_idle(qtbot, window)
    panel, cam = window.cam_panel, window.state.cam
    select(panel.method_combo, "GradCAM++")
    qtbot.waitUntil(lambda: cam.shown.method == "GradCAM++", timeout=TIMEOUT)
    panel.class_combo.setCurrentIndex(1)  # the class after the attack
    qtbot.waitUntil(lambda: cam.shown.class_index == panel.class_combo.itemData(1)[1], timeout=TIMEOUT)
    panel.image_combo.setCurrentIndex(1)  # the adversarial image
    qtbot.waitUntil(lambda: cam.shown.image == "adversarial", timeout=TIMEOUT)
    assert cam.job is None
    model = tiny_model()
    x_adv = torch.from_numpy(cam.final.adversarial.transpose(2, 0, 1).copy())
    expected = compute_cam(model.model, model.net, x_adv, cam.shown.class_index, "GradCAM++", layer="0")
    np.testing.assert_allclose(cam.map, expected, atol=1e-6)
    np.testing.assert_array_equal(window.views.items["cam"].image, cam.map)
    np.testing.assert_allclose(panel.base.image, np.clip(cam.final.adversarial, 0, 1))
    panel.image_combo.setCurrentIndex(0)
    panel.class_combo.setCurrentIndex(0)
    select(panel.method_combo, "GradCAM")  # from the cache: no job
    assert cam.shown == CamKey("clean", window.state.run.clean_class, "GradCAM", "0") and cam.job is None


def test_the_shown_iteration_drives_outline_overlap_clusters_and_curve(qtbot, window):
    window.controls.spins["sigma"].setValue(0.1)
    window.controls.spins["k_hat"].setValue(10)
    window.controls.spins["search_steps"].setValue(7)  # late steps have a large lambda: a sparse, growing support
    run_and_wait_idle(qtbot, window)
    panel, history = window.cam_panel, window.state.history
    step = max(history.steps, key=lambda s: (history.frame(s, 0).mask.sum() < 64, history.n_iterations(s)))
    last = history.n_iterations(step) - 1
    first_mask, last_mask = history.frame(step, 0).mask[0], history.frame(step, last).mask[0]
    assert 0 < first_mask.sum() < last_mask.sum() < 256  # a support that grows
    numbers = []
    for index, mask in ((0, first_mask), (last, last_mask)):
        window.timeline.go(step, index)
        window.redraw_now()
        frame = history.frame(step, index)
        np.testing.assert_array_equal(panel.outline.mask, mask)
        pixel, l2 = expected_overlap(frame.delta[0], window.state.cam.map, 20)
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


def test_cancelling_an_expensive_method_leaves_the_app_usable(qtbot, window):
    window.controls.model_combo.setCurrentText(SLOW)  # 0.3 s per forward pass: a cancel lands in the middle
    window.controls.spins["iters"].setValue(3)
    window.controls.spins["search_steps"].setValue(1)
    run_and_wait_idle(qtbot, window)
    panel, cam = window.cam_panel, window.state.cam
    select(panel.method_combo, "ScoreCAM")
    assert cam.job is None and "press Compute" in panel.message.text()  # not computed on its own
    assert panel.compute_button.isEnabled() and not panel.cancel_button.isEnabled()
    panel.compute_button.click()
    qtbot.waitUntil(lambda: 0 < panel.progress.value() < 100, timeout=TIMEOUT)
    panel.cancel_button.click()
    assert cam.job is None and not panel.cancel_button.isEnabled() and panel.compute_button.isEnabled()
    assert "cancelled" in panel.message.text()
    assert all(key.method != "ScoreCAM" for key in cam.cache) and cam.shown.method == "GradCAM"
    select(panel.method_combo, "LayerCAM")
    qtbot.waitUntil(lambda: cam.shown.method == "LayerCAM", timeout=TIMEOUT)
    assert window.messages == []


def test_run_cancels_a_cam_job_and_no_cam_is_asked_for_during_the_attack(qtbot, window):
    window.controls.model_combo.setCurrentText(SLOW)
    window.controls.spins["iters"].setValue(3)
    window.controls.spins["search_steps"].setValue(1)
    run_and_wait_idle(qtbot, window)
    select(window.cam_panel.method_combo, "ScoreCAM")
    window.cam_panel.compute_button.click()
    qtbot.waitUntil(lambda: window.cam_panel.progress.value() > 0, timeout=TIMEOUT)
    window.controls.run_button.click()  # the CAM job is cancelled; the engine runs the attack after it
    assert window.state.active and window.state.cam.job is None and window.state.cam.map is None
    window.state.select_cam(CamKey("clean", 0, "GradCAM", "0"))
    assert window.state.cam.job is None and "when a run has ended" in window.state.cam.message
    wait_idle(qtbot, window)  # the new run's default CAM comes after it
    assert window.state.cam.shown.method == "GradCAM" and window.messages == []

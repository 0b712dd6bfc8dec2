"""The run history without Qt: storage, decoding, sharing, memory budget."""

import sys

import numpy as np
import pytest

from gse_algo.snapshot import SparseDelta, Snapshot
from gse_desktop.history import RunHistory

H = W = 224


def snapshot(step, j, pixels, values, lam, frozen, success=False):
    one = np.ones(1)
    return Snapshot(step=step, iteration=j, phase=1 if frozen is None else 2,
                    delta=SparseDelta((1, 3, H, W), pixels, values), lambda_map=lam, frozen=frozen,
                    lambda_b=one * 0.5, sigma_b=one, margin=one * (-1.0 if success else 2.0), cw_loss=one, l2=one,
                    l2_term=one, pred=np.array([3]), top_classes=np.arange(5)[None], top_probs=np.full((1, 5), .2),
                    success=np.array([success]), active=np.array([not success]))


def test_history_does_not_import_qt():
    assert not any(name.startswith("PySide6") for name in sys.modules if name.startswith("gse_desktop.history"))
    import gse_desktop.history as h

    assert "PySide6" not in open(h.__file__).read()


def test_frame_decodes_delta_mask_lambda_and_frozen():
    history = RunHistory()
    pixels = np.array([0, W + 1, H * W - 1])  # (0,0), (1,1), (223,223)
    values = np.array([[0.1, 0, 0], [0, -0.2, 0], [0, 0, 0.3]], np.float32)
    lam = np.full((1, H, W), 2.0, np.float32)
    lam[0, 5, 5] = np.inf
    lam[0, 6, 6] = 1e30  # beyond float16's range
    history.add(snapshot(0, 0, pixels, values, lam, None))
    frozen = np.zeros((1, H, W), bool)
    frozen[0, 10:20, 10:20] = True
    history.add(snapshot(0, 1, pixels, values, lam, frozen, success=True))
    f = history.frame(0, 0)
    assert f.delta[0, 0, 0, 0] == pytest.approx(0.1) and f.delta[0, 1, 1, 1] == pytest.approx(-0.2)
    assert f.delta[0, 2, H - 1, W - 1] == pytest.approx(0.3)
    assert f.mask.sum() == 3 and f.mask[0, 1, 1] and not f.frozen.any()
    assert f.log10_lambda[0, 0, 0] == pytest.approx(np.log10(2.0), rel=1e-3)
    assert f.log10_lambda[0, 5, 5] == np.inf
    assert f.log10_lambda[0, 6, 6] == pytest.approx(30, rel=1e-3)
    assert f.acp[0] == 3 and f.anc[0] == 3  # three isolated pixels
    g = history.frame(0, 1)
    assert g.phase == 2 and g.frozen.sum() == 100 and g.frozen[0, 15, 15]
    assert history.series(0, "margin").tolist() == [2.0, -1.0]
    (summary,) = history.summaries()
    assert summary.success[0] and summary.stop_iteration[0] == 1
    # d2,0 of three far-apart pixels in the corners and (1,1): windows covering (0,0)/(1,1) = 4, (223,223) = 1
    assert summary.d20[0] == 4 + 1


def test_identical_arrays_are_stored_once():
    history = RunHistory()
    pixels = np.arange(100)
    lam = np.ones((1, H, W), np.float32)
    frozen = np.zeros((1, H, W), bool)
    history.add(snapshot(0, 0, pixels, np.ones((100, 3), np.float32), lam, None))
    one = history.nbytes()
    for j in range(1, 11):
        history.add(snapshot(0, j, pixels.copy(), np.ones((100, 3), np.float32), lam, frozen))
    # per phase-2 snapshot: only the values (100 x 3 float32) and a few scalars are new; bits stored once
    assert history.nbytes() - one < 10 * (1200 + 400) + H * W // 8 + 100


def test_worst_case_memory_within_budget():
    """224x224, 10 search steps x 200 iterations, k_hat = 50, a 5 % support in every snapshot: <= 256 MB."""
    rng = np.random.default_rng(0)
    history = RunHistory()
    for step in range(10):
        pixels = np.sort(rng.choice(H * W, 2500, replace=False))
        frozen = np.ones((1, H, W), bool)
        for j in range(200):
            if j < 50:  # phase 1: a new lambda map and a new support each iteration
                pixels = np.sort(rng.choice(H * W, 2500, replace=False))
                lam = rng.random((1, H, W), dtype=np.float32) * 1e3
            history.add(snapshot(step, j, pixels, rng.random((2500, 3), dtype=np.float32), lam,
                                 None if j < 50 else frozen))
    assert len(history) == 2000
    mb = history.nbytes() / 2**20
    print(f"worst case history: {mb:.1f} MB")
    assert mb <= 256


def test_the_arrays_keep_the_derived_metrics_and_older_arrays_without_them_still_load():
    history = RunHistory()
    pixels = np.array([0, 1, 5 * W + 5])  # a pair and a lone pixel: 3 pixels, 2 clusters
    values = np.full((3, 3), 0.1, np.float32)
    lam = np.ones((1, H, W), np.float32)
    history.add(snapshot(0, 0, pixels, values, lam, None, success=True))
    arrays = history.to_arrays()
    assert arrays["scalar_acp"].tolist() == [[3]] and arrays["scalar_anc"].tolist() == [[2]]
    fractions = []
    again = RunHistory.from_arrays(arrays, fractions.append)
    assert again.frame(0, 0).anc[0] == 2 and again.frame(0, 0).d20[0] == arrays["scalar_d20"][0, 0] and fractions
    older = {k: v for k, v in arrays.items() if k not in ("scalar_acp", "scalar_anc", "scalar_d20")}
    recomputed = RunHistory.from_arrays(older).frame(0, 0)
    assert (recomputed.acp[0], recomputed.anc[0], recomputed.d20[0]) == (3, 2, arrays["scalar_d20"][0, 0])

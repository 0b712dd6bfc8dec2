"""The typed metrics record: hand-made perturbations, the JSON layout, the place for an 8-bit sub-record."""

import numpy as np
import pytest

from gse_algo.params import GSEParams
from gse_algo.record import ClassInfo, RunRecord, result_metrics
from gse_algo.runtime import Runtime


def two_clusters() -> np.ndarray:
    """[1,3,32,32]: pixel (10,10) in one channel and a 2x2 block at rows/cols 20-21 in all channels."""
    delta = np.zeros((1, 3, 32, 32), dtype=np.float32)
    delta[0, 1, 10, 10] = 0.3
    delta[0, :, 20:22, 20:22] = -0.1
    return delta


def test_result_metrics_of_a_hand_made_perturbation():
    m = result_metrics(two_clusters(), ClassInfo(3, "cat", 0.75), True)
    # ACP 1 + 4 pixels; ANC 2 (4-connected); l2 = sqrt(0.3^2 + 12 * 0.1^2); d2,0: 64 windows hold (10,10),
    # 81 hold some pixel of the 2x2 block (9 x 9 window positions), and none holds both
    assert (m.acp, m.anc, m.d20) == (5, 2, 64 + 81)
    assert m.l2 == pytest.approx(np.sqrt(0.09 + 12 * 0.01), rel=1e-6)
    assert m.success and m.adversarial == ClassInfo(3, "cat", 0.75)


def record(**changes) -> RunRecord:
    fields = dict(image="a.png", model="tiny", preset="cifar10", clean=ClassInfo(1, "dog", 0.9),
                  target=ClassInfo(3, "cat"), result=result_metrics(two_clusters(), ClassInfo(3, "cat", 0.6), True),
                  fools_at_8bit=False, fools_at_16bit=True, interpretability_score={"70": 0.5}, chosen_step=2,
                  figure_iterate={"step": 2, "iteration": 7}, lambda0=1e-3, time_s=1.5, n_forward_backward=10,
                  n_forward=3, params=GSEParams(reg="l2/3"), runtime=Runtime(threads=2, seed=4), versions={"x": "1"})
    return RunRecord(**{**fields, **changes})


def test_json_layout_is_flat_for_the_float_result_and_records_the_runtime():
    j = record().to_json()
    assert j["targeted"] and j["target"] == {"index": 3, "name": "cat"}
    assert j["clean"] == {"index": 1, "name": "dog", "probability": 0.9}
    assert (j["success"], j["acp"], j["anc"], j["d20"]) == (True, 5, 2, 145)
    assert j["adversarial"] == {"index": 3, "name": "cat", "probability": 0.6}
    assert (j["threads"], j["seed"], j["device"], j["dtype"]) == (2, 4, "cpu", "float32")
    assert j["params"]["units_0_1"]["reg"] == "l2/3"
    assert j["params"]["official_units_-1_1"]["sigma"] == pytest.approx(4 * GSEParams().sigma)
    assert j["fools_at_8bit"] is False and "[0,1]" in j["units"] and "eight_bit" not in j
    untargeted = record(target=None).to_json()
    assert not untargeted["targeted"] and untargeted["target"] is None


def test_the_files_own_numbers_nest_beside_the_float_result():
    eight = {"bits": 8, "success": True, "plain_rounding_fools": False, "scale": 1.0125, "acp": 5, "anc": 2,
             "d20": 145, "l2": 0.35, "n_extra_passes": 4}
    j = record(on_grids={"eight_bit": eight, "sixteen_bit": {**eight, "bits": 16}}).to_json()
    assert j["eight_bit"] == eight and j["sixteen_bit"]["bits"] == 16
    assert j["success"] is True  # the float result stays at the top

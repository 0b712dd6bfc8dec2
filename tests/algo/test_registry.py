"""The attack registry's core: parameters, the forward/backward counter, the library driver, measured metrics."""

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from gse_algo.attack import gse_attack
from gse_algo.attacks import attack_names, get_attack, iterate_attack, run_attack
from gse_algo.attacks.base import AttackSpec, Param
from gse_algo.attacks.counting import CountedModel
from gse_algo.attacks.library import ModelCall, drive
from gse_algo.attacks.measure import measure
from gse_algo.params import GSEParams

from test_attack import FAST, Linear, SmoothNet, clean_labels, images


def test_gse_is_the_first_attack_and_names_are_forgiving():
    assert attack_names()[0] == "gse"
    assert get_attack("GSE") is get_attack("gse")
    with pytest.raises(ValueError, match="unknown attack 'nope'; choose one of gse"):
        get_attack("nope")


def test_settings_parse_strings_check_ranges_and_report_every_problem():
    spec = get_attack("gse")
    values = spec.settings({"iters": "50", "q": "0.5", "reg": "l0"})
    assert values["iters"] == 50 and values["q"] == 0.5 and values["reg"] == "l0"
    assert values["mu"] is None and values["preset"] == "auto"  # from the preset
    assert spec.settings({"reg": "L1_2"})["reg"] == "l1/2"  # gse-attack's spellings of a regulariser, here too
    with pytest.raises(ValueError) as error:
        spec.settings({"iters": "1.5", "q": 0.0, "reg": "l9", "colour": 1})
    text = str(error.value)
    for part in ("no parameter colour", "iters must be an integer", "q must be in (0, 1]", "reg must be one of"):
        assert part in text


def test_param_check_rejects_non_finite_and_bools_as_numbers():
    p = Param("x", float, 1.0, "tip", 0.0, 2.0)
    for bad in (float("nan"), "inf", True, "abc"):
        with pytest.raises(ValueError, match="x must be a finite number"):
            p.check(bad)
    assert Param("b", bool, False, "tip").check("yes") is True


@pytest.mark.parametrize("param, value, words", [
    (Param("steps", int, 10, "tip", 1, 100), None, "steps must be given"),  # only an 'auto' parameter may be empty
    (Param("steps", int, 10, "tip", 1, 100), 10**400, "steps must be in [1, 100]"),  # beyond any float
    (Param("eta", float, 1.0, "tip", 0.0, 2.0), 10**400, "eta must be a finite number"),
    (Param("eta", float, 1.0, "tip", 0.0, 2.0), "9" * 5000, "eta must be a finite number"),  # float("99...9") is inf
    (Param("norm", str, "inf", "tip", choices=("inf", "2")), 2, "norm must be one of inf, 2 (got 2)"),
    (Param("name", str, "a", "tip"), 3.5, "name must be text (got 3.5)"),
])
def test_param_check_refuses_empty_values_wrong_kinds_and_huge_numbers(param, value, words):
    with pytest.raises(ValueError) as error:
        param.check(value)
    assert words in str(error.value) and len(str(error.value)) < 120  # the value is shown shortened
    assert Param("cap", int, None, "tip", 1, 100).check(None) is None


@pytest.mark.parametrize("name, values, words", [
    ("gse", {"blur_size": 4}, "blur_size must be odd (got 4)"),  # in its range, refused by GSEParams
    ("pixle", {"patch_min": 5, "patch_max": 3}, "patch_min (5) must not exceed patch_max (3)"),
])
def test_settings_refuse_values_the_attack_refuses_together(name, values, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        get_attack(name).settings(values)


def test_counter_counts_a_known_number_of_passes():
    model = CountedModel(Linear(12).eval())
    x = torch.rand(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    for _ in range(3):
        model(x)  # forward only: 3
    for _ in range(2):
        model(x).sum().backward()  # forward + backward: 2 each
    with torch.no_grad():
        model(x)
    assert (model.n_forward, model.n_backward) == (6, 2)


def test_registry_gse_is_the_engine_and_both_counters_agree():
    model, x = SmoothNet().eval(), images()
    y = clean_labels(model, x)
    params = FAST.replace(blur_size=3)
    settings = {name: getattr(params, name) for name in ("mu", "sigma", "k_hat", "q", "iters", "search_steps",
                                                         "blur_size")}
    result = run_attack("gse", model, x, y, settings=settings)
    direct = gse_attack(model, x, y, params=GSEParams.preset("cifar10").replace(**settings))
    assert torch.equal(result.x_adv, direct.x_adv)
    gse = result.native
    assert result.n_backward == gse.n_forward_backward
    assert result.n_forward == gse.n_forward_backward + gse.n_forward
    assert result.success == [bool(s) for s in direct.success]


def _library_call(n_calls, n_backward, log):
    """A stand-in library attack: n_calls forward calls, the first n_backward with a backward pass."""
    def call(model):
        x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
        try:
            for i in range(n_calls):
                leaf = x.clone().requires_grad_(i < n_backward)
                out = model(leaf)
                if i < n_backward:
                    out.sum().backward()
            return x + 0.5
        finally:
            log.append("left")
    return call


def test_driver_yields_once_per_forward_call_and_returns_the_result():
    log, counted = [], CountedModel(Linear(12).eval())
    items = []
    gen = drive(_library_call(5, 2, log), counted)
    with pytest.raises(StopIteration) as stop:
        while True:
            items.append(next(gen))
    assert all(isinstance(i, ModelCall) for i in items) and len(items) == 5
    assert [(i.n_forward, i.n_backward) for i in items] == [(0, 0), (1, 1), (2, 2), (3, 2), (4, 2)]
    assert float(stop.value.value.mean()) == 0.5 and log == ["left"]
    assert (counted.n_forward, counted.n_backward) == (5, 2)


def test_closing_the_driver_stops_the_library_call_at_its_next_forward():
    log, counted = [], CountedModel(Linear(12).eval())
    gen = drive(_library_call(1000, 0, log), counted)
    next(gen), next(gen)
    gen.close()
    assert log == ["left"] and counted.n_forward == 1 and counted.before_forward is None


def test_a_library_error_reaches_the_caller():
    def broken(model):
        model(torch.zeros(1, 12, dtype=torch.float64))
        raise RuntimeError("library bug")
    gen = drive(broken, CountedModel(Linear(12).eval()))
    next(gen)
    with pytest.raises(RuntimeError, match="library bug"):
        next(gen)


def test_measure_matches_hand_counted_values():
    model = Linear(3 * 4 * 4, n_classes=3).eval()
    x = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    delta = torch.zeros_like(x)
    delta[0, :, 0, 0] = 0.1  # one pixel, three channels
    delta[0, 1, 3, 3] = -0.2  # a second cluster, one channel
    (m,) = measure(model, x, clean_labels(model, x), False, x + delta)
    assert (m.acp, m.channel_l0, m.anc) == (2, 4, 2)
    assert m.l2 == pytest.approx(np.sqrt(3 * 0.01 + 0.04)) and m.linf == pytest.approx(0.2)
    assert m.d20 == 1  # 4x4 image: one window as large as the image


class FirstValue(torch.nn.Module):
    """Two classes: class 1 wins exactly when the first value of the image exceeds 0.503 (off the 8-bit grid)."""

    def forward(self, x):
        score = x[:, 0, 0, 0] - 0.503
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.mark.parametrize("targeted, labels", [(False, [0, 0]), (True, [1, 1])])
def test_measure_reads_each_images_success_from_the_model(targeted, labels):
    x = torch.full((2, 3, 12, 12), 0.25, dtype=torch.float64)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.505  # fools; on the 8-bit grid 129/255 = 0.50588 still does
    x_adv[1, 0, 0, 0] = 0.5035  # fools; on the 8-bit grid 128/255 = 0.50196 no longer does
    x_adv[1, 2, 11, 11] = 0.0  # a second cluster, in the one 8x8 window of the last corner
    x_adv[1, 1, 6, 6] = 0.3  # a third, in all 5 x 5 windows of a 12 x 12 image
    got = measure(FirstValue(), x, torch.tensor(labels), targeted, x_adv)
    assert [(m.success, m.adv_class, m.fools_at_8bit) for m in got] == [(True, 1, True), (True, 1, False)]
    assert [(m.acp, m.channel_l0, m.anc, m.d20) for m in got] == [(1, 1, 1, 1), (3, 3, 3, 25)]
    assert got[1].linf == pytest.approx(0.2535) and got[1].l2 == pytest.approx(np.sqrt(0.2535**2 + 0.25**2 + 0.05**2))
    x_adv[1, 0, 0, 0] = 0.5  # below the threshold: the second image no longer fools, the first still does
    got = measure(FirstValue(), x, torch.tensor(labels), targeted, x_adv)
    assert [(m.success, m.adv_class) for m in got] == [(True, 1), (False, 0)]


def test_checks_come_before_any_work():
    model, x = SmoothNet().eval(), images()
    y = clean_labels(model, x)
    with pytest.raises(ValueError, match="iters must be in"):
        iterate_attack("gse", model, x, y, settings={"iters": 0})
    with pytest.raises(ValueError, match="images must lie in"):
        iterate_attack("gse", model, x * 3, y)
    spec = AttackSpec("u", "U", "test", "l0", (), run=None, targeted=False)
    with pytest.raises(ValueError, match="supports untargeted runs only"):
        spec.check_goal(True)
    missing = AttackSpec("m", "M", "test", "l0", (), run=None, requires=("no_such_module_xyz",), extra="baselines")
    assert "pip install 'gse-desktop[baselines]'" in missing.missing()


def test_the_registry_lists_every_attack_without_importing_a_library():
    code = ("import sys, gse_algo.attacks as a; print(','.join(a.attack_names())); "
            "print(sorted(m for m in ('adv_lib', 'torchattacks', 'visdom') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "gse,sigma_zero,fmn,str_attack,vfga,pdpgd,sparsefool,pixle" and out[1] == "[]"


def test_an_attack_whose_library_is_missing_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchattacks" else real(name, *a))
    model, x = Linear(3 * 8 * 8).eval(), images()
    with pytest.raises(ValueError, match=r"the Pixle attack needs torchattacks: pip install 'gse-desktop\[baselines\]'"):
        iterate_attack("pixle", model, x, clean_labels(model, x))

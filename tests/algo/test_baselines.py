"""The library baselines in the registry (adv_lib 0.2.8, torchattacks 3.5.1): defaults, success, box, counts, stop.

Needs the `baselines` extra (the Makefile installs it, so CI runs these); without it the module is skipped.
"""

from __future__ import annotations

import inspect
import math
import threading

import numpy as np
import pytest
import torch
from scipy import ndimage

pytest.importorskip("adv_lib", reason="the baselines extra is not installed: pip install 'gse-desktop[baselines]'")
pytest.importorskip("torchattacks", reason="the baselines extra is not installed: pip install 'gse-desktop[baselines]'")

import adv_lib.attacks  # noqa: E402
import torchattacks  # noqa: E402
from adv_lib.distances.lp_norms import l0_distances  # noqa: E402

from gse_algo.attacks import AttackRun, attack_names, get_attack, iterate_attack, run_attack  # noqa: E402
from gse_algo.attacks.base import AttackSpec  # noqa: E402
from gse_algo.attacks.library import LibraryError, ModelCall  # noqa: E402

from test_attack import FAST as GSE_FAST, Linear, clean_labels, images  # noqa: E402
from test_cli import tiny_model  # noqa: E402

BASELINES = [name for name in attack_names() if name != "gse"]
FAST = {"gse": {"mu": GSE_FAST.mu, "sigma": GSE_FAST.sigma, "k_hat": GSE_FAST.k_hat, "q": GSE_FAST.q,
                "iters": GSE_FAST.iters, "search_steps": GSE_FAST.search_steps, "blur_size": 3},
        "sigma_zero": {"num_steps": 100}, "fmn": {"steps": 100},
        "str_attack": {"binary_search_steps": 2, "max_iterations": 50, "retrain": False},
        "vfga": {}, "pdpgd": {"num_steps": 100}, "sparsefool": {}, "pixle": {"max_iterations": 50}}

# our parameter -> the library's keyword, where the names differ (the library spells Greek letters)
LIBRARY_NAMES = {"eta_0": "η_0", "sigma": "σ", "tau_0": "τ_0", "tau_factor": "τ_factor", "alpha_init": "α_init",
                 "alpha_final": "α_final", "gamma_init": "γ_init", "gamma_final": "γ_final", "rho": "ρ",
                 "alpha": "α", "tau": "τ", "gamma": "γ", "eps_threshold": "ε_threshold"}
LIBRARY_FUNCTIONS = {"sigma_zero": adv_lib.attacks.sigma_zero, "fmn": adv_lib.attacks.fmn,
                     "str_attack": adv_lib.attacks.str_attack, "vfga": adv_lib.attacks.vfga,
                     "pdpgd": adv_lib.attacks.pdpgd, "sparsefool": torchattacks.SparseFool.__init__,
                     "pixle": torchattacks.Pixle.__init__}


class Margin(torch.nn.Module):
    """A linear model whose class 0 wins by 1000 for every image in [0,1]: no attack can fool it."""

    def __init__(self, n_in: int, n_classes: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.randn(n_classes, n_in, generator=g)
        self.bias = torch.zeros(n_classes)
        self.bias[0] = 1000.0

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def linear_case():
    return Linear(3 * 8 * 8, seed=3, dtype=torch.float32).eval(), images(4, dtype=torch.float32), 4


def tiny_case():
    return tiny_model().model, images(3, size=16, dtype=torch.float32), 3


def goals(name):
    spec = get_attack(name)
    return [t for t, ok in ((False, spec.untargeted), (True, spec.targeted)) if ok]


def test_every_baseline_is_registered_with_the_library_defaults():
    assert set(BASELINES) == {"sigma_zero", "fmn", "str_attack", "vfga", "pdpgd", "sparsefool", "pixle"}
    for name in BASELINES:
        spec = get_attack(name)
        assert spec.source in ("adv_lib 0.2.8", "torchattacks 3.5.1") and spec.extra == "baselines"
        assert spec.requires and spec.missing() is None and spec.notes and spec.title
        library = inspect.signature(LIBRARY_FUNCTIONS[name]).parameters
        for param in spec.params:
            assert param.tip and param.check(param.default) == param.default
            key = LIBRARY_NAMES.get(param.name, param.name)
            if key in library and param.name not in ("grad_norm", "proximal_operator"):
                assert param.default == library[key].default, (name, param.name)
    # the three whose values are spelled differently here (grad_norm, proximal_operator, the patch sides)
    assert inspect.signature(adv_lib.attacks.sigma_zero).parameters["grad_norm"].default == math.inf
    assert get_attack("sigma_zero").settings()["grad_norm"] == "inf"
    assert inspect.signature(adv_lib.attacks.pdpgd).parameters["proximal_operator"].default is None  # = the l0 one
    assert get_attack("pdpgd").settings()["proximal_operator"] == "l0"
    assert inspect.signature(torchattacks.Pixle.__init__).parameters["x_dimensions"].default == (2, 10)
    assert (get_attack("pixle").settings()["patch_min"], get_attack("pixle").settings()["patch_max"]) == (2, 10)


def test_untargeted_only_attacks_refuse_a_targeted_run_before_any_work():
    model, x, _ = linear_case()
    y = clean_labels(model, x)
    for name, title in (("sigma_zero", "sigma-zero"), ("sparsefool", "SparseFool")):
        with pytest.raises(ValueError, match=f"{title} supports untargeted runs only"):
            iterate_attack(name, model, x, (y + 2) % 4, targeted=True)


def expected_metrics(model, x, x_adv, labels, targeted):
    """The metrics of one image from their definitions, with NumPy/SciPy (not gse_algo.metrics)."""
    delta = (x_adv - x).double().numpy()
    changed = (delta != 0).any(axis=0)
    h, w = changed.shape
    kh, kw = min(8, h), min(8, w)
    windows = np.lib.stride_tricks.sliding_window_view(changed, (kh, kw)).any(axis=(2, 3))
    with torch.no_grad():
        pred = int(model(x_adv[None]).argmax())
        pred8 = int(model(torch.round(x_adv[None] * 255) / 255).argmax())
    fooled = (lambda p: p == labels) if targeted else (lambda p: p != labels)
    return {"success": fooled(pred), "adv_class": pred, "acp": int(changed.sum()),
            "channel_l0": int((delta != 0).sum()), "anc": int(ndimage.label(changed)[1]), "d20": int(windows.sum()),
            "l2": float(np.sqrt((delta ** 2).sum())), "linf": float(np.abs(delta).max(initial=0.0)),
            "fools_at_8bit": fooled(pred8)}


@pytest.mark.parametrize("case", [linear_case, tiny_case], ids=["linear", "tiny_net"])
@pytest.mark.parametrize("name", attack_names())
def test_every_attack_succeeds_stays_in_the_box_and_is_measured_by_the_formulas(case, name):
    model, x, n_classes = case()
    y = clean_labels(model, x)
    for targeted in goals(name):
        torch.manual_seed(0)
        labels = (y + 2) % n_classes if targeted else y  # (y + 1) is the runner-up everywhere on the linear model
        result = run_attack(name, model, x, labels, targeted, FAST[name])
        assert result.x_adv.dtype == x.dtype and result.x_adv.shape == x.shape
        assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0, (name, targeted)
        assert result.success == [True] * len(x), (name, targeted)
        assert result.n_forward > 0 and result.time_s > 0
        for b, m in enumerate(result.metrics):
            expected = expected_metrics(model, x[b], result.x_adv[b], int(labels[b]), targeted)
            got = m.as_dict()
            assert {k: got[k] for k in ("success", "adv_class", "acp", "channel_l0", "anc", "d20", "fools_at_8bit")} \
                == {k: expected[k] for k in ("success", "adv_class", "acp", "channel_l0", "anc", "d20",
                                             "fools_at_8bit")}
            assert got["l2"] == pytest.approx(expected["l2"], rel=1e-6)
            assert got["linf"] == pytest.approx(expected["linf"], rel=1e-6)
        if isinstance(model, Linear):  # the analytic model: the decision is W x + b
            logits = result.x_adv.double().flatten(1) @ model.weight.double().T + model.bias.double()
            pred = logits.argmax(1)
            assert bool((pred == labels).all() if targeted else (pred != labels).all())


def replay(x_adv: torch.Tensor) -> AttackSpec:
    """A stand-in attack that returns the given images."""
    def run(model, images, labels, targeted, settings, trace=False):
        yield ModelCall(0, 0, images)
        return x_adv
    return AttackSpec("replay", "Replay", "test", "-", (), run=run)


def test_the_same_delta_gets_the_same_metrics_whichever_attack_made_it():
    model, x, _ = linear_case()
    y = clean_labels(model, x)
    for name in ("sigma_zero", "vfga", "sparsefool"):
        torch.manual_seed(0)
        result = run_attack(name, model, x, y, False, FAST[name])
        again = AttackRun(replay(result.x_adv.clone()), model, x, y, False, {}, False)
        for _ in again:
            pass
        assert again.result.metrics == result.metrics
    # the L0 adv_lib reports (C x H x W values) is our channel-L0
    result = run_attack("fmn", model, x, y, False, FAST["fmn"])
    assert [m.channel_l0 for m in result.metrics] == l0_distances(result.x_adv, x).long().tolist()


def test_pass_counts_follow_each_librarys_loop():
    """On a model no attack can fool, every loop runs to its end (the counts from each library's code)."""
    model, x = Margin(3 * 8 * 8).eval(), images(2, dtype=torch.float32)
    y = torch.zeros(2, dtype=torch.long)

    def counts(name, settings, targeted=False, labels=y):
        r = run_attack(name, model, x, labels, targeted, settings)
        assert r.success == [False, False]
        return r.n_forward, r.n_backward

    assert counts("sigma_zero", {"num_steps": 7}) == (7, 7)  # "Corresponds to the number of forward and backward"
    assert counts("fmn", {"steps": 9}) == (9, 9)
    assert counts("pdpgd", {"num_steps": 6}) == (6, 6)
    # ADMM: a forward + backward for the gradient, then a forward at the new point, per iteration and search step
    assert counts("str_attack", {"binary_search_steps": 3, "max_iterations": 4, "retrain": False}) == (24, 12)
    # per iteration one forward + backward on the batch, then n_samples forward calls (2 n_samples candidates)
    assert counts("vfga", {"max_iter": 5, "n_samples": 3}) == (5 * (1 + 3), 5)
    # per image: the clean loss, then per restart and patch a loss and a success check (forward only)
    assert counts("pixle", {"restarts": 3, "max_iterations": 4}) == (2 * (1 + 2 * 3 * 4), 0)
    # per image and step: a check, DeepFool's 50 iterations (a forward and one backward per class), the gradient
    assert counts("sparsefool", {"steps": 2}) == (2 * 2 * (1 + 50 + 1), 2 * 2 * (50 * 4 + 1))
    # targeted too: the same loops
    assert counts("fmn", {"steps": 4}, True, torch.ones(2, dtype=torch.long)) == (4, 4)


def test_str_attack_retrain_adds_its_fixed_passes_once_an_image_is_fooled():
    model, x, _ = linear_case()
    y = clean_labels(model, x)
    r = run_attack("str_attack", model, x, y, False, {"binary_search_steps": 1, "max_iterations": 20})
    assert any(r.success)
    assert (r.n_forward, r.n_backward) == (2 * 20 + 8 * 400, 20 + 8 * 400)


def test_what_each_library_returns_when_it_fails():
    """adv_lib returns the clean input for an image it does not fool; torchattacks returns its last point."""
    model, x = Margin(3 * 8 * 8).eval(), images(2, dtype=torch.float32)
    y = torch.zeros(2, dtype=torch.long)
    budgets = {"sigma_zero": {"num_steps": 5}, "fmn": {"steps": 5}, "pdpgd": {"num_steps": 5}, "vfga": {"max_iter": 5},
               "str_attack": {"binary_search_steps": 1, "max_iterations": 5}, "sparsefool": {"steps": 1},
               "pixle": {"restarts": 1, "max_iterations": 3}}
    for name, settings in budgets.items():
        r = run_attack(name, model, x, y, False, settings)
        assert r.success == [False, False]
        assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
        if name in ("sparsefool", "pixle"):
            assert all(m.channel_l0 > 0 for m in r.metrics), name  # a perturbed image that does not fool
        else:
            assert torch.equal(r.x_adv, x), name
    # StrAttack's retrain step itself fails then (a percentile of no values); the registry returns the input
    with pytest.raises(IndexError):
        adv_lib.attacks.str_attack(model, x, y, binary_search_steps=1, max_iterations=5)


class OneValue(torch.nn.Module):
    """Two classes: class 1 wins once the first value of the image exceeds 0.5; the images start at 0 there."""

    def forward(self, x):
        score = 10 * x[:, 0, 0, 0] - 5
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_fmn_fooled_by_one_value_returns_the_librarys_answer():
    """adv_lib's FMN fails (torch.topk of 0 values) once every image is fooled by one value; the registry returns
    the point the library had found: only the first value changed."""
    x = images(2, dtype=torch.float32)
    x[:, 0, 0, 0] = 0.0
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(RuntimeError):
        adv_lib.attacks.fmn(OneValue(), x, y, norm=0, steps=10)
    result = run_attack("fmn", OneValue().eval(), x, y, False, {"steps": 10})
    assert result.success == [True, True] and [m.channel_l0 for m in result.metrics] == [1, 1]
    changed = (result.x_adv != x).nonzero().tolist()
    assert changed == [[0, 0, 0, 0], [1, 0, 0, 0]] and bool((result.x_adv[:, 0, 0, 0] > 0.5).all())


def test_a_permuted_input_gives_the_same_result():
    """adv_lib's L0 projection zeroes values through a flattened view: a non-contiguous input must be copied."""
    model, x, _ = linear_case()
    y = clean_labels(model, x)
    permuted = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not permuted.is_contiguous() and torch.equal(permuted, x)
    a = run_attack("fmn", model, x, y, False, {"steps": 30})
    b = run_attack("fmn", model, permuted, y, False, {"steps": 30})
    assert torch.equal(a.x_adv, b.x_adv) and max(m.channel_l0 for m in a.metrics) < 20


def test_closing_a_run_stops_the_library_call():
    model, x, _ = linear_case()
    y = clean_labels(model, x)
    run = iterate_attack("sigma_zero", model, x, y, settings={"num_steps": 100_000})
    calls = [next(run) for _ in range(3)]
    assert [(c.n_forward, c.n_backward) for c in calls] == [(0, 0), (1, 1), (2, 2)]
    assert torch.equal(calls[0].x, x)  # the first forward call evaluates the clean images
    run.close()
    assert run.result is None
    assert not [t for t in threading.enumerate() if t.name == "library-attack"]


def test_random_attacks_repeat_with_torchs_seed():
    model, x, _ = tiny_case()
    y = clean_labels(model, x)
    for name in ("vfga", "pixle"):
        runs = []
        for _ in range(2):
            torch.manual_seed(3)
            runs.append(run_attack(name, model, x, y, False, FAST[name]).x_adv)
        assert torch.equal(*runs), name


def test_inputs_a_library_cannot_take_are_refused_before_any_work():
    model, x, _ = linear_case()
    y = clean_labels(model, x)
    with pytest.raises(ValueError, match="VFGA .* float32 images only, got float64"):
        iterate_attack("vfga", Linear(3 * 8 * 8, seed=3).eval(), x.double(), y)
    with pytest.raises(ValueError, match="patch_min .* must not exceed patch_max"):
        iterate_attack("pixle", model, x, y, settings={"patch_min": 5, "patch_max": 3})
    wide = torch.rand(1, 3, 8, 10)
    with pytest.raises(ValueError, match="Pixle .* needs square images, got 8 x 10"):
        iterate_attack("pixle", Linear(3 * 8 * 10).eval(), wide.double(), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"group_size \(9\) must not exceed the image side \(8\)"):
        iterate_attack("str_attack", model, x, y, settings={"group_size": 9})


def test_a_library_error_is_reported_with_the_attacks_name():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(LibraryError, match="sigma-zero failed inside its library: RuntimeError: boom"):
        run_attack("sigma_zero", Broken().eval(), torch.rand(1, 3, 4, 4), torch.tensor([0]))

"""The phase-1 regularisers l0, l1, l1/2, l2/3: brute force, thresholds, lambda_0 by bisection, end-to-end runs.

Convention (spec 1.3): prox(v, lam) = argmin_u (u - v)^2 + lam * pen(u), pen(u) = [u != 0], |u|, |u|^(1/2), |u|^(2/3).
"""

import math

import numpy as np
import pytest
import torch

from gse_algo import metrics
from gse_algo.attack import gse_attack, iterate_gse
from gse_algo.params import GSEParams
from gse_algo.prox import REGULARISERS, lambda_zero, prox_half, regulariser, regulariser_name

PENALTY = {  # written out here, independently of gse_algo.prox
    "l0": lambda u: (u != 0).astype(float),
    "l1": np.abs,
    "l1/2": lambda u: np.sqrt(np.abs(u)),
    "l2/3": lambda u: np.abs(u) ** (2 / 3),
}
EXPONENT = {"l0": 0.0, "l1": 1.0, "l1/2": 0.5, "l2/3": 2 / 3}
# tau(lam) from the literature: sqrt(lam); lam/2; (54^(1/3)/4) lam^(2/3) (Xu 2012, spec 1.3);
# (2/3)(3 lam^3)^(1/4) (Cao, Sun, Xu 2013)
THRESHOLD = {"l0": math.sqrt, "l1": lambda lam: lam / 2, "l1/2": lambda lam: 54 ** (1 / 3) / 4 * lam ** (2 / 3),
             "l2/3": lambda lam: 2 / 3 * (3 * lam ** 3) ** 0.25}
# |u| / tau just above the threshold: hard keeps v, soft starts at 0, 1/2 jumps to 2/3 tau, 2/3 to tau/2
JUMP = {"l0": 1.0, "l1": 0.0, "l1/2": 2 / 3, "l2/3": 0.5}
REGS = sorted(REGULARISERS)


def prox(name, v, lam):
    t = torch.as_tensor(np.atleast_1d(v), dtype=torch.float64)
    return regulariser(name).prox(t, torch.tensor(lam, dtype=torch.float64)).numpy()


def objective(name, u, v, lam):
    return (u - v) ** 2 + lam * PENALTY[name](u)


@pytest.mark.parametrize("name", REGS)
def test_prox_is_the_global_minimiser_by_brute_force(name):
    grid = np.append(np.linspace(-3, 3, 600001), 0.0)  # an exact 0 (the l0 penalty is 0 only there)
    vs = np.linspace(-2.5, 2.5, 41)
    for lam in (0.05, 0.4, 1.3):
        u = prox(name, vs, lam)
        for v, u_v in zip(vs, u):
            values = objective(name, grid, v, lam)
            best = grid[np.argmin(values)]
            # the closed form is never worse than the grid, and sits at the grid's minimiser unless two tie
            assert objective(name, u_v, v, lam) <= values.min() + 1e-12
            assert abs(u_v - best) < 2e-5 or math.isclose(objective(name, u_v, v, lam), values.min(), abs_tol=1e-9)


@pytest.mark.parametrize("name", REGS)
def test_threshold_zero_region_and_jump(name):
    reg = regulariser(name)
    for lam in (0.01, 0.3, 2.0):
        tau = float(reg.threshold(torch.tensor(lam, dtype=torch.float64)))
        assert tau == pytest.approx(THRESHOLD[name](lam), rel=1e-12)
        v = np.linspace(-3 * tau, 3 * tau, 601)
        u = prox(name, v, lam)
        np.testing.assert_array_equal(u == 0, np.abs(v) <= tau)
        np.testing.assert_allclose(prox(name, -v, lam), -u)  # odd
        assert np.all(np.abs(u) <= np.abs(v) + 1e-15) and np.all(u * v >= 0)  # shrinks, keeps the sign
        above = tau * (1 + 1e-9)
        assert abs(float(prox(name, above, lam)[0])) == pytest.approx(JUMP[name] * tau, abs=1e-4 * tau)


def test_at_the_threshold_zero_and_the_nonzero_minimiser_cost_the_same():
    """tau is where the best nonzero u (found on a grid) stops beating u = 0 (why the 1/2 and 2/3 prox jump)."""
    for name in ("l1/2", "l2/3", "l0"):
        lam = 0.5
        tau = THRESHOLD[name](lam)
        grid = np.linspace(1e-6, 2 * tau, 400001)
        best_nonzero = objective(name, grid, tau, lam).min()
        assert best_nonzero == pytest.approx(tau ** 2, rel=1e-6)  # u = 0 costs v^2 = tau^2


def test_two_thirds_prox_equals_cao_sun_xu_formula():
    """The hyperbolic closed form as printed by Cao, Sun and Xu (2013), evaluated here in plain float64."""
    for lam in (0.02, 0.7, 3.0):
        tau = THRESHOLD["l2/3"](lam)
        for v in np.concatenate([np.linspace(tau * 1.0001, 4 * tau, 30), [10.0, 100.0]]):
            theta = math.acosh(27 / 16 * v ** 2 * lam ** -1.5)
            phi = 2 / math.sqrt(3) * lam ** 0.25 * math.sqrt(math.cosh(theta / 3))
            expected = ((phi + math.sqrt(2 * v / phi - phi ** 2)) / 2) ** 3
            assert float(prox("l2/3", v, lam)[0]) == pytest.approx(expected, rel=1e-10)
            assert float(prox("l2/3", -v, lam)[0]) == pytest.approx(-expected, rel=1e-10)


@pytest.mark.parametrize("name", REGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_lambdas_stay_finite(name, dtype):
    v = torch.tensor([0.5, -1e-3, 0.3, 2.0], dtype=dtype)
    lam = torch.tensor([0.0, 1e-30, math.inf, 1e-38], dtype=dtype)
    out = regulariser(name).prox(v, lam)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert out[0] == v[0] and out[2] == 0  # lam = 0: identity; lam = inf: zero
    assert out[1] == pytest.approx(float(v[1]), rel=1e-3) and out[3] == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("name", REGS)
def test_lambda_zero_closed_form_equals_the_official_bisection(name):
    torch.manual_seed(0)
    g = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    prox_fn = regulariser(name).prox
    for sigma in (0.005, 0.3):
        lam0 = lambda_zero(g, sigma, name)
        for b in range(3):
            lb, ub = 0.0, 0.001  # spec 1.4: grow ub while the prox is nonzero, then 50 bisection steps
            while prox_fn(sigma * g[b], torch.tensor(ub * sigma, dtype=torch.float64)).abs().sum() > 0:
                ub *= 2
            for _ in range(50):
                mid = (lb + ub) / 2
                zero = prox_fn(sigma * g[b], torch.tensor(mid * sigma, dtype=torch.float64)).abs().sum() == 0
                lb, ub = (lb, mid) if zero else (mid, ub)
            assert float(lam0[b]) == pytest.approx(0.01 * (lb + ub) / 2, rel=1e-9)


@pytest.mark.parametrize("name", REGS)
def test_lambda_zero_of_zero_gradient_is_the_bisection_floor(name):
    assert float(lambda_zero(torch.zeros(1, 3, 4, 4), 0.005, name)[0]) == pytest.approx(0.01 * 0.001 * 2.0 ** -51)


def test_names_aliases_and_default():
    assert GSEParams().reg == "l1/2" and regulariser().prox is prox_half
    assert [regulariser_name(n) for n in ("L1_2", " l2_3 ", "L0", "l1")] == ["l1/2", "l2/3", "l0", "l1"]
    assert GSEParams(reg="l1_2") == GSEParams() and GSEParams().replace(reg="L2_3").reg == "l2/3"
    assert GSEParams(reg="l2/3").official_units()["reg"] == "l2/3"
    with pytest.raises(ValueError, match=r"reg must be one of l0, l1, l1/2, l2/3 \(got 'l3'\)"):
        GSEParams().replace(reg="l3")


class Patch(torch.nn.Module):
    """logits = W x with W ~ N(0, 1) on a 3x3 pixel patch (rows 5-7, cols 9-11) and 1e-4 N(0, 1) elsewhere.

    The gradient of Z_y - Z_other is a known row difference of W; every threshold zeroes the tiny weights, so
    phase 1 perturbs the patch only, and phase 2 can add only pixels whose lambda shrank, i.e. those within the
    5x5 blur window of the patch: the perturbation stays inside the 7x7 block rows 3-9, cols 7-13.
    """

    def __init__(self, size=16, n_classes=4, seed=3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        scale = torch.full((size, size), 1e-4, dtype=torch.float64)
        scale[5:8, 9:12] = 1.0
        self.weight = (torch.randn(n_classes, 3, size, size, generator=g, dtype=torch.float64) * scale).flatten(1)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


FAST = GSEParams(mu=1.0, sigma=0.01, k_hat=5, q=0.25, iters=40, search_steps=6)
STAR = {  # lambda* from g = max|w_y - w_other| and sigma, by hand from tau (see THRESHOLD)
    "l0": lambda g, s: s * g ** 2,
    "l1": lambda g, s: 2 * g,
    "l1/2": lambda g, s: (s * g / (54 ** (1 / 3) / 4)) ** 1.5 / s,
    "l2/3": lambda g, s: (s * g * 3 ** 0.75 / 2) ** (4 / 3) / s,
}


def patch_images(n=4):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("name", REGS)
@pytest.mark.parametrize("targeted", [False, True])
def test_end_to_end_on_a_linear_model(name, targeted):
    x = patch_images()
    model = Patch().eval()
    with torch.no_grad():
        clean = model(x).argmax(1)
    labels = (clean + 1) % 4 if targeted else clean
    result = gse_attack(model, x, labels, targeted, FAST.replace(reg=name))
    assert result.success.all()
    assert (result.x_adv >= 0).all() and (result.x_adv <= 1).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert torch.equal(pred == labels, torch.full((4,), targeted))
    changed = metrics.changed_mask(result.delta)
    outside = changed.clone()
    outside[:, 3:10, 7:14] = False
    assert changed.any(dim=(1, 2)).all() and not outside.any()  # sparse: inside the 7x7 block of 256 pixels
    w = model.weight
    for b in range(4):
        logits = model(x[b:b + 1])[0].clone()
        logits[labels[b]] = -math.inf
        g = float((w[labels[b]] - w[int(logits.argmax())]).abs().max())
        assert result.lambda0[b] == pytest.approx(0.01 * STAR[name](g, FAST.sigma), rel=1e-9)


def test_the_regulariser_changes_the_run_and_the_default_is_l_half():
    x = patch_images(2)
    model = Patch().eval()
    y = model(x).argmax(1)
    default = gse_attack(model, x, y, params=FAST)
    assert torch.equal(default.x_adv, gse_attack(model, x, y, params=FAST.replace(reg="l1/2")).x_adv)
    lam0 = {name: gse_attack(model, x, y, params=FAST.replace(reg=name, search_steps=1)).lambda0 for name in REGS}
    assert len({tuple(v) for v in lam0.values()}) == len(REGS)


@pytest.mark.parametrize("name", ["l0", "l1", "l2/3"])
def test_unit_conventions_identity_holds_for_every_regulariser(name):
    """Spec section 0 with lam |u|^p: delta_p = delta_n / 2, lambda_p = 2^p lambda_n (lambda_0 rescales itself)."""
    torch.manual_seed(8)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    fc = torch.nn.Linear(4 * 64, 3).double()
    net = torch.nn.Sequential(conv, torch.nn.Softplus(), torch.nn.Flatten(), fc).eval()

    class OnMinusOneOne(torch.nn.Module):
        def forward(self, x_n):
            return net((x_n + 1) / 2)

    x_p = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    with torch.no_grad():
        y = net(x_p).argmax(1)
    official = GSEParams(mu=1.0, sigma=0.02, k_hat=6, q=0.25, iters=25, search_steps=3, reg=name)
    converted = official.replace(mu=4 * official.mu, sigma=official.sigma / 4)
    snaps_n = list(iterate_gse(OnMinusOneOne().eval(), 2 * x_p - 1, y, params=official, bounds=(-1.0, 1.0)))
    snaps_p = list(iterate_gse(net, x_p, y, params=converted))
    assert [(s.step, s.iteration) for s in snaps_n] == [(s.step, s.iteration) for s in snaps_p]
    for sn, sp in zip(snaps_n, snaps_p):
        np.testing.assert_allclose(sp.delta.dense(), sn.delta.dense() / 2, atol=1e-6)
        np.testing.assert_allclose(sp.lambda_map, sn.lambda_map * 2 ** EXPONENT[name], rtol=1e-5)

"""Engine invariants on analytic and toy models (spec section 8, items 2 and 7-8)."""

import math

import numpy as np
import pytest
import torch

from gse_algo.attack import gse_attack, iterate_gse
from gse_algo.metrics import d20
from gse_algo.params import GSEParams
from gse_algo.prox import LAMBDA_STAR_CONST
from gse_algo.snapshot import Progress, Snapshot

FAST = GSEParams(mu=4.0, sigma=0.01, k_hat=5, q=0.25, iters=40, search_steps=4)


class Linear(torch.nn.Module):
    """Analytic model: logits = W x + b, so the input gradient of every logit is a known row of W."""

    def __init__(self, n_in, n_classes=4, seed=0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(n_classes, n_in, generator=g, dtype=dtype)
        self.bias = torch.randn(n_classes, generator=g, dtype=dtype)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


class SmoothNet(torch.nn.Module):
    """A small smooth CNN (softplus) used where the attack must actually search."""

    def __init__(self, seed=0, dtype=torch.float64, n_classes=5):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1).to(dtype)
        self.fc = torch.nn.Linear(6 * 16, n_classes).to(dtype)

    def forward(self, x):
        h = torch.nn.functional.softplus(self.conv(x))
        h = torch.nn.functional.avg_pool2d(h, 2)
        return self.fc(h.flatten(1))


def images(n=3, size=8, seed=1, dtype=torch.float64):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def clean_labels(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_lambda0_is_the_closed_form_on_a_linear_model():
    x = images()
    model = Linear(3 * 8 * 8).eval()
    y = clean_labels(model, x)
    result = gse_attack(model, x, y, params=FAST.replace(search_steps=1, iters=1))
    w = model.weight
    for b in range(len(x)):
        logits = model(x[b:b + 1])[0].clone()
        logits[y[b]] = -math.inf
        g = w[y[b]] - w[int(logits.argmax())]  # gradient of Z_y - Z_other
        expected = 0.01 * LAMBDA_STAR_CONST * math.sqrt(FAST.sigma) * float(g.abs().max()) ** 1.5
        assert result.lambda0[b] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("targeted", [False, True])
def test_linear_model_success_and_box(targeted):
    x = images(4)
    model = Linear(3 * 8 * 8, seed=3).eval()
    y = clean_labels(model, x)
    labels = (y + 1) % 4 if targeted else y
    before = x.clone()
    result = gse_attack(model, x, labels, targeted, FAST)
    assert torch.equal(x, before)  # input untouched
    assert result.success.all()
    assert (result.x_adv >= 0).all() and (result.x_adv <= 1).all()
    pred = clean_labels(model, result.x_adv).numpy()
    assert (pred == labels.numpy()).all() if targeted else (pred != labels.numpy()).all()
    assert np.array_equal(pred, result.adv_pred)
    assert torch.allclose(result.delta, result.x_adv - x)


def test_failures_return_the_image_unchanged():
    class Constant(torch.nn.Module):  # logits ignore the input: no attack can succeed
        def forward(self, x):
            return torch.tensor([[2.0, 1.0, 0.0]], dtype=x.dtype).expand(x.shape[0], 3) + 0 * x.sum()

    x = images(2)
    result = gse_attack(Constant().eval(), x, torch.tensor([0, 0]), params=FAST.replace(iters=5, search_steps=3))
    assert not result.success.any() and (result.chosen_step == -1).all()
    assert torch.equal(result.x_adv, x) and not result.delta.any()
    # never successful: the last two steps use 10 sigma (spec 1.6)
    assert [r.sigma_b[0] for r in result.steps] == pytest.approx([FAST.sigma, FAST.sigma * 10, FAST.sigma * 10])


def test_batched_equals_one_by_one_and_deterministic():
    model = SmoothNet().eval()
    x = images(3)
    y = clean_labels(model, x)
    batched = gse_attack(model, x, y, params=FAST)
    again = gse_attack(model, x, y, params=FAST)
    assert torch.equal(batched.x_adv, again.x_adv)
    for b in range(3):
        single = gse_attack(model, x[b:b + 1], y[b:b + 1], params=FAST)
        assert single.success[0] == batched.success[b]
        assert torch.allclose(single.x_adv[0], batched.x_adv[b], atol=1e-10)
        assert single.chosen_step[0] == batched.chosen_step[b]


def test_trace_and_no_trace_give_the_same_result():
    model = SmoothNet(seed=2).eval()
    x = images(2, seed=5)
    y = clean_labels(model, x)
    run = iterate_gse(model, x, y, params=FAST, trace=True)
    snaps = list(run)
    quiet = iterate_gse(model, x, y, params=FAST, trace=False)
    progress = list(quiet)
    assert all(isinstance(s, Snapshot) for s in snaps) and all(isinstance(p, Progress) for p in progress)
    assert [(s.step, s.iteration, s.phase) for s in snaps] == [p[:3] for p in progress]
    assert torch.equal(run.result.x_adv, quiet.result.x_adv)


def test_snapshots_follow_the_spec():
    model = SmoothNet(seed=4).eval()
    x = images(2, seed=7)
    y = clean_labels(model, x)
    params = FAST.replace(search_steps=3, iters=30)
    run = iterate_gse(model, x, y, params=params)
    snaps = list(run)
    result = run.result
    for s in snaps:
        assert s.phase == (1 if s.iteration < params.k_hat else 2)
        assert (s.frozen is None) == (s.phase == 1)
        delta = s.delta.dense()
        assert np.array_equal(s.mask, (delta != 0).any(axis=1))
        if s.frozen is not None:  # phase 2: the support never grows onto frozen pixels
            assert not (s.mask & s.frozen).any()
            assert np.array_equal(s.frozen, s.lambda_map > s.lambda_b[:, None, None])
        assert np.allclose(s.l2, np.linalg.norm(delta.reshape(len(delta), -1), axis=1), rtol=1e-5)
        assert np.allclose(s.top_probs.sum(axis=1) <= 1 + 1e-6, True)
    for record in result.steps:  # the last snapshot of a step holds each image's stop iteration and success
        last = [s for s in snaps if s.step == record.step][-1]
        assert np.array_equal(last.success, record.success)
        assert np.array_equal(last.active, ~record.success)
        step_snaps = [s for s in snaps if s.step == record.step]
        for b in np.flatnonzero(record.success):
            it = record.stop_iteration[b]
            stopped = [s for s in step_snaps if s.iteration >= it]
            dense = [s.delta.dense()[b] for s in stopped]
            assert all(np.array_equal(dense[0], d) for d in dense)  # a stopped image keeps its state
            assert record.d20[b] == int(d20(torch.from_numpy(dense[0][None]))[0])
    # the returned example is the success with the smallest d20 (strict <: earliest wins ties)
    for b in range(2):
        wins = [(r.d20[b], r.step) for r in result.steps if r.success[b]]
        if wins:
            assert result.chosen_step[b] == min(wins)[1]


def test_outer_search_rules():
    model = SmoothNet(seed=6).eval()
    x = images(2, seed=9)
    y = clean_labels(model, x)
    result = gse_attack(model, x, y, params=FAST.replace(search_steps=6))
    lam = result.lambda0.copy()
    lb, ub = np.zeros(2), np.full(2, np.inf)
    for r in result.steps:
        assert np.allclose(r.lambda_b, lam, rtol=1e-12)
        ok = r.success
        new_lam = np.where(ok, np.where(np.isinf(ub), 2 * lam, (ub + lam) / 2), 0.9 * lb + 0.1 * lam)
        ub, lb, lam = np.where(ok, ub, lam), np.where(ok, lam, lb), new_lam


def test_scaling_identity_between_unit_conventions():
    """Spec section 0 / 8.8: (sigma/4, 4 mu) on p = (x+1)/2 gives delta_n / 2 and lambda x sqrt(2)."""
    net = SmoothNet(seed=8).eval()

    class OnMinusOneOne(torch.nn.Module):
        def forward(self, x_n):
            return net((x_n + 1) / 2)

    x_p = images(2, seed=11)
    x_n = 2 * x_p - 1
    y = clean_labels(net, x_p)
    official = GSEParams(mu=1.0, sigma=0.02, k_hat=6, q=0.25, iters=25, search_steps=3)
    converted = official.replace(mu=4 * official.mu, sigma=official.sigma / 4)
    snaps_n = list(iterate_gse(OnMinusOneOne().eval(), x_n, y, params=official, bounds=(-1.0, 1.0)))
    snaps_p = list(iterate_gse(net, x_p, y, params=converted))
    assert len(snaps_n) == len(snaps_p)
    for sn, sp in zip(snaps_n, snaps_p):
        assert (sn.step, sn.iteration) == (sp.step, sp.iteration)
        np.testing.assert_allclose(sp.delta.dense(), sn.delta.dense() / 2, atol=1e-6)
        np.testing.assert_allclose(sp.lambda_map, sn.lambda_map * math.sqrt(2), rtol=1e-5)


def test_bad_inputs_give_clear_errors():
    model = Linear(3 * 4 * 4).eval()
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gse_attack(model, x * 3, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must have shape"):
        gse_attack(model, x, torch.tensor([0]))
    with pytest.raises(ValueError, match="class indices"):
        gse_attack(model, x, torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="eval mode"):
        gse_attack(model.train(), x, torch.tensor([0, 1]))


def test_float32_snapshots_are_independent_copies():
    """Each phase-1 snapshot keeps its own lambda map (lambda changes every phase-1 iteration, spec 1.5)."""
    model = SmoothNet(seed=4, dtype=torch.float32).eval()
    x = images(1, seed=7, dtype=torch.float32)
    y = clean_labels(model, x)
    snaps = list(iterate_gse(model, x, y, params=FAST.replace(search_steps=2, iters=12)))
    first_step = [s for s in snaps if s.step == 1 and s.phase == 1]
    assert len(first_step) >= 2
    for a, b in zip(first_step, first_step[1:]):
        assert not np.array_equal(a.lambda_map, b.lambda_map)
        assert not a.lambda_map.flags.writeable and not a.delta.values.flags.writeable


def test_a_submodule_in_training_mode_or_float_labels_are_refused():
    model = SmoothNet().eval()
    model.conv.train()
    x = images(1)
    with pytest.raises(ValueError, match="eval mode"):
        gse_attack(model, x, torch.tensor([0]))
    with pytest.raises(ValueError, match="integer tensor"):
        gse_attack(model.eval(), x, torch.tensor([0.0]))

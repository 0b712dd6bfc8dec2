"""Presets converted to [0,1] units (spec section 0 and 1.7) and parameter validation."""

import pytest

from gse_algo.params import AUTO, GSEParams, resolve_preset


@pytest.mark.parametrize("name,targeted,official", [
    ("cifar10", False, (1.0, 0.005, 30, 0.25)),
    ("cifar10", True, (1.0, 0.005, 50, 0.25)),
    ("imagenet", True, (0.1, 0.05, 50, 0.9)),
    ("imagenet_adv", False, (0.0005, 0.75, 150, 0.9)),
])
def test_presets_are_official_values_converted(name, targeted, official):
    mu_n, sigma_n, k_hat, q = official
    p = GSEParams.preset(name, targeted=targeted)
    assert p.mu == pytest.approx(4 * mu_n) and p.sigma == pytest.approx(sigma_n / 4)
    assert (p.k_hat, p.q, p.iters, p.search_steps, p.search_factor) == (k_hat, q, 200, 10, 2.0)
    assert (p.blur_size, p.blur_sigma, p.kappa) == (5, 1.5, 0.0)
    assert p.official_units()["mu"] == pytest.approx(mu_n) and p.official_units()["sigma"] == pytest.approx(sigma_n)


def test_replace_converts_strings_and_rejects_nonsense():
    p = GSEParams().replace(mu="2.5", k_hat="12")
    assert p.mu == 2.5 and p.k_hat == 12
    for bad in [dict(sigma=-1), dict(q=1.5), dict(iters=0), dict(k_hat="1.5"), dict(blur_size=4), dict(nope=1),
                dict(mu="abc")]:
        with pytest.raises(ValueError):
            GSEParams().replace(**bad)
    with pytest.raises(ValueError, match="unknown preset"):
        GSEParams.preset("mnist")


def test_with_preset_sets_only_the_preset_fields():
    mine = GSEParams(iters=30, search_steps=3, kappa=0.5)
    p = mine.with_preset("cifar10", targeted=True)
    assert (p.mu, p.sigma, p.k_hat, p.q) == (4.0, 0.005 / 4, 50, 0.25)
    assert (p.iters, p.search_steps, p.kappa) == (30, 3, 0.5)


@pytest.mark.parametrize("size, expected", [((32, 32), "cifar10"), ((64, 64), "imagenet"), ((96, 96), "imagenet"),
                                            ((224, 224), "imagenet"), ((32, 224), "cifar10"), ((224, 48), "cifar10"),
                                            ((64, 300), "imagenet"), ((96, 224), "imagenet")])
def test_auto_preset_follows_the_shorter_side_and_named_presets_are_kept(size, expected):
    assert resolve_preset(AUTO, size) == expected
    assert resolve_preset("imagenet_adv", size) == "imagenet_adv"


def test_the_regulariser_is_a_validated_string_field():
    p = GSEParams().replace(reg="l1", mu="2")
    assert p.reg == "l1" and p.mu == 2.0 and p.as_dict()["reg"] == "l1"
    assert GSEParams.preset("cifar10", reg="l2_3").reg == "l2/3"
    assert GSEParams(reg="l0").with_preset("imagenet").reg == "l0"  # a preset leaves the regulariser alone
    with pytest.raises(ValueError, match="reg must be one of"):
        GSEParams(reg="l2")

"""The `blur` switch (lambda diffusion on/off, the blur ablation's "off"): off keeps the lambda map at the search
step's scalar lambda_b in every iteration, so nothing is frozen at k_hat; on (the default) is the paper's update."""

import numpy as np
import pytest

from gse_algo.attack import iterate_gse
from gse_algo.attacks import get_attack
from gse_algo.params import GSEParams

from test_attack import SmoothNet, clean_labels, images

P = GSEParams(mu=0.1, sigma=0.05, k_hat=4, q=0.25, iters=12, search_steps=3)


def snapshots(params):
    x = images(n=2)
    model = SmoothNet().eval()
    run = iterate_gse(model, x, clean_labels(model, x), params=params, trace=True)
    return list(run)


def test_off_keeps_every_lambda_map_at_the_steps_lambda_and_freezes_nothing():
    shots = snapshots(P.replace(blur=False))
    assert {s.phase for s in shots} == {1, 2}
    for s in shots:
        expected = np.broadcast_to(s.lambda_b[:, None, None], s.lambda_map.shape)
        np.testing.assert_array_equal(s.lambda_map, expected.astype(s.lambda_map.dtype))
        if s.frozen is not None:
            assert not s.frozen.any()  # frozen = lambda > lambda_b, never true on a constant map


def test_on_is_the_default_and_moves_the_lambda_map():
    assert GSEParams().blur is True and GSEParams.preset("cifar10").blur is True
    moved = [s for s in snapshots(P) if s.phase == 1
             and not np.array_equal(s.lambda_map, np.broadcast_to(s.lambda_b[:, None, None], s.lambda_map.shape))]
    assert moved  # the same run with the switch on diffuses lambda (so the test above can fail)


def test_the_switch_is_validated_and_parsed_like_other_settings():
    assert GSEParams().replace(blur="off").blur is False and GSEParams().replace(blur="true").blur is True
    for bad in ("maybe", 2):
        with pytest.raises(ValueError, match="blur must be true or false"):
            GSEParams().replace(blur=bad)
    with pytest.raises(ValueError, match="blur must be true or false"):
        GSEParams(blur=1)
    assert get_attack("gse").settings({"blur": "no"})["blur"] is False
    assert "blur" in GSEParams().as_dict()

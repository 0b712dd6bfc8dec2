"""The report's numbers on hand-made rows (spec 2.3's best / average / worst), the Wilson interval against
textbook values, and the report files of a small study folder."""

from __future__ import annotations

import math

import pytest

from gse_algo.study.report import summary_lines, target_cases, wilson

CONFIG = {"attack": "gse", "config_id": "c1", "label": "k_hat=10", "swept": {"k_hat": 10}}


def row(image, target, success, acp, l2=0.5, anc=1, d20=10):
    return {"attack": "gse", "config_id": "c1", "image": image, "target": target, "success": success,
            "fools_at_8bit": success, "acp": acp, "anc": anc, "d20": d20, "l2": l2, "time_s": 1.0}


# image a: both targets succeed (acp 4 and 10); image b: one succeeds (acp 6), one fails (GSE returns delta = 0)
ROWS = [row("a", 1, True, 4), row("a", 2, True, 10), row("b", 1, True, 6), row("b", 2, False, 0, l2=0.0)]


def test_best_average_worst_over_targets_as_the_paper_defines_them():
    cases = {c["case"]: c for c in target_cases(ROWS, [CONFIG])}
    assert cases["best"]["asr"] == 1.0  # each image has a success
    assert cases["average"]["asr"] == 0.75
    assert cases["worst"]["asr"] == 0.5  # only image a succeeded for every target
    assert cases["best"]["acp"] == (4 + 6) / 2  # the minimum over successful targets, then over images
    assert cases["average"]["acp"] == (4 + 10 + 6 + 0) / 4  # all pairs, the failure's 0 included
    assert cases["worst"]["acp"] == 10  # the maximum over targets, images where every target succeeded
    assert cases["average"]["l2"] == pytest.approx((0.5 * 3) / 4)


def test_the_summary_means_sizes_over_successes_and_asr_over_all_rows():
    (line,) = summary_lines(ROWS, [CONFIG])
    assert line["rows"] == 4 and line["asr"] == 0.75 and line["k_hat"] == 10
    assert line["acp_mean"] == pytest.approx(20 / 3) and line["acp_median"] == 6


@pytest.mark.parametrize("k, n, low, high", [(5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (0, 24, 0.0, 0.1380)])
def test_wilson_interval(k, n, low, high):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))

"""The same study on a local Ray (2 CPUs, no dashboard) writes the same rows as in-process: the same batches run
on Ray actors, so success must agree on every row and the sizes within the reference tolerance (here they are
equal, since the batches and the thread count are the same). Skipped when Ray is not installed (the Makefile
installs the [ray] extra)."""

from __future__ import annotations

import pytest

from gse_algo.study import sources
from gse_algo.study.runner import run_study
from gse_algo.study.table import read_rows

from test_study_run import FAST, key, make

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'gse-desktop[ray]'")
pytestmark = pytest.mark.skipif(not (sources.REFERENCE.is_file() and sources.REFERENCE_MODEL.is_file()),
                                reason="../shared is missing")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_rows_on_ray_equal_the_in_process_rows(tmp_path, local_ray):
    study = make(images={"source": "reference", "limit": 6}, targeted={"offsets": [1]},
                 attacks=[{"name": "gse", "settings": FAST, "grid": {"k_hat": [5, 10]}}])
    run_study(study, tmp_path / "here")
    run_study(study, tmp_path / "ray", use_ray=True)
    here = {key(r): r for r in read_rows(tmp_path / "here")[1]}
    there = {key(r): r for r in read_rows(tmp_path / "ray")[1]}
    assert here.keys() == there.keys() and len(here) == 12
    for k, row in here.items():
        other = there[k]
        assert other["engine"] == "ray" and row["engine"] == "in-process"
        assert other["success"] == row["success"]
        for name in ("acp", "anc", "d20"):
            assert abs(other[name] - row[name]) <= max(1, 0.05 * row[name]), (k, name)
        assert other["l2"] == pytest.approx(row["l2"], rel=0.05)

"""Run-time settings: the fixed default thread count, validation, apply(), what outputs record."""

import os

import pytest
import torch

from gse_algo import runtime
from gse_algo.runtime import Runtime, check_threads, default_threads, dtype_name, resolve_device


def test_default_threads_is_fixed_and_not_the_core_count(monkeypatch):
    assert default_threads() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_threads() == 1 and Runtime().threads == 1


def test_apply_sets_threads_and_seed():
    before = torch.get_num_threads()
    try:
        Runtime(threads=2, seed=5).apply()
        assert torch.get_num_threads() == 2
        first = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(first, torch.rand(3))
    finally:
        torch.set_num_threads(before)


def test_record_and_types():
    r = Runtime(threads=3, seed=1, device="cpu", dtype=torch.float64)
    assert r.as_dict() == {"threads": 3, "seed": 1, "device": "cpu", "dtype": "float64"}
    assert r.torch_dtype is torch.float64 and r.torch_device == torch.device("cpu")
    assert dtype_name("float32") == "float32" and dtype_name(torch.float32) == "float32"
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", runtime.MAX_THREADS + 1])
def test_bad_thread_counts(bad):
    with pytest.raises(ValueError, match=r"threads must be an integer in \[1, 1024\]"):
        check_threads(bad)
    with pytest.raises(ValueError, match="threads"):
        Runtime(threads=bad)


def test_bad_dtype_device_seed():
    with pytest.raises(ValueError, match="dtype must be one of float32, float64"):
        Runtime(dtype="float16")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="seed must be an integer"):
        Runtime(seed=0.5)

"""The engine process and its client: one job at a time, stop, hanging and crashing models, clean shutdown."""

import io
import os
import pickle
import time

import numpy as np
import pytest

from conftest import CRASH, HANG, loader
from gse_algo.params import GSEParams
from gse_desktop.engine import EngineClient
from gse_desktop.records import RunSpec

START_S = 120.0  # a new engine process imports torch: slow on a busy machine
LONG = GSEParams(iters=5000, search_steps=2, k_hat=5, sigma=1e-7, mu=0.1)  # tiny steps: never succeeds early


def wait_for(client, predicate, timeout=60.0):
    """Poll until predicate(events so far) holds; returns the events."""
    events, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        events += client.poll()
        if predicate(events):
            return events
        time.sleep(0.01)
    raise AssertionError(f"timed out; events: {[e.kind for e in events][-20:]}")


def kinds(events, ident=None):
    return [e.kind for e in events if ident is None or e.ident == ident]


def modules_needed(payload) -> set[str]:
    """The modules unpickling `payload` imports (what the GUI process loads to receive it)."""
    seen = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            seen.add(module.split(".")[0])
            return super().find_class(module, name)

    Recorder(io.BytesIO(pickle.dumps(payload))).load()
    return seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("engine") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_stop_acts_at_the_next_iteration_and_jobs_wait_for_the_run(image):
    client = EngineClient(loader)
    try:
        wait_for(client, lambda e: "ready" in kinds(e), START_S)
        pid = client.info["pid"]
        run = client.start_run(RunSpec(image, "tiny", params=LONG, preset=None))
        events = wait_for(client, lambda e: kinds(e, run).count("snapshot") >= 3)
        prepared = next(e.payload for e in events if e.kind == "prepared")
        job = client.submit("cam", {"model_spec": "tiny", "device": "cpu", "image": prepared.image,
                                    "class_index": 0, "method": "GradCAM", "layer": "0"})
        time.sleep(0.3)
        events = client.poll()
        assert "job_done" not in kinds(events) and "snapshot" in kinds(events, run)  # the attack goes on first
        client.stop(run)
        stopped_at = time.monotonic()
        events = wait_for(client, lambda e: "finished" in kinds(e, run))
        assert time.monotonic() - stopped_at < 2.0
        assert next(e.payload for e in events if e.kind == "finished") is None  # stopped, not finished
        if "job_done" not in kinds(events, job):
            events += wait_for(client, lambda e: "job_done" in kinds(e, job))
        order = [e.kind for e in events if e.ident in (run, job) and e.kind in ("finished", "job_done")]
        assert order == ["finished", "job_done"]
        cam = next(e.payload for e in events if e.kind == "job_done")
        assert cam.shape == (16, 16) and 0 <= cam.min() and cam.max() <= 1
        snapshot, derived = next(e.payload for e in events if e.kind == "snapshot")
        assert snapshot.lambda_map is not None and derived["acp"].shape == (1,)
        needed = set().union(*(modules_needed(e.payload) for e in events))
        assert "torch" not in needed and {"gse_algo", "gse_desktop", "numpy"} >= needed - {"builtins", "copyreg"}
    finally:
        client.shutdown()
    assert not client.alive and not alive(pid)


def test_a_hanging_model_is_replaced_and_a_crashing_one_reported(image):
    client = EngineClient(loader, grace_s=1.0)
    try:
        wait_for(client, lambda e: "ready" in kinds(e), START_S)
        first_pid = client.info["pid"]
        run = client.start_run(RunSpec(image, HANG, params=LONG, preset=None))
        wait_for(client, lambda e: "prepared" in kinds(e, run))
        time.sleep(0.5)  # its forward pass hangs now
        client.stop(run)
        started = time.monotonic()
        events = wait_for(client, lambda e: "engine_lost" in kinds(e))
        assert time.monotonic() - started < 3.0 and "did not stop within 1 s" in events[-1].payload
        events = wait_for(client, lambda e: "ready" in kinds(e), START_S)
        assert client.info["pid"] != first_pid and not alive(first_pid)

        second_pid = client.info["pid"]
        run = client.start_run(RunSpec(image, CRASH, params=LONG, preset=None))  # os.abort() in a forward pass
        events = wait_for(client, lambda e: "engine_lost" in kinds(e))
        lost = next(e for e in events if e.kind == "engine_lost")
        assert lost.ident == run and "ended unexpectedly" in lost.payload and "exit code" in lost.payload
        wait_for(client, lambda e: "ready" in kinds(e), START_S)
        assert not alive(second_pid)

        run = client.start_run(RunSpec(image, "tiny", params=GSEParams(iters=5, search_steps=1), preset=None))
        events = wait_for(client, lambda e: "finished" in kinds(e, run))
        result, record, files, measured = next(e.payload for e in events if e.kind == "finished")
        assert result.success.shape == (1,) and record["model"] == "tiny" and record["threads"] == 1
        assert record["acp"] == int((np.abs(result.delta[0]).sum(axis=0) > 0).sum())
        assert measured.metrics["acp"] == record["acp"] and measured.n_backward == result.n_forward_backward
    finally:
        client.shutdown()
    assert not client.alive


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not cuda_available(), reason="no CUDA device on this machine")
def test_a_run_on_the_gpu_the_user_picks(image):
    client = EngineClient(loader)
    try:
        wait_for(client, lambda e: "ready" in kinds(e), START_S)
        assert "cuda:0" in client.info["devices"]
        run = client.start_run(RunSpec(image, "tiny", device="cuda:0", params=GSEParams(iters=5, search_steps=1),
                                       preset=None))
        events = wait_for(client, lambda e: "finished" in kinds(e, run))
        prepared = next(e.payload for e in events if e.kind == "prepared")
        _, record, _, _ = next(e.payload for e in events if e.kind == "finished")
        assert prepared.model.device == "cuda:0" and record["device"].startswith("cuda")
    finally:
        client.shutdown()

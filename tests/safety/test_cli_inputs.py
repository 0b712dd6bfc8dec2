"""Bad command lines for gse-attack: exit status 2 and one line "gse-attack: error: ..." naming the argument or
file, before any attack work (no progress line), no output folder, inputs unchanged, no process left.

The cases run one after another in one child process through the real entry point (gse_algo.entry.attack_main,
which also installs the signal handlers), under a memory limit; a few more run as processes of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bad_input import ROOT, cli_world, processes_with, run_child, snapshot_tree

FAST = ["--set", "iters=3", "--set", "search_steps=1"]
# name -> (arguments, with {placeholders} for the world's files; words the message must contain)
CASES = {
    "dpi 0": (["{photo}", "--dpi", "0"], "argument --dpi: must be in 20..1200"),
    "dpi 100000": (["{photo}", "--dpi", "100000"], "argument --dpi"),
    "dpi not a number": (["{photo}", "--dpi", "high"], "argument --dpi: expects an integer"),
    "huge seed": (["{photo}", "--seed", "1" + "0" * 30], "argument --seed: must be in 0..9223372036854775807"),
    "negative seed": (["{photo}", "--seed", "-1"], "argument --seed"),
    "superscript target": (["{photo}", "--target", "²"], "no class named '²'"),
    "target out of range": (["{photo}", "--target", "99"], "class 99 is out of range"),
    "target already predicted": (["{photo}", "--target", "{clean}"], "already predicts the target class"),
    "ambiguous target": (["{photo}", "--target", "Cat"], None),  # the card has one "cat": found, see below
    "iters 1e9": (["{photo}", "--set", "iters=1e9"], "iters must be in [1, 100000]"),
    "blur size even": (["{photo}", "--set", "blur_size=4"], "blur_size must be odd"),
    "no search steps": (["{photo}", "--set", "search_steps=0"], "search_steps must be in"),
    "q above 1": (["{photo}", "--set", "q=2"], "q must be in (0, 1]"),
    "mu not finite": (["{photo}", "--set", "mu=inf"], "mu must be a finite number"),
    "model is a folder": (["{photo}", "--model", "{folder}"], "is a folder, not a model file"),
    "model missing": (["{photo}", "--model", "{folder}/none.pt"], "does not exist"),
    "model with NaN weights": (["{photo}", "--model", "{nan_model}"], "NaN or infinite logits"),
    "image with NaN pixels": (["{nan_image}"], "nan.tif: the image holds NaN or infinite pixel values"),
    "postscript image": (["{eps_image}"], "drawing.png: not an image file in an accepted format"),
    "image bomb": (["{bomb}"], "bomb.png: the image is too large"),
    "second image bad": (["{photo}", "{nan_image}"], "nan.tif"),
    "unknown cam layer": (["{photo}", "--model", "{resnet20}", "--figure", "all", "--cam-layer", "nope"],
                          "--cam-layer 'nope': the model has no layer 'nope'"),
    "out is a file": (["{photo}", "--out", "{file}/out"], "cannot write into folder"),
    "unknown figure panel": (["{photo}", "--figure", "histogram"], "unknown figure panel"),
    "unknown device": (["{photo}", "--device", "tpu"], "argument --device: invalid choice"),
    "unknown option": (["{photo}", "--turbo"], "unrecognized arguments: --turbo"),
}
CASES["ambiguous target"] = (["{photo}", "--target", "kat"], "close matches: cat")


def _argv(template: list[str], world: dict[str, Path], out: Path, clean: str) -> list[str]:
    values = {**{k: str(v) for k, v in world.items()}, "clean": clean}
    argv = [a.format(**values) for a in template]
    argv += [] if "--model" in argv else ["--model", str(world["model"])]
    argv += [] if "--out" in argv else ["--out", str(out)]
    return FAST + argv  # the case's own --set comes later and wins


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    world = cli_world(base / "inputs")
    from gse_algo.models import load_model  # the tiny model's clean class on the photo, for the target case
    from gse_algo.images import load_image
    loaded = load_model(world["model"])
    clean = loaded.class_names[int(loaded.model(load_image(world["photo"], loaded.input_size)[None]).argmax())]
    runs = {case: _argv(args, world, base / "outs" / f"case{i}", clean) for i, (case, (args, _)) in
            enumerate(CASES.items())}
    before = snapshot_tree(base / "inputs")
    token = uuid.uuid4().hex
    child = run_child(f"""
        import contextlib, io, json, traceback
        from gse_algo.entry import attack_main
        out = {{}}
        for case, argv in {json.dumps(runs)}.items():
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    rc = attack_main(argv)
                except BaseException:
                    rc, err = "escaped", io.StringIO(traceback.format_exc())
            out[case] = [rc, err.getvalue()]
        print(json.dumps(out))
    """, env={"GSE_SAFETY_TOKEN": token})
    assert child.returncode == 0 and child.stderr == "", child.stderr[-3000:]
    return {"out": json.loads(child.stdout), "runs": runs, "base": base, "before": before,
            "after": snapshot_tree(base / "inputs"), "left": processes_with(token)}


@pytest.mark.parametrize("case", CASES)
def test_bad_command_line_exits_2_with_one_line_before_any_work(case, results):
    rc, err = results["out"][case]
    assert rc == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("gse-attack: error: "), err  # no progress line: no attack
    assert CASES[case][1] in err, err
    out = Path(results["runs"][case][results["runs"][case].index("--out") + 1])
    assert not out.exists()  # no output folder at all
    assert results["after"] == results["before"]  # input files unchanged, nothing written beside them
    assert results["left"] == []


def _spawn(args: list[str], token: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GSE_SAFETY_TOKEN": token}
    return subprocess.Popen([sys.executable, "-m", "gse_algo.entry", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_real_process_exits_2_with_one_line(tmp_path):
    world, token = cli_world(tmp_path / "inputs"), uuid.uuid4().hex
    process = _spawn([str(world["photo"]), "--model", str(world["model"]), "--dpi", "0",
                      "--out", str(tmp_path / "out")], token)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 2 and out == ""
    assert err == "gse-attack: error: argument --dpi: must be in 20..1200, got 0\n"
    assert not (tmp_path / "out").exists() and processes_with(token) == []


def test_sigterm_during_the_attack_exits_cleanly_and_writes_nothing(tmp_path):
    world, token = cli_world(tmp_path / "inputs"), uuid.uuid4().hex
    before = snapshot_tree(tmp_path / "inputs")
    process = _spawn([str(world["photo"]), "--model", str(world["model"]), "--out", str(tmp_path / "out"),
                      "--set", "iters=100000", "--set", "search_steps=100"], token)
    first = process.stderr.readline()  # the progress line is shown at the first iteration
    assert "search step 1/100, iteration 1/100000" in first, first
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[1]
    assert process.returncode == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1] == "gse-attack: interrupted (SIGTERM)" and "Traceback" not in rest
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # no result folder, no hidden partial one
    assert snapshot_tree(tmp_path / "inputs") == before and processes_with(token) == []


def test_ctrl_c_during_start_up_prints_one_line(tmp_path):
    world, token = cli_world(tmp_path / "inputs"), uuid.uuid4().hex
    process = _spawn([str(world["photo"]), "--model", str(world["model"]), "--out", str(tmp_path / "out")], token)
    maps = Path(f"/proc/{process.pid}/maps")
    _wait_for(lambda: "libtorch" in maps.read_text(), process)  # torch is being imported: start-up
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert err == "gse-attack: interrupted (SIGINT)\n" and out == ""
    assert not (tmp_path / "out").exists() and processes_with(token) == []

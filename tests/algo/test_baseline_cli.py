"""`gse-attack --attack NAME` and `gse-compare` end to end on the tiny random-weight model (no weights, no network)."""

from __future__ import annotations

import csv
import importlib.util
import json
import signal
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

pytest.importorskip("adv_lib", reason="the baselines extra is not installed: pip install 'gse-desktop[baselines]'")

from gse_algo import cli, compare_cli  # noqa: E402
from gse_algo.entry import Interrupted, compare_main  # noqa: E402
from gse_algo.images import read_image  # noqa: E402

from test_cli import METRIC_KEYS, FAST as GSE_FAST, _run, image, keep_thread_count, tiny, tiny_model  # noqa: E402,F401

GSE_ONLY = {"preset", "chosen_step", "figure_iterate", "lambda0", "n_forward_backward"}
BASELINE_KEYS = (METRIC_KEYS - GSE_ONLY) | {"attack", "channel_l0", "linf", "n_backward", "eight_bit", "sixteen_bit"}
SIGMA = ["--attack", "sigma_zero", "--set", "num_steps=40"]


def sizes(delta: np.ndarray) -> dict:
    """ACP, channel-L0, ANC, d2,0 and l2 of a [C,H,W] perturbation from their definitions."""
    changed = (delta != 0).any(axis=0)
    windows = np.lib.stride_tricks.sliding_window_view(changed, (8, 8)).any(axis=(2, 3))
    return {"acp": int(changed.sum()), "channel_l0": int((delta != 0).sum()), "anc": int(ndimage.label(changed)[1]),
            "d20": int(windows.sum()), "l2": float(np.sqrt((delta.astype(np.float64) ** 2).sum()))}


def classify(x: np.ndarray) -> int:
    with torch.no_grad():
        return int(tiny_model().model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]).argmax())


def test_a_baseline_writes_gses_files_and_fields_where_they_apply(tiny, image, tmp_path):
    out = tmp_path / "out"
    assert _run(image, "--model", "tiny", "--out", out, "--figure", "all", "--dpi", 60, *SIGMA) == 0
    folder = out / "photo"
    assert sorted(p.name for p in folder.iterdir()) == ["adv.png", "adv8.png", "arrays.npz", "figure.png",
                                                         "figure.svg", "metrics.json", "original.png"]
    m = json.loads((folder / "metrics.json").read_text())
    assert set(m) == BASELINE_KEYS
    assert m["attack"] == {"name": "sigma_zero", "title": "sigma-zero", "source": "adv_lib 0.2.8",
                           "norm": "l0 (C x H x W values)"}
    assert m["params"]["num_steps"] == 40 and m["params"]["tau_0"] == 0.3
    assert (m["n_forward"], m["n_backward"]) == (40, 40)  # one forward and one backward pass per step
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        a = {name: npz[name] for name in npz.files}
    assert "lambda_map" not in a and {"x", "x_adv", "delta", "mask", "cam", "x_adv_8bit"} <= set(a)
    expected = sizes(a["x_adv"] - a["x"])
    assert {k: m[k] for k in ("acp", "channel_l0", "anc", "d20")} == {k: expected[k] for k in ("acp", "channel_l0",
                                                                                             "anc", "d20")}
    assert m["l2"] == pytest.approx(expected["l2"], rel=1e-6)
    clean = classify(a["x"])
    assert m["clean"]["index"] == clean and m["success"] == (classify(a["x_adv"]) != clean) and m["success"]
    adv8 = read_image(folder / "adv8.png").transpose(2, 0, 1)
    assert m["fools_at_8bit"] == m["eight_bit"]["success"] == (classify(adv8) != clean)
    with Image.open(folder / "figure.png") as png:
        png.load()
        assert json.loads(png.text["Parameters"])["num_steps"] == 40 and "Iteration" not in png.text
        assert png.text["Title"] == "sigma-zero adversarial example of photo.png"
    assert ET.parse(folder / "figure.svg").getroot().tag.endswith("svg")


def test_gse_stays_the_default(tiny, image, tmp_path):
    for name, extra in (("default", []), ("named", ["--attack", "gse"])):
        assert _run(image, "--model", "tiny", "--out", tmp_path / name, "--figure", "none", *GSE_FAST, *extra) == 0
    a, b = (json.loads((tmp_path / n / "photo" / "metrics.json").read_text()) for n in ("default", "named"))
    assert set(a) == METRIC_KEYS | {"eight_bit", "sixteen_bit"}  # test_cli's keys, quantisation-aware
    a.pop("time_s"), b.pop("time_s")
    assert a == b


@pytest.mark.parametrize("args, reason", [
    (["--attack", "nope"], "unknown attack 'nope'; choose one of gse, sigma_zero"),
    (["--attack", "sigma_zero", "--target", "dog"], "sigma-zero supports untargeted runs only"),
    (["--attack", "sigma_zero", "--set", "steps=3"], "sigma_zero has no parameter steps"),
    (["--attack", "fmn", "--set", "steps=0"], "steps must be in [1, 100000]"),
    (["--attack", "sigma_zero", "--figure", "original,lambda"], "sigma-zero has no lambda map"),
    (["--attack", "fmn", "--preset", "cifar10"], "--preset sets GSE's hyper-parameters"),
    (["--attack", "vfga", "--dtype", "float64"], "VFGA (adv_lib 0.2.8) works on float32 images only"),
    (["--attack", "str_attack", "--set", "group_size=17"], "group_size (17) must not exceed the image side (16)"),
])
def test_bad_baseline_options_exit_2_with_one_line_before_any_work(tiny, image, tmp_path, capsys, args, reason):
    assert cli.main([str(image), "--model", "tiny", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gse-attack: error: ") and reason in err
    assert not (tmp_path / "out").exists()


def test_a_missing_library_names_the_extra(tiny, image, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "adv_lib" else real(name, *a))
    assert cli.main([str(image), "--model", "tiny", "--out", str(tmp_path / "out"), *SIGMA]) == 2
    assert "needs adv_lib: pip install 'gse-desktop[baselines]'" in capsys.readouterr().err


def test_a_failure_inside_the_library_is_one_line_and_exit_1(tiny, image, tmp_path, capsys, monkeypatch):
    import adv_lib.attacks

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(adv_lib.attacks, "sigma_zero", broken)
    assert cli.main([str(image), "--model", "tiny", "--out", str(tmp_path / "out"), *SIGMA]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "gse-attack: error: sigma-zero failed inside its library: RuntimeError: boom"
    assert not list((tmp_path / "out").iterdir())  # the staged folder is gone


COMPARE_FAST = ["--set", "gse.iters=20", "--set", "gse.search_steps=2", "--set", "sigma_zero.num_steps=40",
                "--set", "vfga.max_iter=30"]


def _compare(*args) -> int:
    return compare_cli.main([str(a) for a in args])


def test_compare_writes_one_table_and_one_figure_per_image(tiny, image, tmp_path, capsys):
    second = tmp_path / "second.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(second)
    out = tmp_path / "out"
    assert _compare(image, second, "--model", "tiny", "--out", out, "--attacks", "gse,sigma_zero,vfga", "--dpi", 50,
                    *COMPARE_FAST) == 0
    folder = out / "comparison"
    assert sorted(p.name for p in folder.iterdir()) == ["comparison.csv", "comparison.md", "metrics.json", "photo",
                                                         "second"]
    with open(folder / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["attack", "image", "success", "ACP", "channel-L0", "ANC", "d2,0", "l2", "linf", "8-bit",
                             "time_s", "forwards", "backwards"]
    assert [(r["image"], r["attack"]) for r in rows] == [(i, a) for i in ("photo.png", "second.png")
                                                         for a in ("gse", "sigma_zero", "vfga")]
    markdown = (folder / "comparison.md").read_text().splitlines()
    assert len(markdown) == 2 + len(rows) and markdown[2].startswith("| gse | photo.png | ")
    for stem in ("photo", "second"):
        with np.load(folder / stem / "arrays.npz", allow_pickle=False) as npz:
            x = npz["x"]
            clean = classify(x)
            for r in (r for r in rows if r["image"] == f"{stem}.png"):
                x_adv = npz[f"x_adv_{r['attack']}"]
                expected = sizes(x_adv - x)
                assert (int(r["ACP"]), int(r["channel-L0"]), int(r["ANC"]), int(r["d2,0"])) == \
                    (expected["acp"], expected["channel_l0"], expected["anc"], expected["d20"])
                assert float(r["l2"]) == pytest.approx(expected["l2"], abs=1e-4)
                assert r["success"] == ("yes" if classify(x_adv) != clean else "no")
        with Image.open(folder / stem / "comparison.png") as png:
            png.load()
            assert png.text["Title"] == f"Attacks compared on {stem}.png"
        assert ET.parse(folder / stem / "comparison.svg").getroot().tag.endswith("svg")
    sigma = [r for r in rows if r["attack"] == "sigma_zero"]
    assert all((r["forwards"], r["backwards"]) == ("40", "40") for r in sigma)
    m = json.loads((folder / "metrics.json").read_text())
    assert [a["name"] for a in m["attacks"]] == ["gse", "sigma_zero", "vfga"]
    assert m["images"][0]["runs"][1]["settings"]["num_steps"] == 40
    assert "| sigma_zero | photo.png |" in capsys.readouterr().out


def test_compare_and_attack_give_the_same_numbers(tiny, image, tmp_path):
    assert _compare(image, "--model", "tiny", "--out", tmp_path / "c", "--attacks", "sigma_zero,fmn",
                    "--set", "sigma_zero.num_steps=40", "--set", "fmn.steps=30") == 0
    with open(tmp_path / "c" / "comparison" / "comparison.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert _run(image, "--model", "tiny", "--out", tmp_path / "a", "--figure", "none", *SIGMA) == 0
    m = json.loads((tmp_path / "a" / "photo" / "metrics.json").read_text())
    assert (int(row["ACP"]), int(row["channel-L0"]), float(row["l2"])) == (m["acp"], m["channel_l0"],
                                                                           round(m["l2"], 4))


def test_a_random_attack_gives_one_result_per_image_and_seed(tiny, image, tmp_path):
    """Pixle draws its patches at random: the same image and --seed give the same result alone, after another
    image in gse-attack, and after another attack in gse-compare."""
    second = tmp_path / "second.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(second)
    common = ["--model", "tiny", "--seed", "5", "--figure", "none", "--attack", "pixle"]
    assert _run(second, "--out", tmp_path / "alone", *common) == 0
    assert _run(image, second, "--out", tmp_path / "after", *common) == 0
    assert _compare(second, "--model", "tiny", "--seed", "5", "--out", tmp_path / "c", "--attacks", "sigma_zero,pixle",
                    "--set", "sigma_zero.num_steps=5") == 0
    results = []
    for folder in (tmp_path / "alone" / "second", tmp_path / "after" / "second"):
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            x, x_adv = npz["x"], npz["x_adv"]
        assert not np.array_equal(x_adv, x)  # Pixle changed the image
        results.append(x_adv)
    with np.load(tmp_path / "c" / "comparison" / "second" / "arrays.npz", allow_pickle=False) as npz:
        results.append(npz["x_adv_pixle"])
    np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_array_equal(results[2], results[0])


def test_an_existing_comparison_is_kept_unless_overwrite(tiny, image, tmp_path):
    out = tmp_path / "out"
    args = [image, "--model", "tiny", "--out", out, "--attacks", "sigma_zero", "--set", "sigma_zero.num_steps=5"]
    for _ in range(2):
        assert _compare(*args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["comparison", "comparison-2"]
    assert _compare(*args, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["comparison", "comparison-2"]


@pytest.mark.parametrize("args, reason", [
    (["--attacks", "gse,nope"], "unknown attack 'nope'"),
    (["--attacks", "gse,GSE"], "--attacks lists an attack twice"),
    (["--attacks", ","], "--attacks names no attack"),
    (["--set", "num_steps=3"], "use ATTACK.NAME=VALUE with an attack of --attacks (gse, sigma_zero)"),
    (["--set", "fmn.steps=3"], "use ATTACK.NAME=VALUE"),
    (["--set", "sigma_zero.steps=3"], "sigma_zero has no parameter steps"),
    (["--attacks", "sigma_zero,gse", "--set", "gse.blur_size=4"], "blur_size must be odd"),  # before sigma-zero runs
    (["--attacks", "sigma_zero,pdpgd", "--set", "pdpgd.num_steps=1"], "pdpgd.num_steps must be in [2, 100000]"),
    (["--target", "dog"], "sigma-zero supports untargeted runs only"),
    (["--dpi", "5"], "argument --dpi: must be in 20..1200"),
])
def test_bad_compare_options_exit_2_with_one_line_before_any_work(tiny, image, tmp_path, capsys, args, reason):
    argv = [str(image), "--model", "tiny", "--out", str(tmp_path / "out"), *args]
    if "--attacks" not in args:
        argv += ["--attacks", "gse,sigma_zero"]
    assert compare_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gse-compare: error: ") and reason in err
    assert not (tmp_path / "out").exists()


def test_an_interrupt_of_gse_compare_is_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(compare_cli, "_run", interrupted)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert compare_main(["--attacks", "gse"]) == 128 + signal.SIGTERM
    finally:  # compare_main installs its own handlers
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert capsys.readouterr().err == "gse-compare: interrupted (SIGTERM)\n"

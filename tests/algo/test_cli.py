"""`gse-attack` end to end on a tiny random-weight model and generated images (no weights, no network)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from gse_algo import cli, models
from gse_algo.images import DEFAULT_IMAGE, read_image

FAST = ["--set", "iters=20", "--set", "search_steps=2"]
METRIC_KEYS = {"model", "targeted", "target", "clean", "adversarial", "success", "fools_at_8bit", "fools_at_16bit",
               "units", "acp", "anc", "l2", "d20", "interpretability_score", "chosen_step", "figure_iterate",
               "lambda0", "time_s", "n_forward_backward", "n_forward", "params", "versions", "image", "preset",
               "seed", "device", "threads", "dtype"}


def tiny_model() -> models.LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16 * 16, 3))
    with torch.no_grad():
        net[-1].weight.mul_(10)  # steep enough for GSE to succeed within 20 iterations
    model = models.Normalized(net, (0.5,) * 3, (0.5,) * 3).eval()
    return models.LoadedModel(name="tiny", net=net, model=model, class_names=["cat", "dog", "bird"],
                              input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, cam_layer="0", cam_reshape=None)


@pytest.fixture(autouse=True)
def keep_thread_count():
    """The CLI sets torch's thread count (--threads); later tests get the count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny(monkeypatch):
    real = models.load_model

    def load(spec, *, device="cpu", **kwargs):
        return tiny_model().to(device) if spec == "tiny" else real(spec, device=device, **kwargs)

    monkeypatch.setattr(models, "load_model", load)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _run(*args) -> int:
    return cli.main([str(a) for a in args])


def test_writes_every_file_with_consistent_metrics(tiny, image, tmp_path, capsys):
    """With --no-quantize: the files and metrics of the float attack (the quantised default: test_quantize.py)."""
    out = tmp_path / "out"
    assert _run(image, "--model", "tiny", "--out", out, "--figure", "all", "--dpi", 80, "--no-quantize", *FAST) == 0
    folder = out / "photo"
    assert sorted(p.name for p in folder.iterdir()) == ["adv.png", "arrays.npz", "figure.png", "figure.svg",
                                                         "metrics.json"]
    m = json.loads((folder / "metrics.json").read_text())
    assert set(m) == METRIC_KEYS
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        a = {name: npz[name] for name in npz.files}
    assert set(a) == {"x", "x_adv", "delta", "mask", "lambda_map", "cam"}
    assert a["x"].shape == a["x_adv"].shape == a["delta"].shape == (3, 16, 16)
    assert a["mask"].shape == a["lambda_map"].shape == a["cam"].shape == (16, 16)
    np.testing.assert_allclose(a["x_adv"] - a["x"], a["delta"], atol=1e-6)
    assert a["x_adv"].min() >= 0 and a["x_adv"].max() <= 1

    changed = np.abs(a["delta"]).max(axis=0) > 0
    np.testing.assert_array_equal(a["mask"], changed)
    assert m["acp"] == changed.sum()
    assert m["anc"] == ndimage.label(changed)[1]
    windows = np.lib.stride_tricks.sliding_window_view(changed, (8, 8)).any(axis=(2, 3))
    assert m["d20"] == windows.sum()
    assert m["l2"] == pytest.approx(float(np.sqrt((a["delta"].astype(np.float64) ** 2).sum())), rel=1e-6)
    assert "[0,1]" in m["units"]

    model = tiny_model().model
    with torch.no_grad():
        clean = int(model(torch.from_numpy(a["x"])[None]).argmax())
        adv = int(model(torch.from_numpy(a["x_adv"])[None]).argmax())
        rounded = int(model(torch.from_numpy(np.round(a["x_adv"] * 255) / 255)[None]).argmax())
    assert m["clean"] == {"index": clean, "name": ["cat", "dog", "bird"][clean], "probability": m["clean"]["probability"]}
    assert m["adversarial"]["index"] == adv and m["adversarial"]["name"] == ["cat", "dog", "bird"][adv]
    assert m["success"] == (adv != clean) and m["success"]  # the tiny model is easy to fool
    assert m["fools_at_8bit"] == (rounded != clean)
    assert not m["targeted"] and m["target"] is None
    assert m["preset"] == "cifar10" and m["seed"] == 0 and m["device"] == "cpu"
    assert sorted(m["interpretability_score"]) == ["50", "60", "70", "80", "90"]
    assert all(0 <= v <= 1 for v in m["interpretability_score"].values())
    p = m["params"]
    assert p["units_0_1"]["iters"] == 20 and p["units_0_1"]["search_steps"] == 2
    assert p["official_units_-1_1"]["mu"] == pytest.approx(p["units_0_1"]["mu"] / 4)
    assert p["official_units_-1_1"]["sigma"] == pytest.approx(p["units_0_1"]["sigma"] * 4)
    assert set(m["versions"]) == {"python", "torch", "torchvision", "gse-desktop"}
    assert m["n_forward_backward"] > 0 and m["time_s"] > 0

    np.testing.assert_allclose(read_image(folder / "adv.png").transpose(2, 0, 1), a["x_adv"], atol=0.5 / 65535 + 1e-6)
    for name in ("adv.png", "figure.png"):
        with Image.open(folder / name) as png:
            png.load()
            assert png.text["Model"] == "tiny" and json.loads(png.text["Parameters"])["iters"] == 20
            assert "Iteration" in png.text and png.text["Software"].startswith("gse-desktop")
    with Image.open(folder / "figure.png") as png:
        assert png.info["dpi"] == pytest.approx((80, 80), abs=0.05)
    assert ET.parse(folder / "figure.svg").getroot().tag.endswith("svg")

    table = capsys.readouterr().out
    assert "photo.png" in table and "ACP" in table and str(m["acp"]) in table


def test_targeted_by_class_name_and_default_image(tiny, tmp_path):
    out = tmp_path / "out"
    assert _run("--model", "tiny", "--target", "dog", "--out", out, "--figure", "none", *FAST) == 0  # clean: bird
    folder = out / DEFAULT_IMAGE.stem
    assert sorted(p.name for p in folder.iterdir()) == ["adv.png", "adv8.png", "arrays.npz", "metrics.json",
                                                         "original.png"]
    m = json.loads((folder / "metrics.json").read_text())
    assert m["targeted"] and m["target"] == {"index": 1, "name": "dog"} and m["clean"]["index"] == 2
    assert m["success"] == (m["adversarial"]["index"] == 1)
    assert "cam" not in np.load(folder / "arrays.npz").files


def test_repeated_stems_get_their_own_folders(tiny, image, tmp_path):
    other = tmp_path / "sub"
    other.mkdir()
    copy = other / image.name
    copy.write_bytes(image.read_bytes())
    assert _run(image, copy, "--model", "tiny", "--out", tmp_path / "out", "--figure", "original", *FAST) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo", "photo-2"]


@pytest.mark.parametrize("args, reason", [
    (["{missing}"], "no such file"),
    (["{corrupt}"], "not an image file"),
    (["{image}", "--model", "no_such_model_xyz"], "no_such_model_xyz"),
    (["{image}", "--target", "7"], "out of range"),
    (["{image}", "--target", "zebra"], "no class named 'zebra'"),
    (["{image}", "--set", "mu=abc"], "mu must be a number"),
    (["{image}", "--set", "nope=1"], "unknown GSE parameter"),
    (["{image}", "--set", "mu"], "NAME=VALUE"),
    (["{image}", "--set", "k_hat=-1"], "k_hat must be"),
    (["{image}", "--preset", "mnist"], "invalid choice"),
    (["{image}", "--figure", "histogram"], "unknown figure panel"),
    (["{image}", "--out", "{blocked}"], "cannot write into folder"),
])
def test_bad_input_exits_nonzero_with_one_line(tiny, image, tmp_path, capsys, args, reason):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not a png")
    (tmp_path / "file").write_text("x")
    values = {"missing": tmp_path / "missing.png", "corrupt": corrupt, "image": image,
              "blocked": tmp_path / "file" / "out"}
    argv = [a.format(**values) for a in args]
    if "--model" not in argv:
        argv += ["--model", "tiny"]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert cli.main(argv + FAST) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gse-attack: error: ") and reason in err
    assert not (tmp_path / "out").exists()  # nothing written before the input is known to be good


def test_runtime_regulariser_and_float64_are_recorded(tiny, image, tmp_path):
    out = tmp_path / "out"
    assert _run(image, "--model", "tiny", "--out", out, "--figure", "original", "--dpi", 40, "--threads", 2,
                "--dtype", "float64", "--seed", 7, "--set", "reg=l1_2", *FAST) == 0
    folder = out / "photo"
    m = json.loads((folder / "metrics.json").read_text())
    assert (m["threads"], m["seed"], m["device"], m["dtype"]) == (2, 7, "cpu", "float64")
    assert m["params"]["units_0_1"]["reg"] == "l1/2" and m["params"]["official_units_-1_1"]["reg"] == "l1/2"
    assert torch.get_num_threads() == 2
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        assert npz["x_adv"].dtype == npz["delta"].dtype == npz["lambda_map"].dtype == np.float64
    for name in ("adv.png", "figure.png"):
        with Image.open(folder / name) as png:
            png.load()
            assert json.loads(png.text["Runtime"]) == {"threads": 2, "seed": 7, "device": "cpu", "dtype": "float64"}
            assert json.loads(png.text["Versions"]) == m["versions"]


def test_the_regulariser_changes_the_cli_run(tiny, image, tmp_path):
    lam0 = {}
    for reg in ("l0", "l1", "l2/3"):
        out = tmp_path / reg.replace("/", "_")
        assert _run(image, "--model", "tiny", "--out", out, "--figure", "none", "--set", f"reg={reg}", *FAST) == 0
        m = json.loads((out / "photo" / "metrics.json").read_text())
        assert m["params"]["units_0_1"]["reg"] == reg and m["threads"] == 1 and m["dtype"] == "float32"
        lam0[reg] = m["lambda0"]
    assert len(set(lam0.values())) == 3


@pytest.mark.parametrize("args, reason", [
    (["--threads", "0"], "threads must be an integer in [1, 1024]"),
    (["--threads", "two"], "argument --threads: invalid int value"),
    (["--dtype", "float16"], "argument --dtype: invalid choice"),
    (["--set", "reg=l3"], "reg must be one of l0, l1, l1/2, l2/3"),
])
def test_bad_runtime_options_exit_with_one_line(tiny, image, tmp_path, capsys, args, reason):
    assert cli.main([str(image), "--model", "tiny", "--out", str(tmp_path / "out"), *args, *FAST]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gse-attack: error: ") and reason in err
    assert not (tmp_path / "out").exists()

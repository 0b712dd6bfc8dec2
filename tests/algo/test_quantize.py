"""Quantisation-aware mode (gse_algo.quantize): results that fool the model as saved in 8- and 16-bit PNG files.

Every check decodes the file the code encodes (gse_algo.images.read_image) and asks the model about that tensor.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from gse_algo import cli, quantize
from gse_algo.images import load_image, read_image
from gse_algo.params import GSEParams
from test_attack import FAST, Linear, images
from test_cli import FAST as CLI_FAST
from test_cli import _run, image, tiny, tiny_model  # noqa: F401  (fixtures)


def decode(png: bytes, tmp_path, name: str = "x.png") -> torch.Tensor:
    """The [3,H,W] float32 tensor our image reader gets from PNG bytes."""
    path = tmp_path / name
    path.write_bytes(png)
    return torch.from_numpy(read_image(path).transpose(2, 0, 1).copy())


def predict(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[None]).argmax())


@pytest.mark.parametrize("bits", [8, 16])
def test_a_png_decodes_to_exactly_the_grid_tensor(bits, tmp_path):
    x = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    x[0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])
    grid = quantize.to_grid(x, bits)
    assert torch.equal(decode(quantize.encode_png(grid, bits), tmp_path), grid)
    top = 2 ** bits - 1
    assert torch.equal(grid * top, torch.round(x * top))  # integers k / L, the nearest to x
    assert (grid - x).abs().max() <= 0.5 / top + 1e-7
    with Image.open(io.BytesIO(quantize.encode_png(grid, bits))) as png:
        assert png.size == (7, 5)


def test_the_eight_bit_grid_lies_on_the_sixteen_bit_grid():
    k = torch.arange(256, dtype=torch.float32) / 255
    assert torch.equal(quantize.to_grid(k, 16), k)
    assert np.array_equal(quantize.to_integers(k, 16), np.arange(256) * 257)


class Threshold(torch.nn.Module):
    """Class 1 once the sum of all entries exceeds t, class 0 otherwise."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([torch.zeros_like(s), s - self.t], dim=1)


def test_plain_rounding_fails_and_scaling_along_delta_succeeds():
    """x = 0; delta = 0.45 / 255 on one entry, 0.1 / 255 on another; class 1 needs a sum above 0.4 / 255.

    Rounding gives 0 (fails). On the support the smallest grid image that fools has 1 / 255 in the first entry:
    scale s > 0.5 / 0.45 = 1.111 (round half to even keeps 0.5 at 0), found within the growth step to s = 1.16.
    """
    x = torch.zeros(1, 3, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.45 / 255
    x_adv[0, 2, 1, 1] = 0.1 / 255
    model = Threshold(0.4 / 255).eval()
    label = torch.tensor([0])
    assert predict(model, x_adv[0]) == 1 and predict(model, torch.round(x_adv[0] * 255) / 255) == 0
    out = quantize.finalize(model, x, label, False, x_adv, 8)
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 0, 0, 0] = 1 / 255
    assert torch.equal(out.x_adv, expected)
    assert out.success.tolist() == [True] and out.plain_success.tolist() == [False]
    assert 0.5 / 0.45 < out.scale[0] <= 1.16
    assert (out.acp[0], out.anc[0], out.d20[0]) == (1, 1, 1) and out.l2[0] == pytest.approx(1 / 255)
    assert out.n_extra_passes == 1 + 5 + 3  # plain, growth 1.01 .. 1.16, three bisections
    assert out.integers()[0, 0, 0, 0] == 1 and out.integers().sum() == 1


def test_plain_rounding_that_fools_is_kept_with_one_pass():
    x = torch.zeros(1, 3, 2, 2)
    x_adv = x.clone()
    x_adv[0, 1, 0, 1] = 0.7 / 255  # rounds to 1 / 255 > 0.4 / 255
    out = quantize.finalize(Threshold(0.4 / 255).eval(), x, torch.tensor([0]), False, x_adv, 8)
    assert out.success.tolist() == [True] and out.plain_success.tolist() == [True] and out.scale[0] == 1.0
    assert out.n_extra_passes == 1 and out.x_adv[0, 1, 0, 1] == 1 / 255 and out.acp[0] == 1


def test_nothing_to_scale_reports_failure_with_the_clean_image():
    x = torch.full((2, 3, 2, 2), 10 / 255)
    out = quantize.finalize(Threshold(100.0).eval(), x, torch.tensor([0, 0]), False, x.clone(), 8)
    assert not out.success.any() and torch.equal(out.x_adv, x) and (out.acp == 0).all()
    assert out.n_extra_passes == 1  # no support: no scale to search


def test_clean_images_off_the_grid_are_refused():
    x = torch.full((1, 3, 2, 2), 0.3)  # 76.5 / 255
    with pytest.raises(ValueError, match="not on the 8-bit grid"):
        quantize.finalize(Threshold(0.0).eval(), x, torch.tensor([0]), False, x, 8)
    with pytest.raises(ValueError, match="labels must have shape"):
        quantize.finalize(Threshold(0.0).eval(), torch.zeros(1, 3, 2, 2), torch.tensor([0, 1]), False,
                          torch.zeros(1, 3, 2, 2), 8)
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize.to_grid(x, 12)


def check_files(model, x_q, labels, targeted, result, grid, tmp_path, bits):
    """Per image: the file decodes to the grid tensor, pixels off the float support are bit-identical to the
    clean file, and the decoded file fools the model exactly when the final step says so."""
    support = (result.delta != 0).any(dim=1)
    for b in range(len(x_q)):
        file = decode(quantize.encode_png(grid.x_adv[b], bits), tmp_path, f"adv{b}.png")
        clean = decode(quantize.encode_png(x_q[b], bits), tmp_path, f"clean{b}.png")
        ints = quantize.to_integers(file, bits)  # what the file stores
        loaded = torch.from_numpy(ints.astype(np.float64)).to(x_q.dtype) / (2 ** bits - 1)  # k / L in the model's dtype
        assert torch.equal(loaded, grid.x_adv[b])
        if x_q.dtype == torch.float32:
            assert torch.equal(file, grid.x_adv[b])
        assert np.array_equal(ints[:, ~support[b]], quantize.to_integers(clean, bits)[:, ~support[b]])
        pred = predict(model, loaded)
        fooled = pred == int(labels[b]) if targeted else pred != int(labels[b])
        assert fooled == bool(grid.success[b])
        changed = (file != clean).any(dim=0).numpy()
        assert grid.acp[b] == changed.sum() <= support[b].sum()
        assert grid.anc[b] == ndimage.label(changed)[1]


@pytest.mark.parametrize("targeted", [False, True])
def test_linear_model_every_file_fools(targeted, tmp_path):
    model = Linear(3 * 8 * 8, seed=3).eval()
    x_q = quantize.to_grid(images(6), 8)
    with torch.no_grad():
        y = model(x_q).argmax(1)
    labels = (y + 1) % 4 if targeted else y
    result, grid = quantize.gse_attack_on_grid(model, images(6), labels, targeted, FAST)
    torch.testing.assert_close(result.x_adv - result.delta, x_q, rtol=0, atol=1e-12)  # attacked the grid image
    assert result.success.all() and grid.success.all()
    check_files(model, x_q, labels, targeted, result, grid, tmp_path, 8)
    assert (grid.acp <= np.array([(result.delta[b] != 0).any(0).sum() for b in range(6)])).all()


@pytest.mark.parametrize("bits", [8, 16])
def test_tiny_network_every_file_fools(bits, tmp_path):
    model = tiny_model().model
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    x_q = quantize.to_grid(x, 8)
    with torch.no_grad():
        labels = model(x_q).argmax(1)
    result, eight = quantize.gse_attack_on_grid(model, x, labels, params=GSEParams.preset("cifar10"))
    assert not eight.plain_success.all()  # this set needs the final step on one image
    grid = quantize.finalize(model, x_q, labels, False, result.x_adv, bits)  # x_q is on the 16-bit grid too
    assert result.success.all() and grid.success.all()
    check_files(model, x_q, labels, False, result, grid, tmp_path, bits)


def test_cli_default_writes_files_that_fool_as_saved(tiny, image, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert _run(image, "--model", "tiny", "--out", out, "--figure", "none", *CLI_FAST) == 0
    folder = out / "photo"
    assert sorted(p.name for p in folder.iterdir()) == ["adv.png", "adv8.png", "arrays.npz", "metrics.json",
                                                         "original.png"]
    m = json.loads((folder / "metrics.json").read_text())
    a = np.load(folder / "arrays.npz", allow_pickle=False)
    original = torch.from_numpy(read_image(folder / "original.png").transpose(2, 0, 1).copy())
    assert torch.equal(original, quantize.to_grid(load_image(image, (16, 16)), 8))
    assert torch.equal(original, torch.from_numpy(a["x"]))  # the attack ran on what original.png holds
    model = tiny_model().model
    clean = predict(model, original)
    assert m["clean"]["index"] == clean
    mask = a["mask"]
    for name, key, bits in (("adv8.png", "eight_bit", 8), ("adv.png", "sixteen_bit", 16)):
        file = torch.from_numpy(read_image(folder / name).transpose(2, 0, 1).copy())
        ints = quantize.to_integers(file, bits)
        assert np.array_equal(ints, a[f"x_adv_{bits}bit"])
        assert np.array_equal(ints[:, ~mask], quantize.to_integers(original, bits)[:, ~mask])
        record = m[key]
        assert record["success"] == (predict(model, file) != clean) == m[f"fools_at_{bits}bit"]
        changed = (file != original).any(dim=0).numpy()
        assert record["acp"] == changed.sum() and record["anc"] == ndimage.label(changed)[1]
        assert record["l2"] == pytest.approx(float((file - original).double().norm()), rel=1e-6)
        assert record["bits"] == bits and record["n_extra_passes"] >= 1
    assert m["eight_bit"]["success"]
    plain = torch.round(torch.from_numpy(a["x_adv"]) * 255) / 255
    assert m["eight_bit"]["plain_rounding_fools"] == (predict(model, plain) != clean)


def test_cli_no_quantize_keeps_the_float_pipeline(tiny, image, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert _run(image, "--model", "tiny", "--out", out, "--figure", "none", "--no-quantize", *CLI_FAST) == 0
    m = json.loads((out / "photo" / "metrics.json").read_text())
    a = np.load(out / "photo" / "arrays.npz", allow_pickle=False)
    assert "eight_bit" not in m and set(a.files) == {"x", "x_adv", "delta", "mask", "lambda_map"}
    assert np.array_equal(a["x"], load_image(image, (16, 16)).numpy())  # off the grid, as before
    assert not np.array_equal(a["x"], quantize.to_grid(torch.from_numpy(a["x"]), 8).numpy())
    assert sorted(p.name for p in (out / "photo").iterdir()) == ["adv.png", "arrays.npz", "metrics.json"]
    assert cli.build_parser().parse_args([]).quantize

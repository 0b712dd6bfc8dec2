"""Atomic writes, JSON / NPZ writers, PNG provenance chunks, the run-folder writer."""

from __future__ import annotations

import errno
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from gse_algo import export
from gse_algo.images import read_image, save_png16


def _png8(width: int = 6, height: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    export.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_missing_folder_gives_message_naming_the_path_and_no_file(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "a.json"
    with pytest.raises(OSError, match="cannot write .*a.json"):
        export.write_json(target, {"a": 1})
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_midway_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, failing):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"{}")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.os, failing, disk_full)
    with pytest.raises(OSError, match="cannot write .*metrics.json: No space left"):
        export.write_json(target, {"big": list(range(100))})
    assert target.read_bytes() == b"{}"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_json_converts_numpy_and_non_finite_values(tmp_path):
    path = export.write_json(tmp_path / "m.json", {"n": np.int64(3), "x": np.float32(0.5), "bad": float("nan"),
                                                  "inf": np.inf, "arr": np.array([1, 2]), "t": (1, 2.5),
                                                  "ok": np.bool_(True)})
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.5, "bad": None, "inf": None, "arr": [1, 2],
                                             "t": [1, 2.5], "ok": True}


def test_npz_round_trip_without_pickle_and_refuses_objects(tmp_path):
    arrays = {"delta": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 2, 2), "mask": np.eye(2, dtype=bool),
              "lam": np.array([1.0, np.inf])}
    path = export.write_npz(tmp_path / "a.npz", arrays)
    with np.load(path, allow_pickle=False) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(loaded[name], array)
            assert loaded[name].dtype == array.dtype
    with pytest.raises(ValueError, match="'bad'.*object"):
        export.write_npz(tmp_path / "b.npz", {"bad": np.array([{}, 1], dtype=object)})
    assert not (tmp_path / "b.npz").exists()


def test_png_text_chunks_in_8_and_16_bit_pngs(tmp_path):
    meta = {"Model": "tiny", "Parameters": '{"mu": 0.4}', "Iteration": "step 1, iteration 3", "Note": "λ map"}
    path8 = export.write_png(tmp_path / "a.png", _png8(), meta)
    with Image.open(path8) as image:
        assert image.text == meta and image.size == (6, 4)
    rgb = np.random.default_rng(1).random((3, 5, 7))
    save_png16(tmp_path / "raw16.png", rgb)
    path16 = export.write_png(tmp_path / "b.png", (tmp_path / "raw16.png").read_bytes(), meta)
    with Image.open(path16) as image:
        image.load()
        assert image.text == meta
    np.testing.assert_allclose(read_image(path16), rgb.transpose(1, 2, 0), atol=0.5 / 65535 + 1e-7)


def test_add_png_text_refuses_non_png():
    with pytest.raises(ValueError, match="not a PNG"):
        export.add_png_text(b"GIF89a....", {"a": "b"})


def test_provenance_has_software_time_model_parameters_iteration():
    info = export.provenance(model="m", params={"mu": np.float64(0.4)}, iteration="step 0, iteration 5",
                             Source="cat.png")
    assert info["Software"].startswith("gse-desktop ")
    assert info["Creation Time"][:2] == "20"
    assert json.loads(info["Parameters"]) == {"mu": 0.4}
    assert (info["Model"], info["Iteration"], info["Source"]) == ("m", "step 0, iteration 5", "cat.png")
    assert set(export.versions()) == {"python", "torch", "torchvision", "gse-desktop"}


def test_provenance_with_the_engines_versions_needs_no_torch():
    """The app passes the versions the engine recorded: an export never loads torch into the window's process."""
    import subprocess
    import sys

    code = ("import sys, json; from gse_algo import export; "
            "info = export.provenance(model='m', library_versions={'torch': '9.9'}); "
            "print(json.loads(info['Versions'])['torch'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["9.9", "False"]


def test_make_dir_under_a_file_gives_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="cannot write into folder .*file"):
        export.make_dir(tmp_path / "file" / "out")


def test_write_run_outputs_writes_the_three_files(tmp_path):
    written = export.write_run_outputs(tmp_path / "run" / "cat", adv_png=_png8(), metrics={"acp": 3},
                                       arrays={"delta": np.zeros((3, 2, 2))}, metadata={"Model": "m"})
    assert sorted(written) == ["adv.png", "arrays.npz", "metrics.json"]
    assert sorted(os.listdir(tmp_path / "run" / "cat")) == ["adv.png", "arrays.npz", "metrics.json"]
    with Image.open(written["adv.png"]) as image:
        assert image.text == {"Model": "m"}

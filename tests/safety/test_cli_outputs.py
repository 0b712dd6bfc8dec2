"""Where gse-attack writes: folder names stay inside --out, nothing is overwritten without --overwrite (and then
only an earlier result), a result folder is complete or absent, and a CAM that cannot be made never loses the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bad_input import cli_world, snapshot_tree
from gse_algo import cli, export

FAST = ["--set", "iters=3", "--set", "search_steps=1", "--dpi", "40"]


@pytest.fixture
def world(tmp_path):
    return cli_world(tmp_path / "inputs")


def _run(*args) -> int:
    return cli.main([str(a) for a in [*args, *FAST]])


@pytest.mark.parametrize("stem", ["..", ".", "...", "a\\b", "ph oto:1", ""])
def test_folder_names_stay_inside_out(stem):
    name = export.safe_folder_name(stem)
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert (Path("/out") / name).parent == Path("/out")


def test_dot_dot_images_write_inside_out_and_touch_nothing_else(world, tmp_path, capsys):
    sources = [tmp_path / "...png", tmp_path / "..png"]  # stems ".." and "."
    for source in sources:
        shutil.copy(world["photo"], source)
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    (out.parent / "keep.txt").write_text("mine")
    before = snapshot_tree(tmp_path)
    assert _run(*sources, "--model", world["model"], "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["image", "image-2"]
    outside = {name: stat for name, stat in snapshot_tree(tmp_path).items() if not name.startswith("work/out/")}
    assert outside == before  # the images, keep.txt and the rest untouched, nothing new beside them


def test_an_existing_result_is_kept_unless_overwrite(world, tmp_path, capsys):
    out = tmp_path / "out"
    args = [world["photo"], "--model", world["model"], "--out", out]
    assert _run(*args) == 0
    first = (out / "photo" / "metrics.json").read_bytes()
    capsys.readouterr()
    assert _run(*args) == 0
    assert "out/photo exists (--overwrite replaces it); writing" in capsys.readouterr().err
    assert (out / "photo" / "metrics.json").read_bytes() == first and (out / "photo-2" / "adv.png").is_file()
    (out / "photo" / "extra.txt").write_text("from the first run")
    assert _run(*args, "--overwrite") == 0
    assert "replacing" in capsys.readouterr().err
    assert not (out / "photo" / "extra.txt").exists() and (out / "photo" / "metrics.json").read_bytes() != first
    assert sorted(p.name for p in out.iterdir()) == ["photo", "photo-2"]  # no hidden leftovers


def test_overwrite_never_replaces_a_folder_that_is_not_a_result(world, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "photo").mkdir(parents=True)
    (out / "photo" / "thesis.tex").write_text("years of work")
    assert _run(world["photo"], "--model", world["model"], "--out", out, "--overwrite") == 0
    assert "is not a result folder, so it is kept" in capsys.readouterr().err
    assert (out / "photo" / "thesis.tex").read_text() == "years of work" and (out / "photo-2" / "adv.png").is_file()


def test_an_interrupted_write_leaves_no_folder_and_keeps_the_old_result(tmp_path):
    final = tmp_path / "photo"
    with pytest.raises(KeyboardInterrupt):
        with export.staged_folder(final) as stage:
            (stage / "adv.png").write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "metrics.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        with export.staged_folder(final, replace=True) as stage:
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["photo"] and (final / "metrics.json").read_text() == "{}"


def test_torchscript_with_figure_all_leaves_out_the_cam_panel_with_a_warning(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(world["photo"], "--model", world["model"], "--out", out, "--figure", "all") == 0
    assert "warning: the figure leaves out the cam panel: CAM needs forward hooks" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "photo").iterdir()) == ["adv.png", "adv8.png", "arrays.npz", "figure.png",
                                                                "figure.svg", "metrics.json", "original.png"]


def test_a_cam_that_fails_after_the_attack_loses_nothing_else(world, tmp_path, capsys):
    out = tmp_path / "out"  # a Linear layer: no feature map, so grad-cam fails after the attack
    assert _run(world["photo"], "--model", world["resnet20"], "--out", out, "--figure", "all",
                "--cam-layer", "linear") == 0
    assert "warning: the figure leaves out the cam panel: the target layer gives output" in capsys.readouterr().err
    assert (out / "photo" / "figure.png").is_file() and json.loads((out / "photo" / "metrics.json").read_text())


def test_cam_layer_picks_the_layer(world, tmp_path):
    out = tmp_path / "out"
    assert _run(world["photo"], "--model", world["resnet20"], "--out", out, "--figure", "cam",
                "--cam-layer", "layer2") == 0
    assert (out / "photo" / "figure.png").is_file()


def test_target_names_come_from_the_chosen_model(world, tmp_path, monkeypatch):
    from gse_algo.images import load_image
    from gse_algo.models import load_model

    monkeypatch.chdir(world["resnet20"].parent)  # --model resnet20.pt, a relative file name
    loaded = load_model("resnet20.pt")
    clean = int(loaded.model(load_image(world["photo"], loaded.input_size)[None]).argmax())
    target = next(name for i, name in enumerate(loaded.class_names) if i != clean and name in ("cat", "dog"))
    assert _run("photo.png", "--model", "resnet20.pt", "--target", target.upper(), "--figure", "none",
                "--out", tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out" / "photo" / "metrics.json").read_text())
    assert metrics["target"]["name"] == target

"""Running studies: rows against independent runs of the registry, protocols, resuming, interrupts, the output
folder checks, image sources and labels, the density columns, and the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gse_algo.attacks import run_attack
from gse_algo.metrics import interpretability_score
from gse_algo.models import load_model
from gse_algo.resnet20 import CIFAR10_CLASSES, ResNet20
from gse_algo.study import execute, sources
from gse_algo.study.cli import main
from gse_algo.study.runner import run_study
from gse_algo.study import StudyError
from gse_algo.study.spec import parse_study
from gse_algo.study.table import read_rows

needs_shared = pytest.mark.skipif(not (sources.REFERENCE.is_file() and sources.REFERENCE_MODEL.is_file()),
                                  reason="../shared is missing")
FAST = {"preset": "cifar10", "iters": 20, "search_steps": 2}


def make(base: Path = Path.cwd(), **changes):
    data = {"images": {"source": "reference", "limit": 4}, "model": {"name": "reference"}, "batch_size": 2,
            "attacks": [{"name": "gse", "settings": FAST, "grid": {"blur_size": [1, 5]}}], **changes}
    return parse_study(data, base)


def rows_of(folder: Path) -> list[dict]:
    return read_rows(folder)[1]


def key(row: dict) -> tuple:
    return row["image"], row["target"], row["attack"], row["config_id"]


@needs_shared
def test_rows_equal_the_registry_run_on_the_same_batches(tmp_path):
    study = make()
    outcome = run_study(study, tmp_path / "out")
    rows = rows_of(tmp_path / "out")
    assert outcome.rows == len(rows) == 4 * 2 and outcome.new == 8
    loaded = load_model(str(sources.REFERENCE_MODEL))
    x = torch.from_numpy(np.load(sources.REFERENCE)["images_uint8"][:2]).permute(0, 3, 1, 2).contiguous().float() / 255
    labels = loaded.model(x).argmax(1)
    for config in study.configs:  # the first batch of each configuration, attacked here directly
        expected = run_attack("gse", loaded.model, x, labels, False, config.settings)
        mine = [r for r in rows if r["config_id"] == config.config_id][:2]
        for r, m in zip(mine, expected.metrics):
            assert {k: r[k] for k in m.as_dict()} == m.as_dict()
            assert r["label"] == r["clean_class"] and r["target"] is None and r["param_blur_size"] == \
                config.settings["blur_size"]
        assert mine[0]["batch_forward"] == expected.n_forward and mine[0]["batch_size"] == 2
        goals = torch.tensor([m.adv_class for m in expected.metrics])  # untargeted: the class after the attack
        scores = interpretability_score(loaded.model, x, expected.x_adv - x, labels, goals)
        for r, s in zip(mine, scores):
            assert [r[f"is_{p}"] for p in (50, 60, 70, 80, 90)] == pytest.approx(s.tolist())
    assert Path(rows[0]["image_path"]).is_file()  # the reference images are written where the app can open them
    saved = np.asarray(Image.open(rows[0]["image_path"]))
    np.testing.assert_array_equal(saved, np.load(sources.REFERENCE)["images_uint8"][0])


@needs_shared
def test_targets_all_and_offsets_follow_the_label(tmp_path):
    run_study(make(targeted="all", images={"source": "reference", "limit": 1},
                   attacks=[{"name": "gse", "settings": {**FAST, "iters": 5, "search_steps": 1}}],
                   batch_size=9), tmp_path / "all")
    rows = rows_of(tmp_path / "all")
    label = rows[0]["label"]
    assert sorted(r["target"] for r in rows) == [t for t in range(10) if t != label]
    assert all(r["targeted"] for r in rows)
    run_study(make(targeted={"offsets": [1, 5]}, images={"source": "reference", "limit": 2},
                   attacks=[{"name": "gse", "settings": {**FAST, "iters": 5, "search_steps": 1}}]),
              tmp_path / "offsets")
    assert sorted((r["image"], r["target"]) for r in rows_of(tmp_path / "offsets")) == sorted(
        (r["image"], (r["label"] + o) % 10) for r in rows_of(tmp_path / "offsets")[::2] for o in (1, 5))


@needs_shared
def test_a_rerun_skips_finished_rows_and_completes_a_cut_table(tmp_path):
    out = tmp_path / "out"
    run_study(make(), out)
    first = {key(r): r for r in rows_of(out)}
    path = out / "rows.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]) + lines[-3][:25])  # the last batch gone, a row cut mid-line by a crash
    outcome = run_study(make(), out)
    assert outcome.new == 3 and outcome.rows == 8  # the cut batch of 2 rows ran again, the intact row kept
    again = {key(r): r for r in rows_of(out)}
    assert again.keys() == first.keys()
    for k, row in first.items():  # the same batches again: the same numbers
        assert {c: again[k][c] for c in ("success", "acp", "anc", "d20", "l2")} == \
               {c: row[c] for c in ("success", "acp", "anc", "d20", "l2")}
    assert run_study(make(), out).new == 0


@needs_shared
def test_an_interrupt_keeps_the_finished_batches(tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    original = execute.Worker.run

    def interrupted(self, batch, tick=None):
        calls.append(batch.number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, batch, tick)

    monkeypatch.setattr(execute.Worker, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(make(), out)
    assert len(rows_of(out)) == 2  # the first batch is on disk
    monkeypatch.setattr(execute.Worker, "run", original)
    assert run_study(make(), out).new == 6


@needs_shared
def test_the_output_folder_is_checked_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudyError, match="is a file"):
        run_study(make(), tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not a study folder"):
        run_study(make(), tmp_path / "other")
    run_study(make(images={"source": "reference", "limit": 1}), tmp_path / "study")
    with pytest.raises(StudyError, match="another study"):
        run_study(make(), tmp_path / "study")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.fixture
def cifar_model(tmp_path):
    """A random-weight ResNet20 file (the authors' convention) and images it classifies: a folder tree."""
    torch.manual_seed(0)
    net = ResNet20().eval()
    path = tmp_path / "resnet20.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model(str(path))
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for _ in range(4)]
    preds = [int(loaded.model(torch.from_numpy(sources.model_input(
        sources.ImageItem("p", "", None, p), (32, 32))).float()[None] / 255).argmax()) for p in pictures]
    return path, pictures, preds


def test_class_folders_give_true_labels_and_misclassified_images_are_left_out(tmp_path, cifar_model):
    path, pictures, preds = cifar_model
    tree = tmp_path / "tree"
    wrong = (preds[1] + 1) % 10
    for i, (picture, label) in enumerate(zip(pictures, [preds[0], wrong, preds[2], preds[3]])):
        (tree / CIFAR10_CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(tree / CIFAR10_CLASSES[label] / f"p{i}.png")
    study = make(images={"source": str(tree)}, model={"name": str(path)},
                 attacks=[{"name": "gse", "settings": {**FAST, "iters": 5, "search_steps": 1}}])
    run_study(study, tmp_path / "out")
    manifest, rows = read_rows(tmp_path / "out")
    assert manifest["plan"]["label_source"] == "true"
    assert len(rows) == 3 and "p1" not in {r["image"].split("_")[-1] for r in rows}
    assert [s["image"] for s in manifest["plan"]["skipped"]] == [f"{CIFAR10_CLASSES[wrong]}_p1"]
    assert "misclassified" in manifest["plan"]["skipped"][0]["reason"]


def test_a_csv_source_with_a_bad_label_or_file_is_refused_naming_it(tmp_path, cifar_model):
    path, pictures, _ = cifar_model
    Image.fromarray(pictures[0]).save(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("path,label\na.png,kitten\n")
    with pytest.raises(StudyError, match="image a: label: .* has no class named 'kitten'"):
        run_study(make(images={"source": str(tmp_path / "list.csv")}, model={"name": str(path)}), tmp_path / "o")
    (tmp_path / "list.csv").write_text("a.png,cat\ngone.png,dog\n")
    with pytest.raises(ValueError, match="row 2: .*gone.png does not exist"):
        run_study(make(images={"source": str(tmp_path / "list.csv")}, model={"name": str(path)}), tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing was written: the checks come first


def test_region_shares_are_the_support_inside_the_region():
    """Hand case: 3 changed pixels, 2 inside a 4-pixel region of a 4x4 image; energies 1, 4 inside, 4 outside."""
    from gse_algo.attacks.measure import region_shares

    x = torch.zeros(1, 1, 4, 4)
    adv = x.clone()
    adv[0, 0, 0, 0], adv[0, 0, 0, 1], adv[0, 0, 3, 3] = 1.0, 2.0, 2.0
    region = np.zeros((1, 4, 4), bool)
    region[0, :2, :2] = True
    shares = region_shares(x, adv, region)[0]
    assert shares["pixel_share"] == pytest.approx(2 / 3)
    assert shares["l2_share"] == pytest.approx(np.sqrt(5 / 9))
    assert shares["iou"] == pytest.approx(2 / 5) and shares["area"] == pytest.approx(4 / 16)


@needs_shared
def test_density_columns_from_the_cam_and_from_user_masks(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    ids = [item.id for item in sources.list_images("reference", 2)]
    for i in ids:  # the left half of each image is "object"
        mask = np.zeros((32, 32), np.uint8)
        mask[:, :16] = 255
        Image.fromarray(mask).save(masks / f"{i}.png")
    study = make(images={"source": "reference", "limit": 2}, density={"top_percent": 25, "masks": str(masks)},
                 attacks=[{"name": "gse", "settings": FAST}])
    run_study(study, tmp_path / "out", save_arrays=True)
    for row in rows_of(tmp_path / "out"):
        saved = np.load(execute.array_path(tmp_path / "out", row))
        delta = saved["x_adv"] - saved["x"]
        changed = (delta != 0).any(axis=0)
        assert row["acp"] == changed.sum()
        assert row["mask_pixel_share"] == pytest.approx(changed[:, :16].sum() / changed.sum())
        assert row["mask_area"] == 0.5 and row["cam_area"] == pytest.approx(0.25)
        assert 0 <= row["cam_pixel_share"] <= 1
    (masks / f"{ids[1]}.png").unlink()
    with pytest.raises(StudyError, match="no mask for 1 image"):
        run_study(study, tmp_path / "again")


@needs_shared
def test_the_command_line_runs_reports_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    file = tmp_path / "s.toml"
    file.write_text('[images]\nsource = "reference"\nlimit = 2\n[model]\nname = "reference"\n[[attacks]]\n'
                    'name = "gse"\nsettings = { preset = "cifar10", iters = 10, search_steps = 1 }\n'
                    'grid = { k_hat = [2, 5] }\n')
    assert main(["run", str(file), "--out", str(tmp_path / "out")]) == 0
    assert main(["report", str(tmp_path / "out")]) == 0
    report = tmp_path / "out" / "report"
    assert (report / "summary.md").is_file() and (report / "gse_k_hat.png").is_file()
    with (report / "summary.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert [int(line["k_hat"]) for line in lines] == [2, 5] and all(int(line["rows"]) == 2 for line in lines)
    capsys.readouterr()
    file.write_text(file.read_text().replace("k_hat = [2, 5]", "k_hat = [2, 5], blur_size = [4]"))
    assert main(["run", str(file), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "blur_size must be odd" in err and "Traceback" not in err and not (tmp_path / "bad").exists()
    assert main(["report", str(tmp_path)]) == 2 and "not a study folder" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "out" / "study.json").read_text())
    assert manifest["plan"]["rows"] == 4 and manifest["format"] == "gse-study"


def test_an_interrupt_of_the_command_line_is_one_line_and_its_exit_status(tmp_path, monkeypatch, capsys):
    import signal

    from gse_algo.entry import Interrupted
    from gse_algo.study import runner

    def stop(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(runner, "run_study", stop)
    assert main(["run", "--images", "reference", "--model", "reference", "--attack", "gse",
                 "--out", str(tmp_path / "o")]) == 143
    err = capsys.readouterr().err
    assert "interrupted (SIGTERM)" in err and "finished rows are kept" in err and "Traceback" not in err


def test_the_papers_offsets_depend_on_the_class_count():
    from types import SimpleNamespace

    from gse_algo.study.plan import target_lists

    study = make(targeted="paper")
    imagenet = SimpleNamespace(class_names=[str(i) for i in range(1000)])
    problems: list[str] = []
    lists = target_lists(study, imagenet, [0, 999, None], problems)
    assert lists[0] == [857, 477, 974, 591, 150, 547, 261, 86, 151, 610]  # spec 2.1, (0 + o) mod 1000
    assert lists[1][:3] == [856, 476, 973] and lists[2] == [] and problems == []
    cifar = SimpleNamespace(class_names=list(CIFAR10_CLASSES))
    assert target_lists(study, cifar, [3], problems) == [[4, 5, 6, 7, 8, 9, 0, 1, 2]]
    target_lists(study, SimpleNamespace(class_names=list("abcde")), [0], problems)
    assert len(problems) == 1 and "10 or 1000 classes" in problems[0]
    target_lists(make(targeted={"offsets": [10]}), cifar, [0], problems)
    assert "gives the label itself" in problems[1]

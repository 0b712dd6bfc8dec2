"""Study files and flags: what a valid study expands to, and one message naming every problem of a bad one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gse_algo.study.cli import build_parser, study_from_flags
from gse_algo.study import StudyError
from gse_algo.study.spec import load_study, parse_study

BASE = {"images": {"source": "reference"}, "model": {"name": "reference"},
        "attacks": [{"name": "gse", "settings": {"preset": "cifar10"}}]}


def study(**changes):
    return parse_study({**BASE, **changes}, Path.cwd())


def problems(**changes) -> list[str]:
    with pytest.raises(StudyError) as caught:
        study(**changes)
    return str(caught.value).splitlines()


def test_a_grid_times_a_config_list_gives_every_combination_with_stable_keys():
    s = study(attacks=[{"name": "gse", "settings": {"preset": "cifar10"},
                        "configs": [{"label": "off", "blur": False}, {"blur_size": 3}],
                        "grid": {"k_hat": [10, 30, 50]}}])
    assert len(s.configs) == 2 * 3
    assert [c.label for c in s.configs[:3]] == ["off", "off", "off"]
    assert s.configs[3].label == "blur_size=3, k_hat=10"
    assert s.configs[0].settings["blur"] is False and s.configs[0].settings["k_hat"] == 10
    assert s.configs[0].settings["preset"] == "cifar10" and s.configs[4].settings["blur_size"] == 3
    assert len({c.config_id for c in s.configs}) == 6
    first = study(attacks=[{"name": "gse", "grid": {"k_hat": [10, 50]}, "settings": {"preset": "cifar10"}}])
    again = study(attacks=[{"name": "gse", "grid": {"k_hat": [50, 10]}, "settings": {"preset": "cifar10"}}])
    ids = {c.settings["k_hat"]: c.config_id for c in again.configs}
    assert ids[10] == first.configs[0].config_id  # the key depends on the settings only, not on the order given
    assert s.swept == ["blur", "k_hat", "blur_size"] and not s.targets.targeted


@pytest.mark.parametrize("value, mode, classes, offsets", [
    (False, "untargeted", (), ()), ("all", "classes", ("all",), ()), ([3, "cat"], "classes", (3, "cat"), ()),
    ({"offsets": [1, 5]}, "offsets", (), (1, 5))])
def test_target_protocols(value, mode, classes, offsets):
    t = study(targeted=value).targets
    assert (t.mode, t.classes, t.offsets) == (mode, classes, offsets)
    assert study(targeted="paper").targets.paper


def test_every_problem_is_listed_once_with_its_key():
    lines = problems(images={"source": "reference", "limit": "8", "colour": 1}, speed=3,
                     targeted="some", attacks=[{"name": "gse", "grid": {"blur_size": [3, 4], "k_hat": []}},
                                               {"name": "nope"},
                                               {"name": "gse", "settings": {"blur_sise": 3}}])
    text = "\n".join(lines)
    assert "study: unknown key(s) speed" in text
    assert "images: unknown key(s) colour" in text
    assert "images.limit: must be an integer" in text
    assert "targeted: must be false" in text
    assert "attacks[0].grid.k_hat: must be a non-empty list" in text
    assert "attacks[1].name: unknown attack 'nope'" in text
    assert "gse has no parameter blur_sise" in text
    assert len(lines) == 7


def test_impossible_grid_values_are_refused_before_any_work():
    assert any("blur_size must be odd" in line for line in problems(
        attacks=[{"name": "gse", "grid": {"blur_size": [3, 4]}}]))
    assert any("q must be in (0, 1]" in line for line in problems(attacks=[{"name": "gse", "grid": {"q": [0]}}]))
    assert any("the same settings" in line for line in problems(
        attacks=[{"name": "gse", "configs": [{"blur_size": 5}, {"label": "x"}]}]))  # 5 is the default
    assert any("lists a value twice" in line for line in problems(attacks=[{"name": "gse", "grid": {"q": [1, 1]}}]))
    assert any("also in settings" in line for line in problems(
        attacks=[{"name": "gse", "settings": {"q": 0.5}, "grid": {"q": [0.25]}}]))


def test_missing_sections_sources_and_runtime_values():
    lines = problems(images={"source": "no/such/folder"}, model={"name": "x", "preprocessing": "official"},
                     device="tpu", batch_size=0)
    text = "\n".join(lines)
    assert "does not exist" in text and "model.preprocessing" in text and "device: must be one of" in text
    assert "batch_size: must be an integer" in text
    assert any("runs in float32" in line for line in problems(dtype="float64", density={}))
    with pytest.raises(StudyError, match="attacks: missing"):
        parse_study({"images": {"source": "bundled"}, "model": {"name": "reference"}}, Path.cwd())


def test_a_study_file_with_relative_paths_and_bad_files(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "s.toml").write_text('[images]\nsource = "photos"\n[model]\nname = "reference"\n'
                                     '[[attacks]]\nname = "gse"\n')
    s = load_study(tmp_path / "s.toml")
    assert s.source == str((tmp_path / "photos").resolve()) and s.name == "s"
    (tmp_path / "bad.toml").write_text("[images\n")
    with pytest.raises(StudyError, match="not valid TOML"):
        load_study(tmp_path / "bad.toml")
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "none.toml")


def test_flags_build_the_same_study_as_a_file(tmp_path):
    (tmp_path / "s.toml").write_text(
        'targeted = "all"\n[images]\nsource = "reference"\nlimit = 3\n[model]\nname = "reference"\n'
        '[[attacks]]\nname = "gse"\nsettings = { preset = "cifar10", iters = 20 }\ngrid = { blur_size = [1, 3] }\n')
    args = build_parser().parse_args(["run", "--out", "x", "--images", "reference", "--limit", "3", "--model",
                                      "reference", "--attack", "gse", "--set", "preset=cifar10", "--set",
                                      "iters=20", "--grid", "blur_size=1,3", "--targeted", "all"])
    from_flags = parse_study(study_from_flags(args), tmp_path)
    from_file = load_study(tmp_path / "s.toml")
    assert [c.config_id for c in from_flags.configs] == [c.config_id for c in from_file.configs]
    assert (from_flags.limit, from_flags.targets) == (from_file.limit, from_file.targets)
    with pytest.raises(StudyError, match="without a study file, give --model"):
        study_from_flags(argparse.Namespace(images="reference", model=None, attack=["gse"]))

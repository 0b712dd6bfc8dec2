"""Weights files without the network: which models work offline, the missing-weights message, and picked files
read with torch.load(weights_only=True) only."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import pytest
import torch

from gse_algo import offline_weights, weights
from gse_algo.models import ModelError, load_model


class Hostile:
    """Unpickling this would create a file (what any code in a pickle could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub folder, and no network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub" / "checkpoints"


def test_a_model_without_weights_says_where_to_put_the_file(hub):
    with pytest.raises(weights.MissingWeights) as caught:
        load_model("resnet18")
    text = str(caught.value)
    expected = Path(torchvision_url("resnet18")).name
    assert expected.startswith("resnet18-") and expected in text and str(hub) in text
    assert "pick a weights file" in text and "no network" in text
    assert caught.value.path == hub / expected and caught.value.arch == "resnet18"


def torchvision_url(arch: str) -> str:
    return weights.default_entry(arch).url


def test_the_catalogue_marks_the_models_whose_weights_are_here(hub):
    offline = dict(weights.catalogue())
    assert len(offline) > 50 and offline["mobilenet_v2"] == (offline_weights.packaged_weights() is not None)
    assert not offline["resnet18"]
    hub.mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, hub / Path(torchvision_url("resnet18")).name)
    assert dict(weights.catalogue())["resnet18"]


def test_a_file_with_objects_is_refused_without_running_them(hub, tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.pth"
    torch.save({"w": torch.zeros(1), "x": Hostile(marker)}, hostile)
    with pytest.raises(ModelError, match="not a plain state_dict"):
        weights.install("resnet18", hostile)
    hub.mkdir(parents=True)
    (hub / Path(torchvision_url("resnet18")).name).write_bytes(hostile.read_bytes())  # put there by hand
    with pytest.raises(ModelError, match="not a plain state_dict"):
        load_model("resnet18")  # checked before torchvision's own (full) unpickler reads it
    assert not marker.exists()
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ModelError, match="not a state_dict"):
        weights.install("resnet18", tmp_path / "list.pth")


def test_a_picked_file_is_installed_only_when_it_is_torchvisions(hub, tmp_path, monkeypatch):
    picked = tmp_path / "picked.pth"
    torch.save({"w": torch.arange(3.0)}, picked)
    with pytest.raises(ModelError, match="is not torchvision's resnet18-"):
        weights.install("resnet18", picked)
    with pytest.raises(ModelError, match="not a torchvision model"):
        weights.install("my_net", picked)
    prefix = hashlib.sha256(picked.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(weights, "checkpoint_path", lambda entry: hub / f"resnet18-{prefix}.pth")
    target = weights.install("resnet18", picked)
    assert target == hub / f"resnet18-{prefix}.pth" and target.read_bytes() == picked.read_bytes()
    assert sorted(p.name for p in hub.iterdir()) == [target.name]  # no partial file left

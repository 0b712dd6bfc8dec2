"""Load a classifier by torchvision name or from a file, and wrap it so it takes [0,1] images.

Every model comes as a `LoadedModel`: the raw network, a wrapper that applies the model's own normalisation
((x - mean) / std) to [0,1] images, the class names, the input size the whole image is resized to, and the default
layer for class activation maps (CAM).

Sources:
- a torchvision classification model name (`mobilenet_v2`, the default, with its IMAGENET1K_V1 weights that work
  offline, see offline_weights.py; any other with its DEFAULT weights, downloaded on first use). Class names, mean,
  std and input size (the crop size: we resize the whole image, no crop) come from the weights' metadata.
- a TorchScript file (torch.jit.save). Without a card it is assumed to normalise its own input (mean 0, std 1)
  and to take 224x224 images; one forward pass finds the number of classes (named "0".."K-1") and checks it runs.
  Its CAM layer is the last Conv2d (`arch` is ignored).
- a state_dict file (torch.load(..., weights_only=True)): the CIFAR-10 ResNet20 (arch "resnet20" = "resnet20-gse",
  input 2p - 1, the GSE authors' convention, the default; or "resnet20-akamaster", ImageNet mean/std; akamaster's
  released file, a {'state_dict', 'best_prec1'} dict with 'module.' prefixes, defaults to the latter), or any
  torchvision architecture named by `arch` (e.g. a fine-tuned "resnet18": mean/std, input size and class names of
  its DEFAULT weights unless given; the number of class names sets the number of outputs).
A file's preprocessing comes from a JSON card beside it (`model.pt.json`, else `model.json`; keys: arch, mean, std,
input_size, class_names); keyword options override the card, and also apply to torchvision names.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from gse_algo import classes
from gse_algo.defaults import DEFAULT_MODEL
from gse_algo.params import SMALL_INPUT
from gse_algo.resnet20 import CIFAR10_CLASSES, CONVENTIONS, ResNet20

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The paper's protocol (spec section 4, pitfall 2): every model fed (x - 0.5) / 0.5, ImageNet images resized to
# 256x256 without a crop (ViTs keep 224, the size their patch grid needs); CIFAR inputs keep 32x32.
PREPROCESSING = ("default", "paper")
PAPER_MEAN_STD = (0.5, 0.5, 0.5)
PAPER_SIDE = 256
# Torchvision names whose default here differs from torchvision's DEFAULT (the one that ships for offline use).
DEFAULT_WEIGHTS = {"mobilenet_v2": "IMAGENET1K_V1"}
CARD_KEYS = {"arch", "mean", "std", "input_size", "class_names"}
MAX_CARD_BYTES = 4 << 20  # a card holds at most a few class names per kilobyte; larger files are refused
INPUT_SIDE = (8, 2048)  # allowed input_size height and width (the load-time check runs one pass at that size)
MAX_CLASSES = 100_000

Triple = tuple[float, float, float]


class ModelError(Exception):
    """A model that cannot be loaded or used; the message says which and why."""


class Normalized(nn.Module):
    """[0,1] images [B,3,H,W] -> logits of `net` applied to (x - mean) / std."""

    def __init__(self, net: nn.Module, mean: Triple, std: Triple) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class LoadedModel:
    name: str
    net: nn.Module
    model: nn.Module
    class_names: list[str]
    input_size: tuple[int, int]
    mean: Triple
    std: Triple
    cam_layer: str
    cam_reshape: str | None

    @property
    def device(self) -> torch.device:
        return self.model.mean.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "LoadedModel":
        """Move the model to `device` and/or convert its floating parameters and buffers to `dtype` (float64 runs:
        README "Float64"); mean and std are refilled from their exact values, not from float32-rounded ones."""
        self.model.to(device=device, dtype=dtype)
        if dtype is not None:
            with torch.no_grad():
                for buffer, values in ((self.model.mean, self.mean), (self.model.std, self.std)):
                    buffer.copy_(torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1))
        return self

    def class_index(self, cls: int | str) -> int:
        """find_class on this model's class names."""
        return find_class(self.class_names, cls, self.name)


def find_class(class_names: list[str], cls: int | str, model: str = "the model") -> int:
    """gse_algo.classes.find_class (the one class lookup, torch-free for the app) with a ModelError."""
    try:
        return classes.find_class(class_names, cls, model)
    except classes.ClassLookupError as error:
        raise ModelError(str(error)) from None


def torchvision_model_names() -> list[str]:
    """The classification models torchvision offers, sorted."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_model(
    spec: str | Path = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    arch: str | None = None,
    mean: Triple | None = None,
    std: Triple | None = None,
    input_size: tuple[int, int] | int | None = None,
    class_names: list[str] | None = None,
    weights: str | None = None,
    preprocessing: str = "default",
) -> LoadedModel:
    """Load a torchvision model by name or a model file (TorchScript or state_dict); see the module docstring.

    `weights` names a torchvision weights entry (e.g. "IMAGENET1K_V2") and applies to model names only.
    preprocessing "paper" (the official protocol, `paper_preprocessing`) replaces mean, std and the input size;
    "default" keeps each model's own.
    """
    if preprocessing not in PREPROCESSING:
        raise ModelError(f"preprocessing must be one of {', '.join(PREPROCESSING)} (got {preprocessing!r})")
    if preprocessing == "paper" and (mean, std, input_size) != (None, None, None):
        raise ModelError("preprocessing='paper' sets mean, std and input_size itself; give either, not both")
    options = {"arch": arch, "mean": mean, "std": std, "input_size": input_size, "class_names": class_names}
    options = {key: value for key, value in options.items() if value is not None}
    spec = str(spec)
    path = Path(spec).expanduser()
    check_settings(options, "the load_model options")
    if path.is_dir():
        raise ModelError(f"{spec} is a folder, not a model file")
    if spec in torchvision_model_names() and not path.is_file():
        if arch is not None:
            raise ModelError(f"arch= applies to model files, not to the torchvision model {spec!r}")
        name, net, defaults = _torchvision_model(spec, weights)
    elif path.is_file():
        if weights is not None:
            raise ModelError(f"weights= applies to torchvision model names, not to the file {spec}")
        name, net, defaults = _file_model(path, {**_read_card(path), **options})
    else:
        raise ModelError(_unknown_model_message(spec))
    settings = {**defaults, **options}
    if preprocessing == "paper":
        settings.update(paper_preprocessing(settings["arch"], _size(settings["input_size"], name)))
    return _assemble(name, net, settings).to(device)


def paper_preprocessing(arch: str, input_size: tuple[int, int]) -> dict:
    """mean, std and input_size of the paper's protocol for an `arch` model whose own input is `input_size`:
    0.5/0.5 for every model; inputs under SMALL_INPUT px (CIFAR) keep their size, ViTs keep theirs (224), other ImageNet
    models get 256x256 (the whole image resized, no crop, as gse_algo.images always does)."""
    keep = min(input_size) < SMALL_INPUT or arch.startswith(("vit", "maxvit"))  # fixed patch grids
    return {"mean": PAPER_MEAN_STD, "std": PAPER_MEAN_STD, "input_size": input_size if keep else PAPER_SIDE}


def default_cam_layer(net: nn.Module, arch: str) -> tuple[str, str | None]:
    """(dotted module name, reshape kind) of the usual CAM target layer of `net`, an `arch` network."""
    named = dict(net.named_modules())
    if arch.startswith("resnet20"):
        return "layer3.2", None
    if "layer4" in named and isinstance(named["layer4"], nn.Sequential):  # resnet, resnext, wide_resnet
        return f"layer4.{len(named['layer4']) - 1}", None
    if arch.startswith("vgg"):
        last_relu = max(i for i, module in enumerate(net.features) if isinstance(module, nn.ReLU))
        return f"features.{last_relu}", None
    if arch.startswith(("mobilenet", "efficientnet", "convnext")):
        return f"features.{len(net.features) - 1}", None
    if arch.startswith("densenet"):
        return "features", None
    if arch.startswith("vit"):
        last_block = list(net.encoder.layers.named_children())[-1][0]
        return f"encoder.layers.{last_block}.ln_1", "vit"
    convs = [name for name, module in named.items() if _is_conv2d(module)]
    return (convs[-1] if convs else ""), None


def _is_conv2d(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) or getattr(module, "original_name", None) == "Conv2d"  # TorchScript


def _unknown_model_message(spec: str) -> str:
    if any(sep in spec for sep in "/\\") or Path(spec).suffix:
        return f"model file {spec} does not exist"
    close = difflib.get_close_matches(spec, torchvision_model_names(), n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else "; see torchvision_model_names()"
    return f"unknown model {spec!r}: neither a torchvision classification model nor a file{hint}"


def _weights_entry(arch: str, weights: str | None) -> Any:
    enum = torchvision.models.get_model_weights(arch)
    choice = weights or DEFAULT_WEIGHTS.get(arch, "DEFAULT")
    try:
        return enum[choice]
    except KeyError:
        choices = ", ".join(enum.__members__)
        raise ModelError(f"{arch} has no weights {choice!r}; choose one of {choices}") from None


def _weights_settings(entry: Any) -> dict:
    transform = entry.transforms()
    return {
        "mean": tuple(transform.mean),
        "std": tuple(transform.std),
        "input_size": transform.crop_size[0],
        "class_names": list(entry.meta["categories"]),
    }


def _torchvision_model(arch: str, weights: str | None) -> tuple[str, nn.Module, dict]:
    from gse_algo.weights import ensure  # (it imports this module)

    entry = _weights_entry(arch, weights)
    ensure(arch, entry)  # in the hub folder and a plain state_dict, else MissingWeights saying where to put it
    net = torchvision.models.get_model(arch, weights=entry)
    name = arch if weights is None else f"{arch}:{entry.name}"
    return name, net, {**_weights_settings(entry), "arch": arch}


def _read_card(path: Path) -> dict:
    """The JSON card beside a model file (`model.pt.json`, else `model.json`), or {} when there is none."""
    for card in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if card.is_file() and card != path:
            break
    else:
        return {}
    try:
        if card.stat().st_size > MAX_CARD_BYTES:
            raise ModelError(f"model card {card} is larger than {MAX_CARD_BYTES >> 20} MiB")
        values = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"model card {card} is not readable JSON: {_first_line(error)}") from None
    except RecursionError:
        raise ModelError(f"model card {card} is nested too deeply") from None
    if not isinstance(values, dict):
        raise ModelError(f"model card {card} must hold a JSON object")
    unknown = set(values) - CARD_KEYS
    if unknown:
        raise ModelError(f"model card {card} has unknown keys {sorted(unknown)}; known: {sorted(CARD_KEYS)}")
    check_settings(values, f"model card {card}")
    return values


def check_settings(values: dict, where: str) -> None:
    """The card schema, for a card's values and load_model's options: ModelError naming `where` and the key.

    arch: a non-empty name; mean, std: three finite numbers, std > 0; input_size: a side or [height, width] in
    INPUT_SIDE; class_names: 2..MAX_CLASSES strings.
    """
    if "arch" in values and not (isinstance(values["arch"], str) and values["arch"].strip()):
        raise ModelError(f"arch for {where} must be a model architecture name, got {values['arch']!r:.80}")
    for key in ("mean", "std"):
        if key in values:
            _triple(values[key], key, where)
    if "std" in values and min(_triple(values["std"], "std", where)) <= 0:
        raise ModelError(f"std for {where} must be positive, got {values['std']!r:.80}")
    if "input_size" in values:
        _size(values["input_size"], where)
    names = values.get("class_names")
    if "class_names" in values and not (isinstance(names, (list, tuple)) and 2 <= len(names) <= MAX_CLASSES
                                        and all(isinstance(n, str) for n in names)):
        raise ModelError(f"class_names for {where} must be a list of 2 to {MAX_CLASSES:,} strings, got {names!r:.80}")


def _file_model(path: Path, settings: dict) -> tuple[str, nn.Module, dict]:
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
                net = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise ModelError(f"{path} looks like TorchScript but does not load: {_first_line(error)}") from None
        defaults = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": 224}
        return str(path), net, {**defaults, **settings, "arch": "torchscript"}  # CAM layer: the last Conv2d
    state = _load_state_dict(path)
    arch = settings.get("arch") or ("resnet20-akamaster" if "best_prec1" in state else "resnet20")
    if "state_dict" in state:
        state = state["state_dict"]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if arch.startswith("resnet20"):
        convention = arch.removeprefix("resnet20").removeprefix("-") or "gse"
        if convention not in CONVENTIONS:
            raise ModelError(f"unknown ResNet20 variant {arch!r}; use resnet20 (= resnet20-gse) or resnet20-akamaster")
        net = ResNet20(num_classes=len(settings.get("class_names", CIFAR10_CLASSES)))
        mean, std = CONVENTIONS[convention]
        defaults = {"mean": mean, "std": std, "input_size": 32, "class_names": CIFAR10_CLASSES}
    elif arch in torchvision_model_names():
        entry = torchvision.models.get_model_weights(arch).DEFAULT
        defaults = _weights_settings(entry)
        classes = settings.get("class_names", defaults["class_names"])
        net = torchvision.models.get_model(arch, weights=None, num_classes=len(classes))
    else:
        raise ModelError(f"unknown arch {arch!r} for {path}: use resnet20, resnet20-akamaster or a torchvision name")
    try:
        keys = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensors of the wrong shape
        raise ModelError(f"{path} is not a {arch} state_dict: {_first_line(error, skip_header=True)}") from None
    if keys.missing_keys or keys.unexpected_keys:
        found = f"missing {_some(keys.missing_keys)}, unexpected {_some(keys.unexpected_keys)}"
        raise ModelError(f"{path} is not a {arch} state_dict: {found}")
    return f"{arch}:{path}", net, {**defaults, **settings, "arch": arch}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise ModelError(
                f"{path} holds pickled Python objects (a whole model?), which are not loaded for safety; "
                "save the model's state_dict or a TorchScript file instead"
            ) from None
        raise ModelError(f"{path} is neither a TorchScript file nor a state_dict saved with torch.save") from None
    except Exception as error:  # torch raises many types for corrupt files (zip, EOF, OS, unicode errors)
        reason = _first_line(error)
        raise ModelError(f"{path} is not a readable torch.save file (corrupt or truncated?): {reason}") from None
    inner = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(inner, dict) or not all(isinstance(v, torch.Tensor) for v in inner.values()):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    if not all(isinstance(k, str) for k in inner):
        raise ModelError(f"{path} is not a state_dict: its keys must be parameter names (strings)")
    return state


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return f"{len(keys)} keys ({shown})" if keys else "none"


def _first_line(error: BaseException, skip_header: bool = False) -> str:
    """The first informative line of an error message, at most 200 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()][int(skip_header):]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _triple(value: Any, what: str, name: str) -> Triple:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise ModelError(f"{what} for {name} must be three numbers (R, G, B), all finite, got {value!r:.80}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _size(value: Any, name: str) -> tuple[int, int]:
    size = [value, value] if isinstance(value, int) else value
    low, high = INPUT_SIDE
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in size)):
        raise ModelError(f"input_size for {name} must be an int or [height, width] in {low}..{high}, "
                         f"got {value!r:.80}")
    return size[0], size[1]


def _assemble(name: str, net: nn.Module, settings: dict) -> LoadedModel:
    check_settings(settings, name)
    mean, std = _triple(settings["mean"], "mean", name), _triple(settings["std"], "std", name)
    size = _size(settings["input_size"], name)
    net.eval()
    model = Normalized(net, mean, std).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    n_classes = check_output(name, model, size)
    classes = settings.get("class_names") or [str(i) for i in range(n_classes)]
    if len(classes) != n_classes:
        raise ModelError(f"{name} gives {n_classes} logits but has {len(classes)} class names")
    cam_layer, cam_reshape = default_cam_layer(net, settings["arch"])
    return LoadedModel(name, net, model, [str(c) for c in classes], size, mean, std, cam_layer, cam_reshape)


def check_output(name: str, model: nn.Module, size: tuple[int, int]) -> int:
    """Run the model once on a grey [1, 3, *size] image and return K: it must give finite float logits [1, K]."""
    try:
        with torch.no_grad():
            logits = model(torch.full((1, 3, *size), 0.5))
    except Exception as error:  # a foreign TorchScript model may raise anything
        raise ModelError(f"{name} fails on a [1, 3, {size[0]}, {size[1]}] image: {_first_line(error)}") from None
    if not isinstance(logits, torch.Tensor):
        raise ModelError(f"{name} must return one logits tensor [1, classes], got a {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[0] != 1 or not 2 <= logits.shape[1] <= MAX_CLASSES:
        raise ModelError(f"{name} must return logits [1, classes] with 2 or more classes for one image, "
                         f"got shape {list(logits.shape)}")
    if not logits.is_floating_point():
        raise ModelError(f"{name} must return floating-point logits, got {logits.dtype}")
    if not torch.isfinite(logits).all():
        raise ModelError(f"{name} gives NaN or infinite logits on a grey image (non-finite weights or mean/std?)")
    return int(logits.shape[1])

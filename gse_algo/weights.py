"""Torchvision weights files: where they live, which models work offline, and a file the user picks, installed
safely.

torchvision keeps a model's weights in torch.hub.get_dir()/checkpoints under the file name of their URL (e.g.
resnet18-f37072fd.pth, the hex part being the start of the file's SHA-256). A model works offline when its file is
there (MobileNetV2's ships with the project, see offline_weights.py). Before torchvision reads such a file (with a
full unpickler), `ensure` downloads a missing one or raises MissingWeights (the message says where to put it), and
checks that the file is a plain state_dict with torch.load(weights_only=True), which unpickles tensors and plain
containers only. `install` puts a file the user picked there, after the same check and the SHA-256 check.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torchvision

from gse_algo import offline_weights
from gse_algo.models import DEFAULT_WEIGHTS, ModelError, torchvision_model_names

HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")  # torch.hub's convention for the SHA-256 prefix


class MissingWeights(ModelError):
    """A torchvision model whose weights file is neither in the hub folder nor downloadable."""

    def __init__(self, arch: str, path: Path, reason: str) -> None:
        super().__init__(f"the {arch} weights could not be downloaded ({reason}); put the file {path.name} into "
                         f"{path.parent} (torch.hub.get_dir()/checkpoints), or pick a weights file")
        self.arch, self.path = arch, path


def default_entry(arch: str) -> Any:
    """The torchvision weights entry a model name loads by default here."""
    return torchvision.models.get_model_weights(arch)[DEFAULT_WEIGHTS.get(arch, "DEFAULT")]


def checkpoint_path(entry: Any) -> Path:
    """Where torchvision looks for the file of a weights entry."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name


def catalogue() -> list[tuple[str, bool]]:
    """(name, works offline) of every torchvision classification model, for its default weights here."""
    packaged = offline_weights.packaged_weights() is not None
    return [(name, checkpoint_path(default_entry(name)).is_file() or (name == "mobilenet_v2" and packaged))
            for name in torchvision_model_names()]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict file's tensors, read with torch.load(weights_only=True); ModelError for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise ModelError(f"{path.name} is not a readable weights file ({' '.join(str(error).split())[:200]})") from None
    except Exception as error:  # noqa: BLE001 - the restricted unpickler refuses objects with its own error types
        raise ModelError(f"{path.name} is not a plain state_dict (refused: reading it could run code; "
                         f"{type(error).__name__})") from None
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in state.items())):
        raise ModelError(f"{path.name} is not a state_dict (a dict of tensors)")
    return state


def ensure(arch: str, entry: Any) -> Path:
    """The checked weights file of `entry`: copied from the package (MobileNetV2), downloaded, or MissingWeights."""
    path = checkpoint_path(entry)
    if not path.is_file() and path.name == offline_weights.FILE_NAME:
        offline_weights.install()
    if not path.is_file():
        match = HASH_IN_NAME.search(path.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(entry.url, str(path), hash_prefix=match.group(1) if match else None,
                                           progress=False)
        except (OSError, RuntimeError) as error:  # no network (URLError is an OSError), a damaged download
            raise MissingWeights(arch, path, " ".join(str(error).split())[:200]) from None
    read_state_dict(path)
    return path


def install(arch: str, source: str | Path) -> Path:
    """Copy a weights file the user picked to where torchvision looks for `arch`'s default weights, once it is a
    plain state_dict and the very file torchvision publishes (its SHA-256 starts as the expected name says)."""
    if arch not in torchvision_model_names():
        raise ModelError(f"{arch!r} is not a torchvision model: a weights file of your own loads as a model file "
                         f"(with a card naming its arch)")
    source = Path(source)
    target = checkpoint_path(default_entry(arch))
    read_state_dict(source)
    match = HASH_IN_NAME.search(target.name)
    if match:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if not digest.startswith(match.group(1)):
            raise ModelError(f"{source.name} is not torchvision's {target.name} (its SHA-256 starts {digest[:8]}, "
                             f"not {match.group(1)}); other weights load as a model file with a card")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
    return target

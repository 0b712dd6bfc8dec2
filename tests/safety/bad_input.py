"""Shared makers for the bad-input corpus: a tiny model, valid files, and a child process under a memory limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
CHILD_MEMORY = 1 << 30  # bytes a child may allocate beyond what it holds after its imports
CHILD_TIMEOUT = 120


class Tiny(nn.Module):
    """A 3-class CNN on 16x16 inputs, deterministic weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def save_torchscript(path: Path, module: nn.Module, card: dict | None = None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script/save are deprecated (still work)
        torch.jit.save(torch.jit.script(module.eval()), str(path))
    if card is not None:
        write_card(path, card)
    return path


def write_card(path: Path, card: dict | str) -> Path:
    card_path = path.with_name(path.name + ".json")
    card_path.write_text(card if isinstance(card, str) else json.dumps(card))
    return card_path


def tiny_card(**changes) -> dict:
    return {"input_size": 16, "class_names": ["cat", "dog", "bird"], **changes}


def photo(path: Path, size: tuple[int, int] = (20, 24)) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def snapshot_tree(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under `folder` (to show nothing was touched)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_child(code: str, *, memory: int = CHILD_MEMORY, env: dict | None = None,
              timeout: int = CHILD_TIMEOUT) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python whose address space may grow by at most `memory` bytes after the imports
    that the prelude makes (torch maps gigabytes of virtual memory, so the limit is set once it is loaded)."""
    prelude = textwrap.dedent(f"""
        import resource, sys
        import numpy, torch, PIL.Image
        import gse_algo.images, gse_algo.models, gse_algo.safe_zip
        with open("/proc/self/status") as status:
            vm = int(next(line for line in status if line.startswith("VmSize:")).split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + {memory}, vm + {memory}))
    """)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


def make_session(path: Path) -> Path:
    """A valid session of a short run of Tiny on a random 16x16 image (Qt-free, as the app writes it)."""
    from gse_algo.attack import iterate_gse
    from gse_algo.images import encode_png16
    from gse_algo.params import GSEParams
    from gse_desktop.history import RunHistory
    from gse_desktop.session import SavedRun, Session, save_session

    model = Tiny().eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    clean = int(model(x).argmax())
    params = GSEParams(iters=4, search_steps=2, k_hat=2)
    history = RunHistory()
    run = iterate_gse(model, x, torch.tensor([clean]), False, params)
    for snap in run:
        history.add(snap)
    history.set_result(run.result)
    probs = torch.softmax(model(x), 1)[0].detach()
    top = probs.topk(3)
    info = {"image_name": "photo.png", "image_path": "/nowhere/photo.png", "model_spec": "tiny.pt",
            "model_name": "tiny", "class_names": ["cat", "dog", "bird"], "targeted": False, "label": clean,
            "clean_class": clean, "top_classes": top.indices.tolist(), "top_probs": top.values.tolist(),
            "params": params.as_dict(), "preset": None, "device": "cpu", "cam": None, "shown": [0, 1]}
    image = x[0].permute(1, 2, 0).numpy()
    return save_session(path, Session(image, encode_png16(x[0]), [SavedRun(history, info)]))


def messages_in_child(paths: dict[str, Path], module: str, function: str, error: str) -> dict[str, str]:
    """Call module.function(path) for every file of `paths` in one child under the memory limit:
    {name: the message of the `error` raised, or "accepted"}. Anything else (a MemoryError, a crash) fails."""
    child = run_child(f"""
        import json
        from {module} import {function}, {error}
        out = {{}}
        for key, path in {json.dumps({k: str(v) for k, v in paths.items()})}.items():
            try:
                {function}(path)
                out[key] = "accepted"
            except {error} as caught:
                out[key] = str(caught)
        print(json.dumps(out))
    """)
    assert child.returncode == 0 and child.stderr == "", child.stderr[-3000:]
    return json.loads(child.stdout)


def png_header_only(path: Path, width: int, height: int, bit_depth: int = 8, colour: int = 2) -> Path:
    """A PNG whose header declares width x height but whose pixel data is a few bytes (a decompression bomb's
    header: decoding it would allocate the declared size)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def fake_ghostscript(folder: Path) -> tuple[Path, Path]:
    """A `gs` program that only leaves a marker file: (folder to put first on PATH, the marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "gs-was-run"
    gs = folder / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    gs.chmod(0o755)
    return folder, marker


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"


def processes_with(token: str) -> list[int]:
    """Ids of live processes whose environment holds `token` (a child and anything it started inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if token.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours to read
                pass
    return found


def cli_world(folder: Path) -> dict[str, Path]:
    """Input files for command-line cases: a tiny TorchScript model with a card, images good and bad."""
    import math

    folder.mkdir(parents=True, exist_ok=True)
    nan_tiff = np.full((8, 8), 0.5, np.float32)
    nan_tiff[2, 2] = math.nan
    Image.fromarray(nan_tiff, mode="F").save(folder / "nan.tif", format="TIFF")
    (folder / "drawing.png").write_bytes(EPS)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "a-file").write_text("not a folder\n")
    nan_net = Tiny()
    with torch.no_grad():
        nan_net.fc.weight.fill_(float("nan"))
    from gse_algo.resnet20 import ResNet20

    torch.manual_seed(0)
    torch.save(ResNet20().state_dict(), folder / "resnet20.pt")  # a plain nn.Module model (CAM works)
    return {"model": save_torchscript(folder / "tiny.pt", Tiny(), tiny_card()), "resnet20": folder / "resnet20.pt",
            "nan_model": save_torchscript(folder / "nan.pt", nan_net, tiny_card()),
            "photo": photo(folder / "photo.png"), "nan_image": folder / "nan.tif",
            "eps_image": folder / "drawing.png", "bomb": png_header_only(folder / "bomb.png", 100_000_000, 1),
            "folder": folder / "models", "file": folder / "a-file"}

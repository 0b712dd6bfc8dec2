"""8-bit benchmark: how many adversarial examples still fool the model once saved as 8-bit PNG files.

Per set it prints the share of files that fool the model with plain rounding of the float result and after the
final step of gse_algo.quantize (each file encoded, decoded with gse_algo.images.read_image and classified alone),
and the final step's cost: mean ACP and l2 of the 8-bit result relative to the float one, extra forward passes.
Sets: the public reference set (24 CIFAR-10 images, the authors' ResNet20, cifar10 preset; already 8-bit, so the
attack is the usual one) and with --photos the bundled photos (resources/*.jpg, MobileNetV2, imagenet preset),
where it also runs today's float pipeline (the resized photo, off the grid, rounded whole) for comparison.
Usage: python benchmarks/eight_bit.py [--photos] [--targeted] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from gse_algo import metrics, quantize
from gse_algo.attack import gse_attack
from gse_algo.images import example_images, load_image, read_image
from gse_algo.models import load_model
from gse_algo.params import GSEParams

SHARED = Path(__file__).resolve().parents[2] / "shared"


def file_fools(model: torch.nn.Module, grid: torch.Tensor, labels: torch.Tensor, targeted: bool, bits: int,
               folder: Path) -> np.ndarray:
    """Per image: write the PNG, read it back as the app and CLI do, and ask the model about it alone."""
    out = []
    for b in range(len(grid)):
        path = folder / f"{b}.png"
        path.write_bytes(quantize.encode_png(grid[b], bits))
        x = torch.from_numpy(read_image(path).transpose(2, 0, 1).copy()).to(grid.device)
        out.append(bool(quantize.fools(model, x[None], labels[b:b + 1], targeted)[0]))
    return np.array(out)


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool,
            params: GSEParams, folder: Path) -> list[str]:
    """Attack x (on the 8-bit grid), finalize on 8 and 16 bits; one markdown row per bit depth."""
    start = time.perf_counter()
    result = gse_attack(model, x, labels, targeted, params)
    seconds = time.perf_counter() - start
    ok = result.success
    acp, l2 = metrics.acp(result.delta), metrics.l2(result.delta)
    rows = []
    for bits in (8, 16):
        plain = file_fools(model, quantize.to_grid(result.x_adv, bits), labels, targeted, bits, folder)
        start = time.perf_counter()
        grid = quantize.finalize(model, x, labels, targeted, result.x_adv, bits)
        extra = time.perf_counter() - start
        final = file_fools(model, grid.x_adv, labels, targeted, bits, folder)
        assert np.array_equal(final, grid.success), "a file disagrees with the final step's check"
        both = ok & final
        rows.append(
            f"| {name} | {bits} | {ok.sum()}/{len(ok)} | {(plain & ok).sum()}/{ok.sum()} | {both.sum()}/{ok.sum()} | "
            f"{acp[both].mean():.2f} / {grid.acp[both].mean():.2f} | {l2[both].mean():.4f} / {grid.l2[both].mean():.4f} "
            f"({grid.l2[both].mean() / l2[both].mean() - 1:+.1%}) | {grid.scale[both].max():.3f} | "
            f"{grid.n_extra_passes} | {extra / seconds:.2%} |")
    return rows


def today(name: str, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, params: GSEParams,
          folder: Path) -> str:
    """Today's float pipeline on photos: attack the off-grid input and round the whole result to 8 bits."""
    result = gse_attack(model, x, labels, False, params)
    rounded = quantize.to_grid(result.x_adv, 8)
    fools = file_fools(model, rounded, labels, False, 8, folder)
    changed = metrics.acp(rounded - quantize.to_grid(x, 8))  # pixels that differ from the photo's own 8-bit file
    return (f"| {name} | {int(result.success.sum())}/{len(x)} | {int((fools & result.success).sum())} | "
            f"{metrics.acp(result.delta).mean():.0f} | {changed.mean():.0f} of {x.shape[2] * x.shape[3]} |")


HEADER = ("| set | bits | float success | plain rounding fools | final step fools | mean ACP float / file | "
          "mean l2 float / file (cost) | largest scale | extra passes | extra time / attack |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", action="store_true", help="also the bundled photos with MobileNetV2 (slow)")
    parser.add_argument("--targeted", action="store_true", help="also targeted (+1) on the reference set")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, device {device}, torch {torch.__version__}\n")
    folder = Path(tempfile.mkdtemp(prefix="eight_bit_"))
    rows = []
    resnet20 = load_model(str(SHARED / "models" / "resnet20_cifar10_gse.pt"), device=device).model
    images = np.load(SHARED / "reference" / "public_cifar_resnet20.npz")["images_uint8"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(device)
    assert torch.equal(quantize.to_grid(x, 8), x)  # the reference images are 8-bit files already
    with torch.no_grad():
        clean = resnet20(x).argmax(1)
    rows += measure("CIFAR-10 public, ResNet20, untargeted", resnet20, x, clean, False,
                    GSEParams.preset("cifar10"), folder)
    if args.targeted:
        rows += measure("CIFAR-10 public, ResNet20, targeted +1", resnet20, x, (clean + 1) % 10, True,
                        GSEParams.preset("cifar10", targeted=True), folder)
    print(HEADER + "\n" + "\n".join(rows), flush=True)
    if not args.photos:
        return
    mobilenet = load_model(device=device)
    params = GSEParams.preset("imagenet")
    before = []
    for path in example_images():
        photo = load_image(path, mobilenet.input_size)[None].to(device)
        x_q = quantize.to_grid(photo, 8)
        with torch.no_grad():
            label = mobilenet.model(x_q).argmax(1)
            label_float = mobilenet.model(photo).argmax(1)
        rows += measure(f"{path.name}, MobileNetV2", mobilenet.model, x_q, label, False, params, folder)
        before.append(today(path.name, mobilenet.model, photo, label_float, params, folder))
        print(rows[-2] + "\n" + rows[-1] + "\n" + before[-1], flush=True)
    print("\n" + HEADER + "\n" + "\n".join(rows))
    print("\ntoday's float pipeline (photo off the grid, whole result rounded to 8 bits):\n"
          "| photo | float success | 8-bit file fools | ACP float | pixels changed in the 8-bit file |\n"
          "|---|---|---|---|---|\n" + "\n".join(before))


if __name__ == "__main__":
    main()

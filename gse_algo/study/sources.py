"""Where a study's images come from: the bundled photos, the public reference set, a folder, an ImageFolder-style
tree of class folders, or a CSV of path,label. Each image becomes an `ImageItem`; `model_input` gives what the
attack sees: the whole image resized to the model input (gse_algo.images) and put on the 8-bit grid (as gse-attack
and the app attack it), as uint8 [3,H,W], so it is exact in every file and on every worker.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gse_algo import images, quantize
from gse_algo.defaults import EXAMPLE_SUFFIXES, example_images

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"  # the project's shared data, beside the checkout
REFERENCE = SHARED / "reference" / "public_cifar_resnet20.npz"  # 24 CIFAR-sized crops (README there)
REFERENCE_MODEL = SHARED / "models" / "resnet20_cifar10_gse.pt"  # the GSE authors' ResNet20 (README there)
IMAGE_SUFFIXES = EXAMPLE_SUFFIXES | {".bmp", ".tif", ".tiff", ".gif", ".ppm", ".tga"}
MAX_CSV_BYTES = 64 << 20


def model_spec(name: str) -> str:
    """The model a study names, for load_model: 'reference' is the GSE authors' ResNet20 file."""
    return str(REFERENCE_MODEL) if name == "reference" else name


class SourceError(ValueError):
    """Images that cannot be listed; the message names the file or folder."""


@dataclass(frozen=True)
class ImageItem:
    id: str  # unique within the study, safe as a file name
    path: str  # the file (for the reference set: the PNG written into the study folder, see `materialise`)
    label: int | str | None  # the true class (index or name) where the source gives one, else None
    pixels: np.ndarray | None = None  # the image as uint8 [H,W,3] when it is not read from `path` (reference set)


def list_images(source: str, limit: int | None = None) -> list[ImageItem]:
    """The images of a study source, in a fixed order (names sorted), at most `limit`."""
    if source == "bundled":
        items = [ImageItem(_safe(p.stem), str(p), None) for p in example_images()]
    elif source == "reference":
        items = reference_items()
    else:
        path = Path(source)
        items = _csv_items(path) if path.is_file() else _folder_items(path)
    if not items:
        raise SourceError(f"{source}: no images found")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise SourceError(f"{source}: several images share the name {', '.join(twice[:5])}")
    return items[:limit]


def reference_items() -> list[ImageItem]:
    """The 24 public CIFAR-sized images (../shared/reference), named from their recipe, no labels."""
    if not REFERENCE.is_file():
        raise SourceError(f"the reference set is not here: {REFERENCE} (../shared beside the checkout)")
    pixels = np.load(REFERENCE)["images_uint8"]
    recipe_file = REFERENCE.with_suffix(".json")
    recipe = json.loads(recipe_file.read_text())["recipe"] if recipe_file.is_file() else []
    names = [f"{r['source']}_{r['crop_rule']}" for r in recipe] if len(recipe) == len(pixels) else [""] * len(pixels)
    return [ImageItem(_safe(f"{i:02d}_{name}".rstrip("_")), "", None, pixels[i]) for i, name in enumerate(names)]


def materialise(items: list[ImageItem], folder: Path) -> list[ImageItem]:
    """Images held in memory (the reference set) written as lossless PNGs into `folder`, so the app can open
    them; the items then point to those files. Others are returned unchanged."""
    from PIL import Image

    out = []
    for item in items:
        if item.pixels is None:
            out.append(item)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{item.id}.png"
        if not path.is_file():
            Image.fromarray(item.pixels).save(path)
        out.append(ImageItem(item.id, str(path), item.label, item.pixels))
    return out


def model_input(item: ImageItem, size: tuple[int, int]) -> np.ndarray:
    """uint8 [3,H,W]: the image resized to `size` (whole image, no crop) and rounded to the 8-bit grid."""
    rgb = item.pixels.astype(np.float32) / 255.0 if item.pixels is not None else images.read_image(item.path)
    return quantize.to_integers(images.to_tensor(rgb, size), 8)


def read_mask(folder: Path, item: ImageItem, size: tuple[int, int]) -> np.ndarray:
    """bool [H,W]: the user's object mask <folder>/<image id>.png (nonzero = object), resized (nearest) to `size`."""
    from PIL import Image

    path = folder / f"{item.id}.png"
    if not path.is_file():
        raise SourceError(f"{path}: no mask for image {item.id}")
    gray = images.read_image(path).max(axis=2)  # any channel set counts as object
    small = Image.fromarray((gray > 0).astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(small) > 0


def _safe(name: str) -> str:
    """A name usable as a file name: anything but letters, digits, '_', '.', '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "image"


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _folder_items(folder: Path) -> list[ImageItem]:
    """A plain folder of images (no labels), or class folders of images (the folder name is the label)."""
    files = sorted(p for p in folder.iterdir() if _is_image(p))
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if files and classes:
        raise SourceError(f"{folder}: holds both images and class folders ({classes[0].name}/); use one layout")
    if files:
        return [ImageItem(_safe(p.stem), str(p), None) for p in files]
    items = []
    for cls in classes:
        items += [ImageItem(_safe(f"{cls.name}_{p.stem}"), str(p), cls.name)
                  for p in sorted(q for q in cls.iterdir() if _is_image(q))]
    return items


def _csv_items(path: Path) -> list[ImageItem]:
    """Rows of path,label (a header row 'path,label' is allowed); paths relative to the CSV's folder."""
    if path.stat().st_size > MAX_CSV_BYTES:
        raise SourceError(f"{path}: larger than {MAX_CSV_BYTES >> 20} MiB")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (UnicodeDecodeError, csv.Error) as error:
        raise SourceError(f"{path}: not a readable CSV ({error})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0]] == ["path", "label"]:
        rows = rows[1:]
    items = []
    for number, row in enumerate(rows, start=1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise SourceError(f"{path}, row {number}: expected path,label (got {','.join(row)[:80]!r})")
        file = (path.parent / row[0].strip()).resolve()
        if not file.is_file():
            raise SourceError(f"{path}, row {number}: {file} does not exist")
        label = row[1].strip()
        items.append(ImageItem(_safe(file.stem), str(file), int(label) if label.isdigit() else label))
    return items

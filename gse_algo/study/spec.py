"""A study's definition: read from a TOML file (or built from command-line flags) and checked before any work.

`parse_study(data, base)` turns the plain dict a TOML file holds into a `Study` or raises StudyError
listing every problem, each naming its key (unknown keys, wrong types, empty or impossible grids, settings an
attack refuses). What needs the model or the files (classes, images, masks) is checked by gse_algo.study.plan,
also before any attack runs. Keys (all optional but `images`, `model` and `attacks`):

    name, seed, threads, device ("cpu" | "cuda" | "auto"), batch_size ("auto" or an integer), memory_mb
    targeted = false | "all" | "paper" | [classes] | {offsets = [..]}
    [images]  source = "bundled" | "reference" | a folder (plain or class folders) | a .csv of path,label
              limit = N (the first N images)
    [model]   name = "reference" | a torchvision name | a model file;  preprocessing = "default" | "paper"
    [[attacks]] name = registry name; settings = {fixed values}; grid = {name = [values]} (every combination);
              configs = [{label = "..", name = value, ..}] (a list; multiplied by the grid when both are given)
    [density] cam = CAM method, layer, top_percent (the CAM's top q% region), masks = folder of <image stem>.png
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gse_algo.attacks import get_attack
from gse_algo.defaults import CAM_METHOD_NAMES
from gse_algo.runtime import DEVICES, DTYPES, MAX_THREADS
from gse_algo.study import StudyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli is the same parser (tomllib is tomli moved into the standard library)
    import tomli as tomllib

SOURCES = ("bundled", "reference")  # named image sets; anything else is a path
PREPROCESSING = ("default", "paper")  # gse_algo.models.PREPROCESSING (kept torch-free here; a test ties them)
MAX_ROWS = 10_000_000  # a plan larger than this is refused as a typo (e.g. a grid of 1000 values squared)
MAX_BATCH = 1024
# The paper's fixed ImageNet target offsets (spec 2.1): target = (label + offset) mod 1000; CIFAR-10 uses 1..9.
IMAGENET_OFFSETS = (857, 477, 974, 591, 150, 547, 261, 86, 151, 610)
TOP_KEYS = {"name", "description", "seed", "threads", "device", "dtype", "batch_size", "memory_mb", "targeted",
            "images", "model", "attacks", "density"}


@dataclass(frozen=True)
class Config:
    """One attack configuration: the attack's full settings (checked by the registry) and what was swept."""

    attack: str
    settings: dict
    swept: dict  # the values this configuration was given by grid/configs (empty for a single configuration)
    label: str

    @property
    def config_id(self) -> str:
        """A short stable key of the attack and its full settings (the table's configuration column)."""
        text = json.dumps({"attack": self.attack, "settings": self.settings}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Targets:
    mode: str  # "untargeted", "classes" or "offsets"
    classes: tuple = ()  # class indices or names (mode "classes"), "all" expands to every other class
    offsets: tuple[int, ...] = ()  # target = (label + offset) mod K; "paper" resolves by K in plan.py
    paper: bool = False

    @property
    def targeted(self) -> bool:
        return self.mode != "untargeted"


@dataclass(frozen=True)
class Density:
    cam: str = "GradCAM"
    layer: str | None = None  # None: the model's usual CAM layer
    top_percent: float = 20.0
    masks: Path | None = None


@dataclass(frozen=True)
class Study:
    name: str
    source: str  # "bundled", "reference" or an absolute path
    limit: int | None
    model: str
    preprocessing: str
    targets: Targets
    configs: tuple[Config, ...]
    density: Density | None = None
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int | None = None  # None: chosen from memory_mb (gse_algo.study.batching)
    memory_mb: int = 2048
    raw: dict = field(default_factory=dict, compare=False)  # the checked input, for study.json

    @property
    def swept(self) -> list[str]:
        """Every setting that differs between configurations of one attack, in first-seen order."""
        names: list[str] = []
        for config in self.configs:
            names += [k for k in config.swept if k not in names]
        return names

    def digest(self) -> str:
        """Identifies the study's content (what a resumed run must match): the checked input, paths resolved."""
        return hashlib.sha1(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_study(path: str | Path) -> Study:
    """Read and check a study file (TOML); relative paths in it are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: no such study file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise StudyError(f"{path}: unreadable ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{path}: not valid TOML ({error})") from None
    try:
        return parse_study(data, path.resolve().parent, default_name=path.stem)
    except StudyError as error:
        raise StudyError(f"{path}: {error}") from None


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.items.append(f"{where}: {text}")

    def unknown(self, where: str, table: dict, known: set[str]) -> None:
        extra = sorted(set(table) - known)
        if extra:
            self.add(where, f"unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(known))}")

    def raise_any(self) -> None:
        if self.items:
            raise StudyError("\n".join(self.items))


def parse_study(data: dict, base: Path, default_name: str = "study") -> Study:
    """A checked Study from the dict a study file holds; StudyError lists every problem."""
    problems = _Problems()
    problems.unknown("study", data, TOP_KEYS)
    for key in ("images", "model", "attacks"):
        if key not in data:
            problems.add(key, "missing (every study names its images, its model and its attacks)")
    images = _table(problems, data, "images", {"source", "limit"})
    model = _table(problems, data, "model", {"name", "preprocessing"})
    density = _density(problems, data.get("density"), base) if "density" in data else None
    source = _source(problems, images.get("source"), base)
    limit = _integer(problems, "images.limit", images.get("limit"), 1, MAX_ROWS) if "limit" in images else None
    model_name = _model(problems, model.get("name"), base)
    preprocessing = model.get("preprocessing", "default")
    if preprocessing not in PREPROCESSING:
        problems.add("model.preprocessing", f"must be one of {', '.join(PREPROCESSING)} (got {preprocessing!r})")
    targets = _targets(problems, data.get("targeted", False))
    configs = _configs(problems, data.get("attacks"), targets.targeted)
    runtime = {
        "seed": _integer(problems, "seed", data.get("seed", 0), 0, 2**63 - 1),
        "threads": _integer(problems, "threads", data.get("threads", 1), 1, MAX_THREADS),
        "memory_mb": _integer(problems, "memory_mb", data.get("memory_mb", 2048), 16, 10**7),
    }
    device = data.get("device", "cpu")
    if device not in DEVICES:
        problems.add("device", f"must be one of {', '.join(DEVICES)} (got {device!r})")
    dtype = data.get("dtype", "float32")
    if dtype not in DTYPES:
        problems.add("dtype", f"must be one of {', '.join(DTYPES)} (got {dtype!r})")
    if density is not None and dtype != "float32":
        problems.add("density", "the CAM (grad-cam) runs in float32: use dtype = \"float32\" with [density]")
    batch = data.get("batch_size", "auto")
    batch_size = None if batch == "auto" else _integer(problems, "batch_size", batch, 1, MAX_BATCH)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        problems.add("name", f"must be a non-empty string (got {name!r})")
    problems.raise_any()
    raw = {**data, "images": {**images, "source": source}, "model": {**model, "name": model_name}}
    if density is not None:
        raw["density"] = {**data["density"], "masks": str(density.masks) if density.masks else None}
    return Study(name=name, source=source, limit=limit, model=model_name, preprocessing=preprocessing,
                 targets=targets, configs=configs, density=density, device=device, dtype=dtype,
                 batch_size=batch_size, raw=raw, **runtime)


def _table(problems: _Problems, data: dict, key: str, known: set[str]) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.add(key, f"must be a table ([{key}]), got {type(value).__name__}")
        return {}
    problems.unknown(key, value, known)
    return value


def _integer(problems: _Problems, where: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(where, f"must be an integer in {low}..{high} (got {value!r})")
        return low
    return value


def _source(problems: _Problems, value: object, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.add("images.source", f"must be 'bundled', 'reference', a folder or a .csv file (got {value!r})")
        return ""
    if value in SOURCES:
        return value
    path = (base / value).expanduser().resolve()
    if not path.exists():
        problems.add("images.source", f"{path} does not exist (a folder, a .csv file, 'bundled' or 'reference')")
    elif path.is_file() and path.suffix.lower() != ".csv":
        problems.add("images.source", f"{path} is a file but not a .csv of path,label")
    return str(path)


def _model(problems: _Problems, value: object, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.add("model.name", f"must be 'reference', a torchvision model name or a file (got {value!r})")
        return ""
    looks_like_path = any(sep in value for sep in "/\\") or Path(value).suffix
    return str((base / value).expanduser().resolve()) if looks_like_path else value


def _targets(problems: _Problems, value: object) -> Targets:
    if value is False:
        return Targets("untargeted")
    if value == "all":
        return Targets("classes", ("all",))
    if value == "paper":
        return Targets("offsets", paper=True)
    if isinstance(value, list) and value and all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                                 for v in value):
        return Targets("classes", tuple(value))
    if isinstance(value, dict) and set(value) == {"offsets"}:
        offsets = value["offsets"]
        if isinstance(offsets, list) and offsets and all(isinstance(o, int) and not isinstance(o, bool) and o > 0
                                                         for o in offsets):
            return Targets("offsets", offsets=tuple(offsets))
    problems.add("targeted", "must be false (untargeted), \"all\" (every other class), \"paper\" (the paper's "
                             "offsets: 1..9 on CIFAR-10, its 10 fixed ImageNet offsets), a non-empty list of "
                             f"classes, or {{offsets = [positive integers]}} (got {value!r})")
    return Targets("untargeted")


def _density(problems: _Problems, value: object, base: Path) -> Density | None:
    if not isinstance(value, dict):
        problems.add("density", f"must be a table ([density]), got {type(value).__name__}")
        return None
    problems.unknown("density", value, {"cam", "layer", "top_percent", "masks"})
    cam = value.get("cam", "GradCAM")
    if cam not in CAM_METHOD_NAMES:
        problems.add("density.cam", f"must be one of {', '.join(CAM_METHOD_NAMES)} (got {cam!r})")
    layer = value.get("layer")
    if layer is not None and not (isinstance(layer, str) and layer.strip()):
        problems.add("density.layer", f"must be a layer name (got {layer!r})")
    top = value.get("top_percent", 20.0)
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0 < top <= 100:
        problems.add("density.top_percent", f"must be a number in (0, 100] (got {top!r})")
    masks = None
    if "masks" in value:
        masks = (base / str(value["masks"])).expanduser().resolve()
        if not masks.is_dir():
            problems.add("density.masks", f"{masks} is not a folder of <image stem>.png masks")
    return Density(cam, layer, float(top) if isinstance(top, (int, float)) else 20.0, masks)


def _configs(problems: _Problems, value: object, targeted: bool) -> tuple[Config, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        if value is not None:
            problems.add("attacks", "must be a non-empty list of tables ([[attacks]] name = ...)")
        return ()
    configs: list[Config] = []
    for i, entry in enumerate(value):
        where = f"attacks[{i}]"
        problems.unknown(where, entry, {"name", "settings", "grid", "configs"})
        try:
            name = get_attack(entry.get("name", "")).name
        except ValueError as error:
            problems.add(f"{where}.name", str(error))
            continue
        configs += _expand(problems, where, name, entry, targeted)
    seen: dict[str, str] = {}
    for config in configs:
        if config.config_id in seen:
            problems.add("attacks", f"configurations {seen[config.config_id]!r} and {config.label!r} of "
                                    f"{config.attack} have the same settings")
        seen.setdefault(config.config_id, config.label)
    total = len(configs)
    if total > MAX_ROWS:
        problems.add("attacks", f"{total:,} configurations: more than {MAX_ROWS:,}")
    return tuple(configs)


def _expand(problems: _Problems, where: str, name: str, entry: dict, targeted: bool) -> list[Config]:
    """Every configuration of one [[attacks]] entry: each `configs` item times each grid point."""
    fixed = entry.get("settings", {})
    grid = entry.get("grid", {})
    items = entry.get("configs", [{}])
    ok = True
    for key, kind, value in (("settings", dict, fixed), ("grid", dict, grid), ("configs", list, items)):
        if not isinstance(value, kind):
            problems.add(f"{where}.{key}", f"must be a {'table' if kind is dict else 'list of tables'}")
            ok = False
    if not ok:
        return []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.add(f"{where}.grid.{key}", f"must be a non-empty list of values (got {values!r})")
            ok = False
        elif len(set(map(repr, values))) != len(values):
            problems.add(f"{where}.grid.{key}", f"lists a value twice ({values!r})")
            ok = False
    if not isinstance(items, list) or not items or not all(isinstance(c, dict) for c in items):
        problems.add(f"{where}.configs", "must be a non-empty list of tables")
        ok = False
    if not ok:
        return []
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    out = []
    for j, item in enumerate(items):
        for point in points:
            swept = {k: v for k, v in item.items() if k != "label"} | point
            label = _label(item.get("label"), swept)
            here = f"{where}.configs[{j}]" if "configs" in entry else f"{where}.grid" if grid else where
            clash = sorted(set(swept) & set(fixed))
            if clash:
                problems.add(here, f"{', '.join(clash)} also in settings: give a value in one place")
                continue
            settings, why = check_settings(name, {**fixed, **swept}, targeted)
            if why:
                problems.add(f"{here} ({label})", why)
                continue
            out.append(Config(name, settings, swept, label))
    return out


def check_settings(name: str, values: dict, targeted: bool) -> tuple[dict, str | None]:
    """(the attack's full settings, None) or ({}, why not): the registry's checks (for GSE GSEParams' own too, an
    even blur size, say), so a study never fails on a setting after it has started."""
    try:
        spec = get_attack(name)
        spec.check_goal(targeted)
        settings = spec.settings(values)
    except ValueError as error:
        return {}, str(error)
    return settings, None


def _label(given: object, swept: dict) -> str:
    if isinstance(given, str) and given.strip():
        return given
    return ", ".join(f"{k}={v}" for k, v in swept.items()) or "default"

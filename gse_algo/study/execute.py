"""Running a study's batches: one `Worker` holds one model copy and turns a `Batch` into table rows. The same
worker runs in-process (gse_algo.study.runner) and inside a Ray actor (gse_algo.study.on_ray), so both give the
same rows for the same batches.

A batch carries its images as uint8 model inputs (on the 8-bit grid: exact, and small to ship to a cluster), the
labels and targets, and one configuration; attacks run through the registry (gse_algo.attacks.run_attack), and
every number comes from gse_algo.attacks.measure. torch.manual_seed(seed) is set before each batch, so a batch
repeats wherever it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gse_algo.attacks import iterate_attack
from gse_algo.attacks.measure import interpretability, region_shares
from gse_algo.cam import compute_cam
from gse_algo.explain import salient_region
from gse_algo.export import versions
from gse_algo.models import LoadedModel, load_model
from gse_algo.runtime import DTYPES, Runtime, resolve_device
from gse_algo.study.spec import Density
from gse_algo.study.table import now

MAX_CAMS = 4096  # clean CAMs kept per worker (an image's CAM serves every configuration)


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker loads the study's model (a file must exist at the same path on every worker)."""

    spec: str
    preprocessing: str
    device: str
    dtype: str
    threads: int
    seed: int


@dataclass(frozen=True)
class Batch:
    number: int  # its place in Plan.batches()
    attack: str
    settings: dict
    targeted: bool
    images: np.ndarray  # uint8 [B,3,H,W], the model inputs on the 8-bit grid
    labels: np.ndarray  # int64 [B]: the class attacked away from, or the target when targeted
    masks: np.ndarray | None  # bool [B,H,W] user object masks (density), or None
    rows: tuple[dict, ...]  # per image: the row's key and plan columns (image, target, config, ...)
    density: Density | None
    save_arrays: bool = False


def load_recipe(recipe: ModelRecipe) -> LoadedModel:
    """The study's model on its device and dtype, with the run-time settings applied (threads, seed)."""
    Runtime(threads=recipe.threads, seed=recipe.seed).apply()
    device = resolve_device(recipe.device)
    return load_model(recipe.spec, device=device, preprocessing=recipe.preprocessing).to(dtype=DTYPES[recipe.dtype])


class Worker:
    """One model copy; `run(batch)` -> (rows, arrays or None)."""

    def __init__(self, recipe: ModelRecipe, engine: str, loaded: LoadedModel | None = None) -> None:
        self.recipe, self.engine = recipe, engine
        self.loaded = loaded if loaded is not None else load_recipe(recipe)
        self.versions = json.dumps(versions(), sort_keys=True)
        self._cams: dict[str, np.ndarray] = {}  # image id -> CAM of its clean class (the same for every config)

    def run(self, batch: Batch, tick: Callable[[object], None] | None = None) -> tuple[list[dict], dict | None]:
        """The batch's rows (and arrays with save_arrays); `tick` gets every item the attack yields."""
        loaded, recipe = self.loaded, self.recipe
        Runtime(threads=recipe.threads, seed=recipe.seed).apply()  # threads and seed before every batch
        dtype = next(loaded.model.parameters()).dtype
        x = torch.from_numpy(batch.images).to(loaded.device, dtype) / 255.0
        labels = torch.from_numpy(batch.labels).to(loaded.device)
        run = iterate_attack(batch.attack, loaded.model, x, labels, batch.targeted, batch.settings)
        for item in run:
            if tick is not None:
                tick(item)
        result = run.result
        density = self._density(batch, x, result.x_adv)
        true = torch.tensor([row["label"] for row in batch.rows], device=loaded.device)
        goals = labels if batch.targeted else torch.tensor([m.adv_class for m in result.metrics], device=loaded.device)
        scores = interpretability(loaded.model, x, result.x_adv, true, goals)
        n = len(batch.rows)
        rows = []
        for b, base in enumerate(batch.rows):
            rows.append({**base, **result.metrics[b].as_dict(), **scores[b], **density[b],
                         "time_s": result.time_s / n, "batch": batch.number, "batch_size": n, "batch_time_s": result.time_s,
                         "batch_forward": result.n_forward, "batch_backward": result.n_backward,
                         "seed": recipe.seed, "threads": recipe.threads, "device": str(loaded.device),
                         "dtype": str(dtype).removeprefix("torch."), "engine": self.engine,
                         "versions": self.versions, "finished": now()})
        arrays = None
        if batch.save_arrays:
            arrays = {"x": x.cpu().numpy().astype(np.float32), "x_adv": result.x_adv.cpu().numpy().astype(np.float32)}
        return rows, arrays

    def _density(self, batch: Batch, x: torch.Tensor, x_adv: torch.Tensor) -> list[dict]:
        """Per image: the density columns (the CAM's top-q region; the user's mask), {} without [density]."""
        d = batch.density
        if d is None:
            return [{} for _ in batch.rows]
        top = np.stack([salient_region(cam, d.top_percent) for cam in self._clean_cams(batch, x)])
        out = [{f"cam_{k}": v for k, v in shares.items()} for shares in region_shares(x, x_adv, top)]
        if batch.masks is not None:
            for row, shares in zip(out, region_shares(x, x_adv, batch.masks)):
                row.update({f"mask_{k}": v for k, v in shares.items()})
        return out

    def _clean_cams(self, batch: Batch, x: torch.Tensor) -> np.ndarray:
        """[B,H,W]: each image's CAM for its clean class, computed once per image (gse_algo.cam)."""
        loaded, d = self.loaded, batch.density
        first = {}
        for b, row in enumerate(batch.rows):
            if row["image"] not in self._cams:
                first.setdefault(row["image"], b)
        if first:
            if len(self._cams) + len(first) > MAX_CAMS:
                self._cams.clear()
            index = list(first.values())
            maps = compute_cam(loaded.model, loaded.net, x[index], [batch.rows[b]["clean_class"] for b in index],
                               d.cam, layer=d.layer or loaded.cam_layer, reshape=loaded.cam_reshape)
            self._cams.update(zip(first, maps))
        return np.stack([self._cams[row["image"]] for row in batch.rows])


def array_path(folder: Path, row: dict) -> Path:
    """Where --save-arrays puts one row's x and x_adv: arrays/<image>/<target>_<attack>_<config>.npz."""
    target = row["target"] if row["target"] is not None else "untargeted"
    return folder / "arrays" / row["image"] / f"{target}_{row['attack']}_{row['config_id']}.npz"

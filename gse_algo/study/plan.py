"""A study made concrete with its model: the images (decoded once to check them and read the model's clean
class), the label and targets of each, every (image, target, configuration) job and the batches they run in.

The protocol follows the paper (spec 2.1): an image with a true label (a class folder, a CSV label) is attacked
only if the model classifies it correctly; an image without one is attacked against the model's own clean class.
Targets: every other class ("all"), given classes (a pair whose target is the label is left out), offsets
(label + o) mod K, or the paper's offsets (1..9 for 10 classes, its 10 fixed offsets for 1000). Batches hold the
jobs of one configuration in plan order, so they are the same in every run of the study, resumed or not, in
process or on Ray; a resumed run only skips the batches whose rows are in the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gse_algo.attacks import get_attack
from gse_algo.attacks.measure import AttackMetrics
from gse_algo.cam import CAMError, cam_unsupported, resolve_layer
from gse_algo.defaults import IS_PERCENTILES
from gse_algo.models import LoadedModel, ModelError
from gse_algo.study import StudyError, sources
from gse_algo.study.batching import auto_batch_size
from gse_algo.study.spec import IMAGENET_OFFSETS, MAX_ROWS, Study

UNTARGETED = ""  # the target column of an untargeted row
CHECK_BATCH = 64  # images per clean forward pass while planning


@dataclass(frozen=True)
class Job:
    image: int  # index into Plan.items
    label: int  # the class attacked away from (untargeted) or the image's label (targeted)
    target: int | None  # None: untargeted
    config: int  # index into Study.configs


@dataclass
class Plan:
    study: Study
    loaded: LoadedModel
    items: list[sources.ImageItem]
    clean: list[int]  # the model's class at each (8-bit grid) model input
    labels: list[int | None]  # the class each image is attacked from; None: left out (see `skipped`)
    label_source: str  # "true" (the source gives labels) or "clean prediction"
    skipped: list[dict]  # {"image", "reason"} for images not attacked
    jobs: list[Job]
    batch_size: int

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.loaded.input_size)

    def key(self, job: Job) -> tuple[str, str, str, str]:
        """The table key of a job's row: image, target, attack, configuration."""
        config = self.study.configs[job.config]
        target = UNTARGETED if job.target is None else str(job.target)
        return self.items[job.image].id, target, config.attack, config.config_id

    def batches(self) -> list[list[Job]]:
        """The jobs of each configuration in plan order, cut into batches of batch_size."""
        out = []
        for index in range(len(self.study.configs)):
            jobs = [j for j in self.jobs if j.config == index]
            out += [jobs[i:i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]
        return out


def make_plan(study: Study, loaded: LoadedModel, items: list[sources.ImageItem]) -> Plan:
    """Check everything that needs the model and the files, and list the jobs; StudyError lists the problems."""
    problems: list[str] = []
    if study.density is not None:
        problems += _density_problems(study, loaded, items)
    clean = clean_classes(loaded, items, problems)
    given = [item.label for item in items]
    label_source = "true" if any(label is not None for label in given) else "clean prediction"
    if label_source == "true" and any(label is None for label in given):
        problems.append("images: some images have a label and some do not")
    labels, skipped = [], []
    for item, pred in zip(items, clean):
        if label_source != "true":
            labels.append(pred)
            continue
        index = _class(loaded, item.label, f"image {item.id}: label", problems)
        if index is not None and index != pred:
            skipped.append({"image": item.id, "reason": f"misclassified: the model predicts "
                                                       f"{loaded.class_names[pred]!r}, the label is "
                                                       f"{loaded.class_names[index]!r}"})
            index = None
        labels.append(index)
    targets = target_lists(study, loaded, labels, problems)
    if problems:
        raise StudyError("\n".join(problems))
    jobs = [Job(i, labels[i], target, c) for c in range(len(study.configs))
            for i in range(len(items)) if labels[i] is not None for target in targets[i]]
    if len(jobs) > MAX_ROWS:
        raise StudyError(f"the study has {len(jobs):,} rows: more than {MAX_ROWS:,}")
    if not jobs:
        raise StudyError("nothing to attack: every image was left out (" +
                         "; ".join(f"{s['image']}: {s['reason']}" for s in skipped[:3]) + ")")
    batch = study.batch_size or auto_batch_size(loaded.model, loaded.input_size, loaded.device, study.memory_mb,
                                                next(loaded.model.parameters()).dtype)
    return Plan(study, loaded, items, clean, labels, label_source, skipped, jobs, batch)


def clean_classes(loaded: LoadedModel, items: list[sources.ImageItem], problems: list[str]) -> list[int]:
    """The model's class at every model input (decoding each image once: a bad file is a problem, not a crash)."""
    out: list[int] = []
    dtype = next(loaded.model.parameters()).dtype
    for start in range(0, len(items), CHECK_BATCH):
        chunk, batch = items[start:start + CHECK_BATCH], []
        for item in chunk:
            try:
                batch.append(sources.model_input(item, loaded.input_size))
            except (sources.images.ImageError, ValueError) as error:
                problems.append(f"images: {error}")
        if len(batch) != len(chunk):
            out += [-1] * len(chunk)
            continue
        x = torch.from_numpy(np.stack(batch)).to(loaded.device, dtype) / 255.0
        with torch.no_grad():
            logits = loaded.model(x)
        if not torch.isfinite(logits).all():
            problems.append(f"model: NaN or infinite logits on images {chunk[0].id} .. {chunk[-1].id}")
        out += logits.argmax(1).tolist()
    return out


def target_lists(study: Study, loaded: LoadedModel, labels: list[int | None], problems: list[str]) -> list[list]:
    """Per image: [None] (untargeted) or its target classes."""
    k = len(loaded.class_names)
    spec = study.targets
    if not spec.targeted:
        return [[None] for _ in labels]
    if spec.mode == "offsets":
        offsets = spec.offsets
        if spec.paper:
            if k not in (10, 1000):
                problems.append(f"targeted = \"paper\": the paper's offsets are for 10 or 1000 classes (the model "
                                f"has {k}); give {{offsets = [...]}} or \"all\"")
                return [[] for _ in labels]
            offsets = tuple(range(1, 10)) if k == 10 else IMAGENET_OFFSETS
        for o in offsets:
            if o % k == 0:
                problems.append(f"targeted.offsets: offset {o} with {k} classes gives the label itself")
        return [[] if y is None else [(y + o) % k for o in offsets] for y in labels]
    if spec.classes == ("all",):
        return [[] if y is None else [t for t in range(k) if t != y] for y in labels]
    chosen = [_class(loaded, c, "targeted", problems) for c in spec.classes]
    chosen = list(dict.fromkeys(c for c in chosen if c is not None))
    return [[] if y is None else [t for t in chosen if t != y] for y in labels]


def _class(loaded: LoadedModel, cls: int | str, where: str, problems: list[str]) -> int | None:
    try:
        return loaded.class_index(cls)
    except ModelError as error:
        problems.append(f"{where}: {error}")
        return None


def _density_problems(study: Study, loaded: LoadedModel, items: list[sources.ImageItem]) -> list[str]:
    density = study.density
    problems = []
    unsupported = cam_unsupported(loaded.net)
    if unsupported:
        problems.append(f"density: {unsupported}")
    else:
        try:
            resolve_layer(loaded.net, density.layer or loaded.cam_layer)
        except CAMError as error:
            problems.append(f"density.layer: {error}")
    if density.masks is not None:
        missing = [item.id for item in items if not (density.masks / f"{item.id}.png").is_file()]
        if missing:
            problems.append(f"density.masks: no mask for {len(missing)} image(s) in {density.masks} "
                            f"(e.g. {missing[0]}.png)")
    return problems


def columns(study: Study) -> list[tuple[str, str]]:
    """The table's columns and their types (str, int, float, bool; '' reads as None), in order."""
    cols = [("image", "str"), ("image_path", "str"), ("label", "int"), ("label_source", "str"),
            ("clean_class", "int"), ("target", "int"), ("targeted", "bool"), ("attack", "str"),
            ("config_id", "str"), ("config", "str")]
    kinds = {}
    for config in study.configs:
        for p in get_attack(config.attack).params:
            kinds.setdefault(p.name, p.kind.__name__)
    cols += [(f"param_{name}", kinds[name]) for name in kinds]
    cols += [(f.name, f.type if isinstance(f.type, str) else f.type.__name__)
             for f in AttackMetrics.__dataclass_fields__.values()]
    cols += [(f"is_{p}", "float") for p in IS_PERCENTILES]
    if study.density is not None:
        for region in ("cam",) + (("mask",) if study.density.masks is not None else ()):
            cols += [(f"{region}_{key}", "float") for key in ("pixel_share", "l2_share", "iou", "area")]
    cols += [("time_s", "float"), ("batch", "int"), ("batch_size", "int"), ("batch_time_s", "float"), ("batch_forward", "int"),
             ("batch_backward", "int"), ("seed", "int"), ("threads", "int"), ("device", "str"), ("dtype", "str"),
             ("engine", "str"), ("versions", "str"), ("finished", "str")]
    return cols


def plan_summary(plan: Plan) -> dict:
    """What study.json records about the plan."""
    batches = plan.batches()
    return {"rows": len(plan.jobs), "batches": len(batches), "batch_size": plan.batch_size,
            "images": [{"id": item.id, "path": item.path, "label": label, "clean_class": clean}
                       for item, label, clean in zip(plan.items, plan.labels, plan.clean)],
            "label_source": plan.label_source, "skipped": plan.skipped,
            "configs": [{"attack": c.attack, "config_id": c.config_id, "label": c.label, "swept": c.swept,
                         "settings": c.settings} for c in plan.study.configs],
            "model": {"spec": sources.model_spec(plan.study.model), "name": plan.loaded.name, "preprocessing": plan.study.preprocessing,
                      "input_size": list(plan.input_size), "mean": list(plan.loaded.mean),
                      "std": list(plan.loaded.std), "classes": len(plan.loaded.class_names)},
            "targeted": plan.study.targets.targeted}

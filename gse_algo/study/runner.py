"""`run_study`: check the output folder, load the model, plan, then run every batch whose rows are not in the
table yet, appending rows as each batch finishes; in-process (one Worker) or on Ray (gse_algo.study.on_ray).

An interrupt (Ctrl-C, SIGTERM through gse_algo.entry) loses at most the batches in flight: every finished row
is on disk, and a rerun with the same study and folder skips them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gse_algo.study import sources, table
from gse_algo.study.execute import Batch, ModelRecipe, Worker, array_path, load_recipe
from gse_algo.study.plan import Job, Plan, columns, make_plan, plan_summary
from gse_algo.study import StudyError
from gse_algo.study.spec import Study
from gse_algo.status_line import StatusLine

INPUT_CACHE_BYTES = 512 << 20  # model inputs kept between configurations while they fit


@dataclass(frozen=True)
class Outcome:
    rows: int  # rows in the table now
    new: int  # rows this run added
    skipped_images: int
    seconds: float


def recipe_of(study: Study) -> ModelRecipe:
    return ModelRecipe(sources.model_spec(study.model), study.preprocessing, study.device, study.dtype, study.threads, study.seed)


def run_study(study: Study, out: Path, *, save_arrays: bool = False, use_ray: bool = False,
              address: str | None = None, stream=None) -> Outcome:
    """Run (or resume) `study` into the folder `out`; StudyError for anything wrong before work starts."""
    out = Path(out)
    previous = table.open_folder(out, study.digest())
    recipe = recipe_of(study)
    if study.model == "reference" and not sources.REFERENCE_MODEL.is_file():
        raise StudyError(f"model.name 'reference': {sources.REFERENCE_MODEL} is not here (../shared beside the "
                         "checkout)")
    loaded = load_recipe(recipe)
    plan = make_plan(study, loaded, sources.list_images(study.source, study.limit))
    if previous is not None:
        plan.batch_size = previous["plan"]["batch_size"]  # the same batches as the interrupted run
    out.mkdir(parents=True, exist_ok=True)
    plan.items = sources.materialise(plan.items, out / "inputs")
    cols = columns(study)
    table.write_manifest(out, {"name": study.name, "digest": study.digest(), "study": study.raw, "columns": cols,
                               "plan": plan_summary(plan), "created": (previous or {}).get("created", table.now()),
                               "updated": table.now()})
    rows = table.RowTable(out / table.ROWS, cols)
    todo = [(number, jobs) for number, jobs in enumerate(plan.batches())
            if any(plan.key(j) not in rows.done for j in jobs)]
    progress = Progress(len(plan.jobs), len(rows.done), stream)
    start, before = time.perf_counter(), len(rows.done)

    def finished(new_rows: list[dict], arrays: dict | None) -> None:
        keep = [i for i, row in enumerate(new_rows) if _row_key(row) not in rows.done]  # a batch cut short before
        if arrays is not None:
            for i in keep:
                path = array_path(out, new_rows[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(path, x=arrays["x"][i], x_adv=arrays["x_adv"][i])
        rows.append([new_rows[i] for i in keep])
        progress.add(len(keep))

    batches = build_batches(plan, todo, save_arrays)
    try:
        if use_ray:
            from gse_algo.study.on_ray import run_on_ray

            run_on_ray(recipe, batches, len(todo), finished, address)
        else:
            worker = Worker(recipe, "in-process", loaded)
            for n, batch in enumerate(batches, start=1):
                finished(*worker.run(batch, lambda item, n=n: progress.tick(f"batch {n}/{len(todo)}", item)))
    finally:
        progress.close()
    return Outcome(len(rows.done), len(rows.done) - before, len(plan.skipped), time.perf_counter() - start)


def _row_key(row: dict) -> tuple[str, ...]:
    return tuple("" if row[k] is None else str(row[k]) for k in table.KEY)


def build_batches(plan: Plan, todo: list[tuple[int, list[Job]]], save_arrays: bool) -> Iterator[Batch]:
    """The Batch of each (number, jobs), built when asked for (images decoded then; kept while they fit)."""
    cache: dict[int, np.ndarray] = {}
    size = plan.input_size
    budget = INPUT_CACHE_BYTES // (3 * size[0] * size[1])
    study = plan.study
    for number, jobs in todo:
        inputs = []
        for job in jobs:
            x = cache.get(job.image)
            if x is None:
                x = sources.model_input(plan.items[job.image], size)
                if len(cache) < budget:
                    cache[job.image] = x
            inputs.append(x)
        masks = None
        if study.density is not None and study.density.masks is not None:
            masks = np.stack([sources.read_mask(study.density.masks, plan.items[j.image], size) for j in jobs])
        config = study.configs[jobs[0].config]
        labels = np.array([j.label if j.target is None else j.target for j in jobs], dtype=np.int64)
        yield Batch(number, config.attack, config.settings, study.targets.targeted, np.stack(inputs), labels, masks,
                    tuple(_base_row(plan, j) for j in jobs), study.density, save_arrays)


def _base_row(plan: Plan, job: Job) -> dict:
    """The plan's columns of a job's row (the key, the image and the configuration's settings)."""
    item, config = plan.items[job.image], plan.study.configs[job.config]
    return {"image": item.id, "image_path": item.path, "label": job.label, "label_source": plan.label_source,
            "clean_class": plan.clean[job.image], "target": job.target, "targeted": job.target is not None,
            "attack": config.attack, "config_id": config.config_id, "config": config.label,
            **{name: None for name, _ in columns(plan.study) if name.startswith("param_")},
            **{f"param_{k}": v for k, v in config.settings.items()}}


class Progress:
    """rows done / total, rate and ETA on one status line (gse_algo.status_line)."""

    def __init__(self, total: int, done: int, stream=None) -> None:
        self.total, self.done, self.first = total, done, done
        self.start = time.perf_counter()
        self.detail = ""
        self.line = StatusLine(stream or sys.stderr)
        self.show(force=True)

    def add(self, n: int) -> None:
        self.done += n
        self.detail = ""
        self.show(force=self.done == self.total)

    def tick(self, batch: str, item: object) -> None:
        """Where the running batch is: an attack's search step and iteration (GSE), or its forward passes."""
        if hasattr(item, "step") and hasattr(item, "iteration"):
            self.detail = f"{batch} step {item.step + 1} it {item.iteration + 1}"
        elif hasattr(item, "n_forward"):
            self.detail = f"{batch} {item.n_forward} passes"
        self.show()

    def show(self, force: bool = False) -> None:
        elapsed = time.perf_counter() - self.start
        made = self.done - self.first
        rate = made / elapsed if made and elapsed > 0 else 0.0
        eta = f"ETA {_duration((self.total - self.done) / rate)}" if rate else "ETA --"
        share = self.done / self.total if self.total else 1.0
        detail = f" | {self.detail}" if self.detail else ""
        self.line.show(f"gse-study {self.done}/{self.total} rows ({share:.0%}) {rate:.2f}/s {eta}, "
                       f"{_duration(elapsed)}{detail}", force)

    def close(self) -> None:
        self.line.done()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"

"""The same batches on Ray (the optional extra: pip install 'gse-desktop[ray]'): Ray core actors, one model copy
each (one per `threads` CPUs, or one per GPU), fed through Ray's own ActorPool; failed actors are restarted and
their tasks retried by Ray (max_restarts, max_task_retries). The driver writes the rows, as in-process.

Where it runs: RAY_ADDRESS or --ray-address (e.g. ray://head:10001 or auto) joins a cluster; otherwise a
Ray that is already initialised in this process (the tests start one) is used, else a local one is started.
Every node needs this package, torch and the model (a torchvision name, or a model file at the same path); the
images travel inside the batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from gse_algo.study.execute import Batch, ModelRecipe, Worker
from gse_algo.study import StudyError

MAX_RESTARTS = 3  # a dead actor (node lost, out of memory) is started again this often
MAX_TASK_RETRIES = 3  # a batch whose actor died is run again this often
IN_FLIGHT_PER_ACTOR = 2  # batches queued per actor: enough to keep it busy, few enough to bound driver memory


class StudyActor:
    """A Worker inside a Ray actor (one model copy)."""

    def __init__(self, recipe: ModelRecipe) -> None:
        self.worker = Worker(recipe, "ray")

    def run(self, batch: Batch) -> tuple[list[dict], dict | None]:
        return self.worker.run(batch)


def run_on_ray(recipe: ModelRecipe, batches: Iterator[Batch], n_batches: int,
               finished: Callable[[list[dict], dict | None], None], address: str | None = None) -> None:
    """Run `batches` on Ray actors and hand each batch's rows to `finished` as they come back (any order)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise StudyError("--ray needs Ray: pip install 'gse-desktop[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False)
        started = True
    try:
        gpus = recipe.device.startswith("cuda") or (recipe.device == "auto" and ray.cluster_resources().get("GPU"))
        per_actor = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": recipe.threads}
        slots = ray.cluster_resources().get("GPU" if gpus else "CPU", 0) // (1 if gpus else recipe.threads)
        if slots < 1:
            raise StudyError(f"the Ray cluster has no {'GPU' if gpus else f'{recipe.threads} CPUs'} for a worker")
        actor = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES, **per_actor)(StudyActor)
        actors = [actor.remote(recipe) for _ in range(int(min(slots, max(1, n_batches))))]
        pool = ActorPool(actors)
        limit = IN_FLIGHT_PER_ACTOR * len(actors)
        in_flight = 0
        for batch in batches:
            if in_flight >= limit:
                finished(*pool.get_next_unordered())
                in_flight -= 1
            pool.submit(lambda a, b: a.run.remote(b), batch)
            in_flight += 1
        while pool.has_next():
            finished(*pool.get_next_unordered())
        for handle in actors:
            ray.kill(handle)
    finally:
        if started:
            ray.shutdown()

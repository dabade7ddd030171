"""The Ray executor: decode and encode as CPU tasks, enhancement in a pool of actors.

Each chunk becomes a chain of three Ray calls whose intermediate results stay in the object
store: ``decode`` (CPU task) -> ``EnhancerActor.process`` (the actor holds the model, loaded
once in its own process) -> ``encode`` (CPU task). The driver only sees the small result
record at the end. Actors: one per GPU (``num_gpus``), or on a machine without GPUs
``workers`` CPU actors, each with its share of the cores as math threads.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from nhance_batch.config import ClusterConfig, ModelConfig
from nhance_batch.pipeline import stages

log = logging.getLogger(__name__)


def _remote_functions():
    import ray

    options = {"num_cpus": 1, "max_retries": 2, "retry_exceptions": False}
    return (ray.remote(**options)(stages.probe_stage),
            ray.remote(**options)(stages.decode_stage),
            ray.remote(**options)(stages.encode_stage),
            ray.remote(**options)(stages.assemble_stage))


class _EnhancerActor:
    """Holds one EnhanceStage; created with ``ray.remote`` options by the executor."""

    def __init__(self, model: ModelConfig) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.stage = stages.EnhanceStage(model)
        self.stage.setup()

    def ready(self) -> bool:
        return True

    def process(self, task: stages.ChunkTask, decoded: Any) -> Any:
        return self.stage.process(task, decoded)


class RayExecutor:
    """Runs the stages on a Ray cluster (an embedded local one when no address is given)."""

    def __init__(self, model: ModelConfig, cluster: ClusterConfig) -> None:
        self.model = model
        self.cluster = cluster
        self._actors: list[Any] = []
        self._load: list[int] = []
        self._owner: dict[Any, int] = {}
        self._started_ray = False

    def start(self) -> None:
        import ray

        address = self.cluster.address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=True)
            else:
                # "local": always a new embedded instance, never a cluster found on the machine
                ray.init(address="local", include_dashboard=False, log_to_driver=True,
                         object_store_memory=_local_object_store_bytes())
            self._started_ray = True
        self._probe, self._decode, self._encode, self._assemble = _remote_functions()
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0.0)
        cpus = int(resources.get("CPU", os.cpu_count() or 1))
        if gpus > 0:
            count = self.cluster.workers or max(1, int(gpus / self.cluster.gpus_per_worker))
            options = {"num_gpus": self.cluster.gpus_per_worker, "num_cpus": 1}
            model = self.model
        else:
            count = self.cluster.workers or 1
            threads = self.model.threads or max(1, cpus // count)
            # CPU actors reserve no logical CPU, so decode/encode tasks can always be
            # scheduled; they use `threads` cores for math.
            options = {"num_cpus": 0}
            from dataclasses import replace

            model = replace(self.model, threads=threads)
        actor_class = ray.remote(max_restarts=3, max_task_retries=0, **options)(_EnhancerActor)
        self._actors = [actor_class.remote(model) for _ in range(count)]
        self._load = [0] * count
        ray.get([actor.ready.remote() for actor in self._actors])
        log.info("%d enhancer actor(s) ready (%s)", count, options)

    def workers(self) -> int:
        return len(self._actors)

    def submit_probe(self, source: str) -> Any:
        return self._probe.remote(source)

    def submit_chunk(self, task: stages.ChunkTask) -> Any:
        index = min(range(len(self._actors)), key=self._load.__getitem__)
        decoded = self._decode.remote(task)
        enhanced = self._actors[index].process.remote(task, decoded)
        result = self._encode.remote(task, enhanced)
        self._load[index] += 1
        self._owner[result] = index
        return result

    def submit_assemble(self, task: stages.AssembleTask) -> Any:
        return self._assemble.remote(task)

    def wait(self, handles: list[Any], timeout: float | None) -> list[tuple[Any, Any]]:
        import ray

        if not handles:
            return []
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout,
                            fetch_local=True)
        if not ready:
            ready, _ = ray.wait(handles, num_returns=1, timeout=0)
        out = []
        for ref in ready:
            index = self._owner.pop(ref, None)
            if index is not None:
                self._load[index] -= 1
            try:
                out.append((ref, ray.get(ref)))
            except ray.exceptions.RayError as exc:  # worker or actor lost: retriable
                out.append((ref, stages.Failure("ray", f"{type(exc).__name__}: {exc}",
                                                retriable=True)))
        return out

    def shutdown(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()


def _local_object_store_bytes() -> int:
    """An object store for the embedded Ray: a quarter of memory, at most 4 GiB."""
    import psutil

    return int(min(psutil.virtual_memory().total // 4, 4 << 30))

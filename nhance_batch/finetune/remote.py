"""Fine-tuning as a Ray actor on a cluster node (a GPU node when the cluster has one).

The actor reads the pairs and writes its checkpoints and resumable state through the storage
layer, so ``pairs`` and ``out`` must be places the node sees (bucket URLs or shared mounts).
When no ``out`` is given, the actor trains into its own user model folder and the finished
model's files come back to the caller, which installs them in the local user model folder.
The driver polls the actor for progress (for the progress bar) while it trains.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from nhance_batch.finetune.train import FinetuneConfig, FinetuneError, Progress
from nhance_batch.storage.objects import write_bytes

POLL_S = 1.0
# errors that mean bad data or settings (exit 2), whichever process raised them
CONFIG_ERRORS = {"PairError", "FinetuneError", "StateError", "ModelError", "CheckpointError",
                 "TorchFileError", "VGGFileError", "StorageError", "ValueError"}


class FinetuneActor:
    """Runs one fine-tune in a thread; ``poll`` returns the progress events since the last
    call and, at the end, the result (or the error)."""

    def __init__(self) -> None:
        self._events: list[Progress] = []
        self._lock = threading.Lock()
        self._result: dict[str, Any] | None = None
        self._error: tuple[str, str] | None = None  # (exception type, message)
        self._done = threading.Event()
        self._stop = threading.Event()
        self._files: dict[str, bytes] = {}

    def start(self, config: FinetuneConfig, return_files: bool) -> None:
        def work() -> None:
            try:
                self._result = _run(config, self._record, self._stop.is_set)
                if return_files and "files" in self._result:
                    from nhance_batch import storage

                    out = config.out_url()
                    self._files = {name: storage.read_bytes(storage.join(out, name),
                                                            config.storage_options)
                                   for name in [*self._result["files"], "model.json"]}
            except BaseException as exc:  # noqa: BLE001 - reported to the driver
                self._error = (type(exc).__name__, str(exc))
            finally:
                self._done.set()

        threading.Thread(target=work, daemon=True, name="finetune").start()

    def _record(self, event: Progress) -> None:
        with self._lock:
            self._events.append(event)

    def poll(self) -> tuple[list[Progress], bool, dict | None, tuple[str, str] | None]:
        with self._lock:
            events, self._events = self._events, []
        return events, self._done.is_set(), self._result, self._error

    def files(self) -> dict[str, bytes]:
        return self._files

    def stop(self) -> None:
        self._stop.set()

    def where(self) -> dict[str, Any]:
        """Where this actor runs: node address, process id, GPUs."""
        import os

        import ray

        return {"node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def _run(config: FinetuneConfig, progress, stop):
    from nhance_batch.finetune.train import finetune

    return finetune(config, progress, stop=stop)


def finetune_on_cluster(config: FinetuneConfig, address: str,
                        progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run ``config`` in an actor on the Ray cluster at ``address``; returns model.json."""
    import ray

    from nhance_batch.model.registry import user_models_dir

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    actor_cls = ray.remote(num_gpus=1 if gpus >= 1 else 0, num_cpus=1,
                           max_concurrency=4)(FinetuneActor)
    actor = actor_cls.remote()
    placement = ray.get(actor.where.remote())
    local_out = config.out is None
    ray.get(actor.start.remote(config, local_out))
    try:
        while True:
            events, done, result, error = ray.get(actor.poll.remote())
            for event in events:
                if progress is not None:
                    progress(event)
            if done:
                break
            time.sleep(POLL_S)
        if error is not None:
            kind, message = error
            if kind in CONFIG_ERRORS:
                raise FinetuneError(message)
            raise RuntimeError(f"fine-tune failed on the cluster: {kind}: {message}")
        if local_out and result is not None and "files" in result:
            target = user_models_dir() / config.name
            target.mkdir(parents=True, exist_ok=True)
            for name, blob in ray.get(actor.files.remote()).items():
                write_bytes(str(target / name), blob)
        return {**result, "ray_actor": placement} if result is not None else result
    except KeyboardInterrupt:
        ray.get(actor.stop.remote())  # the actor saves its state at the next step
        deadline = time.monotonic() + 120
        while not ray.get(actor.poll.remote())[1] and time.monotonic() < deadline:
            time.sleep(POLL_S)
        raise
    finally:
        ray.kill(actor)


"""The Ray executor's pool: each actor holds a bounded queue (the rest wait at the driver for
whichever actor frees up first), the run records its progress curve, and a model that cannot
load in any actor ends the run with that error instead of waiting forever."""

from __future__ import annotations

import re
import shutil
import threading

import numpy as np

from nhance_batch.config import ChunkConfig, ClusterConfig, EncodeConfig, ModelConfig, RunConfig
from nhance_batch.pipeline import actor_pool, ray_executor
from nhance_batch.pipeline.driver import Driver
from nhance_batch.pipeline.executor import WorkerStartError
from tests.pipeline.conftest import copy_clip, enhance_directly, frames_and_times


class RecordingExecutor(ray_executor.RayExecutor):
    """Records the most chunks any actor held at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_load = 0

    def _dispatch(self, handle) -> bool:
        sent = super()._dispatch(handle)
        self.max_load = max([self.max_load] + [slot.load for slot in self.pool.slots])
        return sent


def test_actor_queue_is_bounded_and_progress_is_recorded(local_ray, clips, tmp_path):
    src = copy_clip(clips["audio"], tmp_path / "in" / "audio.mp4")  # 16 frames
    config = RunConfig(input=str(src), output=str(tmp_path / "out"),
                       chunk=ChunkConfig(chunk_frames=3, overlap=0),
                       encode=EncodeConfig(lossless=True), cluster=ClusterConfig(workers=1),
                       temporal_radius=0)
    executor = RecordingExecutor(config.model, config.cluster)
    try:
        summary = Driver.for_config(config).run(executor)
    finally:
        executor.shutdown()
    assert summary.exit_code == 0 and summary.chunks_computed == 6
    # the driver keeps 2 * workers + 1 = 3 chunks in flight; the actor takes at most 2 of them
    assert executor.max_load == actor_pool.MAX_CHUNKS_PER_ACTOR == 2
    out, _ = frames_and_times(tmp_path / "out" / "audio.mp4")
    source, _ = frames_and_times(src)
    np.testing.assert_array_equal(out, enhance_directly(source))
    # one progress point per computed chunk: time and committed frames both increase
    times = [t for t, _ in summary.progress]
    frames = [f for _, f in summary.progress]
    assert len(summary.progress) == 6
    assert times == sorted(times) and 0 < times[0] <= summary.seconds
    assert frames == sorted(frames) and frames[-1] == 16 and len(set(frames)) == 6


def test_model_that_cannot_load_ends_the_run_with_its_error(local_ray, clips, tmp_path):
    from nhance_batch.model.registry import resolve

    good = resolve("iphone").prefix
    broken = tmp_path / "model" / good.name
    broken.parent.mkdir()
    shutil.copy(f"{good}.index", f"{broken}.index")
    data = f"{good}.data-00000-of-00001"
    with open(data, "rb") as fh:
        head = fh.read(1000)
    with open(f"{broken}.data-00000-of-00001", "wb") as fh:
        fh.write(head)  # truncated: the weights cannot be read
    src = copy_clip(clips["audio"], tmp_path / "in" / "audio.mp4")
    config = RunConfig(input=str(src), output=str(tmp_path / "out"),
                       model=ModelConfig(path=broken), cluster=ClusterConfig(workers=1))
    executor = ray_executor.RayExecutor(config.model, config.cluster)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            Driver.for_config(config).run(executor)
        except BaseException as exc:  # noqa: BLE001
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=180)  # without the check, the run would wait for an actor forever
    hung = worker.is_alive()
    executor.shutdown()
    assert not hung, "the run kept waiting for an enhancer actor"
    assert len(raised) == 1 and isinstance(raised[0], WorkerStartError), raised
    assert re.search("no enhancer actor could start: CheckpointError: .*data file",
                     str(raised[0]))
    assert not (tmp_path / "out" / "audio.mp4").exists()


def test_cpu_actors_start_without_warm_up_tasks(monkeypatch, local_ray):
    """Warm-up tasks go out only on a cluster with GPUs: CPU actors need every core for their
    own start."""
    import ray

    sent: list[str] = []

    class Counting:
        def remote(self):
            sent.append("warm_up")

    real = ray_executor._remote_functions
    monkeypatch.setattr(ray_executor, "_remote_functions",
                        lambda *a: (*real(*a)[:4], Counting()))
    monkeypatch.setattr(actor_pool.ActorPool, "add", lambda self: None)
    for gpus, expected in ((0.0, 0), (1.0, min(int(ray.cluster_resources()["CPU"]),
                                                 ray_executor.WARM_UP_TASKS))):
        sent.clear()
        resources = {**ray.cluster_resources(), "GPU": gpus}
        monkeypatch.setattr(ray, "cluster_resources", lambda r=resources: r)
        ray_executor.RayExecutor(ModelConfig(), ClusterConfig()).start()
        assert len(sent) == expected


def test_chunks_waiting_for_busy_actors_are_no_warning(monkeypatch, caplog):
    """Chunks wait at the driver while every actor holds its two: that is back-pressure, not
    starvation. Only a wait with no actor ready is told."""
    monkeypatch.setattr(ray_executor, "STARVED_WARN_S", 0.0)
    executor = ray_executor.RayExecutor(ModelConfig(), ClusterConfig())
    monkeypatch.setattr(executor, "_dispatch", lambda handle: False)
    executor._deferred = [object()]
    executor.pool.slots = [actor_pool.Slot(actor=None, state=actor_pool.READY,
                                           load=actor_pool.MAX_CHUNKS_PER_ACTOR)]
    with caplog.at_level("WARNING", logger=ray_executor.__name__):
        for _ in range(3):
            executor._dispatch_deferred()
        assert "waiting" not in caplog.text
        executor.pool.slots[0].state = actor_pool.UNAVAILABLE
        for _ in range(3):
            executor._dispatch_deferred()
    assert "1 chunk(s) waiting" in caplog.text and "none ready" in caplog.text

"""Executors: run the stages of :mod:`nhance_batch.pipeline.stages`, here or on Ray.

Both executors offer the same small interface to the driver: submit a probe, a chunk (decode ->
enhance -> encode) or an assembly, and wait for whichever finishes next. Results are always
stage result values (a :class:`~nhance_batch.pipeline.stages.Failure` for errors), never
exceptions. :class:`SequentialExecutor` runs everything in this process, in submission order
(unit tests, debugging); the Ray executor lives in :mod:`nhance_batch.pipeline.ray_executor`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from typing import Any, Callable, Protocol

from nhance_batch.config import ModelConfig
from nhance_batch.pipeline import stages


class WorkerStartError(RuntimeError):
    """No enhancer worker could start (the model failed to load in every one of them)."""


class Executor(Protocol):
    """What the driver needs from an executor.

    ``workers`` and ``cpus`` bound the work the scheduler keeps in flight; ``busy`` is the
    enhancer's busy share so far (a :meth:`~nhance_batch.pipeline.busy.BusyMeter.snapshot`,
    the chunks being enhanced included), recorded in the run and shown on the live line.
    ``enhancing`` tells, per ``(video, chunk index)`` submitted and not yet returned by
    :meth:`wait`, the chunk's own frames enhanced so far and the seconds its enhancer has
    computed on it. ``listen`` registers a callback that an executor which runs chunks in the
    driver's own thread calls after each forward pass (others never call it: the driver
    reads ``enhancing`` in its loop).
    """

    def start(self) -> None: ...
    def workers(self) -> int: ...
    def cpus(self) -> int: ...
    def gpu_kind(self) -> str | None: ...
    def busy(self) -> dict: ...
    def enhancing(self) -> dict[tuple[int, int], tuple[int, float]]: ...
    def listen(self, callback: Callable[[], None]) -> None: ...
    def submit_probe(self, task: stages.ProbeTask) -> Any: ...
    def submit_chunk(self, task: stages.ChunkTask) -> Any: ...
    def submit_assemble(self, task: stages.AssembleTask) -> Any: ...
    def wait(self, handles: list[Any], timeout: float | None) -> list[tuple[Any, Any]]: ...
    def shutdown(self) -> None: ...


class SequentialExecutor:
    """Runs each submitted job in this process when the driver waits, in submission order."""

    def __init__(self, model: ModelConfig) -> None:
        self._enhance = stages.EnhanceStage(model)
        from nhance_batch.pipeline.busy import BusyMeter

        self.busy_meter = BusyMeter()
        self._queue: OrderedDict[int, Callable[[], Any]] = OrderedDict()
        self._ids = itertools.count()
        self._enhancing: dict[tuple[int, int], tuple[int, float]] = {}
        self._computing: float = 0.0  # seconds of the chunk being enhanced, not yet added
        self._listener: Callable[[], None] | None = None

    def start(self) -> None:
        self._enhance.setup()
        self.busy_meter.ready("local")

    def workers(self) -> int:
        return 1

    def cpus(self) -> int:
        """This machine's CPUs."""
        return os.cpu_count() or 1

    def gpu_kind(self) -> str | None:
        """None: the enhancer's rate is looked up for this machine's CPU."""
        return None

    def busy(self) -> dict:
        """The enhancer's busy share: its compute over this process's time since setup."""
        return self.busy_meter.snapshot({"local": self._computing})

    def enhancing(self) -> dict[tuple[int, int], tuple[int, float]]:
        return dict(self._enhancing)

    def listen(self, callback: Callable[[], None]) -> None:
        self._listener = callback

    def _submit(self, job: Callable[[], Any]) -> int:
        handle = next(self._ids)
        self._queue[handle] = job
        return handle

    def submit_probe(self, task: stages.ProbeTask) -> int:
        return self._submit(lambda: stages.probe_stage(task))

    def submit_chunk(self, task: stages.ChunkTask) -> int:
        key = (task.video, task.chunk.index)

        def on_frames(frames: int, started: float) -> None:
            self._computing = time.perf_counter() - started
            self._enhancing[key] = (frames, self._computing)
            if self._listener is not None:
                self._listener()

        def run() -> stages.ChunkResult:
            decoded = stages.decode_stage(task)
            started = time.perf_counter()
            try:
                enhanced = self._enhance.process(
                    task, decoded, lambda frames: on_frames(frames, started))
            finally:
                self._computing = 0.0
                self._enhancing.pop(key, None)
            result = stages.encode_stage(task, enhanced)
            if result.ok and "enhance" in result.seconds:
                self.busy_meter.add("local", result.seconds["enhance"])
            return result

        return self._submit(run)

    def submit_assemble(self, task: stages.AssembleTask) -> int:
        return self._submit(lambda: stages.assemble_stage(task))

    def wait(self, handles: list[int], timeout: float | None) -> list[tuple[int, Any]]:
        wanted = set(handles)
        for handle in list(self._queue):
            if handle in wanted:
                return [(handle, self._queue.pop(handle)())]
        return []

    def shutdown(self) -> None:
        self._queue.clear()

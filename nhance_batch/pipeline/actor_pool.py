"""The pool of enhancer actors: each holds the model, and the pool follows the cluster.

Actors: one per ``gpus_per_worker`` GPUs, or on a machine without GPUs ``workers`` CPU actors,
each with its share of the cores as math threads. :meth:`ActorPool.start` creates them and
returns while they load the model. Each actor takes at most :data:`MAX_CHUNKS_PER_ACTOR`
chunks not yet enhanced (:meth:`ActorPool.pick`), so no actor idles at the end of a job while
another still has a queue.

The pool follows the cluster (:meth:`ActorPool.maintain`, cheap enough for every loop):

* when GPU nodes join during a run, the pool grows to one actor per ``gpus_per_worker`` GPUs
  (checked every :data:`GROW_INTERVAL_S`);
* when a node dies, Ray restarts its actors elsewhere (``max_restarts``) once a GPU is free.
  An actor whose call failed gets no new work until a health ping answers, so retries go to
  live actors instead of bouncing off a restarting one; an actor that is gone for good is
  dropped, and the next growth check replaces it when the cluster has room.

The pool also keeps each actor's busy share (:class:`~nhance_batch.pipeline.busy.BusyMeter`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from nhance_batch import logs
from nhance_batch.config import ClusterConfig, ModelConfig
from nhance_batch.pipeline import stages
from nhance_batch.pipeline.busy import BusyMeter
from nhance_batch.pipeline.executor import WorkerStartError

log = logging.getLogger(__name__)

#: Seconds between checks of the cluster's GPUs for growing the pool (NHANCE_POOL_CHECK_S).
GROW_INTERVAL_S = float(os.environ.get("NHANCE_POOL_CHECK_S", "5"))
#: Seconds between health pings of an actor that is not available.
PING_INTERVAL_S = 1.0
#: Restarts of an enhancer actor (a node loss, a crash) before it is given up.
ACTOR_MAX_RESTARTS = 3
#: Chunks an actor holds that it has not finished enhancing (one running, one queued).
MAX_CHUNKS_PER_ACTOR = 2
#: The actors' concurrency group of ``progress`` calls, answered while a chunk is enhanced.
PROGRESS_GROUP = "progress"

STARTING, READY, UNAVAILABLE = "starting", "ready", "unavailable"


class _EnhancerActor:
    """Holds one EnhanceStage; created with ``ray.remote`` options by the pool.

    ``process`` runs one chunk at a time (Ray's default concurrency group, one thread);
    ``progress`` answers in the :data:`PROGRESS_GROUP` group's own thread meanwhile.
    """

    def __init__(self, model: ModelConfig) -> None:
        logs.configure()  # quiet unless the driver is verbose (its runtime_env says which)
        self.stage = stages.EnhanceStage(model)
        self.stage.setup()
        self._current: tuple[tuple[int, int, int], int, float] | None = None

    def ready(self) -> bool:
        return True

    def process(self, task: stages.ChunkTask, decoded: Any) -> Any:
        key = (task.video, task.chunk.index, task.attempt)
        started = time.perf_counter()
        self._current = (key, 0, started)

        def on_frames(frames: int) -> None:
            self._current = (key, frames, started)

        try:
            return self.stage.process(task, decoded, on_frames)
        finally:
            self._current = None

    def progress(self) -> tuple[tuple[int, int, int], int, float] | None:
        """The chunk being enhanced, ``((video, index, attempt), own frames enhanced so far,
        seconds since it started)``; None when idle."""
        current = self._current
        if current is None:
            return None
        key, frames, started = current
        return key, frames, time.perf_counter() - started


@dataclass(eq=False)
class Slot:
    """One enhancer actor of the pool and what the pool knows about it."""

    actor: Any
    state: str = STARTING
    load: int = 0  # chunks sent to it and not yet enhanced
    ping: Any = None  # an outstanding ``ready`` call
    last_ping: float = 0.0
    since: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        """The actor's short id (logs, busy shares)."""
        try:
            return self.actor._actor_id.hex()[:8]
        except Exception:  # noqa: BLE001
            return "?"


class ActorPool:
    """The enhancer actors of one executor. Not thread-safe: the executor's loop owns it."""

    def __init__(self, model: ModelConfig, cluster: ClusterConfig) -> None:
        self.model = model
        self.cluster = cluster
        self.slots: list[Slot] = []
        self.gpu_mode = False
        self.busy_meter = BusyMeter()  # the enhancer's busy share, per actor
        self._actor_class: Any = None
        self._actor_model = model
        self._base_count = 0
        self._last_grow = 0.0
        self._any_ready = False
        self._start_error: str | None = None

    # -- start-up ----------------------------------------------------------------------
    def start(self, cpus: int, gpus: float) -> None:
        """Create the actors for a cluster of ``cpus`` CPUs and ``gpus`` GPUs; they load the
        model while this returns."""
        import ray

        if gpus > 0:
            self.gpu_mode = True
            count = self.cluster.workers or self._gpu_target(gpus)
            options = {"num_gpus": self.cluster.gpus_per_worker, "num_cpus": 1}
            model = self.model
        else:
            count = self.cluster.workers or 1
            threads = self.model.threads or max(1, cpus // count)
            # CPU actors reserve no logical CPU, so decode/encode tasks can always be
            # scheduled; they use `threads` cores for math.
            options = {"num_cpus": 0}
            model = self.model.model_copy(update={"threads": threads})
        self._actor_model = model
        # max_task_retries=0: a call on an actor that died fails at once (a retriable chunk
        # failure the driver redoes) instead of waiting for a restart that may never find a GPU.
        self._actor_class = ray.remote(max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=0,
                                       runtime_env={"env_vars": logs.worker_env()},
                                       concurrency_groups={PROGRESS_GROUP: 1},
                                       **options)(_EnhancerActor)
        self._base_count = count
        for _ in range(count):
            self.add()
        self._last_grow = time.monotonic()
        log.info("%d enhancer actor(s) starting (%s)", count, options)

    def _gpu_target(self, gpus: float) -> int:
        return max(1, int(gpus / self.cluster.gpus_per_worker + 1e-9))

    def add(self) -> Slot:
        """Start one more actor (it takes work once it answers its first ping)."""
        actor = self._actor_class.remote(self._actor_model)
        slot = Slot(actor, ping=actor.ready.remote(), last_ping=time.monotonic())
        self.slots.append(slot)
        return slot

    # -- following the cluster ---------------------------------------------------------
    def maintain(self) -> None:
        """Collect health pings (an actor answering becomes available again; one that is dead
        for good is dropped), ping actors that are not available, and grow the pool when GPUs
        joined (every :data:`GROW_INTERVAL_S`).

        Raises:
            WorkerStartError: every actor died before any loaded the model.
        """
        now = time.monotonic()
        self._collect_pings(now)
        if not self.slots and not self._any_ready and self._start_error is not None:
            raise WorkerStartError(f"no enhancer actor could start: {self._start_error}")
        for slot in self.slots:
            if slot.state == UNAVAILABLE and slot.ping is None \
                    and now - slot.last_ping >= PING_INTERVAL_S:
                slot.ping, slot.last_ping = slot.actor.ready.remote(), now
        if now - self._last_grow >= GROW_INTERVAL_S:
            self._last_grow = now
            self.grow()

    def _collect_pings(self, now: float) -> None:
        import ray

        pings = self.pings()
        if not pings:
            return
        done, _ = ray.wait(pings, num_returns=len(pings), timeout=0)
        done = set(done)
        for slot in list(self.slots):
            if slot.ping is None or slot.ping not in done:
                continue
            ping, slot.ping = slot.ping, None
            try:
                ray.get(ping)
            except ray.exceptions.ActorDiedError as exc:
                if slot.state == STARTING:
                    self._start_error = _root_cause(exc)
                self._drop(slot, f"gone for good ({type(exc).__name__})")
                continue
            except ray.exceptions.RayError:
                slot.state = UNAVAILABLE  # restarting (or unreachable): ping again later
                continue
            if slot.state == UNAVAILABLE:
                log.warning("enhancer actor %s available again", slot.name)
            elif slot.state == STARTING:
                log.info("enhancer actor %s ready", slot.name)
            slot.state, slot.since = READY, now
            self.busy_meter.ready(slot.name)
            self._any_ready = True

    def grow(self) -> int:
        """Add actors when the cluster has room for more than the pool holds: one per
        ``gpus_per_worker`` GPUs (or back to ``workers`` after actors were lost). Returns the
        number added; new actors take work once their model is loaded."""
        import ray

        if self._actor_class is None or (self._start_error and not self._any_ready):
            return 0  # no actor ever loaded the model: replacements would fail the same way
        if self.cluster.workers:
            target = self.cluster.workers
        elif self.gpu_mode:
            target = self._gpu_target(ray.cluster_resources().get("GPU", 0.0))
        else:
            target = self._base_count
        added = 0
        while len(self.slots) < target:
            self.add()
            added += 1
        if added:
            # a warning so that it shows without logging set up, like the node changes
            log.warning("pool grows by %d enhancer actor(s) to %d (GPUs joined)", added,
                        len(self.slots))
        return added

    def _drop(self, slot: Slot, why: str) -> None:
        import ray

        log.warning("enhancer actor %s %s: dropped from the pool", slot.name, why)
        self.busy_meter.gone(slot.name)
        self.slots.remove(slot)
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001
            pass

    # -- work --------------------------------------------------------------------------
    def pings(self) -> list[Any]:
        """The outstanding health pings (one answering means an actor may be available)."""
        return [slot.ping for slot in self.slots if slot.ping is not None]

    def has_ready(self) -> bool:
        """Whether some actor is ready for work (it may be busy with its chunks)."""
        return any(slot.state == READY for slot in self.slots)

    def pick(self) -> Slot | None:
        """The least loaded available actor with room for a chunk, or None."""
        ready = [slot for slot in self.slots
                 if slot.state == READY and slot.load < MAX_CHUNKS_PER_ACTOR]
        return min(ready, key=lambda slot: slot.load) if ready else None

    def computed(self, slot: Slot, seconds: float) -> None:
        """``slot``'s actor enhanced one chunk in ``seconds``."""
        self.busy_meter.add(slot.name, seconds)

    def mark_unavailable(self, slot: Slot | None) -> None:
        """A call on ``slot``'s actor failed: no new work for it until a ping answers."""
        if slot is None or slot not in self.slots or slot.state == UNAVAILABLE:
            return
        log.warning("enhancer actor %s unavailable (node lost or actor restarting); "
                    "its chunks are redone elsewhere", slot.name)
        slot.state, slot.since = UNAVAILABLE, time.monotonic()
        self.busy_meter.gone(slot.name)
        if slot.ping is None:
            slot.ping, slot.last_ping = slot.actor.ready.remote(), time.monotonic()

    def shutdown(self) -> None:
        """Kill every actor (none, and Ray not imported, when the pool never started)."""
        if not self.slots:
            return
        import ray

        for slot in self.slots:
            try:
                ray.kill(slot.actor)
            except Exception:  # noqa: BLE001
                pass
        self.slots = []


def _root_cause(exc: BaseException) -> str:
    """The exception an actor's constructor raised, from the traceback Ray's error carries
    (its last ``Type: message`` line), else the error's first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        name, sep, message = line.partition(": ")
        if sep and name.replace(".", "").replace("_", "").isalnum():
            return f"{name.rsplit('.', 1)[-1]}: {message}"
    return lines[0] if lines else repr(exc)

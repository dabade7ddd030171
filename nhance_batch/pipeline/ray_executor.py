"""The Ray executor: decode and encode as CPU tasks, enhancement in a pool of actors.

Each chunk becomes a chain of three Ray calls whose intermediate results stay in the object
store: ``decode`` (CPU task) -> an enhancer actor's ``process`` (the actor holds the model,
loaded once in its own process; :mod:`~nhance_batch.pipeline.actor_pool`) -> ``encode`` (CPU
task). The driver only sees the small result record at the end. The connection to Ray (a
cluster, or an embedded local instance) is :mod:`~nhance_batch.pipeline.ray_session`'s.

Start-up overlaps: :meth:`RayExecutor.start` creates the actors and returns while they load
the model, so the driver probes and decodes meanwhile. On a cluster with GPUs the CPU workers
also import the media stack meanwhile (one warm-up task per CPU, at most
:data:`WARM_UP_TASKS`) instead of doing it on the first chunk; CPU enhancer actors use every
core for their math, and there the warm-up tasks only slowed the actors' own start (their
TensorFlow import: 0.7 s later ready for a one-clip job on 2 cores), since the probe and the
first decode import the same modules anyway.

Each actor holds at most :data:`~nhance_batch.pipeline.actor_pool.MAX_CHUNKS_PER_ACTOR` chunks
not yet enhanced; the rest wait here and go to whichever actor frees up first. When a node
dies, chunks that were on it come back as retriable failures and the driver redoes them (its
manifest covers what Ray cannot recover). Chunks submitted while no actor is available wait
here (their decode already running) and are sent as soon as one is
(:meth:`RayExecutor.maintain`, called from :meth:`RayExecutor.wait`). The same loop asks each
actor that holds chunks, every :data:`PROGRESS_POLL_S`, how many frames of its chunk it has
enhanced (:meth:`RayExecutor.enhancing`: the live progress line, the busy share).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from nhance_batch.config import ClusterConfig, ModelConfig
from nhance_batch.pipeline import ray_session, stages
from nhance_batch.pipeline.actor_pool import (MAX_CHUNKS_PER_ACTOR, PROGRESS_GROUP, ActorPool,
                                              Slot)
# re-exported: `submit` and the cluster tests reach the token check through this module
from nhance_batch.pipeline.ray_session import enable_token_auth_if_available  # noqa: F401

log = logging.getLogger(__name__)

#: Seconds between warnings while chunks wait for an available actor.
STARVED_WARN_S = 30.0
#: Most warm-up tasks sent at start (one per CPU of the cluster, up to this).
WARM_UP_TASKS = 16
#: Seconds between asking a busy actor how far it is in its chunk.
PROGRESS_POLL_S = 0.5


def _remote_functions(decode=None, encode=None):
    import ray

    options = {"num_cpus": 1, "max_retries": 2, "retry_exceptions": False}
    return (ray.remote(**options)(stages.probe_stage),
            ray.remote(**options)(decode or stages.decode_stage),
            ray.remote(**options)(encode or stages.encode_stage),
            ray.remote(**options)(stages.assemble_stage),
            ray.remote(num_cpus=1, max_retries=0)(stages.warm_up))


def chunks_in_flight(actors: int) -> int:
    """The most chunks a job keeps in Ray's object store: a full queue at each actor, plus one
    (sizes the embedded instance's object store)."""
    return MAX_CHUNKS_PER_ACTOR * max(1, actors) + 1


class _ChunkHandle:
    """The driver's handle of one chunk: its decode, and the Ray chain once an actor has it."""

    __slots__ = ("task", "decoded", "enhanced", "ref", "slot", "submitted", "decode_done",
                 "encode_since", "frames", "seconds")

    def __init__(self, task: stages.ChunkTask, decoded: Any) -> None:
        self.task, self.decoded = task, decoded
        self.enhanced: Any = None  # the actor call's result, until the driver saw it finish
        self.ref: Any = None
        self.slot: Slot | None = None
        self.submitted = time.monotonic()   # the decode task's clock starts here
        self.decode_done = False
        self.encode_since: float | None = None  # the encode task's clock: enhancing ended
        self.frames = 0      # own frames enhanced so far, as the actor last told
        self.seconds = 0.0   # seconds the actor has computed on it so far


def _is_actor_error(exc: BaseException) -> bool:
    import ray

    seen = 0
    while exc is not None and seen < 4:
        if isinstance(exc, ray.exceptions.RayActorError):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return False


class RayExecutor:
    """Runs the stages on a Ray cluster (an embedded local one when no address is given)."""

    def __init__(self, model: ModelConfig, cluster: ClusterConfig, *,
                 task_seconds: float = 0.0, decode_fn=None, encode_fn=None) -> None:
        self.model = model
        self._stage_fns = (decode_fn, encode_fn)  # other stage functions (tests)
        self.cluster = cluster
        #: a decode or encode task running longer than this is cancelled and fails
        #: retriably (0: no limit)
        self.task_seconds = task_seconds
        self.pool = ActorPool(model, cluster)
        self._by_ref: dict[Any, _ChunkHandle] = {}
        self._deferred: list[_ChunkHandle] = []
        self._started_ray = False
        self._starved_since: float | None = None
        self._last_starved_warn = 0.0
        self._cpus = os.cpu_count() or 1
        self._gpu_kind: str | None = None
        self._polls: dict[Slot, Any] = {}  # outstanding progress calls, per actor
        self._last_poll = 0.0

    # -- start-up ----------------------------------------------------------------------
    def start(self) -> None:
        import ray
        if ray_session.connect(self.cluster, chunks_in_flight(self.cluster.workers or 1)):
            self._started_ray = True
        (self._probe, self._decode, self._encode, self._assemble,
         warm_up) = _remote_functions(*self._stage_fns)
        resources = ray.cluster_resources()
        self._cpus = int(resources.get("CPU", os.cpu_count() or 1))
        self.pool.start(self._cpus, resources.get("GPU", 0.0))
        self._gpu_kind = next((key.split(":", 1)[1] for key in resources
                               if key.startswith("accelerator_type:")), "GPU") \
            if self.pool.gpu_mode else None
        # The actors load the model meanwhile: chunks wait for the first one ready (maintain).
        # With GPUs, idle CPUs import the media stack meanwhile (a task runs to its end
        # whether or not its result is kept); CPU actors need every core for their own start.
        for _ in range(min(self._cpus, WARM_UP_TASKS) if self.pool.gpu_mode else 0):
            warm_up.remote()

    def workers(self) -> int:
        """Actors in the pool (ready, starting or recovering)."""
        return len(self.pool.slots)

    def maintain(self) -> None:
        """Keep the pool in step with the cluster (:meth:`ActorPool.maintain`) and send
        waiting chunks to available actors; cheap, safe to call every loop."""
        self._collect_enhanced()
        self.pool.maintain()
        self._dispatch_deferred()
        self._poll_progress()

    # -- chunks and actors ---------------------------------------------------------------
    def _dispatch(self, handle: _ChunkHandle) -> bool:
        slot = self.pool.pick()
        if slot is None:
            return False
        handle.enhanced = slot.actor.process.remote(handle.task, handle.decoded)
        handle.ref = self._encode.remote(handle.task, handle.enhanced)
        handle.slot = slot
        slot.load += 1
        self._by_ref[handle.ref] = handle
        return True

    def _release(self, handle: _ChunkHandle) -> None:
        """The actor is done with ``handle``'s chunk (enhanced, or failed): one less load."""
        if handle.enhanced is not None:
            handle.enhanced = None
            handle.frames = handle.task.chunk.size
            handle.decode_done = True
            handle.encode_since = time.monotonic()
            if handle.slot is not None:
                handle.slot.load -= 1

    def _collect_enhanced(self) -> None:
        """Release actors from chunks they finished enhancing (their encode may still run)."""
        import ray

        pending = [h.enhanced for h in self._by_ref.values() if h.enhanced is not None]
        if not pending:
            return
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=0, fetch_local=False)
        if done:
            done = set(done)
            for handle in self._by_ref.values():
                if handle.enhanced is not None and handle.enhanced in done:
                    self._release(handle)

    def _poll_progress(self) -> None:
        """Read the answers of the actors' progress calls into their chunks' handles, and
        ask the actors that hold chunks again (every :data:`PROGRESS_POLL_S`)."""
        import ray

        if self._polls:
            done, _ = ray.wait(list(self._polls.values()), num_returns=len(self._polls),
                               timeout=0, fetch_local=True)
            done = set(done)
            for slot, ref in list(self._polls.items()):
                if ref in done:
                    del self._polls[slot]
                    with contextlib.suppress(ray.exceptions.RayError):
                        self._note_progress(slot, ray.get(ref))
        now = time.monotonic()
        if now - self._last_poll < PROGRESS_POLL_S:
            return
        self._last_poll = now
        for slot in self.pool.slots:
            if slot.load > 0 and slot not in self._polls:
                self._polls[slot] = slot.actor.progress.options(
                    concurrency_group=PROGRESS_GROUP).remote()

    def _note_progress(self, slot: Slot, answer: Any) -> None:
        if answer is None:
            return
        (video, index, attempt), frames, seconds = answer
        for handle in self._by_ref.values():
            task = handle.task
            if handle.slot is slot and handle.enhanced is not None and \
                    (task.video, task.chunk.index, task.attempt) == (video, index, attempt):
                handle.frames, handle.seconds = frames, seconds

    def enhancing(self) -> dict[tuple[int, int], tuple[int, float]]:
        """Per chunk sent to an actor and not yet returned: own frames enhanced so far (all
        of them once its actor is done with it) and the actor's seconds on it."""
        return {(h.task.video, h.task.chunk.index): (h.frames, h.seconds)
                for h in self._by_ref.values()}

    def listen(self, callback: Any) -> None:
        """Nothing to call back: the driver reads :meth:`enhancing` in its loop."""

    def _dispatch_deferred(self) -> None:
        while self._deferred and self._dispatch(self._deferred[0]):
            self._deferred.pop(0)
        now = time.monotonic()
        if not self._deferred or self.pool.has_ready():
            # chunks waiting while actors are busy is the pool's normal back-pressure; only
            # a wait with no actor able to take work (starting, restarting, no node with a
            # free GPU) is worth telling
            self._starved_since = None
            return
        if self._starved_since is None:
            self._starved_since = now
        elif now - self._starved_since >= STARVED_WARN_S \
                and now - self._last_starved_warn >= STARVED_WARN_S:
            self._last_starved_warn = now
            log.warning("%d chunk(s) waiting %.0fs for an enhancer actor: %d in the pool, none "
                        "ready (starting, restarting, or waiting for a node with a free GPU)",
                        len(self._deferred),
                        now - self._starved_since, len(self.pool.slots))

    # -- the executor interface ----------------------------------------------------------
    def submit_probe(self, task: stages.ProbeTask) -> Any:
        return self._probe.remote(task)

    def submit_chunk(self, task: stages.ChunkTask) -> Any:
        handle = _ChunkHandle(task, self._decode.remote(task))
        if not self._dispatch(handle):
            self._deferred.append(handle)
        return handle

    def submit_assemble(self, task: stages.AssembleTask) -> Any:
        return self._assemble.remote(task)

    def _expired(self, handles: list[Any]) -> list[tuple[Any, Any]]:
        """Chunks whose decode or encode task ran past ``task_seconds``: cancelled, and
        answered with a retriable failure (the driver retries them like any other)."""
        import ray

        if not self.task_seconds:
            return []
        now = time.monotonic()
        chunks = [h for h in handles if isinstance(h, _ChunkHandle)]
        undecoded = [h.decoded for h in chunks if not h.decode_done]
        if undecoded:
            done, _ = ray.wait(undecoded, num_returns=len(undecoded), timeout=0,
                               fetch_local=False)
            done = set(done)
            for h in chunks:
                if not h.decode_done and h.decoded in done:
                    h.decode_done = True
        out = []
        for h in chunks:
            if not h.decode_done and now - h.submitted > self.task_seconds:
                stage, hung = "decode", h.decoded
            elif h.encode_since is not None and now - h.encode_since > self.task_seconds:
                stage, hung = "encode", h.ref
            else:
                continue
            with contextlib.suppress(Exception):
                ray.cancel(hung, force=True)
            if h.ref is not None:
                self._by_ref.pop(h.ref, None)
            if h in self._deferred:
                self._deferred.remove(h)
            self._release(h)
            log.warning("chunk %d of %s: the %s task ran past %.0f s; ended and retried",
                        h.task.chunk.index, h.task.source.url, stage, self.task_seconds)
            out.append((h, stages.Failure(
                stage, f"{stage} task ended after running for more than {self.task_seconds:g} s "
                       "(--task-timeout)", retriable=True)))
        return out

    def wait(self, handles: list[Any], timeout: float | None) -> list[tuple[Any, Any]]:
        import ray

        if not handles:
            return []
        self.maintain()
        expired = self._expired(handles)
        if expired:
            return expired
        refs = []
        for handle in handles:
            if isinstance(handle, _ChunkHandle):
                if handle.ref is not None:
                    refs.append(handle.ref)
            else:
                refs.append(handle)
        if not refs:  # everything waits for an actor: wake up when one answers its ping
            pings = self.pool.pings()
            wait_s = min(timeout if timeout is not None else 0.5, 0.5)
            if pings:
                ray.wait(pings, num_returns=1, timeout=wait_s, fetch_local=False)
                self.maintain()
            else:
                time.sleep(wait_s)
            return []
        # the first result as soon as it is there, then whatever else is ready with it
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=True)
        if ready and len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=True)
        out = []
        for ref in ready:
            handle = self._by_ref.pop(ref, None)
            if handle is not None:
                self._release(handle)
            try:
                result = ray.get(ref)
                out.append((handle or ref, result))
                if handle is not None and handle.slot is not None:
                    enhance_s = getattr(result, "seconds", {}).get("enhance")
                    if enhance_s is not None:
                        self.pool.computed(handle.slot, enhance_s)
            except ray.exceptions.RayError as exc:  # worker, actor or node lost: retriable
                if handle is not None and _is_actor_error(exc):
                    self.pool.mark_unavailable(handle.slot)
                out.append((handle or ref, stages.Failure(
                    "ray", f"{type(exc).__name__}: {_first_line(exc)}", retriable=True)))
        return out

    def busy(self) -> dict:
        """The enhancer actors' busy share (:meth:`BusyMeter.snapshot`), with the seconds
        they computed so far on chunks whose result has not come back yet."""
        running: dict[str, float] = {}
        for handle in self._by_ref.values():
            if handle.slot is not None and handle.seconds > 0:
                name = handle.slot.name
                running[name] = running.get(name, 0.0) + handle.seconds
        return self.pool.busy_meter.snapshot(running)

    def gpu_kind(self) -> str | None:
        """The GPUs' kind as Ray labels them (``H100``...; ``GPU`` when unlabelled); None on
        CPU actors."""
        return self._gpu_kind

    def cpus(self) -> int:
        """CPUs of the cluster when the executor started (bounds the chunks in flight)."""
        return self._cpus

    def shutdown(self) -> None:
        self.pool.shutdown()
        self._deferred = []
        self._by_ref = {}
        self._polls = {}
        if self._started_ray:
            ray_session.disconnect()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""

"""The Ray executor: decode and encode as CPU tasks, enhancement in a pool of actors.

Each chunk becomes a chain of three Ray calls whose intermediate results stay in the object
store: ``decode`` (CPU task) -> ``EnhancerActor.process`` (the actor holds the model, loaded
once in its own process) -> ``encode`` (CPU task). The driver only sees the small result
record at the end. Actors: one per GPU (``num_gpus``), or on a machine without GPUs
``workers`` CPU actors, each with its share of the cores as math threads.

Start-up overlaps: :meth:`RayExecutor.start` creates the actors and returns while they load
the model, so the driver probes and decodes meanwhile. On a cluster with GPUs the CPU workers
also import the media stack meanwhile (one warm-up task per CPU, at most
:data:`WARM_UP_TASKS`) instead of doing it on the first chunk; CPU enhancer actors use every
core for their math, and there the warm-up tasks only slowed the actors' own start (their
TensorFlow import: 0.7 s later ready for a one-clip job on 2 cores), since the probe and the
first decode import the same modules anyway.

Each actor holds at most :data:`MAX_CHUNKS_PER_ACTOR` chunks not yet enhanced (one running,
one queued behind it); the rest wait here and go to whichever actor frees up first, so no
actor idles at the end of a job while another still has a queue.

The pool follows the cluster (:meth:`RayExecutor.maintain`, called from :meth:`wait`):

* when GPU nodes join during a run, the pool grows to one actor per ``gpus_per_worker`` GPUs
  (checked every few seconds);
* when a node dies, Ray restarts its actors elsewhere (``max_restarts``) once a GPU is free;
  chunks that were on it come back as retriable failures and the driver redoes them (its
  manifest covers what Ray cannot recover). An actor whose call failed gets no new work until a
  health ping answers, so retries go to live actors instead of bouncing off a restarting one;
  an actor that is gone for good is dropped, and the next growth check replaces it when the
  cluster has room. Chunks submitted while no actor is available wait here (their decode
  already running) and are sent as soon as one is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from nhance_batch.config import ClusterConfig, ModelConfig
from nhance_batch.pipeline import stages
from nhance_batch.pipeline.busy import BusyMeter
from nhance_batch.pipeline.executor import WorkerStartError

log = logging.getLogger(__name__)

#: Seconds between checks of the cluster's GPUs for growing the pool (NHANCE_POOL_CHECK_S).
GROW_INTERVAL_S = float(os.environ.get("NHANCE_POOL_CHECK_S", "5"))
#: Seconds between health pings of an actor that is not available.
PING_INTERVAL_S = 1.0
#: Seconds between warnings while chunks wait for an available actor.
STARVED_WARN_S = 30.0
#: Restarts of an enhancer actor (a node loss, a crash) before it is given up.
ACTOR_MAX_RESTARTS = 3
#: Chunks an actor holds that it has not finished enhancing (one running, one queued).
MAX_CHUNKS_PER_ACTOR = 2
#: Most warm-up tasks sent at start (one per CPU of the cluster, up to this).
WARM_UP_TASKS = 16


def enable_token_auth_if_available() -> None:
    """Use Ray's token authentication when a token is available and nothing says otherwise.

    Ray (2.5x) turns token auth on by itself only when it discovers a local cluster
    (``address="auto"``); with an explicit address (``--address``, ``RAY_ADDRESS``, the Jobs
    API) a client without ``RAY_AUTH_MODE=token`` is refused by a cluster that uses tokens.
    This applies Ray's own rule (``RAY_AUTH_MODE`` unset and a token in ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) to explicit addresses too; on a cluster
    without authentication the token is simply not checked. Older Ray: nothing to do.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)
    except ImportError:
        return
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception as exc:  # noqa: BLE001 - a private helper: never fatal
        log.debug("token auth check failed: %s", exc)


def _remote_functions(decode=None, encode=None):
    import ray

    options = {"num_cpus": 1, "max_retries": 2, "retry_exceptions": False}
    return (ray.remote(**options)(stages.probe_stage),
            ray.remote(**options)(decode or stages.decode_stage),
            ray.remote(**options)(encode or stages.encode_stage),
            ray.remote(**options)(stages.assemble_stage),
            ray.remote(num_cpus=1, max_retries=0)(stages.warm_up))


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


STARTING, READY, UNAVAILABLE = "starting", "ready", "unavailable"


@dataclass(eq=False)
class _Slot:
    """One enhancer actor of the pool and what the executor knows about it."""

    actor: Any
    state: str = STARTING
    load: int = 0
    ping: Any = None  # an outstanding ``ready`` call
    last_ping: float = 0.0
    since: float = field(default_factory=time.monotonic)


class _ChunkHandle:
    """The driver's handle of one chunk: its decode, and the Ray chain once an actor has it."""

    __slots__ = ("task", "decoded", "enhanced", "ref", "slot", "submitted", "decode_done",
                 "encode_since")

    def __init__(self, task: stages.ChunkTask, decoded: Any) -> None:
        self.task, self.decoded = task, decoded
        self.enhanced: Any = None  # the actor call's result, until the driver saw it finish
        self.ref: Any = None
        self.slot: _Slot | None = None
        self.submitted = time.monotonic()   # the decode task's clock starts here
        self.decode_done = False
        self.encode_since: float | None = None  # the encode task's clock: enhancing ended


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
        self._slots: list[_Slot] = []
        self._by_ref: dict[Any, _ChunkHandle] = {}
        self._deferred: list[_ChunkHandle] = []
        self._started_ray = False
        self._actor_class: Any = None
        self._actor_model = model
        self._gpu_mode = False
        self._base_count = 0
        self._last_grow = 0.0
        self._starved_since: float | None = None
        self._last_starved_warn = 0.0
        self._any_ready = False
        self._start_error: str | None = None
        self.busy_meter = BusyMeter()  # the enhancer's busy share, per actor
        self._cpus = os.cpu_count() or 1

    # -- start-up ----------------------------------------------------------------------
    def start(self) -> None:
        import ray

        address = self.cluster.address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                enable_token_auth_if_available()
                ray.init(address=address, log_to_driver=True)
            else:
                # "local": always a new embedded instance, never a cluster found on the machine
                # no dashboard unless asked (ClusterConfig.dashboard, `run --dashboard`); an
                # object store sized to the work a job keeps in flight, not to the machine
                ray.init(address="local",
                         include_dashboard=bool(getattr(self.cluster, "dashboard", False)),
                         log_to_driver=True,
                         object_store_memory=_local_object_store_bytes(
                             self.cluster.workers or 1),
                         _node_ip_address="127.0.0.1")
            self._started_ray = True
        (self._probe, self._decode, self._encode, self._assemble,
         warm_up) = _remote_functions(*self._stage_fns)
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0.0)
        cpus = int(resources.get("CPU", os.cpu_count() or 1))
        self._cpus = cpus
        if gpus > 0:
            self._gpu_mode = True
            count = self.cluster.workers or self._gpu_actor_target(gpus)
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
                                       **options)(_EnhancerActor)
        self._base_count = count
        for _ in range(count):
            self._add_actor()
        # The actors load the model meanwhile: chunks wait for the first one ready (maintain).
        # With GPUs, idle CPUs import the media stack meanwhile (a task runs to its end
        # whether or not its result is kept); CPU actors need every core for their own start.
        for _ in range(min(cpus, WARM_UP_TASKS) if self._gpu_mode else 0):
            warm_up.remote()
        self._last_grow = time.monotonic()
        log.info("%d enhancer actor(s) starting (%s)", count, options)

    def _gpu_actor_target(self, gpus: float) -> int:
        return max(1, int(gpus / self.cluster.gpus_per_worker + 1e-9))

    def _add_actor(self) -> _Slot:
        actor = self._actor_class.remote(self._actor_model)
        slot = _Slot(actor, ping=actor.ready.remote(), last_ping=time.monotonic())
        self._slots.append(slot)
        return slot

    def workers(self) -> int:
        """Actors in the pool (ready, starting or recovering)."""
        return len(self._slots)

    # -- the pool ----------------------------------------------------------------------
    def maintain(self) -> None:
        """Keep the pool in step with the cluster; cheap, safe to call every loop.

        Collects health pings (an actor answering becomes available again; one that is dead
        for good is dropped), pings actors that are not available, grows the pool when GPUs
        joined (every :data:`GROW_INTERVAL_S`), and sends waiting chunks to available actors.
        """
        import ray

        now = time.monotonic()
        self._collect_enhanced()
        pings = [slot.ping for slot in self._slots if slot.ping is not None]
        if pings:
            done, _ = ray.wait(pings, num_returns=len(pings), timeout=0)
            done = set(done)
            for slot in list(self._slots):
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
                    log.warning("enhancer actor %s available again", _actor_id(slot))
                elif slot.state == STARTING:
                    log.info("enhancer actor %s ready", _actor_id(slot))
                slot.state, slot.since = READY, now
                self.busy_meter.ready(_actor_id(slot))
                self._any_ready = True
        if not self._slots and not self._any_ready and self._start_error is not None:
            raise WorkerStartError(f"no enhancer actor could start: {self._start_error}")
        for slot in self._slots:
            if slot.state == UNAVAILABLE and slot.ping is None \
                    and now - slot.last_ping >= PING_INTERVAL_S:
                slot.ping, slot.last_ping = slot.actor.ready.remote(), now
        if now - self._last_grow >= GROW_INTERVAL_S:
            self._last_grow = now
            self.grow()
        self._dispatch_deferred()

    def grow(self) -> int:
        """Add actors when the cluster has room for more than the pool holds: one per
        ``gpus_per_worker`` GPUs (or back to ``workers`` after actors were lost). Returns the
        number added; new actors take work once their model is loaded."""
        import ray

        if self._actor_class is None or (self._start_error and not self._any_ready):
            return 0  # no actor ever loaded the model: replacements would fail the same way
        if self.cluster.workers:
            target = self.cluster.workers
        elif self._gpu_mode:
            target = self._gpu_actor_target(ray.cluster_resources().get("GPU", 0.0))
        else:
            target = self._base_count
        added = 0
        while len(self._slots) < target:
            self._add_actor()
            added += 1
        if added:
            # a warning so that it shows without logging set up, like the node changes
            log.warning("pool grows by %d enhancer actor(s) to %d (GPUs joined)", added,
                        len(self._slots))
        return added

    def _drop(self, slot: _Slot, why: str) -> None:
        import ray

        log.warning("enhancer actor %s %s: dropped from the pool", _actor_id(slot), why)
        self.busy_meter.gone(_actor_id(slot))
        self._slots.remove(slot)
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001
            pass

    def _mark_unavailable(self, slot: _Slot | None) -> None:
        if slot is None or slot not in self._slots or slot.state == UNAVAILABLE:
            return
        log.warning("enhancer actor %s unavailable (node lost or actor restarting); "
                    "its chunks are redone elsewhere", _actor_id(slot))
        slot.state, slot.since = UNAVAILABLE, time.monotonic()
        self.busy_meter.gone(_actor_id(slot))
        if slot.ping is None:
            slot.ping, slot.last_ping = slot.actor.ready.remote(), time.monotonic()

    def _pick(self) -> _Slot | None:
        ready = [slot for slot in self._slots
                 if slot.state == READY and slot.load < MAX_CHUNKS_PER_ACTOR]
        return min(ready, key=lambda slot: slot.load) if ready else None

    def _dispatch(self, handle: _ChunkHandle) -> bool:
        slot = self._pick()
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

    def _dispatch_deferred(self) -> None:
        while self._deferred and self._dispatch(self._deferred[0]):
            self._deferred.pop(0)
        now = time.monotonic()
        if not self._deferred:
            self._starved_since = None
            return
        if self._starved_since is None:
            self._starved_since = now
        elif now - self._starved_since >= STARVED_WARN_S \
                and now - self._last_starved_warn >= STARVED_WARN_S:
            self._last_starved_warn = now
            log.warning("%d chunk(s) waiting %.0fs for an enhancer actor: %d in the pool, none "
                        "available (waiting for a node with a free GPU)", len(self._deferred),
                        now - self._starved_since, len(self._slots))

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
            pings = [slot.ping for slot in self._slots if slot.ping is not None]
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
                        self.busy_meter.add(_actor_id(handle.slot), enhance_s)
            except ray.exceptions.RayError as exc:  # worker, actor or node lost: retriable
                if handle is not None and _is_actor_error(exc):
                    self._mark_unavailable(handle.slot)
                out.append((handle or ref, stages.Failure(
                    "ray", f"{type(exc).__name__}: {_first_line(exc)}", retriable=True)))
        return out

    def busy(self) -> dict:
        """The enhancer actors' busy share (:meth:`BusyMeter.snapshot`)."""
        return self.busy_meter.snapshot()

    def cpus(self) -> int:
        """CPUs of the cluster when the executor started (bounds the chunks in flight)."""
        return self._cpus

    def shutdown(self) -> None:
        import ray

        for slot in self._slots:
            try:
                ray.kill(slot.actor)
            except Exception:  # noqa: BLE001
                pass
        self._slots = []
        self._deferred = []
        self._by_ref = {}
        if self._started_ray:
            _stop_autoscaler_monitor()
            ray.shutdown()


def _stop_autoscaler_monitor() -> bool:
    """End the embedded instance's autoscaler monitor at once; True when one was ended.

    ``ray.shutdown`` stops the node's processes one after the other, each with SIGTERM and up
    to a second's wait before SIGKILL. The autoscaler monitor (which has nothing to scale on a
    local instance and no state to save) does not exit on SIGTERM within that second, so every
    local run's shutdown waited a full second for it (1.36 s in all, 0.34 s without it).
    Ray's node handle is private API: anything unexpected leaves the shutdown as it was.
    """
    try:
        import ray

        node = ray._private.worker._global_node
        infos = list(node.all_processes.get("monitor", ()))
    except Exception:  # noqa: BLE001
        return False
    ended = False
    for info in infos:
        process = getattr(info, "process", None)
        try:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=2)
                ended = True
        except Exception:  # noqa: BLE001
            pass
    return ended


def _actor_id(slot: _Slot) -> str:
    try:
        return slot.actor._actor_id.hex()[:8]
    except Exception:  # noqa: BLE001
        return "?"


def _root_cause(exc: BaseException) -> str:
    """The exception an actor's constructor raised, from the traceback Ray's error carries
    (its last ``Type: message`` line), else the error's first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        name, sep, message = line.partition(": ")
        if sep and name.replace(".", "").replace("_", "").isalnum():
            return f"{name.rsplit('.', 1)[-1]}: {message}"
    return lines[0] if lines else repr(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _local_object_store_bytes(actors: int = 1) -> int:
    """An object store for the embedded Ray, sized to what a job keeps in flight: at most
    ``MAX_CHUNKS_PER_ACTOR`` chunks per actor plus one, each with its decoded frames and its
    enhanced frames (3 bytes per pixel each, 6 for 16-bit sources counted by the chunk
    budget), with a quarter of slack; at least 256 MiB, at most a quarter of memory or 4 GiB.
    Ray spills to disk beyond it rather than failing."""
    import psutil

    from nhance_batch.config import CHUNK_BYTES_PER_PIXEL

    chunk_pixels = int(os.environ.get("NHANCE_CHUNK_MEMORY", 2 << 30)) // CHUNK_BYTES_PER_PIXEL
    in_flight = (MAX_CHUNKS_PER_ACTOR * max(1, actors) + 1) * 2 * 3 * chunk_pixels
    cap = min(psutil.virtual_memory().total // 4, 4 << 30)
    return int(max(256 << 20, min(cap, in_flight * 5 // 4)))

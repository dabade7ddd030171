"""How long a job takes, from per-chunk work and the start-up it pays: the model behind
``plan``'s times.

A run's time is its start-up plus its chunks' work, spent as the run spends it:

* **Start-up.** The command (Python, imports, the driver's set-up: :data:`COMMAND_S`) and the
  embedded Ray's start and stop (measured by the calibration; else :data:`RAY_START_S` and
  :data:`RAY_STOP_S`, typical values measured on a 2-core machine, docs/performance.md
  "Start-up and memory of a small job");
  then the enhancer actor's start (backend import, model load) and, per frame size of the
  job, its first call (the path and batch choice when not cached, and the compile). On this
  machine the calibration measures the actor's two costs; for GPUs they are
  :data:`GPU_ACTOR_START_S` and :data:`GPU_SHAPE_S`, assumed (not measured on GPUs yet).
* **Here (CPU only).** One enhancer actor uses every core, and the decode and encode tasks run
  on the same cores, so the seconds of decoding, enhancing (stabiliser included) and encoding
  every chunk add up (:func:`cpu_seconds`): splitting a video into chunks gains nothing
  here. Ray's own processes and the driver keep about :data:`RAY_CORES` of a core busy
  meanwhile, which the enhancer loses (:func:`cpu_share`).
* **On G GPUs.** A chunk goes to whichever GPU frees up first, in the order the driver submits
  them, and is encoded by the node's CPUs once enhanced (:func:`gpu_seconds`): the job ends
  when the last chunk is encoded, and no sooner than the node CPUs can encode the whole job.
  So with C chunks of about t seconds each, the enhancer takes about ``ceil(C / G) * t``: a
  2-chunk job is no faster on 8 GPUs than on 2.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

#: Python start, imports and the driver's set-up before Ray (0.4-0.5 s measured), and the
#: probing and planning of a few inputs.
COMMAND_S = 1.0
#: The embedded Ray's start (``ray.init``): 2.2-3.4 s on the idle 2-core machine, 5.2 s under
#: load.
RAY_START_S = 4.0
#: Ray's and the actors' shutdown: 0.34-1.4 s measured.
RAY_STOP_S = 1.0
#: Cores Ray's own processes, idle workers and the driver keep busy during a run on a CPU:
#: the enhancer actor got 1.81 of the 2 cores, docs/performance.md ("Measured here").
RAY_CORES = 0.2
#: A GPU actor's start: the backend's import (about 3 s for JAX), the model's load, the first
#: XLA compile at a frame size. Assumed, not measured on a GPU yet.
GPU_ACTOR_START_S = 20.0
#: The compile of each further frame size on a GPU. Assumed, not measured on a GPU yet.
GPU_SHAPE_S = 10.0


@dataclass(frozen=True)
class ChunkWork:
    """One chunk's seconds per stage on the worker that would run it."""

    decode: float
    enhance: float
    encode: float


def run_overhead(ray_s: float | None = None) -> float:
    """The seconds a run pays whatever it processes: the command, and Ray's start and stop
    (``ray_s`` when measured, else the typical :data:`RAY_START_S` + :data:`RAY_STOP_S`)."""
    return COMMAND_S + (RAY_START_S + RAY_STOP_S if ray_s is None else ray_s)


def cpu_share(cores: int) -> float:
    """The share of a CPU-only machine's ``cores`` that a run's enhancer gets."""
    return max(0.5, (cores - RAY_CORES) / max(1, cores))


def cpu_seconds(chunks: list[ChunkWork]) -> float:
    """The chunks' work on a CPU-only machine, where every stage shares the same cores."""
    return sum(c.decode + c.enhance + c.encode for c in chunks)


def gpu_seconds(chunks: list[ChunkWork], gpus: int, encode_capacity_s: float = 0.0) -> float:
    """The chunks' work on ``gpus`` GPUs: each chunk, in order, enhanced on the first GPU to
    be free and then encoded; the last encode ends the job, which takes at least
    ``encode_capacity_s`` (all the encoding over the nodes' CPUs). Decoding runs ahead on the
    CPUs and costs nothing here but the first chunk's.

    Raises:
        ValueError: ``gpus`` < 1.
    """
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    if not chunks:
        return 0.0
    free = [chunks[0].decode] * gpus  # when each GPU can take its next chunk
    heapq.heapify(free)
    end = 0.0
    for chunk in chunks:
        start = heapq.heappop(free)
        done = start + chunk.enhance
        heapq.heappush(free, done)
        end = max(end, done + chunk.encode)
    return max(end, encode_capacity_s)

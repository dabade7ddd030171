"""How many chunks the driver keeps in flight, so that no enhancer actor waits.

A chunk is in flight from its decode until its encode is done. Each actor holds the chunk it
computes and one queued behind it; while it computes, the next chunks must already be decoding,
and the finished ones are still encoding. With the stages' measured times, covering that takes
``(decode + encode) / enhance`` chunks per actor beyond the two it holds: a GPU enhances a 720p
chunk in a second while one CPU task decodes and encodes it in several, so a GPU actor needs many
chunks in flight where a CPU actor (which is slower than its decode and encode) needs one.
"""

from __future__ import annotations

import math

#: Chunks per actor (the one it computes, the one queued) plus one being decoded.
BASE_PER_ACTOR = 2


def in_flight_target(workers: int, seconds: dict[str, float], cpus: int) -> int:
    """Chunks to keep in flight for ``workers`` enhancer actors.

    Args:
        workers: actors in the pool.
        seconds: the run's summed stage seconds so far (``decode``, ``enhance``, ``encode``);
            before any chunk is done, only the base (2 per actor, plus one) is used.
        cpus: CPUs of the cluster: more decode/encode tasks than CPUs would only queue.
    """
    workers = max(1, workers)
    base = BASE_PER_ACTOR * workers + 1
    enhance = seconds.get("enhance", 0.0)
    if enhance <= 0:
        return base
    ratio = (seconds.get("decode", 0.0) + seconds.get("encode", 0.0)) / enhance
    return base + min(math.ceil(ratio * workers), max(1, cpus))

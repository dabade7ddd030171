"""How busy the enhancer is: the share of wall time each enhancer actor spends computing.

An actor's wall time runs from the moment it is ready (model loaded) until now, or until it left
the pool; its busy time is the sum of its chunks' enhance seconds (measured inside the actor:
the forward passes, stabilisation and quantisation, not the wait for a decoded chunk). The
overall share is the actors' busy time over their wall time together. A share well below 1 in
the steady state means the enhancer waits for decoding or encoding: the CPU side does not keep
up with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Actor:
    since: float
    until: float | None = None
    busy: float = 0.0
    chunks: int = 0


class BusyMeter:
    """Per-actor busy and wall seconds. Not thread-safe: the executor's loop owns it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._actors: dict[str, _Actor] = {}

    def ready(self, actor: str) -> None:
        """``actor`` can compute from now on (a restarted one continues its record)."""
        record = self._actors.get(actor)
        if record is None:
            self._actors[actor] = _Actor(since=self._clock())
        elif record.until is not None:  # back after an absence: its wall time resumes
            record.since += self._clock() - record.until
            record.until = None

    def add(self, actor: str, seconds: float) -> None:
        """``actor`` computed one chunk for ``seconds``."""
        record = self._actors.get(actor)
        if record is None:  # a result from an actor not marked ready: count from now
            record = self._actors[actor] = _Actor(since=self._clock() - max(seconds, 0.0))
        record.busy += max(seconds, 0.0)
        record.chunks += 1

    def gone(self, actor: str) -> None:
        """``actor`` left the pool (or became unavailable): its wall time stops."""
        record = self._actors.get(actor)
        if record is not None and record.until is None:
            record.until = self._clock()

    def snapshot(self, running: dict[str, float] | None = None) -> dict:
        """``{"overall": share or None, "busy_s", "wall_s", "actors": [{"actor", "busy_s",
        "wall_s", "share", "chunks"}]}``; shares are None before any wall time passed.
        ``running``: per actor, the seconds it has computed so far on chunks not yet added
        (the chunk in progress), so that the share covers them too."""
        now = self._clock()
        running = running or {}
        actors, busy_total, wall_total = [], 0.0, 0.0
        for name, record in self._actors.items():
            wall = max(0.0, (record.until if record.until is not None else now) - record.since)
            busy = record.busy + max(0.0, running.get(name, 0.0))
            busy = min(busy, wall) if wall > 0 else busy
            busy_total += busy
            wall_total += wall
            actors.append({"actor": name, "busy_s": round(busy, 3), "wall_s": round(wall, 3),
                           "share": round(busy / wall, 4) if wall > 0 else None,
                           "chunks": record.chunks})
        return {"overall": round(busy_total / wall_total, 4) if wall_total > 0 else None,
                "busy_s": round(busy_total, 3), "wall_s": round(wall_total, 3),
                "actors": actors}

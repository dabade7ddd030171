"""The enhancer's pace in a run, and the ETA it gives.

From the first seconds of a run the ETA is the frames still to do over the *planned* rate
(the enhancer rate known before the run, :mod:`nhance_batch.rates`, times the
workers). Once frames are being enhanced, the rate *measured* over the last
:data:`WINDOW_S` seconds takes over, gradually: its weight grows from 0 at the first enhanced
frame to 1 after :data:`SETTLE_S` seconds, so the ETA neither waits for samples (it is never
unknown when a rate is known) nor jumps when the first batch lands.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

#: Seconds of samples the measured rate is taken over.
WINDOW_S = 60.0
#: Seconds after the first enhanced frame when the measured rate alone makes the ETA.
SETTLE_S = 30.0


class Pace:
    """Frames enhanced in this run over time; not thread-safe (the driver's loop owns it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.first_frame_at: float | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def note(self, enhanced: int) -> None:
        """``enhanced`` frames were enhanced in this run so far."""
        now = self._clock()
        if enhanced <= 0:
            return
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self._samples and self._samples[-1][1] == enhanced:
            return
        self._samples.append((now, enhanced))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()

    def first_frame_seconds(self) -> float | None:
        """Seconds from the run's start to its first enhanced frame."""
        return None if self.first_frame_at is None else self.first_frame_at - self.started

    def measured_fps(self) -> float | None:
        """Frames per second over the window, up to now; None before two samples."""
        if len(self._samples) < 2:
            return None
        (t0, n0), (_, n1) = self._samples[0], self._samples[-1]
        elapsed = self._clock() - t0
        return (n1 - n0) / elapsed if elapsed > 0 else None

    def fps(self, planned: float | None) -> float | None:
        """The rate for the ETA: ``planned`` blended into the measured one."""
        measured = self.measured_fps()
        if measured is None or self.first_frame_at is None:
            return planned
        if not planned:
            return measured
        weight = min(1.0, (self._clock() - self.first_frame_at) / SETTLE_S)
        return weight * measured + (1.0 - weight) * planned

    def eta(self, remaining: int, planned: float | None) -> tuple[float | None, float | None]:
        """(frames per second, seconds still to go for ``remaining`` frames); None where no
        rate is known."""
        fps = self.fps(planned)
        if remaining <= 0:
            return fps, 0.0
        return fps, (remaining / fps if fps else None)

"""The enhancer's busy share (per actor and overall) and the driver's in-flight target."""

from __future__ import annotations

import pytest

from nhance_batch.pipeline.busy import BusyMeter
from nhance_batch.pipeline.scheduler import in_flight_target


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_busy_share_per_actor_and_overall():
    clock = Clock()
    meter = BusyMeter(clock)
    assert meter.snapshot()["overall"] is None
    meter.ready("a")
    clock.now += 2
    meter.ready("b")
    clock.now += 8  # a: 10 s of wall time, b: 8 s
    meter.add("a", 9.0)
    meter.add("b", 2.0)
    meter.add("b", 2.0)
    snap = meter.snapshot()
    actors = {a["actor"]: a for a in snap["actors"]}
    assert actors["a"]["share"] == pytest.approx(0.9) and actors["a"]["chunks"] == 1
    assert actors["b"]["share"] == pytest.approx(0.5) and actors["b"]["chunks"] == 2
    assert snap["overall"] == pytest.approx(13 / 18, abs=1e-4)
    assert snap["busy_s"] == pytest.approx(13) and snap["wall_s"] == pytest.approx(18)


def test_an_absent_actor_does_not_accumulate_wall_time():
    clock = Clock()
    meter = BusyMeter(clock)
    meter.ready("a")
    clock.now += 4
    meter.add("a", 4.0)
    meter.gone("a")
    clock.now += 100  # unavailable: not idle time of the enhancer
    meter.ready("a")
    clock.now += 4
    meter.add("a", 2.0)
    snap = meter.snapshot()
    assert snap["actors"][0]["wall_s"] == pytest.approx(8)
    assert snap["overall"] == pytest.approx(6 / 8)


def test_in_flight_covers_decode_and_encode_time():
    # before any chunk: 2 per actor plus one
    assert in_flight_target(1, {}, cpus=16) == 3
    assert in_flight_target(4, {}, cpus=16) == 9
    # a CPU actor slower than its decode and encode: one more
    assert in_flight_target(1, {"decode": 1, "enhance": 30, "encode": 3}, cpus=2) == 4
    # a GPU actor 8x faster than decode + encode: 8 more, at most the CPUs
    assert in_flight_target(1, {"decode": 2, "enhance": 1, "encode": 6}, cpus=16) == 11
    assert in_flight_target(2, {"decode": 2, "enhance": 1, "encode": 6}, cpus=6) == 11

"""The enhancer traces its forward pass once per batch shape: batches of a shape seen before
reuse the compiled function, and the path autotune picked on whole frames is not compiled a
second time for the run (TensorFlow's "triggered tf.function retracing" warning came from
that second trace)."""

from __future__ import annotations

import numpy as np
import pytest

from nhance_batch.config import ModelConfig
from nhance_batch.model.autotune import AutotuneCache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NHANCE_AUTOTUNE_S", "3")
    return AutotuneCache(tmp_path / "autotune.json")


@pytest.fixture
def traces(monkeypatch) -> list:
    """The batch shapes the forward pass was traced for: its Python body runs only when a
    function is traced, never when a compiled one runs."""
    from nhance_batch.model import dped

    seen: list = []
    real = dped.forward

    def counted(x, *args, **kwargs):
        seen.append(tuple(x.shape))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(dped, "forward", counted)
    return seen


def _enhancer(cache, **model):
    from nhance_batch.model.dped import DPEDWeights
    from nhance_batch.model.enhancer import Enhancer

    return Enhancer(ModelConfig(**model), DPEDWeights.random(3), cache=cache)


def _frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_batches_of_one_shape_are_traced_once(cache, traces):
    enhancer = _enhancer(cache, jit="off", batch_size=2)
    first = enhancer(_frames(5, 24, 32), as_float=True)  # 3 passes, the last one padded
    for seed in (1, 2):
        enhancer(_frames(5, 24, 32, seed), as_float=True)
    assert traces == [(2, 24, 32, 3)]
    np.testing.assert_array_equal(enhancer(_frames(5, 24, 32), as_float=True), first)
    enhancer(_frames(3, 16, 32), as_float=True)  # a new frame shape: one more trace
    assert traces == [(2, 24, 32, 3), (2, 16, 32, 3)]


def test_the_autotuned_path_is_not_traced_again_for_the_run(cache, traces):
    enhancer = _enhancer(cache, jit="auto", batch_size=0)
    frames = _frames(8, 24, 32)  # whole frames fit the timing crop
    enhancer(frames, as_float=True)
    decision = enhancer.decision(frames)
    timed = len(decision.seconds_per_frame) + len(decision.dropped)
    assert decision.source == "tuned" and timed >= 2
    assert len(traces) == timed  # one trace per timed candidate, none more for the run
    for seed in (1, 2):
        enhancer(_frames(8, 24, 32, seed), as_float=True)
    assert len(traces) == timed
    # only the function the run uses is kept
    assert list(enhancer._compiled) == [((decision.batch_size, 24, 32, 3), "|u1", True,
                                         decision.jit, None)]

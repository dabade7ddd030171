"""Enhancer benchmark: DPED GFLOP/s against the same run's float32 matmul GFLOP/s.

Both are timed in interleaved rounds in one process (this machine is shared and noisy), and the
best round of each is kept, so the ratio compares the two at the same moment.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from nhance_batch.config import ModelConfig

MATMUL_N = 2048


@dataclass(frozen=True)
class BenchResult:
    width: int
    height: int
    batch: int
    precision: str
    weights: str
    model_seconds_per_batch: float
    fps: float
    model_gflops: float
    matmul_gflops: float
    ratio: float

    def as_dict(self) -> dict:
        return asdict(self)


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_seconds(n: int = MATMUL_N):
    """A callable timing one float32 n x n x n matmul with the backend's default kernels."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    matmul(a, b).numpy()
    return lambda: matmul(a, b).numpy()


def run_bench(width: int, height: int, batch: int, config: ModelConfig, *,
              rounds: int = 3, use_random_weights: bool = False) -> BenchResult:
    """Time the enhancer on a batch of ``width x height`` frames after warm-up."""
    from nhance_batch.model.dped import FLOPS_PER_PIXEL, DPEDWeights
    from nhance_batch.model.enhancer import Enhancer

    weights_label = "random"
    weights = DPEDWeights.random() if use_random_weights else None
    enhancer = Enhancer(ModelConfig(**{**asdict(config), "batch_size": batch}), weights)
    enhancer.setup()
    if enhancer.model_path is not None:
        weights_label = f"{config.name} ({enhancer.model_path})"
    frames = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    enhancer(frames)  # warm-up: compile for this shape
    matmul = matmul_seconds()
    model_best, matmul_best = float("inf"), float("inf")
    for _ in range(rounds):
        model_best = min(model_best, _best_time(lambda: enhancer(frames), 1))
        matmul_best = min(matmul_best, _best_time(matmul, 3))
    model_gflops = batch * width * height * FLOPS_PER_PIXEL / model_best / 1e9
    matmul_gflops = 2 * MATMUL_N ** 3 / matmul_best / 1e9
    return BenchResult(width, height, batch, config.precision, weights_label, model_best,
                       batch / model_best, model_gflops, matmul_gflops,
                       model_gflops / matmul_gflops)

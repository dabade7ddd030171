"""Enhancer benchmark: DPED GFLOP/s against the same run's float32 matmul GFLOP/s.

The enhancer runs the path the autotuner picks for the frame size on this machine (XLA or
graph mode, and the batch size; read from the user cache or timed now), unless ``jit`` /
``batch`` fix them. Model and matmul are timed in interleaved rounds in one process (this
machine is shared and noisy), and the best round of each is kept, so the ratio compares the
two at the same moment.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from nhance_batch.config import ModelConfig

MATMUL_N = 2048
#: Frames per timed round at least (a small batch is timed over this many passes a round).
MIN_FRAMES_PER_ROUND = 4


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
    path: str = ""            # "xla" or "graph"
    path_source: str = ""     # "tuned", "cache" or "fixed"
    autotune: dict = field(default_factory=dict)  # the decision (timings per candidate)
    device: str = ""
    backend: str = ""
    native_16bit: dict = field(default_factory=dict)

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


def bench_config(config: ModelConfig, **changes) -> ModelConfig:
    """``config`` with ``changes`` (pydantic or dataclass configs)."""
    if hasattr(config, "model_copy"):
        return config.model_copy(update=changes)
    return ModelConfig(**{**asdict(config), **changes})


def _frames(batch: int, width: int, height: int) -> np.ndarray:
    """Smooth gradients with noise: like footage for the enhancer's agreement checks."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    out = np.empty((batch, height, width, 3), np.uint8)
    for i in range(batch):
        rgb = np.stack([128 + 90 * np.sin((x + 5 * i) / max(width, 1) * 6.3),
                        128 + 90 * np.cos((y - 5 * i) / max(height, 1) * 6.3),
                        128 + 90 * np.sin((x + y) / max(width + height, 1) * 6.3)], axis=-1)
        out[i] = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    return out


def autotune_only(width: int, height: int, config: ModelConfig, *,
                  use_random_weights: bool = False) -> dict:
    """Decide (or read) the path for ``width x height`` frames and return the decision."""
    from nhance_batch.model.dped import DPEDWeights
    from nhance_batch.model.enhancer import Enhancer

    weights = DPEDWeights.random() if use_random_weights else None
    enhancer = Enhancer(config, weights)
    enhancer.setup()
    return enhancer.decision(_frames(8, width, height)).as_dict()


def run_bench(width: int, height: int, batch: int, config: ModelConfig, *,
              rounds: int = 3, use_random_weights: bool = False) -> BenchResult:
    """Time the enhancer on ``width x height`` frames after warm-up. ``batch`` 0 takes the
    batch size of the autotuned path (``config.jit`` auto/on/off picks XLA or not)."""
    from nhance_batch.model import autotune
    from nhance_batch.model.dped import FLOPS_PER_PIXEL, DPEDWeights
    from nhance_batch.model.enhancer import Enhancer

    weights_label = "random"
    weights = DPEDWeights.random() if use_random_weights else None
    enhancer = Enhancer(bench_config(config, batch_size=batch), weights)
    enhancer.setup()
    if enhancer.model_path is not None:
        weights_label = f"{config.name} ({enhancer.model_path})"
    probe = _frames(8, width, height)
    decision = enhancer.decision(probe)
    batch = decision.batch_size
    repeats = max(1, -(-MIN_FRAMES_PER_ROUND // batch))
    frames = probe[:batch] if batch <= len(probe) else _frames(batch, width, height)
    enhancer(frames)  # warm-up: compile for this shape
    matmul = matmul_seconds()

    # both timed pass by pass, best of each kept: on a shared machine a pass that ran
    # undisturbed is the one that shows the kernels' rate (a round averaged over several
    # passes would charge the model for the other processes' time slices, not the matmul)
    model_best, matmul_best = float("inf"), float("inf")
    for _ in range(rounds):
        model_best = min(model_best, _best_time(lambda: enhancer(frames), repeats))
        matmul_best = min(matmul_best, _best_time(matmul, 3))
    model_gflops = batch * width * height * FLOPS_PER_PIXEL / model_best / 1e9
    matmul_gflops = 2 * MATMUL_N ** 3 / matmul_best / 1e9
    return BenchResult(width, height, batch, config.precision, weights_label, model_best,
                       batch / model_best, model_gflops, matmul_gflops,
                       model_gflops / matmul_gflops, path=decision.path,
                       path_source=decision.source, autotune=decision.as_dict(),
                       device=autotune.device_id(config.threads),
                       backend=autotune.backend_id(), native_16bit=autotune.native_16bit())

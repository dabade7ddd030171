"""The enhancement stage: DPED on batches of RGB frames, compiled once per input shape.

Lifecycle (the same in a Ray actor and in the sequential executor): the constructor is cheap
and runs anywhere; :meth:`Enhancer.setup` resolves and loads the weights and picks the math
threads inside the worker process; calling the enhancer runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from nhance_batch.config import ModelConfig


def _configure_threads(threads: int) -> None:
    """Give TensorFlow ``threads`` math threads; a no-op once its runtime has started."""
    if threads <= 0:
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # runtime already initialised in this process: keep its pools
        pass


class Enhancer:
    """DPED over frames ``[N, H, W, 3]`` (uint8, or uint16 for >8-bit sources).

    Args:
        config: which model and how to run it.
        weights: ready weights (tests, benchmarks); by default they are resolved from the
            registry in :meth:`setup`.
    """

    def __init__(self, config: ModelConfig | None = None, weights=None) -> None:
        self.config = config or ModelConfig()
        self._weights = weights
        self._compiled: dict[tuple, Callable] = {}
        self.model_path: Path | None = None

    def setup(self) -> None:
        """Load the weights (once per process) and configure the backend."""
        from nhance_batch.model.backend import ensure_backend

        ensure_backend()  # TensorFlow or JAX, whichever is installed (JAX-only GPU images)
        _configure_threads(self.config.threads)
        if self._weights is None:
            from nhance_batch.model.dped import DPEDWeights
            from nhance_batch.model.registry import resolve

            resolved = resolve(self.config.name, self.config.path)
            self.model_path = resolved.prefix
            self._weights = DPEDWeights.load(resolved.prefix)

    def teardown(self) -> None:
        self._compiled.clear()

    def _function(self, shape: tuple[int, ...], dtype: np.dtype, as_float: bool) -> Callable:
        key = (shape, dtype.str, as_float)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = self._compile(shape, dtype, as_float)
        return fn

    def _compile(self, shape: tuple[int, ...], dtype: np.dtype, as_float: bool) -> Callable:
        import keras
        from keras import ops

        from nhance_batch.model.dped import forward

        weights, precision = self._weights, self.config.precision
        scale = float(np.iinfo(dtype).max)

        def run(x):
            y = forward(ops.cast(x, "float32") / scale, weights, precision)
            if as_float:
                return y
            return ops.cast(ops.round(ops.clip(y, 0.0, 1.0) * 255.0), "uint8")

        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec(shape, tf.as_dtype(dtype))
            fn = tf.function(run, jit_compile=self.config.jit, input_signature=[spec])
            return lambda x: fn(x).numpy()
        if backend == "jax" and self.config.jit:
            import jax

            fn = jax.jit(run)
            return lambda x: np.asarray(fn(x))
        return lambda x: np.asarray(run(x))

    def batches(self, frames: np.ndarray, *, as_float: bool = False):
        """Enhance ``frames`` pass by pass: yields ``(start, output)`` for
        ``frames[start:start + len(output)]``, so callers need not hold the whole output.

        Every pass has exactly ``config.batch_size`` frames (the last one padded by repeating
        its final frame), so a frame's result does not depend on its neighbours.
        """
        if self._weights is None:
            self.setup()
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [N, H, W, 3], got shape {frames.shape}")
        if frames.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected uint8 or uint16 frames, got {frames.dtype}")
        n, batch = len(frames), self.config.batch_size
        if n == 0:
            return
        fn = self._function((batch, *frames.shape[1:]), frames.dtype, as_float)
        for start in range(0, n, batch):
            part = frames[start:start + batch]
            if len(part) < batch:
                pad = np.repeat(part[-1:], batch - len(part), axis=0)
                part = np.concatenate([part, pad])
            yield start, fn(np.ascontiguousarray(part))[: n - start]

    def __call__(self, frames: np.ndarray, *, as_float: bool = False) -> np.ndarray:
        """Enhance ``frames``; returns uint8 RGB = round(clip(y, 0, 1) * 255), or float32 y."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            return self(frames[None], as_float=as_float)[0]
        out = np.empty(frames.shape, np.float32 if as_float else np.uint8)
        for start, result in self.batches(frames, as_float=as_float):
            out[start:start + len(result)] = result
        return out

"""The enhancement stage: DPED on batches of RGB frames, compiled once per input shape.

Lifecycle (the same in a Ray actor and in the sequential executor): the constructor is cheap
and runs anywhere; :meth:`Enhancer.setup` resolves and loads the weights and picks the math
threads inside the worker process; calling the enhancer runs it.

The path (XLA or graph mode, and the batch shape) is chosen per frame shape the first time
that shape is seen, by :mod:`nhance_batch.model.autotune` (fixed by ``ModelConfig.jit`` on/off
and a non-zero ``batch_size``; else measured, or read from the user cache), and then pinned
for the enhancer's lifetime: every later call with that shape uses the same path.

Each compiled function (one per batch shape, input type, output type and path) is built once
per enhancer and kept: batches of a shape seen before are never traced again, and the
candidate that autotune picked is reused by the run when it was timed on whole frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from nhance_batch.config import ModelConfig
from nhance_batch.model import autotune


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

    def __init__(self, config: ModelConfig | None = None, weights=None, *,
                 cache: "autotune.AutotuneCache | None" = None) -> None:
        self.config = config or ModelConfig()
        self._weights = weights
        self._compiled: dict[tuple, Callable] = {}
        self._decisions: dict[tuple, autotune.Decision] = {}
        self._cache = cache
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

    # -- the path --------------------------------------------------------------------------
    @property
    def jit(self) -> str:
        """``on``, ``off`` or ``auto`` (from ``config.jit``)."""
        return autotune.jit_mode(getattr(self.config, "jit", "auto"))

    @property
    def fixed_batch(self) -> int:
        """The configured batch size, 0 when it is chosen by measurement."""
        return int(getattr(self.config, "batch_size", 0) or 0)

    def _jit_choices(self) -> tuple[bool, ...]:
        import keras

        # JAX without jit is op-by-op eager execution: never a contender, only when asked
        return (False, True) if keras.backend.backend() == "tensorflow" else (True,)

    def _model_id(self) -> str:
        if self.config.path is not None:
            return Path(self.config.path).name or str(self.config.path)
        return self.config.name

    def cache_key(self, height: int, width: int, dtype: np.dtype) -> str:
        return autotune.cache_key(
            device=autotune.device_id(self.config.threads), backend=autotune.backend_id(),
            model=self._model_id(), precision=self.config.precision, height=height,
            width=width, dtype=np.dtype(dtype).name, jit=self.jit, batch=self.fixed_batch)

    def decision(self, frames: np.ndarray) -> autotune.Decision:
        """The path for frames of this shape: decided once (fixed, cached or timed on these
        frames), then the same for every later call."""
        frames = np.asarray(frames)
        shape_key = (frames.shape[1:], frames.dtype.str)
        decision = self._decisions.get(shape_key)
        if decision is None:
            if self._weights is None:
                self.setup()
            height, width = frames.shape[1:3]
            before = set(self._compiled)
            decision = autotune.decide(
                self._build_candidate, frames, key=self.cache_key(height, width, frames.dtype),
                jit=self.jit, batch=self.fixed_batch, precision=self.config.precision,
                jit_choices=self._jit_choices(), cache=self._cache)
            self._forget_timing(before, frames.shape[1:], decision)
            self._decisions[shape_key] = decision
        return decision

    def pin(self, frame_shape: tuple[int, ...], dtype, decision: autotune.Decision) -> None:
        """Use ``decision`` for frames of ``frame_shape`` (H, W, 3) from now on (a decision
        made elsewhere, e.g. by the first chunk's actor)."""
        self._decisions[(tuple(frame_shape), np.dtype(dtype).str)] = decision

    def describe(self) -> dict:
        """How this enhancer ran: per frame shape the path, batch and where the choice came
        from, with the precision, backend and device (JSON-able)."""
        shapes = {f"{shape[1]}x{shape[0]}": {"path": d.path, "batch_size": d.batch_size,
                                               "source": d.source}
                  for (shape, _), d in self._decisions.items()}
        out = {"precision": self.config.precision, "jit": self.jit, "shapes": shapes}
        if self._decisions:
            out["backend"] = autotune.backend_id()
            out["device"] = autotune.device_id(self.config.threads)
        return out

    def path_info(self, frames: np.ndarray) -> dict:
        """The path frames of this shape run on (deciding it if needed), JSON-able: ``size``,
        ``path``, ``batch_size``, ``source``, with ``precision``, ``jit``, ``backend``,
        ``device`` and ``native_16bit`` (which 16-bit math the CPU has natively)."""
        frames = np.asarray(frames)
        decision = self.decision(frames)
        native = autotune.native_16bit()
        info = {"size": f"{frames.shape[2]}x{frames.shape[1]}", "path": decision.path,
                "batch_size": decision.batch_size, "source": decision.source,
                "precision": self.config.precision, "jit": self.jit,
                "backend": autotune.backend_id(),
                "device": autotune.device_id(self.config.threads),
                "native_16bit": [k for k in ("bfloat16", "float16") if native[k]]}
        speedups = self._measured_speedups(frames, decision)
        if speedups:
            info["speedup_vs_this"] = speedups
        return info

    def _measured_speedups(self, frames: np.ndarray, decision: autotune.Decision) -> dict:
        """How much faster the other precisions ran here, from what the autotune cache holds
        for this frame size (their tuned best per frame over this path's), e.g.
        ``{"bfloat16": 1.5}``; empty when nothing was measured for them."""
        mine = min(decision.seconds_per_frame.values(), default=0.0)
        if mine <= 0:
            return {}
        cache = self._cache or autotune.AutotuneCache()
        height, width = frames.shape[1:3]
        out = {}
        for precision in ("float32", "bfloat16", "float16"):
            if precision == self.config.precision:
                continue
            other = self.config.model_copy(update={"precision": precision}) \
                if hasattr(self.config, "model_copy") else None
            if other is None:
                continue
            key = Enhancer(other).cache_key(height, width, frames.dtype)
            found = cache.get(key)
            if found is not None and found.seconds_per_frame:
                out[precision] = round(mine / min(found.seconds_per_frame.values()), 3)
        return out

    def _build_candidate(self, candidate: autotune.Candidate, shape: tuple[int, ...],
                         dtype: np.dtype) -> Callable:
        # through the same table as the run's functions: when the timing crop is the whole
        # frame (frames of at most autotune.PROXY_PIXELS), the winner's compiled function is
        # the one the frames then run through, not compiled (and traced) a second time
        return self._function(tuple(shape), np.dtype(dtype), True, candidate.jit)

    def _function(self, shape: tuple[int, ...], dtype: np.dtype, as_float: bool,
                  jit: bool) -> Callable:
        """The compiled forward pass for batches of exactly ``shape``: built (and traced)
        once per enhancer, then reused by every call."""
        key = (shape, dtype.str, as_float, jit)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = self._compile(shape, dtype, as_float, jit)
        return fn

    def _forget_timing(self, before: set[tuple], frame_shape: tuple[int, ...],
                       decision: autotune.Decision) -> None:
        """Drop the functions compiled only for the timing: every candidate's but the one
        the run uses (the winner's, when it was timed on whole frames)."""
        kept = (decision.batch_size, *frame_shape)
        for key in set(self._compiled) - before:
            shape, _, _, jit = key
            if (shape, jit) != (kept, decision.jit):
                del self._compiled[key]

    def _compile(self, shape: tuple[int, ...], dtype: np.dtype, as_float: bool,
                 jit: bool) -> Callable:
        import keras
        from keras import ops

        from nhance_batch.model.dped import forward

        weights, precision = self._weights, self.config.precision
        scale = float(np.iinfo(dtype).max)
        backend = keras.backend.backend()

        def run(x):
            y = forward(ops.cast(x, "float32") / scale, weights, precision,
                        fused_norm=backend == "tensorflow")
            if as_float:
                return y
            return ops.cast(ops.round(ops.clip(y, 0.0, 1.0) * 255.0), "uint8")

        if backend == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec(shape, tf.as_dtype(dtype))
            fn = tf.function(run, jit_compile=jit, input_signature=[spec])
            return lambda x: fn(x).numpy()
        if backend == "jax" and jit:
            import jax

            fn = jax.jit(run)
            return lambda x: np.asarray(fn(x))
        return lambda x: np.asarray(run(x))

    def batches(self, frames: np.ndarray, *, as_float: bool = False):
        """Enhance ``frames`` pass by pass: yields ``(start, output)`` for
        ``frames[start:start + len(output)]``, so callers need not hold the whole output.

        Every pass has exactly the chosen batch size of frames (the last one padded by
        repeating its final frame), so a frame's result does not depend on its neighbours.
        """
        if self._weights is None:
            self.setup()
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [N, H, W, 3], got shape {frames.shape}")
        if frames.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected uint8 or uint16 frames, got {frames.dtype}")
        n = len(frames)
        if n == 0:
            return
        decision = self.decision(frames)
        batch = decision.batch_size
        fn = self._function((batch, *frames.shape[1:]), frames.dtype, as_float, decision.jit)
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

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
                  jit: bool, transfer: int | None = None) -> Callable:
        """The compiled forward pass for batches of exactly ``shape`` (through the HDR
        rendition of ``transfer`` when given): built (and traced) once per enhancer, then
        reused by every call."""
        key = (shape, dtype.str, as_float, jit, transfer)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = self._compile(shape, dtype, as_float, jit, transfer)
        return fn

    def _forget_timing(self, before: set[tuple], frame_shape: tuple[int, ...],
                       decision: autotune.Decision) -> None:
        """Drop the functions compiled only for the timing: every candidate's but the one
        the run uses (the winner's, when it was timed on whole frames)."""
        kept = (decision.batch_size, *frame_shape)
        for key in set(self._compiled) - before:
            shape, _, _, jit, _ = key
            if (shape, jit) != (kept, decision.jit):
                del self._compiled[key]

    def _compile(self, shape: tuple[int, ...], dtype: np.dtype, as_float: bool,
                 jit: bool, transfer: int | None = None) -> Callable:
        import keras
        from keras import ops

        from nhance_batch.model import colour
        from nhance_batch.model.dped import forward

        weights, precision = self._weights, self.config.precision
        scale = float(np.iinfo(dtype).max)
        fused = keras.backend.backend() == "tensorflow"

        def run(x):
            x = ops.cast(x, "float32") / scale
            if transfer is not None:  # an HDR source: the model sees its SDR rendition
                x = colour.rendition(x, transfer)
            y = forward(x, weights, precision, fused_norm=fused)
            if transfer is not None:
                return x, y
            if as_float:
                return y
            return ops.cast(ops.round(ops.clip(y, 0.0, 1.0) * 255.0), "uint8")

        return _backend_function(run, [(shape, dtype)], jit)

    def batches(self, frames: np.ndarray, *, as_float: bool = False):
        """Enhance ``frames`` pass by pass: yields ``(start, output)`` for
        ``frames[start:start + len(output)]``, so callers need not hold the whole output.

        Every pass has exactly the chosen batch size of frames (the last one padded by
        repeating its final frame), so a frame's result does not depend on its neighbours.
        """
        frames = self._check(frames)
        if len(frames):
            fn = self._pass_function(frames, as_float)
            yield from _passes(frames, fn, self.decision(frames).batch_size)

    def hdr_batches(self, frames: np.ndarray, transfer: int):
        """Enhance HDR ``frames`` (uint16 code values of transfer ``transfer``, PQ or HLG,
        BT.2020) in the model's SDR domain: yields ``(start, (rendition, output))``, the
        float32 SDR rendition the model was given (:func:`colour.rendition`) and its float32
        output, pass by pass as :meth:`batches` does."""
        frames = self._check(frames)
        if len(frames):
            fn = self._pass_function(frames, True, transfer)
            yield from _passes(frames, fn, self.decision(frames).batch_size)

    def restore(self, frames: np.ndarray, outputs: np.ndarray, transfer: int,
                strength: float = 1.0) -> np.ndarray:
        """HDR ``frames`` (uint16, or uint8) with the model's SDR ``outputs`` for their
        renditions taken back to the frames' transfer and primaries (:func:`colour.restore`),
        blended with the rendition by ``strength``: code values of the frames' dtype,
        compiled once per shape."""
        from keras import ops

        from nhance_batch.model import colour

        frames = np.ascontiguousarray(frames)
        outputs = np.ascontiguousarray(outputs, np.float32)
        key = ("restore", frames.shape, frames.dtype.str, transfer, float(strength))
        fn = self._compiled.get(key)
        if fn is None:
            scale, dtype = float(np.iinfo(frames.dtype).max), frames.dtype.name

            def run(x, z):
                code = colour.restore(ops.cast(x, "float32") / scale, z, transfer, strength)
                return ops.cast(ops.round(ops.clip(code, 0.0, 1.0) * scale), dtype)

            # XLA fuses the per-pixel math: 0.30 s against 0.41 s a 1080p frame as a plain
            # TensorFlow graph (2 busy cores)
            fn = self._compiled[key] = _backend_function(
                run, [(frames.shape, frames.dtype), (outputs.shape, outputs.dtype)], True)
        return fn(frames, outputs)

    def _check(self, frames: np.ndarray) -> np.ndarray:
        if self._weights is None:
            self.setup()
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [N, H, W, 3], got shape {frames.shape}")
        if frames.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected uint8 or uint16 frames, got {frames.dtype}")
        return frames

    def _pass_function(self, frames: np.ndarray, as_float: bool,
                       transfer: int | None = None) -> Callable:
        decision = self.decision(frames)
        shape = (decision.batch_size, *frames.shape[1:])
        return self._function(shape, frames.dtype, as_float, decision.jit, transfer)

    def __call__(self, frames: np.ndarray, *, as_float: bool = False) -> np.ndarray:
        """Enhance ``frames``; returns uint8 RGB = round(clip(y, 0, 1) * 255), or float32 y."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            return self(frames[None], as_float=as_float)[0]
        out = np.empty(frames.shape, np.float32 if as_float else np.uint8)
        for start, result in self.batches(frames, as_float=as_float):
            out[start:start + len(result)] = result
        return out


def _passes(frames: np.ndarray, fn: Callable, batch: int):
    """``(start, fn(pass))`` over ``frames`` in passes of exactly ``batch`` frames (the last
    padded with its final frame), each result cut to the pass's real frames."""
    n = len(frames)
    for start in range(0, n, batch):
        part = frames[start:start + batch]
        if len(part) < batch:
            pad = np.repeat(part[-1:], batch - len(part), axis=0)
            part = np.concatenate([part, pad])
        out = fn(np.ascontiguousarray(part))
        if isinstance(out, tuple):
            yield start, tuple(o[: n - start] for o in out)
        else:
            yield start, out[: n - start]


def _backend_function(run: Callable, specs: list, jit: bool) -> Callable:
    """``run`` compiled for arguments of ``specs`` ``[(shape, dtype), ...]`` on the Keras
    backend (a TensorFlow graph, with XLA when ``jit``; ``jax.jit``), returning numpy."""
    import keras

    def to_numpy(out):
        return tuple(np.asarray(o) for o in out) if isinstance(out, tuple) else np.asarray(out)

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec(shape, tf.as_dtype(dtype)) for shape, dtype in specs]
        fn = tf.function(run, jit_compile=jit, input_signature=signature)
        return lambda *args: to_numpy(fn(*args))
    if backend == "jax" and jit:
        import jax

        fn = jax.jit(run)
        return lambda *args: to_numpy(fn(*args))
    return lambda *args: to_numpy(run(*args))

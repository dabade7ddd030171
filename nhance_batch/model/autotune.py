"""Pick the fastest enhancer path on the machine it runs on, and remember it.

A *path* is how the forward pass is compiled (``xla``: ``tf.function(jit_compile=True)`` or
``jax.jit``; ``graph``: a TensorFlow graph without XLA, run by oneDNN's own kernels) and the
batch shape of every pass (1, 2, 4 or 8 frames). Which one is fastest depends on the CPU or
GPU, the backend and its version, the precision and the frame size, so it is measured where
the enhancer runs, not taken from a constant:

* For a frame shape it has not decided yet, :func:`decide` times the candidate paths on a
  crop of the real frames (at most :data:`PROXY_PIXELS` pixels a frame, the full width),
  in interleaved rounds, within a wall-clock budget (:data:`DEFAULT_BUDGET_S`, compiles
  included; ``NHANCE_AUTOTUNE_S``). The compile mode is decided first at batch 1, then the
  batch size with that mode. Among candidates within :data:`TIE` of the fastest, the
  smallest batch wins (less memory, less padding).
* Candidates must agree with the first one: float32 paths within 1 LSB of the uint8 output,
  16-bit paths within 45 dB PSNR; one that does not is dropped.
* The choice is cached in ``$NHANCE_CACHE/autotune.json`` (or the platform's user cache
  folder; ``NHANCE_AUTOTUNE_CACHE`` names another file) under the key (device: CPU model or GPU kind and math threads; backend and
  version; model; precision; input type; shape bucket), so later runs skip the timing.
  The cache is the single source of a decision on a machine: the first process that misses
  takes an exclusive lock on it, tunes and writes; other processes (the other actors of a
  job) wait for the lock and read the same decision, so every chunk of a video runs the same
  path and batch shape.

``--jit on|off`` fixes the compile mode and an explicit batch size fixes the batch; what is
fixed is not timed. Nothing here imports TensorFlow or JAX at module level.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from nhance_batch.storage.cache import user_cache_dir
from nhance_batch.storage.objects import write_bytes

import numpy as np

log = logging.getLogger(__name__)

#: Seconds of wall time the timing may take per decision, compiles included (NHANCE_AUTOTUNE_S).
DEFAULT_BUDGET_S = 12.0
#: Pixels per frame of the crop the candidates are timed on (NHANCE_AUTOTUNE_PIXELS).
PROXY_PIXELS = 32 * 1024
#: Batch sizes tried when the batch is not fixed.
BATCH_SIZES = (1, 2, 4, 8)
#: Candidates this close to the fastest count as equally fast (the smallest batch wins).
TIE = 0.03
#: Shape buckets: height and width rounded up to a multiple of this.
BUCKET = 32
#: Timed rounds per candidate at most (interleaved); at least one always runs.
MAX_ROUNDS = 5
#: Least PSNR (dB) between 16-bit candidates' outputs.
MIN_PSNR_16BIT = 45.0
#: Bumped when the forward pass changes how fast its paths run relative to each other, so
#: that decisions timed on the old code are timed again (2: TensorFlow's fused instance norm).
CACHE_VERSION = 2

JIT_MODES = ("on", "off", "auto")


def jit_mode(value) -> str:
    """``--jit`` / ``ModelConfig.jit`` -> ``"on"``, ``"off"`` or ``"auto"`` (bools accepted)."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    aliases = {"true": "on", "xla": "on", "1": "on", "false": "off", "graph": "off",
               "0": "off"}
    text = aliases.get(text, text)
    if text not in JIT_MODES:
        raise ValueError(f"jit must be on, off or auto, not {value!r}")
    return text


@dataclass(frozen=True)
class Candidate:
    """One way to run the forward pass: XLA or not, and the batch shape."""

    jit: bool
    batch: int

    @property
    def label(self) -> str:
        return f"{'xla' if self.jit else 'graph'}/b{self.batch}"


@dataclass(frozen=True)
class Decision:
    """The path an enhancer uses for one frame shape.

    Attributes:
        jit: compiled with XLA (``path == "xla"``), else graph mode (TensorFlow) / eager (JAX).
        batch_size: frames per pass.
        source: ``tuned`` (timed now), ``cache`` (read from the user cache) or ``fixed``
            (nothing to choose: set by the configuration).
        key: the cache key.
        seconds_per_frame: the timings per candidate label on the tuning crop (tuned/cache).
        tune_seconds: wall time the timing took when it was done.
        dropped: candidates dropped because their output disagreed, with why.
    """

    jit: bool
    batch_size: int
    source: str
    key: str = ""
    seconds_per_frame: dict[str, float] = field(default_factory=dict)
    tune_seconds: float = 0.0
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return "xla" if self.jit else "graph"

    @property
    def label(self) -> str:
        return f"{self.path}/b{self.batch_size}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["path"] = self.path
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> "Decision":
        return cls(jit=bool(data["jit"]), batch_size=int(data["batch_size"]),
                   source=source or str(data.get("source", "cache")),
                   key=str(data.get("key", "")),
                   seconds_per_frame={str(k): float(v) for k, v in
                                      dict(data.get("seconds_per_frame") or {}).items()},
                   tune_seconds=float(data.get("tune_seconds", 0.0)),
                   dropped={str(k): str(v) for k, v in dict(data.get("dropped") or {}).items()})


# -- the key ---------------------------------------------------------------------------------
def cpu_info() -> dict[str, str]:
    """The first processor's fields of Linux ``/proc/cpuinfo`` (empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name (``model name`` of ``/proc/cpuinfo``, else the platform's)."""
    return cpu_info().get("model name") or platform.processor() or platform.machine() or "cpu"


def cpu_model() -> str:
    """The CPU's model name with its family/model/stepping (names such as "AMD EPYC" alone do
    not tell generations apart)."""
    fields = cpu_info()
    ident = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    return f"{cpu_name()} ({', '.join(ident)})" if ident else cpu_name()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    fields = cpu_info()
    return set((fields.get("flags") or fields.get("Features") or "").split())


def native_16bit() -> dict[str, bool]:
    """Whether this CPU has native 16-bit math: bf16 dot products (AVX512_BF16, AMX-BF16)
    and fp16 arithmetic (AVX512_FP16, AMX-FP16)."""
    flags = cpu_flags()
    return {"bfloat16": bool(flags & {"avx512_bf16", "amx_bf16"}),
            "float16": bool(flags & {"avx512_fp16", "amx_fp16"}),
            "amx": any(f.startswith("amx") for f in flags)}


def backend_id() -> str:
    """The Keras backend and its version, e.g. ``tensorflow 2.21.0 (keras 3.15.1)``."""
    import keras

    backend = keras.backend.backend()
    version = "?"
    if backend == "tensorflow":
        import tensorflow as tf

        version = tf.__version__
    elif backend == "jax":
        import jax

        version = jax.__version__
    return f"{backend} {version} (keras {keras.__version__})"


def device_id(threads: int = 0) -> str:
    """What the enhancer runs on: the GPU kind, else the CPU model and its math threads."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform}: {device.device_kind}"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            try:
                name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
            except Exception:  # noqa: BLE001
                name = None
            return f"gpu: {name or gpus[0].name}"
    used = threads or os.cpu_count() or 1
    return f"cpu: {cpu_model()}, {used} threads"


def shape_bucket(height: int, width: int) -> tuple[int, int]:
    """Height and width rounded up to a multiple of :data:`BUCKET`."""
    return (BUCKET * math.ceil(height / BUCKET), BUCKET * math.ceil(width / BUCKET))


def cache_key(*, device: str, backend: str, model: str, precision: str, height: int,
              width: int, dtype: str, jit: str = "auto", batch: int = 0) -> str:
    """The cache key of one decision (a readable string)."""
    bh, bw = shape_bucket(height, width)
    return (f"{device} | {backend} | model {model} | {precision} | {dtype} | "
            f"{bw}x{bh} | jit {jit} | batch {batch or 'auto'}")


# -- the cache -------------------------------------------------------------------------------
def cache_path() -> Path:
    """``$NHANCE_AUTOTUNE_CACHE`` (a file), else ``$NHANCE_CACHE/autotune.json``, else
    ``autotune.json`` in the platform's user cache folder."""
    explicit = os.environ.get("NHANCE_AUTOTUNE_CACHE")
    return Path(explicit) if explicit else user_cache_dir() / "autotune.json"


class AutotuneCache:
    """The decisions of this machine's user, in one JSON file written atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_path()

    def entries(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Decision | None:
        entry = self.entries().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return Decision.from_dict(entry, source="cache")
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, decision: Decision) -> None:
        entries = self.entries()
        entries[decision.key] = {**decision.as_dict(), "source": "tuned",
                                 "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        data = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1)
        write_bytes(str(self.path), data.encode("utf-8"))

    @contextmanager
    def lock(self, timeout_s: float) -> Iterator[bool]:
        """An exclusive lock across processes (``fcntl.flock`` on a side file); yields False
        when it could not be had within ``timeout_s`` (or where there is no flock)."""
        try:
            import fcntl
        except ImportError:  # no POSIX locks: tune without
            yield False
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.1)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()


# -- timing ----------------------------------------------------------------------------------
Builder = Callable[[Candidate, tuple[int, ...], np.dtype], Callable[[np.ndarray], np.ndarray]]


def proxy_frames(frames: np.ndarray, pixels: int = PROXY_PIXELS, count: int = 8) -> np.ndarray:
    """``count`` frames (repeated when fewer) cropped to at most ``pixels`` pixels each: the
    full width (up to ``pixels / 8``) and the central rows."""
    frames = np.asarray(frames)
    n, height, width = frames.shape[:3]
    cols = min(width, max(8, pixels // 8))
    rows = min(height, max(8, math.ceil(pixels / cols)))
    top, left = (height - rows) // 2, (width - cols) // 2
    picked = frames[np.arange(count) % n, top:top + rows, left:left + cols]
    return np.ascontiguousarray(picked)


def _quantised(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(y, np.float32), 0.0, 1.0) * 255.0).astype(np.int16)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _agrees(ref: np.ndarray, out: np.ndarray, precision: str) -> str | None:
    """None when ``out`` agrees with ``ref`` (uint8 values), else why not."""
    if precision == "float32":
        diff = int(np.max(np.abs(ref - out)))
        return None if diff <= 1 else f"differs by {diff} LSB from the reference"
    psnr = _psnr(ref, out)
    return None if psnr >= MIN_PSNR_16BIT else f"{psnr:.1f} dB PSNR against the reference"


class _Timer:
    """Builds, checks and times candidates on the proxy frames within a deadline."""

    def __init__(self, build: Builder, proxy: np.ndarray, precision: str, deadline: float,
                 clock: Callable[[], float]) -> None:
        self.build, self.proxy, self.precision = build, proxy, precision
        self.deadline, self.clock = deadline, clock
        self.fns: dict[Candidate, Callable] = {}
        self.times: dict[Candidate, list[float]] = {}
        self.dropped: dict[str, str] = {}
        self.reference: np.ndarray | None = None

    def add(self, candidate: Candidate, force: bool = False) -> bool:
        """Build and check ``candidate`` (its first call compiles); False when it was dropped
        or the budget is spent (``force``: whatever the budget)."""
        if candidate in self.fns:
            return True
        if not force and self.fns and self.clock() >= self.deadline:
            return False
        batch = self.proxy[:candidate.batch]
        try:
            fn = self.build(candidate, batch.shape, batch.dtype)
            out = _quantised(fn(batch)[0])
        except Exception as exc:  # noqa: BLE001 - a path that fails here is not a candidate
            self.dropped[candidate.label] = f"{type(exc).__name__}: {exc}"
            log.warning("autotune: %s dropped (%s)", candidate.label, exc)
            return False
        if self.reference is None:
            self.reference = out
        else:
            why = _agrees(self.reference, out, self.precision)
            if why:
                self.dropped[candidate.label] = why
                log.warning("autotune: %s dropped: %s", candidate.label, why)
                return False
        self.fns[candidate] = fn
        self.times[candidate] = []
        return True

    def rounds(self, candidates: Sequence[Candidate]) -> None:
        """Interleaved timed rounds over ``candidates`` until the budget is spent (one at
        least, :data:`MAX_ROUNDS` at most)."""
        live = [c for c in candidates if c in self.fns]
        for round_ in range(MAX_ROUNDS):
            for candidate in live:
                if round_ > 0 and self.clock() >= self.deadline:
                    return
                if round_ > 0 and len(self.times[candidate]) > round_:
                    continue
                batch = self.proxy[:candidate.batch]
                start = self.clock()
                self.fns[candidate](batch)
                self.times[candidate].append((self.clock() - start) / candidate.batch)
            if self.clock() >= self.deadline:
                return

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        timed = {c: min(self.times[c]) for c in candidates if self.times.get(c)}
        if not timed:
            return None
        fastest = min(timed.values())
        close = [c for c, t in timed.items() if t <= fastest * (1 + TIE)]
        return min(close, key=lambda c: (c.batch, timed[c]))


def tune(build: Builder, frames: np.ndarray, *, jit: str = "auto", batch: int = 0,
         precision: str = "float32", jit_choices: Sequence[bool] = (False, True),
         budget_s: float | None = None, pixels: int | None = None, key: str = "",
         clock: Callable[[], float] = time.perf_counter) -> Decision:
    """Time the candidate paths on crops of ``frames`` and return the fastest.

    Args:
        build: makes the forward function of a candidate for a batch shape and input type;
            the function maps uint8/uint16 frames to float32 output in [0, 1].
        frames: real frames of the shape being decided, ``[n, H, W, 3]``.
        jit: ``on``/``off`` fix the compile mode, ``auto`` times ``jit_choices``.
        batch: a fixed batch size, or 0 to time :data:`BATCH_SIZES`.
        precision: the compute type (sets how closely candidates must agree).
        jit_choices: the compile modes the backend offers for ``auto``.
        budget_s: wall-clock budget (default ``NHANCE_AUTOTUNE_S`` or :data:`DEFAULT_BUDGET_S`).
        pixels: pixels per frame of the timing crop (default ``NHANCE_AUTOTUNE_PIXELS``).
    """
    mode = jit_mode(jit)
    if budget_s is None:
        budget_s = float(os.environ.get("NHANCE_AUTOTUNE_S", DEFAULT_BUDGET_S))
    if pixels is None:
        pixels = int(os.environ.get("NHANCE_AUTOTUNE_PIXELS", PROXY_PIXELS))
    modes = [mode == "on"] if mode != "auto" else list(dict.fromkeys(jit_choices))
    batches = [batch] if batch else list(BATCH_SIZES)
    start = clock()
    if len(modes) == 1 and len(batches) == 1:
        return Decision(modes[0], batches[0], "fixed", key)
    timer = _Timer(build, proxy_frames(frames, pixels, max(batches)), precision,
                   start + budget_s, clock)
    # 1. the compile mode, at the smallest batch
    first_batch = min(batches)
    stage1 = [Candidate(m, first_batch) for m in modes]
    for candidate in stage1:  # both modes are always compared
        timer.add(candidate, force=True)
    timer.rounds(stage1)
    winner = timer.best(stage1)
    if winner is None:
        raise RuntimeError(f"autotune: no enhancer path works here: {timer.dropped}")
    # 2. the batch size, with that mode
    stage2 = [winner] + [Candidate(winner.jit, b) for b in batches if b != first_batch]
    added = [c for c in stage2 if timer.add(c)]
    timer.rounds(added)
    chosen = timer.best(added) or winner
    seconds = {c.label: round(min(t), 6) for c, t in timer.times.items() if t}
    decision = Decision(chosen.jit, chosen.batch, "tuned", key, seconds,
                        round(clock() - start, 3), dict(timer.dropped))
    log.info("autotune %s: %s (%s)", key, decision.label,
             ", ".join(f"{k} {v * 1e3:.1f} ms/frame" for k, v in seconds.items()))
    return decision


def decide(build: Builder, frames: np.ndarray, *, key: str, jit: str = "auto", batch: int = 0,
           precision: str = "float32", jit_choices: Sequence[bool] = (False, True),
           cache: AutotuneCache | None = None, budget_s: float | None = None,
           pixels: int | None = None,
           clock: Callable[[], float] = time.perf_counter) -> Decision:
    """The path for ``frames``' shape: fixed by the configuration, else from the cache, else
    timed now (under the cache's lock, so concurrent processes agree) and cached."""
    mode = jit_mode(jit)
    modes = [mode == "on"] if mode != "auto" else list(dict.fromkeys(jit_choices))
    if len(modes) == 1 and batch:
        return Decision(modes[0], batch, "fixed", key)
    cache = cache or AutotuneCache()
    hit = cache.get(key)
    if hit is not None:
        return hit
    budget = float(os.environ.get("NHANCE_AUTOTUNE_S", DEFAULT_BUDGET_S)) \
        if budget_s is None else budget_s
    # another process tuning the same key finishes within its budget plus its compiles
    with cache.lock(timeout_s=4 * budget + 120) as locked:
        if locked:
            hit = cache.get(key)
            if hit is not None:
                return hit
        decision = tune(build, frames, jit=mode, batch=batch, precision=precision,
                        jit_choices=modes, budget_s=budget, pixels=pixels, key=key,
                        clock=clock)
        try:
            cache.put(decision)
        except OSError as exc:
            log.warning("autotune: could not write the cache %s: %s", cache.path, exc)
    return decision

"""How fast this machine runs the pipeline's stages: a short measurement, cached per machine.

:func:`calibrate` times, in this process, what a job's workers do per pixel:

* the enhancer as the enhance stage runs it (the job's model, precision and batch size,
  through the same :class:`~nhance_batch.model.enhancer.Enhancer`, followed by the temporal
  stabiliser): the start-up an actor pays once (backend import, model load), the first call
  at a new frame size (the choice of path and batch when it is not cached yet, and the
  compile), and megapixels per second after it, at two frame sizes (:data:`CPU_SIZES`; per
  pixel, large frames run slower than small ones on a CPU, whose caches they overflow);
* the decoder and the encoder (the job's :class:`~nhance_batch.config.EncodeConfig`, through
  :func:`~nhance_batch.media.decode_all` and :func:`~nhance_batch.media.encode_part`), on a
  short synthetic clip at the larger size;
* the embedded Ray's start and stop, as a run does them
  (:func:`~nhance_batch.pipeline.ray_session.connect` and ``disconnect``).

:func:`load_or_calibrate` keeps the result in the user cache
(``$NHANCE_CACHE/calibration.json``, or the platform's cache folder), keyed by
:func:`calibration_key`: the machine (CPU model, core count, GPU kind), the backend and its
version, the model and how it runs, the encoder settings. A later ``plan`` on the same machine
with the same settings reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from nhance_batch.model.autotune import cpu_name
from nhance_batch.rates import calibration_path, read_json_object
from nhance_batch.storage.objects import write_bytes

#: Bumped when what is measured changes, so old entries are not reused.
CALIBRATION_VERSION = 3
#: Frame sizes the enhancer is timed at on CPUs (on a GPU: :data:`GPU_SIZES`), smallest first;
#: rates at other sizes are interpolated in megapixels between them
#: (:meth:`Calibration.enhance_rate`).
CPU_SIZES = ((256, 144), (640, 360))
GPU_SIZES = ((1280, 720),)
#: Least timed seconds and passes of the enhancer at each size after its first pass.
MIN_SECONDS = 2.0
MIN_PASSES = 2
#: Least pixels per timed enhancer call (whole batches of the enhancer's chosen size).
PASS_PIXELS = 8 * 256 * 144
#: Frames of the synthetic clip the decoder and encoder are timed on.
MEDIA_FRAMES = 24


@dataclass(frozen=True)
class Calibration:
    """Rates measured on one machine for one model and encoder setting.

    Attributes:
        key: the cache key (:func:`calibration_key`).
        machine: what the key was made of (CPU, cores, GPU, backend...), readable.
        width, height: the largest frame size the enhancer was timed at.
        enhance_mpx_s: enhancer megapixels per second at ``width x height`` after start-up
            (stabiliser included).
        enhance_sizes: ``[width, height, megapixels per second]`` per size timed, smallest
            first.
        startup_s: the enhancer's one-off start: backend import, model load.
        shape_s: what the first call at a new frame size costs beyond its frames' work (the
            path and batch choice when not cached, and the compile), at the largest size.
        decode_mpx_s, encode_mpx_s: decoder and encoder megapixels per second.
        encode_bytes_per_px: bytes per pixel of the encoder's output on the synthetic clip
            (used for lossless output sizes, whose size depends little on the content).
        gpu: whether the enhancer ran on a GPU (then decode/encode overlap it instead of
            sharing the same cores).
        measured_at: when (UTC, ISO 8601).
        seconds: how long the calibration took.
        ray_s: the embedded Ray's start and stop (None: not measured, e.g. no Ray here, or
            this process already joined one).
        cached: True when this came from the cache rather than a fresh measurement.
    """

    key: str
    machine: dict
    width: int
    height: int
    enhance_mpx_s: float
    enhance_sizes: list
    startup_s: float
    shape_s: float
    decode_mpx_s: float
    encode_mpx_s: float
    encode_bytes_per_px: float
    gpu: bool
    measured_at: str
    seconds: float
    ray_s: float | None = None
    cached: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def enhance_rate(self, width: int, height: int) -> float:
        """Enhancer megapixels per second for ``width x height`` frames: linear in the frame's
        megapixels between the sizes timed, held at the nearest one outside them."""
        rows = sorted((w * h / 1e6, rate) for w, h, rate in self.enhance_sizes) or \
            [(self.width * self.height / 1e6, self.enhance_mpx_s)]
        mpx = width * height / 1e6
        if mpx <= rows[0][0]:
            return rows[0][1]
        for (low, a), (high, b) in zip(rows, rows[1:]):
            if mpx <= high:
                return a + (mpx - low) / (high - low) * (b - a)
        return rows[-1][1]


def _backend() -> tuple[str, str, str | None]:
    """Keras' backend, its version, and the kind of GPU it would use (None: CPU only)."""
    from nhance_batch.model.backend import ensure_backend

    name = ensure_backend()
    if name == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return name, jax.__version__, (gpus[0].device_kind if gpus else None)
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        kind = None
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            kind = details.get("device_name", "GPU")
        return name, tf.__version__, kind
    import keras

    return name, keras.__version__, None


def machine_description(model: Any, encode: Any) -> dict:
    """What the calibration depends on: the machine, the backend, the model and encoder."""
    backend, version, gpu = _backend()
    return {
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "cores": os.cpu_count() or 1,
        "gpu": gpu,
        "backend": backend,
        "backend_version": version,
        "model": model.name,
        "model_path": str(model.path) if model.path else None,
        "precision": model.precision,
        "jit": getattr(model, "jit", True),
        "batch_size": model.batch_size,
        "threads": model.threads,
        "encode": {"codec": encode.codec, "crf": encode.crf, "preset": encode.preset,
                   "lossless": encode.lossless},
        "version": CALIBRATION_VERSION,
    }


def _timed_description(model: Any, encode: Any) -> tuple[dict, float]:
    """:func:`machine_description` and the seconds it took (the backend's import, the first
    time in a process: an enhancer actor pays it too)."""
    begin = time.perf_counter()
    machine = machine_description(model, encode)
    return machine, time.perf_counter() - begin


def calibration_key(machine: dict) -> str:
    """A short stable key for :func:`machine_description`'s result."""
    text = json.dumps(machine, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _synthetic_frames(n: int, width: int, height: int) -> np.ndarray:
    """Moving gradients with noise: every frame differs, encoders have real work."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        t = 3.0 * i
        rgb = np.stack([128 + 100 * np.sin((x + t) / width * 2 * np.pi),
                        128 + 100 * np.cos((y - t) / height * 2 * np.pi),
                        128 + 100 * np.sin((x + y + 2 * t) / (width + height) * 2 * np.pi)],
                       axis=-1)
        rgb += rng.normal(0.0, 6.0, rgb.shape)
        frames[i] = np.clip(rgb, 0, 255).astype(np.uint8)
    return frames


def _stage_pass(enhancer: Any, frames: np.ndarray) -> None:
    """What the enhance stage does with a chunk: the enhancer, then the temporal stabiliser."""
    from nhance_batch.config import DEFAULT_TEMPORAL_RADIUS
    from nhance_batch.temporal import ChunkStabiliser

    stabiliser = ChunkStabiliser(frames, slice(0, len(frames)), DEFAULT_TEMPORAL_RADIUS,
                                 dtype=frames.dtype)
    for first, y in enhancer.batches(frames, as_float=True):
        stabiliser.add(first, y)
    stabiliser.result()


def _time_size(enhancer: Any, width: int, height: int) -> tuple[float, float]:
    """(seconds the first call costs beyond its frames' work, megapixels per second) of the
    enhance stage at ``width x height``."""
    one = _synthetic_frames(1, width, height)
    begin = time.perf_counter()
    _stage_pass(enhancer, one)  # picks its path and batch (or reads them), compiles
    first = time.perf_counter() - begin
    batch = max(1, enhancer.decision(one).batch_size)
    batches = max(1, round(PASS_PIXELS / (batch * width * height)))
    frames = _synthetic_frames(batch * batches, width, height)
    passes, begin = 0, time.perf_counter()
    while passes < MIN_PASSES or time.perf_counter() - begin < MIN_SECONDS:
        _stage_pass(enhancer, frames)
        passes += 1
    rate = passes * len(frames) * width * height / 1e6 / (time.perf_counter() - begin)
    # the first call ran one (padded) batch: its frames' work at the measured rate
    return max(0.0, first - batch * width * height / 1e6 / rate), rate


def _time_enhancer(model: Any,
                   sizes: tuple[tuple[int, int], ...]) -> tuple[float, float, list[list]]:
    """(start-up seconds, first-call seconds at the last size, ``[width, height, megapixels
    per second]`` per size) of the job's enhance stage."""
    start = time.perf_counter()
    from nhance_batch.model.enhancer import Enhancer

    enhancer = Enhancer(model)
    enhancer.setup()
    startup = time.perf_counter() - start
    rows, shape_s = [], 0.0
    for width, height in sizes:
        shape_s, rate = _time_size(enhancer, width, height)
        rows.append([width, height, round(rate, 6)])
    enhancer.teardown()
    return startup, shape_s, rows


def _write_source(path: str, frames: np.ndarray) -> None:
    """A plain H.264 clip of ``frames`` (what a phone video is, more or less)."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "20",
                                                                  "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _time_media(encode: Any, width: int, height: int) -> tuple[float, float, float]:
    """(decode, encode) megapixels per second with the media layer, on a synthetic clip, and
    the encoder's output bytes per pixel."""
    from nhance_batch.media import decode_all, encode_part, probe
    from nhance_batch.media.encode import resolve_codec

    encode, _ = resolve_codec(encode)
    frames = _synthetic_frames(MEDIA_FRAMES, width, height)
    mpx = len(frames) * width * height / 1e6
    with tempfile.TemporaryDirectory(prefix="nhance-calibrate-") as tmp:
        source = os.path.join(tmp, "source.mp4")
        _write_source(source, frames)
        info = probe(source)
        begin = time.perf_counter()
        decoded = decode_all(source, info)
        decode_s = time.perf_counter() - begin
        begin = time.perf_counter()
        part = os.path.join(tmp, "part.mp4")
        encode_part(decoded.frames, decoded.pts, info, part, encode)
        encode_s = time.perf_counter() - begin
        size = os.path.getsize(part)
    return mpx / max(decode_s, 1e-9), mpx / max(encode_s, 1e-9), size / (mpx * 1e6)


def _time_ray() -> float | None:
    """Seconds the embedded Ray takes to start and stop, as a run starts and stops it; None
    when Ray is missing, fails to start, or this process is already connected to one."""
    try:
        from nhance_batch.config import ClusterConfig
        from nhance_batch.pipeline import ray_session
    except ImportError:
        return None
    begin = time.perf_counter()
    try:
        if not ray_session.connect(ClusterConfig(), 1):
            return None
        ray_session.disconnect()
    except Exception:  # noqa: BLE001 - a missing measurement, not a failed plan
        return None
    return time.perf_counter() - begin


def calibrate(model: Any, encode: Any, *, machine: dict | None = None,
              import_s: float | None = None) -> Calibration:
    """Measure this machine's rates for ``model`` (a ModelConfig) and ``encode`` (an
    EncodeConfig); under a minute on an idle CPU. ``import_s``: the backend's import time when
    it was imported before (by :func:`machine_description`); it counts in the start-up."""
    begin = time.perf_counter()
    if machine is None:
        machine, import_s = _timed_description(model, encode)
    sizes = GPU_SIZES if machine["gpu"] else CPU_SIZES
    startup, shape_s, rows = _time_enhancer(model, sizes)
    startup += import_s or 0.0
    decode_rate, encode_rate, bytes_per_px = _time_media(encode, *CPU_SIZES[-1])
    ray_s = _time_ray()
    width, height, rate = rows[-1]
    return Calibration(
        key=calibration_key(machine), machine=machine, width=width, height=height,
        enhance_mpx_s=rate, enhance_sizes=rows, startup_s=round(startup, 3),
        shape_s=round(shape_s, 3),
        decode_mpx_s=round(decode_rate, 6), encode_mpx_s=round(encode_rate, 6),
        encode_bytes_per_px=round(bytes_per_px, 6),
        gpu=bool(machine["gpu"]),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - begin, 3),
        ray_s=None if ray_s is None else round(ray_s, 3))


def cached(key: str, path: Path | None = None) -> Calibration | None:
    """The cached calibration for ``key``, None when there is none (or it is unreadable)."""
    entry = read_json_object(path or calibration_path()).get(key)
    if not isinstance(entry, dict):
        return None
    try:
        found = Calibration(**{**entry, "cached": True})
    except TypeError:  # written by another version
        return None
    rates = (found.enhance_mpx_s, found.decode_mpx_s, found.encode_mpx_s)
    return found if all(isinstance(r, (int, float)) and r > 0 for r in rates) else None


def store(calibration: Calibration, path: Path | None = None) -> Path:
    """Add ``calibration`` to the cache file (an atomic write, so a concurrent reader never
    sees half a file)."""
    path = path or calibration_path()
    data = read_json_object(path)
    data[calibration.key] = {**calibration.as_dict(), "cached": False}
    write_bytes(str(path), json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
    return path


def load_or_calibrate(model: Any, encode: Any, *, refresh: bool = False,
                      path: Path | None = None) -> Calibration:
    """The cached calibration for this machine and settings, or a fresh one (then cached).
    ``refresh`` measures again whatever the cache holds."""
    machine, import_s = _timed_description(model, encode)
    key = calibration_key(machine)
    if not refresh:
        found = cached(key, path)
        if found is not None:
            return found
    result = calibrate(model, encode, machine=machine, import_s=import_s)
    store(result, path)
    return result

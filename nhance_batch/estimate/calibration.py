"""How fast this machine runs the pipeline's stages: a short measurement, cached per machine.

:func:`calibrate` times, in this process, what a job's workers do per pixel:

* the enhancer (the job's model, precision and batch size, through the same
  :class:`~nhance_batch.model.enhancer.Enhancer` the enhance stage uses): the start-up an actor
  pays once (backend import, model load, first compile) and megapixels per second after it;
* the decoder and the encoder (the job's :class:`~nhance_batch.config.EncodeConfig`, through
  :func:`~nhance_batch.media.decode_all` and :func:`~nhance_batch.media.encode_part`), on a
  short synthetic clip.

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
import platform
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from nhance_batch.storage.objects import write_bytes

#: Cache file name under the cache folder.
CACHE_FILE = "calibration.json"
#: Bumped when what is measured changes, so old entries are not reused.
CALIBRATION_VERSION = 2
#: Frame size the enhancer is timed at on CPUs (on a GPU: :data:`GPU_SIZE`).
CPU_SIZE = (256, 144)
GPU_SIZE = (1280, 720)
#: Least timed seconds and passes of the enhancer after its first (compiling) pass.
MIN_SECONDS = 2.0
MIN_PASSES = 2
#: Frames per timed enhancer call.
PASS_FRAMES = 8
#: Frames of the synthetic clip the decoder and encoder are timed on.
MEDIA_FRAMES = 24


@dataclass(frozen=True)
class Calibration:
    """Rates measured on one machine for one model and encoder setting.

    Attributes:
        key: the cache key (:func:`calibration_key`).
        machine: what the key was made of (CPU, cores, GPU, backend...), readable.
        width, height: the frame size the enhancer was timed at.
        enhance_mpx_s: enhancer megapixels per second after start-up.
        startup_s: the enhancer's one-off start: backend import, model load, first compile.
        decode_mpx_s, encode_mpx_s: decoder and encoder megapixels per second.
        encode_bytes_per_px: bytes per pixel of the encoder's output on the synthetic clip
            (used for lossless output sizes, whose size depends little on the content).
        gpu: whether the enhancer ran on a GPU (then decode/encode overlap it instead of
            sharing the same cores).
        measured_at: when (UTC, ISO 8601).
        seconds: how long the calibration took.
        cached: True when this came from the cache rather than a fresh measurement.
    """

    key: str
    machine: dict
    width: int
    height: int
    enhance_mpx_s: float
    startup_s: float
    decode_mpx_s: float
    encode_mpx_s: float
    encode_bytes_per_px: float
    gpu: bool
    measured_at: str
    seconds: float
    cached: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def cache_path() -> Path:
    """``$NHANCE_CACHE/calibration.json``, or the platform's user cache folder's."""
    base = os.environ.get("NHANCE_CACHE")
    if not base:
        from platformdirs import user_cache_dir

        base = user_cache_dir("nhance-batch")
    return Path(base) / CACHE_FILE


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "cpu": _cpu_model(),
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


def _time_enhancer(model: Any, width: int, height: int) -> tuple[float, float]:
    """(startup seconds, megapixels per second) of the job's enhancer at ``width x height``."""
    start = time.perf_counter()
    from nhance_batch.model.enhancer import Enhancer

    enhancer = Enhancer(model)
    enhancer.setup()
    # a multiple of any batch the enhancer may pick (0: it chooses by measurement)
    frames = _synthetic_frames(max(getattr(model, "batch_size", 0) or 0, PASS_FRAMES),
                               width, height)
    enhancer(frames, as_float=True)  # compiles (and picks its path and batch, if it does)
    startup = time.perf_counter() - start
    passes, begin = 0, time.perf_counter()
    while passes < MIN_PASSES or time.perf_counter() - begin < MIN_SECONDS:
        enhancer(frames, as_float=True)
        passes += 1
    elapsed = time.perf_counter() - begin
    enhancer.teardown()
    return startup, passes * len(frames) * width * height / 1e6 / elapsed


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


def calibrate(model: Any, encode: Any, *, machine: dict | None = None,
              import_s: float | None = None) -> Calibration:
    """Measure this machine's rates for ``model`` (a ModelConfig) and ``encode`` (an
    EncodeConfig); a few seconds on a CPU. ``import_s``: the backend's import time when it
    was imported before (by :func:`machine_description`); it counts in the start-up."""
    begin = time.perf_counter()
    if machine is None:
        machine, import_s = _timed_description(model, encode)
    width, height = GPU_SIZE if machine["gpu"] else CPU_SIZE
    startup, enhance_rate = _time_enhancer(model, width, height)
    startup += import_s or 0.0
    decode_rate, encode_rate, bytes_per_px = _time_media(encode, *CPU_SIZE)
    return Calibration(
        key=calibration_key(machine), machine=machine, width=width, height=height,
        enhance_mpx_s=round(enhance_rate, 6), startup_s=round(startup, 3),
        decode_mpx_s=round(decode_rate, 6), encode_mpx_s=round(encode_rate, 6),
        encode_bytes_per_px=round(bytes_per_px, 6),
        gpu=bool(machine["gpu"]),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - begin, 3))


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached(key: str, path: Path | None = None) -> Calibration | None:
    """The cached calibration for ``key``, None when there is none (or it is unreadable)."""
    entry = _read_cache(path or cache_path()).get(key)
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
    path = path or cache_path()
    data = _read_cache(path)
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

"""The rates a job can know before it runs, without importing a math backend or measuring.

The package's table of measured GPU rates (``gpu_rates.toml``, :func:`load_rates`), each with
its source: enhancer rates are frames per second at a measured frame size; for other sizes the
rate per megapixel is interpolated linearly in the frame's megapixels between the measured
sizes (and held at the nearest one outside them): DPED is fully convolutional, so its cost is
per pixel, and the measured H100 rates per megapixel differ by 1% between 720p and 1080p.

The driver sizes chunks by time (:meth:`~nhance_batch.config.ChunkConfig.frames_for`), so it
needs the megapixels per second of one enhancer worker, cheaply: reading files, never timing.
:func:`known_enhancer_rate` takes, in this order:

1. for a GPU worker of a kind in the rate table: that rate;
2. for a CPU worker: this machine's calibration (``calibration.json``, written by ``plan``
   and ``bench``) for the job's model and precision, divided among the CPU workers;
3. else this machine's autotune timings (``autotune.json``, written by every enhancer) for
   the model and precision: the best path's time per frame on its tuning crop, at the
   largest frame size tuned (small crops run slower per pixel, so this errs low);
4. else :data:`~nhance_batch.config.FALLBACK_MPX_S` (a slow CPU worker) for a CPU, and
   :data:`FALLBACK_GPU_MPX_S` for a GPU of an unknown kind.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EnhancerRate:
    """DPED on one GPU of ``kind`` at ``width x height`` in ``precision``: ``fps``."""

    kind: str
    device: str
    precision: str
    width: int
    height: int
    fps: float
    source: str

    @property
    def mpx_s(self) -> float:
        return self.fps * self.width * self.height / 1e6


@dataclass(frozen=True)
class EncoderRate:
    """What the CPUs of one node of ``kind`` encode together, with these encoder settings."""

    kind: str
    codec: str
    crf: int
    preset: str
    cores: int
    width: int
    height: int
    fps: float
    source: str

    @property
    def mpx_s(self) -> float:
        return self.fps * self.width * self.height / 1e6


@dataclass(frozen=True)
class RateTable:
    enhancer: tuple[EnhancerRate, ...]
    encoder: tuple[EncoderRate, ...]

    def kinds(self) -> list[str]:
        """GPU kinds with an enhancer rate, in table order."""
        return list(dict.fromkeys(rate.kind for rate in self.enhancer))

    def enhancer_rate(self, kind: str, precision: str, width: int,
                      height: int) -> tuple[float, list[EnhancerRate]] | None:
        """Megapixels per second of one ``kind`` GPU for ``width x height`` frames, and the
        measured rows it came from; None when nothing was measured for that precision."""
        rows = sorted((r for r in self.enhancer if r.kind == kind and r.precision == precision),
                      key=lambda r: r.width * r.height)
        if not rows:
            return None
        mpx = width * height / 1e6
        sizes = [r.width * r.height / 1e6 for r in rows]
        if mpx <= sizes[0] or len(rows) == 1:
            return rows[0].mpx_s, [rows[0]]
        if mpx >= sizes[-1]:
            return rows[-1].mpx_s, [rows[-1]]
        for (low, a), (high, b) in zip(zip(sizes, rows), zip(sizes[1:], rows[1:])):
            if low <= mpx <= high:
                share = (mpx - low) / (high - low)
                return a.mpx_s + share * (b.mpx_s - a.mpx_s), [a, b]
        return rows[-1].mpx_s, [rows[-1]]  # unreachable: the sizes cover mpx

    def encoder_rate(self, kind: str, codec: str, crf: int, preset: str) -> EncoderRate | None:
        """The measured encode rate of a ``kind`` node with exactly these settings, if any."""
        for rate in self.encoder:
            if (rate.kind, rate.codec, rate.crf, rate.preset) == (kind, codec, crf, preset):
                return rate
        return None


@lru_cache(maxsize=1)
def load_rates() -> RateTable:
    """The table shipped in the package."""
    text = resources.files("nhance_batch").joinpath("gpu_rates.toml").read_text("utf-8")
    return parse_rates(text)


def parse_rates(text: str) -> RateTable:
    """A rate table from TOML text (see ``gpu_rates.toml``).

    Raises:
        ValueError: a row lacks a field, has an unknown one, or a rate is not positive.
    """
    data = tomllib.loads(text)
    try:
        enhancer = tuple(EnhancerRate(**row) for row in data.get("enhancer", []))
        encoder = tuple(EncoderRate(**row) for row in data.get("encoder", []))
    except TypeError as exc:
        raise ValueError(f"bad rate table row: {exc}") from None
    for row in (*enhancer, *encoder):
        if row.fps <= 0 or row.width <= 0 or row.height <= 0 or not row.source.strip():
            raise ValueError(f"bad rate table row (rates and sizes > 0, a source): {row}")
    return RateTable(enhancer, encoder)


#: Megapixels per second assumed for a GPU of a kind the rate table lacks: 10 TFLOP/s of
#: DPED's 0.8 MFLOP per pixel (an H100 runs 100 in float32 with TF32 matmuls).
FALLBACK_GPU_MPX_S = 10e12 / 799_488 / 1e6


@dataclass(frozen=True)
class KnownRate:
    """One worker's enhancer megapixels per second, and where the number came from."""

    mpx_s: float
    source: str


def known_enhancer_rate(model: Any, *, cpu_workers: int = 1, gpu_kind: str | None = None,
                        width: int = 1280, height: int = 720) -> KnownRate:
    """The rate of one worker for ``model`` (a ModelConfig): ``gpu_kind`` names the GPU of a
    GPU worker (as the rate table names it, e.g. ``H100``), None for CPU workers, of which
    there are ``cpu_workers`` sharing this machine's cores. ``width`` x ``height``: the frame
    size for the rate table's interpolation."""
    from nhance_batch.config import FALLBACK_MPX_S

    if gpu_kind is not None:
        found = load_rates().enhancer_rate(gpu_kind, model.precision, width, height)
        if found is not None:
            return KnownRate(found[0], f"rate table, {gpu_kind} {model.precision}")
        return KnownRate(FALLBACK_GPU_MPX_S, f"assumed for a GPU ({gpu_kind} not measured)")
    workers = max(1, cpu_workers)
    for lookup in (_calibrated_mpx_s, _autotuned_mpx_s):
        found = lookup(model)
        if found is not None:
            rate, source = found
            share = f", shared by {workers} workers" if workers > 1 else ""
            return KnownRate(rate / workers, source + share)
    return KnownRate(FALLBACK_MPX_S, "assumed (nothing measured on this machine yet)")


def _calibrated_mpx_s(model: Any) -> tuple[float, str] | None:
    """The newest CPU calibration of this host and CPU for the model and precision."""
    from nhance_batch.model.autotune import cpu_name

    host, cpu, cores = socket.gethostname(), cpu_name(), os.cpu_count() or 1
    best: tuple[str, float] | None = None
    for entry in read_json_object(calibration_path()).values():
        machine = entry.get("machine") if isinstance(entry, dict) else None
        if not isinstance(machine, dict) or machine.get("gpu") or entry.get("gpu"):
            continue
        if (machine.get("host"), machine.get("cpu"), machine.get("cores")) != (host, cpu, cores):
            continue
        if (machine.get("model"), machine.get("precision")) != (model.name, model.precision):
            continue
        rate = entry.get("enhance_mpx_s")
        when = str(entry.get("measured_at", ""))
        if isinstance(rate, (int, float)) and rate > 0 and (best is None or when > best[0]):
            best = (when, float(rate))
    return None if best is None else (best[1], f"calibration of {best[0]}")


def _autotuned_mpx_s(model: Any) -> tuple[float, str] | None:
    """The best path's rate on its tuning crop, at the largest frame size tuned on this CPU
    for the model and precision."""
    from nhance_batch.model.autotune import PROXY_PIXELS, cache_path, cpu_model

    data = read_json_object(cache_path())
    entries = data.get("entries") if isinstance(data.get("entries"), dict) else {}
    device = f"cpu: {cpu_model()},"
    wanted = f"| model {model.name} | {model.precision} |"
    best: tuple[int, float] | None = None
    for key, entry in entries.items():
        if not (key.startswith(device) and wanted in key and isinstance(entry, dict)):
            continue
        times = [t for t in (entry.get("seconds_per_frame") or {}).values()
                 if isinstance(t, (int, float)) and t > 0]
        size = _bucket(key)
        if not times or size is None:
            continue
        width, height = size
        cols = min(width, max(8, PROXY_PIXELS // 8))  # as autotune.proxy_frames crops
        rows = min(height, max(8, math.ceil(PROXY_PIXELS / cols)))
        if best is None or width * height > best[0]:
            best = (width * height, cols * rows / min(times) / 1e6)
    return None if best is None else (best[1], "autotune timings")


def _bucket(key: str) -> tuple[int, int] | None:
    """The ``WxH`` shape bucket of an autotune key."""
    for part in key.split(" | "):
        width, sep, height = part.partition("x")
        if sep and width.isdigit() and height.isdigit():
            return int(width), int(height)
    return None


def calibration_path() -> Path:
    """This machine's calibration cache (written by ``plan`` and ``bench``):
    ``calibration.json`` in the user cache folder (:func:`~nhance_batch.storage.user_cache_dir`)."""
    from nhance_batch.storage import user_cache_dir

    return user_cache_dir() / "calibration.json"


def read_json_object(path: Path) -> dict:
    """The JSON object in the file at ``path``; empty when it is missing, unreadable or not an
    object (a cache is only ever a hint)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

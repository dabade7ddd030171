"""Shared fixtures: small test clips, made once per session, and helpers."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.media.makemedia import make_video

# name -> make_video keyword arguments (file name suffix picks the container)
CLIPS: dict[str, dict[str, Any]] = {
    # 30 frames, keyframe every 7, B-frames: GOPs shorter and longer than chunks
    "cfr.mp4": dict(width=64, height=48, frames=30, gop=7),
    # one keyframe only: every chunk but the first starts mid-GOP
    "longgop.mp4": dict(width=64, height=48, frames=30, gop=40),
    # variable frame rate in a millisecond time base
    "vfr.mp4": dict(
        width=64, height=48, frames=24, time_base=Fraction(1, 1000), gop=6,
        vfr_pts=[0, 40, 80, 200, 210, 220, 400, 433, 466, 500, 700, 710,
                 760, 800, 1000, 1001, 1040, 1200, 1240, 1500, 1540, 1580, 1700, 1800],
    ),
    "vfr.mkv": dict(
        width=64, height=48, frames=20, time_base=Fraction(1, 1000), gop=5,
        vfr_pts=[0, 33, 50, 100, 180, 200, 233, 300, 400, 410,
                 500, 540, 600, 700, 710, 800, 833, 900, 1000, 1100],
    ),
    # NTSC timing (1001/30000 s frames) starting late: edit lists must not round to milliseconds
    "ntsc.mp4": dict(
        width=64, height=48, frames=14, rate=Fraction(30000, 1001), time_base=Fraction(1, 30000), gop=5,
        vfr_pts=[7007 + 1001 * i for i in range(14)],
    ),
    "nob.mp4": dict(width=64, height=48, frames=20, gop=4, bframes=False),
    "full.mp4": dict(width=64, height=48, frames=40, gop=12, audio_tracks=2, subtitle=True, rotation=90),
    "full.mkv": dict(width=64, height=48, frames=30, gop=10, audio_tracks=2, subtitle=True, rotation=270),
    # big enough for 4:2:0 to keep a smooth picture above 38 dB
    "cif.mp4": dict(width=176, height=144, frames=12, gop=6),
    "odd.mp4": dict(width=175, height=143, frames=12, pix_fmt="yuv444p", gop=5),
    "tenbit.mp4": dict(width=176, height=144, frames=16, pix_fmt="yuv420p10le", gop=6, audio_tracks=1),
    "plain.mov": dict(width=64, height=48, frames=10, gop=5, audio_tracks=1),
}


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``clip(name)``: path of the test clip ``name`` from :data:`CLIPS`, made on first use."""
    folder = tmp_path_factory.mktemp("clips")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = make_video(folder / name, **CLIPS[name])
        return made[name]

    return get


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two same-shape images/stacks, in dB, on their dtype's scale."""
    peak = float(np.iinfo(a.dtype).max)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def packet_bytes(path: Path, kinds: tuple[str, ...] = ("audio", "subtitle")) -> list[list[bytes]]:
    """Every packet's payload, per stream of the given kinds, in stream order."""
    import av

    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type in kinds]
        indexes = [s.index for s in streams]
        if not streams:  # demux([]) would mean every stream
            return []
        payloads: dict[int, list[bytes]] = {i: [] for i in indexes}
        for packet in container.demux(streams):
            if packet.size:
                payloads[packet.stream.index].append(bytes(packet))
    return [payloads[i] for i in indexes]

"""Helpers for the analysis tests: tiny clips written straight with PyAV, frames read back
straight with PyAV (independently of the code under test)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(path: Path, frames: list[np.ndarray] | np.ndarray, pts: list[int], *,
                time_base: Fraction, codec: str = "ffv1", pix_fmt: str | None = None,
                rotation: int = 0, container: str | None = None) -> Path:
    """Write RGB ``frames`` with timestamps ``pts`` (in ``time_base``). FFV1 (RGB, lossless)
    by default; ``codec="libx264"`` writes near-lossless yuv444p."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=container) as out:
        options = {"crf": "4", "preset": "veryfast"} if codec == "libx264" else {}
        stream = out.add_stream(codec, rate=25, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt or ("bgr0" if codec == "ffv1" else "yuv444p")
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for array, stamp in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame = frame.reformat(format=stream.pix_fmt)
            frame.pts, frame.time_base = int(stamp), time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def read_frames(path: Path | str) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of ``path`` as coded (no rotation), RGB, and its time in seconds."""
    import av

    frames, times = [], []
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
    return frames, times


def video_format(path: Path | str) -> dict:
    """Codec, pixel format, size and frame count of ``path``'s video, as PyAV reads them."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for p in container.demux(stream) if p.size)
        return {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "width": stream.codec_context.width, "height": stream.codec_context.height,
                "frames": count, "format": container.format.name}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def flat(value: int, width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)

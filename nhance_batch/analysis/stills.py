"""Stills: the frame a player shows at a given time, as an array or an image file's bytes."""

from __future__ import annotations

import io
import os

import numpy as np


def frame_index_at(info, t: float) -> int:
    """The index of the frame shown at ``t`` seconds from the first frame: the last frame
    that starts at or before ``t`` (the first frame for ``t`` before it)."""
    from nhance_batch.analysis.frames import seconds

    times = seconds(info)
    return int(max(0, np.searchsorted(times, t + 1e-9, side="right") - 1))


def frame_at(path: str | os.PathLike[str], t: float) -> np.ndarray:
    """The upright RGB ``uint8 [H, W, 3]`` frame of the local video ``path`` shown at ``t``
    seconds from its first frame, as shown: non-square pixels resampled to square ones.

    Raises:
        MediaError: the file cannot be read.
    """
    from nhance_batch.analysis.frames import iter_frames
    from nhance_batch.media.probe import probe

    info = probe(path)
    index = frame_index_at(info, t)
    for _, _, frame in iter_frames(path, info, [index], pixel_shape=info.sample_aspect_ratio):
        return frame
    raise AssertionError("unreachable: iter_frames yields every index asked for")


def resized(frame: np.ndarray, max_width: int) -> np.ndarray:
    """``frame`` scaled down (aspect kept) to at most ``max_width`` pixels wide."""
    from PIL import Image

    h, w = frame.shape[:2]
    if w <= max_width:
        return frame
    image = Image.fromarray(frame).resize((max_width, max(1, round(h * max_width / w))),
                                          Image.Resampling.LANCZOS)
    return np.asarray(image)


def png_bytes(frame: np.ndarray) -> bytes:
    """``frame`` (RGB ``uint8``) as a PNG file."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def jpeg_bytes(frame: np.ndarray, quality: int = 90) -> bytes:
    """``frame`` (RGB ``uint8``) as a JPEG file (for reports: a fraction of a PNG's size)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()

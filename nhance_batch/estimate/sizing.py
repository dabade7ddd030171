"""Output size before a run, from the job's own encoder on the job's own frames.

What an encoder makes of a frame depends far more on the footage than on anything a probe
reports (the sample clips' inputs differ by 6x in bytes per pixel), so :func:`sample_size`
measures it. It decodes :data:`SAMPLE_WINDOWS` runs of :data:`WINDOW_FRAMES` consecutive
frames, spread over the video (motion, and so the cost of a frame, changes along a video), and
encodes each with the job's encoder settings as that video would be encoded
(:func:`~nhance_batch.media.encode_part`, the codec resolved for that video) twice: its first
frame alone (what a part's first, key frame costs, with the container) and all of it (what
each further frame adds).

The enhancer's output takes more bytes than its source: brighter, sharper, its noise
amplified from frame to frame (whole runs at libx264 CRF 18: 1.13x for carphone, 2.5x for
bikes, mostly in the frames after a key frame, and more in its detailed scenes than in its
opening ones). Given the job's enhancer, :func:`sample_size` enhances every run of frames,
cropped to at most :data:`GROWTH_CROP` (the calibration's larger size, so the enhancer's path
for it is already chosen), and takes the mean ratio of the enhanced crop's bytes to the source
crop's, for the key frame and for the further frames apart (``key_growth``,
``frame_growth``); without it both are :data:`TYPICAL_GROWTH`.

:func:`output_bytes` scales that to a video: one key frame per part (each chunk is encoded on
its own) and at least one every :data:`KEY_INTERVAL` frames (x264's and x265's default), the
other frames at the measured cost, in proportion to the frame's pixels, each times its growth.
Streams copied from the input (audio, subtitles) are not counted.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from nhance_batch.config import EncodeConfig
    from nhance_batch.media.probe import VideoInfo

#: Runs of consecutive frames sampled, spread evenly over the video.
SAMPLE_WINDOWS = 3
#: Frames per run (fewer when the video is shorter).
WINDOW_FRAMES = 8
#: Videos of a job sampled (the first usable ones); the others are estimated from the first
#: sample, in proportion to their pixels.
SAMPLED_VIDEOS = 8
#: Key frames at least this often (x264's and x265's default ``keyint``).
KEY_INTERVAL = 250
#: Enhanced output bytes over the source's, with the same encoder settings, when the enhancer
#: is not run: between carphone's 1.13 and bikes' 2.5 (whole runs, libx264 CRF 18 medium,
#: ``bench/plan_accuracy.py``).
TYPICAL_GROWTH = 1.7
#: Largest crop (width, height) the growth is measured on.
GROWTH_CROP = (640, 360)

Enhance = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SizeSample:
    """What the job's encoder made of sampled frames of one input.

    Attributes:
        source: the input sampled.
        codec: the encoder that ran.
        width, height: its frame size.
        frames: frames encoded.
        first_bytes: a part holding one frame alone (key frame and container), on average.
        frame_bytes: bytes each further frame added, on average.
        key_growth, frame_growth: the enhanced frames' bytes over the source frames' (key
            frame, further frames), measured on a crop, or :data:`TYPICAL_GROWTH`.
        growth_measured: whether the enhancer measured the growth.
    """

    source: str
    codec: str
    width: int
    height: int
    frames: int
    first_bytes: float
    frame_bytes: float
    key_growth: float = TYPICAL_GROWTH
    frame_growth: float = TYPICAL_GROWTH
    growth_measured: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def sample_windows(frame_count: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each sampled run of frames: evenly spread, not overlapping."""
    size = max(1, min(WINDOW_FRAMES, frame_count))
    count = max(1, min(SAMPLE_WINDOWS, frame_count // size))
    starts = sorted({round(i * (frame_count - size) / max(1, count - 1)) for i in range(count)})
    return [(s, s + size) for s in starts]


def sample_size(path: str, info: VideoInfo, encode: EncodeConfig, source: str | None = None,
                enhance: Enhance | None = None) -> SizeSample:
    """Encode sampled frames of the local video ``path`` (probed as ``info``) with ``encode``
    (resolved for this video as a run resolves it); ``enhance`` (frames -> enhanced frames)
    measures the growth on every run of frames.

    Raises:
        MediaError: the frames cannot be decoded or encoded.
    """
    from nhance_batch.media import Chunk, chunk_info, decode_chunk
    from nhance_batch.media.encode import encoder_settings

    costs, frames, growths = [], 0, []
    for index, (start, end) in enumerate(sample_windows(info.frame_count)):
        chunk = Chunk(index, start, end, start, end)
        window = chunk_info(info, chunk)
        decoded = decode_chunk(path, info, chunk)
        costs.append(_costs(decoded.frames, decoded.pts, window, encode))
        frames += end - start
        if enhance is not None:
            growths.append(_growth(decoded.frames, decoded.pts, window, encode, enhance))
    sample = SizeSample(source or path, encoder_settings(info, encode).codec, info.width,
                        info.height, frames, round(_mean(c[0] for c in costs), 1),
                        round(_mean(c[1] for c in costs), 1))
    if not growths:
        return sample
    return replace(sample, key_growth=round(_mean(g[0] for g in growths), 4),
                   frame_growth=round(_mean(g[1] for g in growths), 4), growth_measured=True)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _costs(frames: np.ndarray, pts: np.ndarray, info: VideoInfo,
           encode: EncodeConfig) -> tuple[float, float]:
    """(bytes of a part of the first frame alone, bytes each further frame adds)."""
    first = _encoded_bytes(frames[:1], pts[:1], info, encode)
    if len(frames) < 2:
        return first, first / 2
    whole = _encoded_bytes(frames, pts, info, encode)
    return first, max(0.0, (whole - first) / (len(frames) - 1))


def _encoded_bytes(frames: np.ndarray, pts: np.ndarray, info: VideoInfo,
                   encode: EncodeConfig) -> int:
    """Bytes of a part holding ``frames``, encoded as a run encodes it."""
    from nhance_batch.media import encode_part

    with tempfile.TemporaryDirectory(prefix="nhance-size-") as tmp:
        part = os.path.join(tmp, "part.mp4")
        encode_part(frames, pts, info, part, encode)
        return os.path.getsize(part)


def _growth(frames: np.ndarray, pts: np.ndarray, info: VideoInfo, encode: EncodeConfig,
            enhance: Enhance) -> tuple[float, float]:
    """(key frame, further frames) growth: the enhanced central crop's costs over the source
    crop's (at most :data:`GROWTH_CROP`, even sides, so that any pixel format takes it)."""
    width = min(info.width, GROWTH_CROP[0]) // 2 * 2 or info.width
    height = min(info.height, GROWTH_CROP[1]) // 2 * 2 or info.height
    top, left = (info.height - height) // 2, (info.width - width) // 2
    crop = np.ascontiguousarray(frames[:, top:top + height, left:left + width])
    crop_info = replace(info, width=width, height=height)
    enhanced = enhance(crop)
    if enhanced.dtype != crop.dtype:  # 8-bit output of a deeper source: widen as a run does
        enhanced = enhanced.astype(crop.dtype) * (np.iinfo(crop.dtype).max // 255)
    source = _costs(crop, pts, crop_info, encode)
    result = _costs(enhanced, pts, crop_info, encode)
    return result[0] / max(1.0, source[0]), result[1] / max(1.0, source[1])


def lazy_enhancer(model) -> Enhance:
    """The job's enhancer (``model``: a ModelConfig) as a function of frames, loaded on its
    first call."""
    held = []

    def enhance(frames: np.ndarray) -> np.ndarray:
        if not held:
            from nhance_batch.model.enhancer import Enhancer

            held.append(Enhancer(model))
            held[0].setup()
        return held[0](frames)

    return enhance


def output_bytes(sample: SizeSample, width: int, height: int, frames: int, chunks: int) -> int:
    """The enhanced output's video bytes for ``frames`` frames of ``width x height`` cut into
    ``chunks`` parts, from ``sample``."""
    if frames <= 0:
        return 0
    keys = min(frames, max(chunks, math.ceil(frames / KEY_INTERVAL)))
    scale = width * height / (sample.width * sample.height)
    video = (keys * sample.first_bytes * sample.key_growth
             + (frames - keys) * sample.frame_bytes * sample.frame_growth)
    return int(scale * video)

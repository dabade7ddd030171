"""Output size before a run, from the job's own encoder on the job's own frames.

What an encoder makes of a frame depends far more on the footage than on anything a probe
reports (the sample clips' inputs differ by 6x in bytes per pixel), so :func:`sample_size`
measures it: it decodes the first :data:`SAMPLE_FRAMES` frames of an input and encodes them
with the job's encoder settings as that video would be encoded (:func:`~nhance_batch.media.encode_part`,
the codec resolved for that video), twice: the first frame alone (what a part's first, key
frame costs, with the container) and all of them (what each further frame adds).

:func:`output_bytes` scales that to a video: one key frame per part (each chunk is encoded on
its own) and at least one every :data:`KEY_INTERVAL` frames (x264's and x265's default), the
other frames at the measured cost, in proportion to the frame's pixels, times
:data:`ENHANCED_FACTOR` (the enhancer's output, brighter and sharper, takes more bytes than
the source it came from). Streams copied from the input (audio, subtitles) are not counted.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nhance_batch.config import EncodeConfig
    from nhance_batch.media.probe import VideoInfo

#: Frames decoded and encoded for the sample (fewer when the video is shorter).
SAMPLE_FRAMES = 16
#: Videos of a job sampled (the first usable ones); the others are estimated from the first
#: sample, in proportion to their pixels.
SAMPLED_VIDEOS = 8
#: Key frames at least this often (x264's and x265's default ``keyint``).
KEY_INTERVAL = 250
#: Enhanced output bytes over the sampled source frames' bytes with the same encoder settings:
#: measured on the sample clips (bikes 640x272 and carphone 176x144, libx264 CRF 18 medium;
#: see ``bench/plan_accuracy.py``). FFV1 (lossless) output is assumed to grow alike.
ENHANCED_FACTOR = 1.0


@dataclass(frozen=True)
class SizeSample:
    """What the job's encoder made of the first frames of one input.

    Attributes:
        source: the input sampled.
        codec: the encoder that ran.
        width, height: its frame size.
        frames: frames encoded.
        first_bytes: a part holding the first frame alone (key frame and container).
        frame_bytes: bytes each further frame added.
    """

    source: str
    codec: str
    width: int
    height: int
    frames: int
    first_bytes: int
    frame_bytes: float

    def as_dict(self) -> dict:
        return asdict(self)


def sample_size(path: str, info: VideoInfo, encode: EncodeConfig,
                source: str | None = None) -> SizeSample:
    """Encode the first frames of the local video ``path`` (probed as ``info``) with
    ``encode`` (resolved for this video as a run resolves it).

    Raises:
        MediaError: the frames cannot be decoded or encoded.
    """
    from nhance_batch.media import Chunk, chunk_info, decode_chunk, encode_part
    from nhance_batch.media.encode import encoder_settings

    count = max(1, min(SAMPLE_FRAMES, info.frame_count))
    chunk = Chunk(0, 0, count, 0, count)
    window = chunk_info(info, chunk)
    decoded = decode_chunk(path, info, chunk)
    sizes = []
    with tempfile.TemporaryDirectory(prefix="nhance-size-") as tmp:
        for n in sorted({1, count}):
            part = os.path.join(tmp, f"part{n}.mp4")
            encode_part(decoded.frames[:n], decoded.pts[:n], window, part, encode)
            sizes.append(os.path.getsize(part))
    first, whole = sizes[0], sizes[-1]
    extra = (whole - first) / (count - 1) if count > 1 else first / 2
    return SizeSample(source or path, encoder_settings(info, encode).codec, info.width,
                      info.height, count, first, max(0.0, extra))


def output_bytes(sample: SizeSample, width: int, height: int, frames: int, chunks: int) -> int:
    """The enhanced output's video bytes for ``frames`` frames of ``width x height`` cut into
    ``chunks`` parts, from ``sample``."""
    if frames <= 0:
        return 0
    keys = min(frames, max(chunks, math.ceil(frames / KEY_INTERVAL)))
    scale = width * height / (sample.width * sample.height)
    video = keys * sample.first_bytes + (frames - keys) * sample.frame_bytes
    return int(ENHANCED_FACTOR * scale * video)

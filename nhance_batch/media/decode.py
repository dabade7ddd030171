"""Frame-exact decoding of a chunk (or of a whole video) into RGB arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nhance_batch.media.color import Converter, rgb_format, sws_colorspace, sws_range
from nhance_batch.media.safe_open import ffmpeg_reason, open_input
from nhance_batch.media.errors import MediaError
from nhance_batch.media.chunks import Chunk
from nhance_batch.media.probe import VideoInfo, decode_tolerant

if TYPE_CHECKING:
    from av.video.frame import VideoFrame


@dataclass(frozen=True, eq=False)
class Frames:
    """Decoded frames in presentation order.

    Attributes:
        frames: ``[n, H, W, 3]`` RGB; ``uint8`` for 8-bit sources, ``uint16``
            (full 16-bit scale) for deeper ones.
        pts: ``int64 [n]`` timestamps in the source's video time base.
    """

    frames: np.ndarray
    pts: np.ndarray

    def __len__(self) -> int:
        return int(self.pts.shape[0])


class _Missed(Exception):
    """The seek landed after the first wanted frame; seek further back."""


def decode_chunk(path: str | os.PathLike[str], info: VideoInfo, chunk: Chunk) -> Frames:
    """Decode exactly frames ``[chunk.ctx_start, chunk.ctx_end)`` of ``path``.

    Seeks to the keyframe at or before the first wanted frame (backward seek on
    the video stream, in its time base), decodes forward (skipping packets that fail, as
    :func:`~nhance_batch.media.probe.probe` did) and keeps the frames whose PTS are the
    wanted entries of ``info.pts``. If the seek lands too late
    (some demuxers seek by DTS), it retries from earlier frames, and as a last
    resort decodes from the start, so the result is always exact.

    Raises:
        MediaError: the chunk is outside the video, or wanted frames cannot be decoded.
        ValueError: the chunk's bounds are inconsistent.
    """
    spath = os.fspath(path)
    if not 0 <= chunk.ctx_start <= chunk.start <= chunk.end <= chunk.ctx_end:
        raise ValueError(f"inconsistent chunk bounds: {chunk}")
    if chunk.ctx_end > info.frame_count:
        raise MediaError(
            spath, f"chunk {chunk.index} ends at frame {chunk.ctx_end} but the video has {info.frame_count}"
        )
    lo, hi = chunk.ctx_start, chunk.ctx_end
    if lo == hi:
        return _empty(info)

    back = 0
    while True:
        anchor = max(0, lo - back)
        try:
            return _decode_range(spath, info, lo, hi, seek_pts=info.pts[anchor])
        except _Missed:
            if anchor == 0:
                break
            back = max(1, 2 * back)
    try:
        return _decode_range(spath, info, lo, hi, seek_pts=None)
    except _Missed:
        raise MediaError(spath, f"cannot decode frame {lo} (pts {info.pts[lo]})") from None


def decode_all(path: str | os.PathLike[str], info: VideoInfo) -> Frames:
    """Decode every frame of ``path`` in one straight pass (no seeking).

    Raises:
        MediaError: frames listed by :func:`probe` cannot be decoded.
    """
    spath = os.fspath(path)
    if info.frame_count == 0:
        return _empty(info)
    try:
        return _decode_range(spath, info, 0, info.frame_count, seek_pts=None)
    except _Missed:
        raise MediaError(spath, "the first frame cannot be decoded") from None


def _empty(info: VideoInfo) -> Frames:
    dtype = np.uint16 if info.high_bit_depth else np.uint8
    return Frames(
        frames=np.empty((0, info.height, info.width, 3), dtype=dtype),
        pts=np.empty((0,), dtype=np.int64),
    )


def _decode_range(path: str, info: VideoInfo, lo: int, hi: int, *, seek_pts: int | None) -> Frames:
    """Decode frames ``[lo, hi)``; raise :class:`_Missed` if decoding starts after frame ``lo``."""
    import av

    wanted = info.pts[lo:hi]
    slot = {p: i for i, p in enumerate(wanted)}
    out = np.empty(
        (len(wanted), info.height, info.width, 3),
        dtype=np.uint16 if info.high_bit_depth else np.uint8,
    )
    filled = np.zeros(len(wanted), dtype=bool)
    convert = Converter(
        format=rgb_format(info.high_bit_depth),
        src_colorspace=sws_colorspace(info.color),
        src_color_range=sws_range(info.color),
    )
    with open_input(path) as container:
        stream = container.streams[info.stream_index]
        # frame threads drop the frames in flight when a packet fails: a damaged file is
        # decoded as the probe decoded its end, one frame at a time
        stream.codec_context.thread_type = "AUTO" if info.lost is None else "SLICE"
        try:
            if seek_pts is not None:
                container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            first = True
            for frame in decode_tolerant(container, stream):
                pts = frame.pts
                if pts is None:
                    raise MediaError(path, "decoded a frame without a timestamp")
                if first and pts > wanted[0]:
                    raise _Missed()
                first = False
                i = slot.get(pts)
                if i is not None:
                    _check_size(path, info, frame)
                    out[i] = convert(frame).to_ndarray()
                    filled[i] = True
                if pts >= wanted[-1]:
                    break
        except av.FFmpegError as exc:
            raise MediaError(path, f"decoding failed ({ffmpeg_reason(exc)})") from None
    if first:
        raise _Missed()
    if not filled.all():
        missing = ", ".join(f"{float(wanted[i] * info.time_base):.3f}"
                            for i in np.flatnonzero(~filled)[:5])
        raise MediaError(path, f"{int((~filled).sum())} frame(s) could not be decoded "
                               f"(at {missing} s...)")
    return Frames(frames=out, pts=np.asarray(wanted, dtype=np.int64))


def _check_size(path: str, info: VideoInfo, frame: VideoFrame) -> None:
    if (frame.width, frame.height) != (info.width, info.height):
        raise MediaError(
            path,
            f"frame size changes mid-stream ({frame.width}x{frame.height}, "
            f"expected {info.width}x{info.height}); not supported",
        )

"""Upright RGB frames of a video, streamed one at a time.

Decoding goes through the media layer's safe open and its swscale :class:`Converter` (the
source's matrix and range), always into 8-bit RGB: what people look at and what the metrics
measure. The display matrix (rotation and flips) is applied to the pixels the way FFmpeg's
player and command line apply it, so every frame comes out the way a player shows it. Where
pictures are shown (previews, comparisons, stills), non-square pixels (a sample aspect ratio
such as 128:117) are resampled to square ones, widening or narrowing the frame as players
do; metrics take the coded pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

from nhance_batch.media.probe import VideoInfo

#: Above this many frames between two wanted frames, seek instead of decoding through.
SEEK_GAP_FRAMES = 250


def _orientation(info: VideoInfo) -> tuple[str, ...]:
    """The pixel operations (``rot90``, ``rot270``, ``transpose``, ``antitranspose``, ``hflip``,
    ``vflip``) that turn a coded frame of ``info`` upright, as FFmpeg's autorotate does."""
    matrix = info.display_matrix
    if matrix is None:
        return {0: (), 90: ("rot90",), 180: ("hflip", "vflip"), 270: ("rot270",)}.get(
            info.rotation % 360, ())
    a, b, _, c, d = (v / 65536.0 for v in matrix[:5])
    scale0, scale1 = np.hypot(a, c), np.hypot(b, d)
    if scale0 == 0 or scale1 == 0:
        return ()
    counter = np.degrees(np.arctan2(b / scale1, a / scale0))  # = -av_display_rotation_get
    theta = float(np.round(counter)) % 360.0  # clockwise degrees to apply
    if abs(theta - 90) < 1:
        return ("transpose",) if matrix[3] > 0 else ("rot270",)
    if abs(theta - 180) < 1:
        return tuple(op for op, flip in (("hflip", matrix[0] < 0), ("vflip", matrix[4] < 0)) if flip)
    if abs(theta - 270) < 1:
        return ("antitranspose",) if matrix[3] < 0 else ("rot90",)
    return ("vflip",) if matrix[4] < 0 else ()


def upright(frame: np.ndarray, info: VideoInfo) -> np.ndarray:
    """``frame`` (``[H, W, C]``, as decoded from ``info``'s video) the way players show it."""
    for op in _orientation(info):
        if op == "rot90":  # counter-clockwise (FFmpeg's transpose=cclock)
            frame = np.rot90(frame, 1)
        elif op == "rot270":  # clockwise (transpose=clock)
            frame = np.rot90(frame, -1)
        elif op == "transpose":  # transpose=cclock_flip
            frame = frame.transpose(1, 0, 2)
        elif op == "antitranspose":  # transpose=clock_flip
            frame = np.rot90(frame, -1)[::-1]
        elif op == "hflip":
            frame = frame[:, ::-1]
        elif op == "vflip":
            frame = frame[::-1]
    return np.ascontiguousarray(frame)


def square_size(info: VideoInfo, pixel_shape: Fraction | None) -> tuple[int, int]:
    """``(width, height)`` of ``info``'s coded frames once pixels of ``pixel_shape`` (width /
    height; None: square) are made square: the width scales, as players scale it."""
    if not pixel_shape or pixel_shape == 1:
        return info.width, info.height
    return max(1, round(info.width * pixel_shape)), info.height


def display_size(info: VideoInfo, pixel_shape: Fraction | None = None) -> tuple[int, int]:
    """``(width, height)`` of ``info``'s frames as shown (rotation applied; pixels of
    ``pixel_shape`` made square, see :func:`square_size`)."""
    width, height = square_size(info, pixel_shape)
    swapped = any(op in ("rot90", "rot270", "transpose", "antitranspose")
                  for op in _orientation(info))
    return (height, width) if swapped else (width, height)


def seconds(info: VideoInfo) -> np.ndarray:
    """Every frame's presentation time in seconds from the first frame."""
    pts = np.asarray(info.pts, dtype=np.float64)
    return (pts - pts[0]) * float(info.time_base) if len(pts) else pts


def iter_frames(
    path: str | os.PathLike[str], info: VideoInfo, indices: Iterable[int] | None = None,
    *, pixel_shape: Fraction | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(index, pts, rgb)`` for the frames of ``path`` (all, or ``indices``), in order.

    ``rgb`` is an upright ``uint8 [H, W, 3]`` array, resampled (bicubic, in the RGB
    conversion) so that pixels of ``pixel_shape`` become square: pass
    ``info.sample_aspect_ratio`` to get the picture as shown (:func:`display_size`). Frames are decoded in one pass;
    between wanted frames more than :data:`SEEK_GAP_FRAMES` apart the decoder seeks to the
    keyframe before the next one instead of decoding through. Only the wanted frames are
    converted; memory stays one frame.

    Raises:
        MediaError: the file cannot be opened or a wanted frame cannot be decoded.
        ValueError: an index outside the video.
    """
    import av

    from nhance_batch.media.color import Converter, sws_colorspace, sws_range
    from nhance_batch.media.safe_open import ffmpeg_reason, open_input
    from nhance_batch.media.errors import MediaError

    spath = os.fspath(path)
    wanted = sorted(set(range(info.frame_count) if indices is None else indices))
    if not wanted:
        return
    if wanted[0] < 0 or wanted[-1] >= info.frame_count:
        raise ValueError(f"frame indices outside 0..{info.frame_count - 1}")
    size = square_size(info, pixel_shape)
    resample = ({"width": size[0], "height": size[1], "interpolation": "BICUBIC"}
                if size != (info.width, info.height) else {})
    convert = Converter(format="rgb24", src_colorspace=sws_colorspace(info.color),
                        src_color_range=sws_range(info.color), **resample)
    with open_input(spath) as container:
        stream = container.streams[info.stream_index]
        stream.codec_context.thread_type = "AUTO"
        reader = _Reader(spath, container, stream, info)
        try:
            for target in wanted:
                frame = reader.get(target)
                yield target, int(frame.pts), upright(convert(frame).to_ndarray(), info)
        except av.FFmpegError as exc:
            raise MediaError(spath, f"decoding failed ({ffmpeg_reason(exc)})") from None


class _Reader:
    """Hands out decoded frames by index, decoding forward and seeking over long gaps."""

    def __init__(self, path: str, container, stream, info: VideoInfo) -> None:
        self.path, self.container, self.stream, self.info = path, container, stream, info
        self.index_of = {p: i for i, p in enumerate(info.pts)}
        self.frames: Iterator | None = None
        self.fresh = True  # nothing decoded since the last (re)start
        self.last = -1  # index of the last frame decoded

    def _restart(self, target: int) -> None:
        if target > 0:
            self.container.seek(self.info.pts[target], stream=self.stream, backward=True,
                                any_frame=False)
        elif self.frames is not None:
            self.container.seek(self.info.pts[0], stream=self.stream, backward=True,
                                any_frame=False)
        self.frames = iter(self.container.decode(self.stream))
        self.fresh = True

    def get(self, target: int):
        from nhance_batch.media.errors import MediaError

        if self.frames is None:
            self._restart(target if target > SEEK_GAP_FRAMES else 0)
        elif target <= self.last or target - self.last > SEEK_GAP_FRAMES:
            self._restart(target)
        for from_start in (False, True):
            for frame in self.frames:
                i = self.index_of.get(frame.pts) if frame.pts is not None else None
                if i is None:
                    continue
                if self.fresh and i > target:
                    break  # the seek landed after the target (some demuxers seek by DTS)
                self.fresh = False
                self.last = i
                if i == target:
                    return frame
                if i > target:
                    raise MediaError(self.path, f"frame {target} could not be decoded")
            else:
                raise MediaError(self.path, f"frame {target} could not be decoded")
            if from_start:
                break
            self._restart(0)
        raise MediaError(self.path, f"frame {target} could not be decoded")

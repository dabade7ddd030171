"""Write videos every browser plays: H.264 yuv420p, even size, MP4 with faststart.

:func:`open_browser_video` takes upright RGB frames with their own timestamps (variable frame
rates stay variable) and copies the audio packets of another file untouched, interleaved with
the video as it goes, so memory stays flat however long the video is. Odd sizes are padded by
one row or column (the edge repeated); 4:2:0 needs even sizes. Pixels are converted with
BT.709 limited range and tagged so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from nhance_batch.media.probe import ColorInfo

log = logging.getLogger(__name__)

#: Encoder, pixel format and container of every browser video.
CODEC, PIX_FMT, FORMAT = "libx264", "yuv420p", "mp4"
_BT709, _LIMITED = 1, 1
_FALLBACK_RATE = Fraction(25)


@dataclass(frozen=True)
class BrowserEncoding:
    """x264 settings of browser videos: quality (CRF), speed preset, threads (0: automatic)."""

    crf: int = 18
    preset: str = "veryfast"
    threads: int = 0


class BrowserVideo:
    """An open browser video: :meth:`write` frames in presentation order."""

    def __init__(self, container: Any, stream: Any, size: tuple[int, int], time_base: Fraction,
                 audio: _AudioCopy | None) -> None:
        from nhance_batch.media.color import Converter

        self._container, self._stream = container, stream
        self._width, self._height = size
        self._time_base = time_base
        self._audio = audio
        self._convert = Converter(format=PIX_FMT, dst_colorspace=_BT709, dst_color_range="MPEG")
        self._last_pts: int | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one upright ``uint8 [H, W, 3]`` frame shown at ``pts`` (in the time base).

        Raises:
            ValueError: a frame of another size, or a timestamp not after the last one.
        """
        import av

        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"timestamps must increase ({pts} after {self._last_pts})")
        frame = pad_even(rgb)
        if frame.shape[:2] != (self._height, self._width) or frame.dtype != np.uint8:
            raise ValueError(f"frame of {frame.shape} {frame.dtype}, expected "
                             f"({self._height}, {self._width}, 3) uint8")
        if self._audio is not None:
            self._audio.until(pts * self._time_base)
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video = self._convert(video)
        video.pts, video.time_base = int(pts), self._time_base
        self._container.mux(self._stream.encode(video))
        self._last_pts = pts
        self.frames += 1

    def _finish(self) -> None:
        self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.until(None)


#: Audio codecs browsers play from MP4: copied as they are. Others are re-encoded to AAC.
BROWSER_AUDIO = frozenset({"aac", "mp3", "opus", "flac"})
_AAC_BITRATE = 192_000


class _AudioCopy:
    """The audio of a source file, muxed into the output up to a given time: packets copied
    untouched for codecs browsers play (:data:`BROWSER_AUDIO`), re-encoded to AAC otherwise
    (PCM, AC-3, Vorbis...: an MP4 that browsers cannot play helps no one)."""

    def __init__(self, container: Any, out: Any, dest: str) -> None:
        import av

        self._mapping: dict[int, Any] = {}
        self._transcode: dict[int, Any] = {}  # source index -> AAC output stream
        for stream in container.streams.audio:
            codec = stream.codec_context.name if stream.codec_context is not None else None
            if codec in BROWSER_AUDIO and codec in out.supported_codecs:
                copy = out.add_stream_from_template(stream)
                copy.time_base = stream.time_base
            else:
                try:
                    copy = out.add_stream("aac", rate=stream.codec_context.sample_rate or 48000)
                    copy.layout = _named_layout(stream.codec_context.layout)
                    copy.bit_rate = _AAC_BITRATE
                except (av.FFmpegError, ValueError) as exc:
                    log.warning("%s: audio stream #%d (%s) left out: %s", dest, stream.index,
                                codec, exc)
                    continue
                log.info("%s: audio stream #%d (%s) re-encoded to AAC for browsers", dest,
                         stream.index, codec)
                self._transcode[stream.index] = copy
            copy.metadata.update(stream.metadata)
            self._mapping[stream.index] = copy
        self._packets = self._demux(container) if self._mapping else iter(())
        self._pending: tuple[Fraction, Any] | None = None
        self._out = out

    @property
    def streams(self) -> int:
        return len(self._mapping)

    def _demux(self, container: Any) -> Iterator[tuple[Fraction, Any]]:
        streams = [s for s in container.streams if s.index in self._mapping]
        for packet in container.demux(streams):
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                if packet.stream.index in self._transcode:
                    yield Fraction(10**12), packet  # flush the decoder at the end
                continue  # the demuxer's flush packet
            ts = packet.dts if packet.dts is not None else packet.pts
            at = ts * packet.time_base if ts is not None and packet.time_base else Fraction(0)
            yield at, packet

    def _mux(self, packet: Any) -> None:
        index = packet.stream.index
        encoder = self._transcode.get(index)
        if encoder is None:
            packet.stream = self._mapping[index]
            self._out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder numbers samples itself, from the first
            self._out.mux(encoder.encode(frame))

    def until(self, seconds: Fraction | None) -> None:
        """Mux every packet up to ``seconds`` (all that are left, and flush, when None)."""
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    if seconds is None:
                        for encoder in self._transcode.values():
                            self._out.mux(encoder.encode(None))
                        self._transcode = {}
                    return
            at, packet = self._pending
            if seconds is not None and at > seconds:
                return
            self._mux(packet)
            self._pending = None


_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1",
            8: "7.1"}


def _named_layout(layout: Any) -> str:
    """A channel layout the AAC encoder takes: the source's own when it has a name, else the
    usual one for its channel count (an "unspecified order" layout is refused)."""
    name = getattr(layout, "name", "") or ""
    channels = len(getattr(layout, "channels", ()) or ()) or 2
    return name if name and not name.endswith("channels") else _LAYOUTS.get(channels, "stereo")


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` picture is padded to (4:2:0 needs even sizes)."""
    return width + width % 2, height + height % 2


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its last row and/or column repeated once where its size is odd."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


@contextlib.contextmanager
def open_browser_video(
    dest: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    time_base: Fraction,
    rate: Fraction | None = None,
    audio_from: str | os.PathLike[str] | None = None,
    color: ColorInfo | None = None,
    encoding: BrowserEncoding | None = None,
) -> Iterator[BrowserVideo]:
    """Open ``dest`` for a browser video of upright ``width`` x ``height`` RGB frames.

    Args:
        time_base: the time base of the timestamps given to :meth:`BrowserVideo.write`
            (kept exactly in the MP4).
        rate: the nominal frame rate (rate control only; timestamps decide timing).
        audio_from: a video whose audio packets are copied (codecs MP4 cannot carry are left
            out, with a warning).
        color: the frames' colour tags; primaries and transfer are copied, the matrix and
            range are always BT.709 limited.
        encoding: x264 settings.

    The file appears only complete (written under a temporary name, then renamed).

    Raises:
        MediaError: the file cannot be written, encoding or muxing failed.
    """
    import av

    from nhance_batch.media.safe_open import ffmpeg_reason, open_input, open_output
    from nhance_batch.media.encode import mov_options

    settings = encoding or BrowserEncoding()
    size = even_size(width, height)
    options = {**mov_options(time_base), "movflags": "+faststart"}
    sdest = os.fspath(dest)
    os.makedirs(os.path.dirname(os.path.abspath(sdest)), exist_ok=True)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_input(audio_from)) if audio_from is not None else None
        try:
            out = stack.enter_context(open_output(sdest, FORMAT, options))
            x264 = {"crf": str(settings.crf), "preset": settings.preset}
            if settings.threads:
                x264["threads"] = str(settings.threads)
            stream = out.add_stream(CODEC, rate=rate or _FALLBACK_RATE, options=x264)
            stream.width, stream.height = size
            stream.pix_fmt = PIX_FMT
            stream.time_base = time_base
            cc = stream.codec_context
            cc.time_base = time_base
            if not settings.threads:
                cc.thread_type = "AUTO"
            cc.colorspace, cc.color_range = _BT709, _LIMITED
            cc.color_primaries = (color.primaries if color and color.primaries else _BT709)
            cc.color_trc = (color.transfer if color and color.transfer else _BT709)
            audio = _AudioCopy(source, out, sdest) if source is not None else None
            writer = BrowserVideo(out, stream, size, time_base,
                                  audio if audio is not None and audio.streams else None)
            out.start_encoding()
            yield writer
            writer._finish()
        except av.FFmpegError as exc:
            from nhance_batch.media.errors import MediaError

            raise MediaError(sdest, f"encoding failed ({ffmpeg_reason(exc)})") from None


def nominal_rate(average: Fraction | None, pts: tuple[int, ...], time_base: Fraction) -> Fraction:
    """A frame rate for rate control: the container's average, else from the timestamps."""
    if average:
        return average
    if len(pts) > 1 and pts[-1] > pts[0]:
        return Fraction((len(pts) - 1) / float((pts[-1] - pts[0]) * time_base)).limit_denominator(1001)
    return _FALLBACK_RATE

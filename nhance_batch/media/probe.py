"""Probe a video file: everything the pipeline needs to know, from one demux pass."""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nhance_batch.media.safe_open import ffmpeg_reason, open_input
from nhance_batch.media.errors import MediaError
from nhance_batch.media.hdrmeta import HdrMetadata, read_hdr_metadata

if TYPE_CHECKING:
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

#: The longest last group of pictures :func:`probe` decodes to find a damaged end when
#: nothing else shows one: phones write a keyframe every 0.5-2 s (at most 240-480 frames at
#: 240 fps), so this is a fraction of a second of decoding at their sizes.
TAIL_CHECK_FRAMES = 480
# FFmpeg's "unspecified" values for the colour enums (AVColorPrimaries etc.).
_UNSPECIFIED_COLOR = 2
_UNSPECIFIED_RANGE = 0


@dataclass(frozen=True)
class ColorInfo:
    """Colour tags of the video stream, as FFmpeg enum values (``None`` when unset).

    Attributes:
        primaries: ``AVColorPrimaries`` (1 = BT.709, 9 = BT.2020...).
        transfer: ``AVColorTransferCharacteristic`` (1 = BT.709, 16 = PQ...).
        matrix: ``AVColorSpace`` (0 = RGB, 1 = BT.709, 6 = BT.601...).
        range: ``AVColorRange`` (1 = limited/MPEG, 2 = full/JPEG).
    """

    primaries: int | None = None
    transfer: int | None = None
    matrix: int | None = None
    range: int | None = None


@dataclass(frozen=True)
class StreamInfo:
    """A non-video stream that is copied untouched into the output.

    Attributes:
        index: stream index in the source container.
        kind: ``audio``, ``subtitle``, ``data`` or ``attachment``.
        codec: codec name, if FFmpeg knows it.
        time_base: the stream's time base.
        language: ISO 639 language tag from the metadata, if any.
        handler: the track's handler name (MOV/MP4), which names data tracks that have no
            codec FFmpeg knows (``TimeCodeHandler``, ``GoPro MET``...).
    """

    index: int
    kind: str
    codec: str | None
    time_base: Fraction | None
    language: str | None
    handler: str | None = None

    @property
    def label(self) -> str:
        """How notes name the stream: ``data stream #2 (gpmd, GoPro MET)``."""
        names = ", ".join(n for n in (self.codec, self.handler) if n) or "unknown"
        return f"{self.kind} stream #{self.index} ({names})"


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file. Picklable.

    Attributes:
        path: the file probed.
        container: FFmpeg demuxer name (``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``...).
        codec: video codec name (FFmpeg's, not its decoder's: ``av1``, never ``libdav1d``).
        width, height: coded picture size.
        pix_fmt: decoder pixel format (``yuv420p``, ``yuv420p10le``...).
        bit_depth: bits per component of ``pix_fmt``.
        time_base: the video stream's time base; every PTS is in it.
        stream_index: index of the video stream in the container.
        pts: every frame's PTS in presentation order, from the packets (no decoding).
        frame_count: ``len(pts)``.
        rotation: counter-clockwise display rotation in degrees (0/90/180/270),
            from the display matrix; 0 when there is none.
        color: colour tags.
        average_rate: average frame rate from the container, if known.
        other_streams: every non-video stream (copied by :func:`assemble`).
        display_matrix: the raw 3x3 display matrix (9 int32, FFmpeg layout) when
            the stream has one; :func:`assemble` writes it back verbatim, so flips
            survive too.
        sample_aspect_ratio: the shape of a pixel (width / height) when the stream says it is
            not square (``128/117``); None for square or unknown pixels.
        lost: ``(from, to)`` in seconds of the stream's end that does not decode (a file cut
            short or damaged at its end); ``pts`` then lists only the frames that decode.
            None when every frame decodes (or when nothing was decoded, ``plan``).
        timecode: the start timecode (``01:00:00:00``) of the video track or of a timecode
            track (``tmcd``), if any.
        hdr_metadata: HDR10 static metadata and Dolby Vision presence
            (:mod:`nhance_batch.media.hdrmeta`), None when there is none.
    """

    path: str
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    stream_index: int
    pts: tuple[int, ...]
    frame_count: int
    rotation: int
    color: ColorInfo
    average_rate: Fraction | None
    other_streams: tuple[StreamInfo, ...]
    display_matrix: tuple[int, ...] | None = None
    sample_aspect_ratio: Fraction | None = None
    lost: tuple[float, float] | None = None
    timecode: str | None = None
    hdr_metadata: HdrMetadata | None = None

    @property
    def display_aspect_ratio(self) -> Fraction:
        """The picture's shape as shown (width / height), pixel shape included."""
        return Fraction(self.width, self.height) * (self.sample_aspect_ratio or 1)

    @property
    def lost_note(self) -> str | None:
        """The sentence that tells of :attr:`lost`, or None."""
        if self.lost is None:
            return None
        start, end = self.lost
        return (f"damaged recording: frames from {start:.3f} s to {end:.3f} s (its end) do "
                f"not decode; the {self.frame_count} frames that do were kept")

    @property
    def high_bit_depth(self) -> bool:
        """True when frames are handled as 16-bit RGB (sources deeper than 8 bits)."""
        return self.bit_depth > 8


def probe(path: str | os.PathLike[str], *, max_pixels: int | None = None,
          max_frames: int | None = None, decode_first_frame: bool = True) -> VideoInfo:
    """Probe ``path`` with PyAV.

    Frame timestamps and the frame count come from a demux pass over the video
    packets (sorted, so B-frame reordering is handled), never from the header.
    Only the first frame is decoded, to read its display matrix.

    Args:
        max_pixels: refuse frames of more pixels (checked from the header, before anything
            is decoded).
        max_frames: refuse videos of more frames (checked while demuxing, which stops there).
        decode_first_frame: False decodes nothing at all (``plan``): the size is the same,
            but rotation, display matrix and colour tags come from the stream's parameters
            only (0, None and the codec's tags), and a damaged end is not looked for.

    With ``decode_first_frame``, the last group of pictures is decoded too (as FFmpeg does,
    skipping packets that fail): frames at the end that do not decode (a recording cut off
    mid-write) are left out of ``pts``, and :attr:`VideoInfo.lost` says which time range.

    Raises:
        MediaError: not a readable video (no file, empty, not media, playlist or
            script, no video stream, no frames, packets without timestamps), or over a limit.
    """
    import av

    spath = os.fspath(path)
    with open_input(spath) as container:
        stream = _main_video_stream(container.streams.video)
        if stream is None:
            raise MediaError(spath, "no video stream")
        cc = stream.codec_context
        if stream.time_base is None:
            raise MediaError(spath, "video stream has no time base")
        pix_fmt = cc.pix_fmt
        if not pix_fmt or not cc.width or not cc.height:
            raise MediaError(spath, "video stream has no picture size or pixel format")
        bit_depth = max(c.bits for c in av.VideoFormat(pix_fmt).components)
        if max_pixels is not None and cc.width * cc.height > max_pixels:
            raise MediaError(spath, f"frames of {cc.width}x{cc.height} "
                                    f"({cc.width * cc.height:,} pixels) exceed the limit of "
                                    f"{max_pixels:,} pixels (--max-pixels)")

        try:
            pts, keys, last_dts, first_frame = _scan_packets(
                spath, container, stream, max_frames, decode=decode_first_frame)
            lost = None
            if decode_first_frame:
                pts, lost = _decodable_end(container, stream, pts, keys, last_dts)
        except av.FFmpegError as exc:
            raise MediaError(spath, f"cannot read video packets ({ffmpeg_reason(exc)})") from None

        matrix = _display_matrix(first_frame) if first_frame is not None else None
        rotation = first_frame.rotation % 360 if first_frame is not None else 0
        average_rate = stream.average_rate or None
        return VideoInfo(
            path=spath,
            container=container.format.name,
            codec=cc.codec.canonical_name,
            width=cc.width,
            height=cc.height,
            pix_fmt=pix_fmt,
            bit_depth=bit_depth,
            time_base=stream.time_base,
            stream_index=stream.index,
            pts=pts,
            frame_count=len(pts),
            rotation=rotation,
            color=_color_info(cc, first_frame),
            average_rate=average_rate,
            other_streams=_other_streams(container),
            display_matrix=matrix,
            sample_aspect_ratio=_pixel_shape(stream),
            lost=lost,
            timecode=_timecode(container, stream),
            hdr_metadata=read_hdr_metadata(_codec_tag(cc), first_frame),
        )


def _other_streams(container: Any) -> tuple[StreamInfo, ...]:
    """Every audio, subtitle, data and attachment stream."""
    return tuple(
        StreamInfo(
            index=s.index,
            kind=s.type,
            codec=s.codec_context.name if s.codec_context is not None else None,
            time_base=s.time_base,
            language=s.metadata.get("language"),
            handler=s.metadata.get("handler_name"),
        )
        for s in container.streams
        if s.type in ("audio", "subtitle", "data", "attachment")
    )


def _codec_tag(cc: Any) -> str | None:
    try:
        return cc.codec_tag
    except Exception:  # noqa: BLE001 - a tag PyAV cannot render is no Dolby Vision tag
        return None


def _main_video_stream(streams: Any) -> VideoStream | None:
    """The first video stream that is not a cover picture."""
    import av

    for s in streams:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    return None


def _scan_packets(
    path: str, container: Any, stream: VideoStream, max_frames: int | None = None,
    decode: bool = True,
) -> tuple[tuple[int, ...], list[int], int | None, VideoFrame | None]:
    """Collect every video packet's PTS, the keyframes' and the last DTS; decode just until
    the first frame comes out (nothing when ``decode`` is False)."""
    pts: list[int] = []
    keys: list[int] = []
    last_dts = None
    first_frame: VideoFrame | None = None
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # flush packet at the end of the demux
        if first_frame is None and decode:
            frames = _decode_quietly(stream, packet)
            first_frame = frames[0] if frames else None
        if packet.is_discard:
            continue  # dropped by the decoder (e.g. before an edit list's start)
        if packet.pts is None:
            raise MediaError(path, "video packets without timestamps are not supported")
        pts.append(packet.pts)
        last_dts = packet.dts if packet.dts is not None else last_dts
        if packet.is_keyframe:
            keys.append(packet.pts)
        if max_frames is not None and len(pts) > max_frames:
            raise MediaError(path, f"the video has more than {max_frames:,} frames, the limit "
                                   "(--max-frames)")
    if first_frame is None and pts and decode:
        frames = _decode_quietly(stream, None)
        first_frame = frames[0] if frames else None
    if not pts:
        raise MediaError(path, "video stream has no frames")
    pts.sort()
    if len(set(pts)) != len(pts):
        raise MediaError(path, "video stream has duplicate frame timestamps")
    return tuple(pts), keys, last_dts, first_frame


def _decodable_end(container: Any, stream: VideoStream, pts: tuple[int, ...], keys: list[int],
                   last_dts: int | None) -> tuple[tuple[int, ...], tuple[float, float] | None]:
    """``pts`` without the frames at the end that do not decode, and the lost time range.

    Decodes from the last keyframe to the end the way FFmpeg does (a packet that fails is
    skipped, decoding goes on), so the cost is one group of pictures. Frames before the last
    keyframe are taken to decode: a file loses its end, not its middle, when cut short. The
    container's index may list frames whose data never came (past the end of the file):
    their decoding times (never after their presentation) bound where the loss starts. A
    last group of more than :data:`TAIL_CHECK_FRAMES` frames (a screen recording with one
    keyframe) is decoded only when the index shows frames missing.
    """
    missing = [e.timestamp for e in stream.index_entries
               if last_dts is not None and e.timestamp > last_dts]
    start = keys[-1] if keys else pts[0]
    tail = len(pts) - bisect.bisect_left(pts, start)
    if tail > TAIL_CHECK_FRAMES and not missing:
        return pts, None  # a group of pictures too long to decode here, and nothing amiss
    container.seek(start, stream=stream, backward=True, any_frame=False)
    decoded = {f.pts for f in decode_tolerant(container, stream) if f.pts is not None}
    kept = tuple(p for p in pts if p < start or p in decoded)
    missing += [p for p in pts if p >= start and p not in decoded]
    if not missing:
        return pts, None
    tb = stream.time_base
    end = max(pts[-1], *missing, (stream.start_time or 0) + (stream.duration or 0))
    return kept, (float(min(missing) * tb), float(end * tb))


def decode_tolerant(container: Any, stream: Any) -> Iterator[VideoFrame]:
    """The frames of ``stream`` from where ``container`` stands, skipping packets that fail to
    decode (as the ``ffmpeg`` tool does) instead of stopping at the first."""
    import av

    for packet in container.demux(stream):
        try:
            yield from stream.decode(packet)
        except av.FFmpegError:
            continue


def _timecode(container: Any, stream: VideoStream) -> str | None:
    """The video track's timecode tag, else the first timecode track's."""
    for s in (stream, *container.streams):
        if s.metadata.get("timecode"):
            return s.metadata["timecode"]
    return None


def _pixel_shape(stream: VideoStream) -> Fraction | None:
    """The stream's sample aspect ratio when its pixels are not square."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return sar if sar and sar != 1 else None


def _decode_quietly(stream: VideoStream, packet: Any) -> list[VideoFrame]:
    import av

    try:
        return list(stream.decode(packet))
    except av.FFmpegError:
        return []


def _display_matrix(frame: VideoFrame) -> tuple[int, ...] | None:
    """The frame's 3x3 display matrix (FFmpeg side data), or ``None``."""
    from av.sidedata.sidedata import Type

    for side_data in frame.side_data:
        if side_data.type == Type.DISPLAYMATRIX:
            raw = bytes(side_data)
            if len(raw) >= 36:
                return struct.unpack("=9i", raw[:36])
    return None


def _color_info(cc: Any, frame: VideoFrame | None) -> ColorInfo:
    """Colour tags from the codec parameters, falling back to the first frame's."""

    def pick(name: str, unset: int) -> int | None:
        for source in (cc, frame):
            value = getattr(source, name, None) if source is not None else None
            if value is not None and int(value) != unset:
                return int(value)
        return None

    return ColorInfo(
        primaries=pick("color_primaries", _UNSPECIFIED_COLOR),
        transfer=pick("color_trc", _UNSPECIFIED_COLOR),
        matrix=pick("colorspace", _UNSPECIFIED_COLOR),
        range=pick("color_range", _UNSPECIFIED_RANGE),
    )

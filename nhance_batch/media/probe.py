"""Probe a video file: everything the pipeline needs to know, from one demux pass."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from nhance_batch.media.safe_open import _ffmpeg_reason, open_input
from nhance_batch.media.errors import MediaError
from nhance_batch.media.hdrmeta import HdrMetadata, read_hdr_metadata

if TYPE_CHECKING:
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

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
    """

    index: int
    kind: str
    codec: str | None
    time_base: Fraction | None
    language: str | None


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file. Picklable.

    Attributes:
        path: the file probed.
        container: FFmpeg demuxer name (``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``...).
        codec: video codec name.
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
    hdr_metadata: HdrMetadata | None = None

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
        decode_first_frame: False decodes nothing at all (``plan``): the frame count, size and
            timestamps are the same, but rotation, display matrix and colour tags come from
            the stream's parameters only (0, None and the codec's tags).

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
            pts, first_frame = _scan_packets(spath, container, stream, max_frames,
                                             decode=decode_first_frame)
        except av.FFmpegError as exc:
            raise MediaError(spath, f"cannot read video packets ({_ffmpeg_reason(exc)})") from None

        matrix = _display_matrix(first_frame) if first_frame is not None else None
        rotation = first_frame.rotation % 360 if first_frame is not None else 0
        others = tuple(
            StreamInfo(
                index=s.index,
                kind=s.type,
                codec=s.codec_context.name if s.codec_context is not None else None,
                time_base=s.time_base,
                language=s.metadata.get("language"),
            )
            for s in container.streams
            if s.type in ("audio", "subtitle", "data", "attachment")
        )
        average_rate = stream.average_rate or None
        return VideoInfo(
            path=spath,
            container=container.format.name,
            codec=cc.name,
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
            other_streams=others,
            display_matrix=matrix,
            hdr_metadata=read_hdr_metadata(_codec_tag(cc), first_frame),
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
) -> tuple[tuple[int, ...], VideoFrame | None]:
    """Collect every video packet's PTS; decode just until the first frame comes out (nothing
    when ``decode`` is False)."""
    pts: list[int] = []
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
    return tuple(pts), first_frame


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

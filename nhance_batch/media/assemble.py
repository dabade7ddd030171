"""Assemble encoded parts and the source's other streams into the final video.

Nothing is re-encoded: the parts' video packets are copied in order, and every
audio, subtitle, data and attachment stream of the source is copied packet by
packet (audio packets stay byte-identical). The source's display matrix
(rotation, flips), pixel shape (sample aspect ratio), colour tags, container
metadata (creation time, location, make, model, ``com.apple.quicktime.*`` keys,
through the muxer's ``use_metadata_tags`` in MOV/MP4) and stream tags (language,
title) are kept; the source's ``encoder`` tag is not: the video was re-encoded.

What the output container must accept is decided before any chunk is computed
(:func:`plan_output`), so a video that cannot be assembled fails at once:

* audio and subtitle streams must fit (else Matroska, see below);
* a data or attachment stream the muxer cannot carry is dropped with a note naming
  it (a data track without a codec FFmpeg knows: QuickTime ``mebx`` metadata,
  GoPro ``gpmd``...);
* a timecode track (``tmcd``) is written again by the MOV/MP4 muxer from the video
  track's ``timecode`` tag, after a trial in memory at the video's frame rate;
  where that fails, the timecode is dropped with a note.

Output container: by default the source's own format (MP4 stays MP4 — MOV when
the source's name ends in ``.mov`` —, Matroska stays Matroska, WebM, AVI, NUT,
MPEG-TS, ...). When that format cannot carry the video codec of the parts (e.g.
FFV1 from lossless mode in MOV, H.264 in AVI), or one of the audio/subtitle codecs,
the output falls back to Matroska. ``container=`` forces a format; it is an error if it
cannot carry the streams.
"""

from __future__ import annotations

import heapq
import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from nhance_batch.config import EncodeConfig
from nhance_batch.media.safe_open import ffmpeg_reason, open_input, open_output
from nhance_batch.media.encode import (LOSSLESS_CODEC, encoder_settings, mov_options,
                                       nominal_rate, resolve_codec)
from nhance_batch.media.errors import MediaError
from nhance_batch.media.probe import StreamInfo, VideoInfo, probe

log = logging.getLogger(__name__)

#: Fallback output format when the source's format cannot carry the streams.
FALLBACK_FORMAT = "matroska"

# Demuxer name (first of FFmpeg's list) -> muxer of the same format.
_MUXER_FOR_DEMUXER = {
    "mov": "mp4",
    "matroska": "matroska",
    "avi": "avi",
    "nut": "nut",
    "mpegts": "mpegts",
    "flv": "flv",
    "ogg": "ogg",
    "mpeg": "mpeg",
    "asf": "asf",
    "ivf": "ivf",
    "mxf": "mxf",
}
_MUXER_FOR_SUFFIX = {".mov": "mov", ".webm": "webm", ".m4v": "mp4", ".3gp": "3gp"}
# Matroska would shift every timestamp when a stream starts below zero (AAC priming
# in MP4 sources); small negative times are valid there as block offsets, so keep them.
_MUXER_OPTIONS = {"matroska": {"avoid_negative_ts": "disabled"}, "webm": {"avoid_negative_ts": "disabled"}}
# Streams that must make it into the output; others are copied when the muxer allows.
_REQUIRED_KINDS = ("audio", "subtitle")
# Muxers of the MOV family: they write metadata keys with use_metadata_tags and rebuild a
# timecode track from the video track's "timecode" tag.
_MOV_MUXERS = frozenset({"mov", "mp4", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"})
# Container tags the muxer writes itself (brands, its own name); copying them would be stale.
_OWN_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})
_TIMECODE_HANDLER = "TimeCodeHandler"
# Muxers that take H.264/HEVC only as an Annex B byte stream and, unlike MPEG-TS, do not
# convert the parts' MP4-style packets themselves: such a video goes to the fallback.
_ANNEX_B_MUXERS = frozenset({"avi"})


@dataclass(frozen=True)
class OutputPlan:
    """What :func:`assemble` writes for a video, decided when the video is planned.

    Attributes:
        format: the FFmpeg muxer.
        encode: the encode settings of the video's parts, its codec resolved
            (:func:`~nhance_batch.media.encode.resolve_codec`).
        streams: indexes of the source's other streams that are copied.
        timecode: the video track's timecode tag is written (MOV/MP4 rebuild the ``tmcd``
            track from it).
        notes: one sentence per stream or tag left out, naming it.
        codec_note: what resolving the codec has to tell (``auto`` without hardware).
    """

    format: str
    encode: EncodeConfig
    streams: tuple[int, ...]
    timecode: bool
    notes: tuple[str, ...] = ()
    codec_note: str | None = None

    @property
    def codec(self) -> str:
        """The video encoder the parts are made with."""
        return LOSSLESS_CODEC if self.encode.lossless else self.encode.codec


def assemble(
    source: str | os.PathLike[str],
    info: VideoInfo,
    parts: Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    config: EncodeConfig,
    *,
    container: str | None = None,
    plan: OutputPlan | None = None,
) -> OutputPlan:
    """Write ``dest``: the parts' video packets plus the other streams of ``source`` that
    ``plan`` keeps, and return the plan.

    Args:
        source: the original video (``info`` is its probe result).
        info: probe result of ``source``.
        parts: part files from :func:`encode_part`, in chunk order.
        dest: output path (written under a temporary name beside it, then renamed).
        config: the encode config the parts were made with (checked against them).
        container: FFmpeg muxer name; default: the source's format, falling back
            to Matroska when it cannot carry the streams (see module docstring).
        plan: what to write (:func:`plan_output`, made when the video was planned);
            default: planned here.

    Timestamps are copied; a DTS is only raised where two parts would overlap
    in decode order. After writing, the output's frame timestamps are checked
    against the source's (to the output's time base).

    Raises:
        MediaError: no parts, parts that do not match each other or ``config``,
            a container that cannot carry the streams, muxing errors, or output
            timestamps that differ from the source's.
    """
    import av

    spath, sdest = os.fspath(source), os.fspath(dest)
    part_paths = [os.fspath(p) for p in parts]
    if not part_paths:
        raise MediaError(sdest, "no parts to assemble")
    first = _part_params(part_paths[0])
    if config.lossless and first["codec"] != LOSSLESS_CODEC:
        raise MediaError(part_paths[0], f"lossless mode expects {LOSSLESS_CODEC} parts, got {first['codec']}")
    plan = plan or plan_output(spath, info, config, container=container)
    try:
        with open_input(spath) as src, open_input(part_paths[0]) as part0:
            options = _muxer_options(plan.format, info, src.metadata)
            with open_output(sdest, plan.format, options) as out:
                video = _add_video(out, part0.streams.video[0], src, info, plan)
                _copy_container_tags(src.metadata, out.metadata)
                mapping = _add_other_streams(out, src, plan, sdest)
                out.start_encoding()
                packets = heapq.merge(
                    _video_packets(part_paths, first, video),
                    _source_packets(src, mapping),
                    key=lambda item: item[0],
                )
                for _, packet, stream in packets:
                    packet.stream = stream
                    out.mux(packet)
    except av.FFmpegError as exc:
        raise MediaError(sdest, f"muxing failed ({ffmpeg_reason(exc)})") from None
    _verify_timestamps(sdest, info)
    return plan


def _muxer_options(fmt: str, info: VideoInfo, tags: Any) -> dict[str, str] | None:
    """Exact timestamps in MOV/MP4, and the source's reverse-DNS keys
    (``com.apple.quicktime.make``...) where it has any: ``use_metadata_tags`` writes every
    tag as such a key, so sources without them keep their classic atoms (``©xyz``)."""
    if fmt not in _MOV_MUXERS:
        return _MUXER_OPTIONS.get(fmt)
    options = mov_options(info.time_base)
    if any("." in key for key in tags):
        options["movflags"] = "use_metadata_tags"
    return options


def _add_video(out: Any, template: Any, src: Any, info: VideoInfo, plan: OutputPlan) -> Any:
    """The output's video stream: the parts' codec, with the source's time base, frame rate,
    display matrix, pixel shape and tags."""
    # opaque: the part's own codec object; by default PyAV looks up an encoder named like
    # the part's decoder, and there is none named "libdav1d" (AV1)
    video = out.add_stream_from_template(template, opaque=True)
    video.time_base = info.time_base
    # the muxer's frame rate (MOV writes its timecode track at it), not 1/time base
    video.codec_context.framerate = nominal_rate(info)
    if plan.format in _MOV_MUXERS and template.codec_context.name == "hevc":
        video.codec_tag = "hvc1"  # Apple players take HEVC only as hvc1
    if info.sample_aspect_ratio:
        video.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        video.sample_aspect_ratio = info.sample_aspect_ratio
    if info.display_matrix is not None:
        video.set_display_matrix(info.display_matrix)
    elif info.rotation:
        video.set_display_rotation(info.rotation)
    _copy_tags(src.streams[info.stream_index], video)
    video.metadata.pop("encoder", None)  # the source's encoder did not make this stream
    if plan.timecode:  # where the source had it on its tmcd track only, too
        video.metadata["timecode"] = info.timecode
    else:
        video.metadata.pop("timecode", None)
    return video


def _copy_container_tags(source: Any, dest: Any) -> None:
    dest.update({k: v for k, v in source.items() if k not in _OWN_TAGS})


def _default_format(source: str, info: VideoInfo) -> str:
    suffix = Path(source).suffix.lower()
    demuxer = info.container.split(",")[0]
    muxer = _MUXER_FOR_DEMUXER.get(demuxer, FALLBACK_FORMAT)
    if demuxer in ("mov", "matroska") and suffix in _MUXER_FOR_SUFFIX:
        muxer = _MUXER_FOR_SUFFIX[suffix]
    return muxer


def output_container(
    source: str | os.PathLike[str],
    info: VideoInfo,
    config: EncodeConfig,
    *,
    container: str | None = None,
) -> str:
    """The muxer :func:`assemble` will write for these settings (to name the output file).

    Raises:
        MediaError: no container can carry the streams (see :func:`assemble`).
    """
    return plan_output(source, info, config, container=container).format


def plan_output(
    source: str | os.PathLike[str],
    info: VideoInfo,
    config: EncodeConfig,
    *,
    container: str | None = None,
) -> OutputPlan:
    """What :func:`assemble` will write for ``info``'s video, its codec resolved: checked
    from the probe alone (and a trial in memory for a timecode), before any chunk is
    computed.

    Raises:
        MediaError: no container can carry the video and its audio and subtitles, or the
            encoder is not available.
    """
    import av

    config, codec_note = resolve_codec(config, info)
    codec = av.codec.Codec(encoder_settings(info, config).codec, "w").canonical_name
    fmt = _choose_format(os.fspath(source), info, codec, container, os.fspath(source))
    supported = _supported_codecs(fmt)
    kept, notes = [], []
    for stream in info.other_streams:
        if stream.kind in _REQUIRED_KINDS or (stream.codec and stream.codec in supported):
            kept.append(stream.index)
        elif not (_is_timecode(stream) and fmt in _MOV_MUXERS):
            notes.append(f"{stream.label} dropped: {fmt} cannot carry it")
    timecode = info.timecode is not None
    if timecode and fmt in _MOV_MUXERS:
        problem = _timecode_problem(fmt, info)
        if problem:
            timecode = False
            notes.append(f"timecode {info.timecode} dropped: {problem}")
    return OutputPlan(fmt, config, tuple(kept), timecode, tuple(notes), codec_note)


def _is_timecode(stream: StreamInfo) -> bool:
    return stream.codec == "tmcd" or stream.handler == _TIMECODE_HANDLER


def _timecode_problem(fmt: str, info: VideoInfo) -> str | None:
    """Why muxer ``fmt`` cannot write ``info``'s timecode at its frame rate (a trial in
    memory), or None."""
    import av

    out = av.open(io.BytesIO(), mode="w", format=fmt)
    try:
        video = out.add_stream("mpeg4", rate=nominal_rate(info))
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        video.metadata["timecode"] = info.timecode
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = 0
        out.mux(video.encode(frame))
        out.mux(video.encode(None))
        out.close()
    except (av.FFmpegError, ValueError) as exc:
        reason = ffmpeg_reason(exc) if isinstance(exc, av.FFmpegError) else str(exc)
        return f"{fmt} cannot write it at {float(nominal_rate(info)):g} fps ({reason})"
    return None


def _choose_format(source: str, info: VideoInfo, video_codec: str, forced: str | None, dest: str) -> str:
    """The output muxer: ``forced``, else the source's format, else the fallback."""
    import av

    required = [video_codec] + [s.codec for s in info.other_streams if s.kind in _REQUIRED_KINDS and s.codec]
    candidates = [forced] if forced else [_default_format(source, info), FALLBACK_FORMAT]
    first_missing: list[str] = []
    for fmt in candidates:
        try:
            name = av.format.ContainerFormat(fmt, "w").name
        except (av.FFmpegError, ValueError):
            raise MediaError(dest, f"unknown output container {fmt!r}") from None
        missing = _unsupported(name, required)
        if name in _ANNEX_B_MUXERS and video_codec in ("h264", "hevc"):
            missing.append(video_codec)
        if not missing:
            if fmt != candidates[0]:
                log.info("%s: %s cannot carry %s; using %s", dest, candidates[0], first_missing, fmt)
            return name
        first_missing = first_missing or missing
    raise MediaError(dest, f"no output container can carry the codecs {required} (tried {candidates})")


def _unsupported(fmt: str, codecs: list[str]) -> list[str]:
    """Codecs of ``codecs`` that muxer ``fmt`` cannot store."""
    supported = _supported_codecs(fmt)
    return [c for c in codecs if c not in supported]


def _supported_codecs(fmt: str) -> set[str]:
    import av

    probe_out = av.open(io.BytesIO(), mode="w", format=fmt)
    try:
        return set(probe_out.supported_codecs)
    finally:
        probe_out.close()


def _add_other_streams(out: Any, src: Any, plan: OutputPlan, dest: str) -> dict[int, Any]:
    """Add a copy of each stream ``plan`` keeps; return source index -> output stream."""
    import av

    mapping: dict[int, Any] = {}
    for index in plan.streams:
        stream = src.streams[index]
        try:
            copy = out.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(dest, f"cannot copy {stream.type} stream #{index} ({exc})") from None
        copy.time_base = stream.time_base
        _copy_tags(stream, copy)
        mapping[index] = copy
    return mapping


def _copy_tags(source: Any, copy: Any) -> None:
    """Copy a stream's metadata (language, title...) and disposition (default, forced...).
    The MOV demuxer reads a track's title as ``name``, and its muxer writes ``title``."""
    copy.metadata.update(source.metadata)
    if "name" in source.metadata and "title" not in source.metadata:
        copy.metadata["title"] = source.metadata["name"]
    copy.disposition = int(source.disposition)


def _part_params(path: str) -> dict[str, Any]:
    """Codec parameters of a part's video stream, to check that parts can be joined."""
    with open_input(path) as part:
        if not part.streams.video:
            raise MediaError(path, "part has no video stream")
        cc = part.streams.video[0].codec_context
        return {
            "codec": cc.name,
            "width": cc.width,
            "height": cc.height,
            "pix_fmt": cc.pix_fmt,
            "extradata": bytes(cc.extradata or b""),
        }


def _video_packets(
    parts: list[str], expected: dict[str, Any], out_stream: Any
) -> Iterator[tuple[Fraction, Any, Any]]:
    """The parts' video packets in decode order, re-stamped into ``out_stream``'s time base.

    PTS are only converted between time bases. A DTS is raised (by the least
    amount) where a part's first DTS would not come after the previous part's
    last one; that can happen at joins because each part starts its own
    B-frame delay.
    """
    tb = out_stream.time_base
    last_dts: int | None = None
    for path in parts:
        params = _part_params(path)
        if params != expected:
            diff = sorted(k for k in params if params[k] != expected[k])
            raise MediaError(path, f"part does not match the first part ({', '.join(diff)} differ)")
        with open_input(path) as part:
            stream = part.streams.video[0]
            for packet in part.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                src_tb = packet.time_base
                pts = _rescale(packet.pts, src_tb, tb)
                dts = _rescale(packet.dts, src_tb, tb) if packet.dts is not None else pts
                if last_dts is not None and dts <= last_dts:
                    dts = last_dts + 1
                if dts > pts:
                    raise MediaError(path, f"cannot join parts: DTS would pass PTS at pts {pts}")
                packet.duration = _rescale(packet.duration, src_tb, tb) if packet.duration else 0
                packet.pts, packet.dts = pts, dts
                packet.time_base = tb
                last_dts = dts
                yield dts * tb, packet, out_stream


def _source_packets(src: Any, mapping: dict[int, Any]) -> Iterator[tuple[Fraction, Any, Any]]:
    """The source's packets of the copied streams, untouched."""
    if not mapping:
        return
    streams = [s for s in src.streams if s.index in mapping]
    for packet in src.demux(streams):
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # demuxer flush packet
        ts = packet.dts if packet.dts is not None else packet.pts
        key = ts * packet.time_base if ts is not None and packet.time_base is not None else Fraction(0)
        yield key, packet, mapping[packet.stream.index]


def _rescale(value: int, src: Fraction, dst: Fraction) -> int:
    """``value`` from time base ``src`` to ``dst``, rounded to nearest (exact when possible)."""
    if src == dst:
        return value
    return round(value * src / dst)


def _verify_timestamps(dest: str, info: VideoInfo) -> None:
    """Check that ``dest``'s frame timestamps are the source's; remove ``dest`` if not."""
    result = probe(dest)
    tolerance = result.time_base / 2
    ok = result.frame_count == info.frame_count and all(
        abs(a * result.time_base - b * info.time_base) <= tolerance
        for a, b in zip(result.pts, info.pts, strict=True)
    )
    if not ok:
        Path(dest).unlink(missing_ok=True)
        raise MediaError(
            dest,
            f"output timestamps differ from the source's ({result.frame_count} frames "
            f"{_head(result)}, source {info.frame_count} frames {_head(info)}); output removed",
        )


def _head(info: VideoInfo) -> str:
    """The first timestamps of ``info`` in seconds, for error messages."""
    return "[" + ", ".join(f"{float(p * info.time_base):.4f}" for p in info.pts[:4]) + ", ...]"

"""Encode a chunk's output frames into a part file.

Part files are MP4 (:data:`PART_FORMAT`): the MP4 muxer keeps the source's time
base exactly (its timescale is the time base's denominator, multiplied by a power
of two when below 10000, so every PTS maps to an integer), stores B-frame DTS
before the first PTS with an edit list, and carries H.264/HEVC/AV1 and FFV1.
Each part starts with a keyframe and carries the source's own PTS.

Pixel formats (lossy mode):

* 8-bit sources: ``yuv420p``; 10-bit and deeper sources: ``yuv420p10le``.
* Odd widths or heights cannot be 4:2:0 (chroma would need half pixels), so
  those use ``yuv444p`` / ``yuv444p10le`` and keep their exact size.

Lossless mode (``EncodeConfig.lossless``): FFV1 in RGB, ``bgr0`` for 8-bit
frames and ``rgb48le`` for 16-bit ones, so decoding returns the given RGB
arrays bit for bit (the configured codec is ignored).

Codec choice, per video (:func:`resolve_codec`). ``codec="match"`` (the default) keeps
the source's family so the output plays where the source played: H.264 (8-bit) ->
libx264 8-bit 4:2:0; HEVC -> libx265 at the source's bit depth, tagged ``hvc1``; AV1 ->
libsvtav1; VP9 -> libvpx-vp9; anything else -> libx264 for 8-bit and HEVC Main 10 for
deeper sources (never H.264 High 10 unless named). Each encoder's default CRF
(:data:`DEFAULT_CRF`) gives about the quality of x264 CRF 18. ``codec="auto"``
(:func:`choose_codec`): the first hardware encoder of that family that really works on
this machine (an encoder is opened and one frame encoded: FFmpeg builds list NVENC even
where no GPU or driver library is there), else the software one, with a note saying why.
The choice is made once per process and family. NVENC takes the CRF as its constant-quality value
(``rc=vbr``, ``cq``) and the x264 preset names map to its p1-p7 presets.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from nhance_batch.config import EncodeConfig
from nhance_batch.media.color import Converter, rgb_format, sws_colorspace, sws_range
from nhance_batch.media.safe_open import ffmpeg_reason, open_output
from nhance_batch.media.errors import MediaError
from nhance_batch.media.hdrmeta import encoder_hdr_options
from nhance_batch.media.probe import VideoInfo

#: Container of the part files.
PART_FORMAT = "mp4"
#: Encoder used in lossless mode.
LOSSLESS_CODEC = "ffv1"

_PIX_FMT_CANDIDATES: dict[tuple[bool, bool], tuple[str, ...]] = {
    # (high bit depth, odd size) -> preferred pixel formats, best first
    (False, False): ("yuv420p", "yuv444p"),
    (False, True): ("yuv444p",),
    (True, False): ("yuv420p10le", "p010le", "yuv444p10le", "yuv420p12le", "yuv444p12le",
                    "yuv444p16le"),
    (True, True): ("yuv444p10le", "yuv444p12le", "yuv444p16le"),
}
_PRESET_ENCODERS = frozenset({"libx264", "libx265"})
_FALLBACK_RATE = Fraction(25)
# Options beyond the CRF: VP9 is constant-quality only with no target bitrate; x265 logs
# every part's statistics to stderr unless told not to.
_EXTRA_OPTIONS = {"libvpx-vp9": {"b": "0", "row-mt": "1"},
                  "libx265": {"x265-params": "log-level=error"}}

log = logging.getLogger(__name__)

#: The ``codec`` value that picks the source's own codec family (the default).
MATCH_CODEC = "match"
#: The ``codec`` value that picks a hardware encoder of that family where one works.
AUTO_CODEC = "auto"
#: Hardware encoders ``--codec auto`` tries for the H.264 family, best first.
HARDWARE_ENCODERS = ("h264_nvenc", "hevc_nvenc")
#: What ``--codec auto`` uses for an H.264-family video when no hardware encoder works.
SOFTWARE_CODEC = "libx264"
# Source codec -> the software encoder of its family, for 8-bit and for deeper sources. H.264
# deeper than 8 bits becomes HEVC Main 10: players that take H.264 High 10 are rare.
_MATCHED = {"h264": ("libx264", "libx265"), "hevc": ("libx265", "libx265"),
            "av1": ("libsvtav1", "libsvtav1"), "vp9": ("libvpx-vp9", "libvpx-vp9")}
# Any other source codec (ProRes, MPEG-4, MJPEG...).
_OTHER = ("libx264", "libx265")
# Software encoder -> the hardware encoders of its family.
_HARDWARE_FAMILY = {"libx264": ("h264_nvenc",), "libx265": ("hevc_nvenc",),
                    "libsvtav1": ("av1_nvenc",), "libvpx-vp9": ()}
#: Default CRF per encoder: each about the quality of x264 at CRF 18. Measured with
#: ``bench/codec_quality.py``: PSNR (Y, U, V) against the frames given to the encoder, on the
#: sample clips cropped off their 16x16 block grid, each encoder with the options used here,
#: taking the CRF whose PSNR meets x264's on both clips. bikes 632x264 (100 frames) /
#: carphone 168x136 (120 frames): x264 CRF 18 47.03 / 42.30 dB; x265 CRF 19 47.15 / 42.44 dB
#: at 0.71 / 0.89 of x264's size; SVT-AV1 CRF 23 47.01 / 42.47 dB at 0.65 / 0.81; VP9 CRF
#: 25 46.95 / 42.58 dB at 0.66 / 0.88. Encoders not listed take 18.
DEFAULT_CRF = {"libx264": 18, "libx265": 19, "libsvtav1": 23, "libvpx-vp9": 25}
#: Encoders whose streams are tagged ``hvc1`` in MP4/MOV (what Apple players require).
HVC1_ENCODERS = frozenset({"libx265", "hevc_nvenc"})
_NVENC_ENCODERS = frozenset({"h264_nvenc", "hevc_nvenc", "av1_nvenc"})
# x264 preset names -> NVENC's p1 (fastest) .. p7 (best); p1-p7 pass through.
_NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3",
                  "fast": "p3", "medium": "p4", "slow": "p5", "slower": "p6",
                  "veryslow": "p7", "placebo": "p7"}
# The frame an encoder probe encodes: large enough for every hardware encoder's minimum.
_PROBE_SIZE = (256, 256)


@dataclass(frozen=True)
class CodecChoice:
    """What ``codec="auto"`` chose on this machine.

    Attributes:
        codec: the encoder to use.
        hardware: whether it is one of the hardware encoders.
        note: why no hardware encoder is used (None when one is).
        tried: each hardware encoder tried before the choice, with the reason it was refused.
    """

    codec: str
    hardware: bool
    note: str | None
    tried: tuple[tuple[str, str], ...] = ()


def probe_encoder(name: str) -> str | None:
    """Open encoder ``name`` and encode one frame with it: None when that works, else why not.

    Listing is not enough: FFmpeg builds carry NVENC whether or not the machine has an NVIDIA
    GPU and its driver's encode library, and the encoder fails only when it is opened.
    """
    import av

    try:
        codec = av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return "not in this FFmpeg build"
    formats = [f.name for f in codec.video_formats or ()]
    pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
    width, height = _PROBE_SIZE
    try:
        context = av.CodecContext.create(codec)
        context.width, context.height, context.pix_fmt = width, height, pix_fmt
        context.time_base = Fraction(1, 25)
        context.framerate = Fraction(25)
        context.open()
        frame = av.VideoFrame(width, height, pix_fmt)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = 0
        packets = list(context.encode(frame)) + list(context.encode(None))
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable here
        reason = ffmpeg_reason(exc) if isinstance(exc, av.FFmpegError) else str(exc)
        return f"cannot open it here ({reason or type(exc).__name__})"
    if not packets:
        return "it opened but produced no output"
    return None


@functools.lru_cache(maxsize=8)
def choose_codec(candidates: tuple[str, ...] = HARDWARE_ENCODERS,
                 fallback: str = SOFTWARE_CODEC) -> CodecChoice:
    """The first of ``candidates`` that :func:`probe_encoder` finds working, else ``fallback``
    with a note naming each candidate and why it was refused. Cached per process."""
    tried = []
    for name in candidates:
        reason = probe_encoder(name)
        if reason is None:
            log.info("codec auto: using the hardware encoder %s", name)
            return CodecChoice(name, True, None, tuple(tried))
        tried.append((name, reason))
    why = "; ".join(f"{name}: {reason}" for name, reason in tried) or "none to try"
    note = f"codec auto: no working hardware encoder ({why}); using {fallback}"
    log.info("%s", note)
    return CodecChoice(fallback, False, note, tuple(tried))


def _pixel_format(encoder: str, info: VideoInfo) -> str | None:
    """The best pixel format encoder ``encoder`` takes for ``info``'s frames, or None."""
    import av

    try:
        supported = {f.name for f in av.codec.Codec(encoder, "w").video_formats or ()}
    except (av.FFmpegError, ValueError):
        return None
    odd = info.width % 2 == 1 or info.height % 2 == 1
    for pix_fmt in _PIX_FMT_CANDIDATES[(info.high_bit_depth, odd)]:
        if pix_fmt in supported:
            return pix_fmt
    return None


def matched_encoder(info: VideoInfo | None) -> tuple[str, str | None]:
    """The software encoder of ``info``'s codec family at its bit depth (``match``), H.264
    when nothing is known of the source; and a note when that family's encoder cannot take
    the video here (libvpx built without 10-bit, SVT-AV1 at odd sizes): then libx265, which
    takes every bit depth and size."""
    if info is None:
        return SOFTWARE_CODEC, None
    eight_bit, deeper = _MATCHED.get(info.codec, _OTHER)
    encoder = deeper if info.high_bit_depth else eight_bit
    if _pixel_format(encoder, info) is not None or _pixel_format("libx265", info) is None:
        return encoder, None
    return "libx265", (f"codec match: {encoder} cannot encode {info.bit_depth}-bit "
                       f"{'odd-sized ' if info.width % 2 or info.height % 2 else ''}"
                       f"{info.codec} video here; those are made with libx265")


def resolve_codec(config: EncodeConfig,
                  info: VideoInfo | None = None) -> tuple[EncodeConfig, str | None]:
    """``config`` for ``info``'s video with ``codec`` an FFmpeg encoder name and ``crf`` a
    number, and the note to show (None when there is nothing to tell).

    ``match`` takes the source's family (:func:`matched_encoder`); ``auto`` takes the first
    working hardware encoder of that family (:func:`choose_codec`, cached per process), else
    its software encoder with a note. An unset ``crf`` becomes the encoder's
    :data:`DEFAULT_CRF`. Decide once per video, where it is planned: every part of a video
    must have the same codec (parts are joined without re-encoding).
    """
    if config.lossless:
        return config, None
    codec = software = config.codec
    note = None
    if codec in (MATCH_CODEC, AUTO_CODEC):
        software, note = matched_encoder(info)
        codec = software
        if config.codec == AUTO_CODEC:
            choice = choose_codec(_HARDWARE_FAMILY.get(software, ()), software)
            codec, note = choice.codec, "; ".join(filter(None, (note, choice.note))) or None
    crf = config.crf
    if crf is None:
        crf = DEFAULT_CRF.get(software if codec in _NVENC_ENCODERS else codec, 18)
    return config.model_copy(update={"codec": codec, "crf": crf}), note


@dataclass(frozen=True)
class EncoderSettings:
    """What :func:`encode_part` will use for a given source and config.

    Attributes:
        codec: FFmpeg encoder name.
        pix_fmt: pixel format handed to the encoder.
        options: encoder options (CRF, preset...).
        lossless: RGB lossless mode (no YUV conversion, no colour-matrix tag).
        codec_tag: the MP4/MOV sample entry to write (``hvc1``), None for the muxer's own.
    """

    codec: str
    pix_fmt: str
    options: dict[str, str]
    lossless: bool
    codec_tag: str | None = None


def encoder_settings(info: VideoInfo, config: EncodeConfig) -> EncoderSettings:
    """Choose encoder, pixel format and options for ``info``'s frames.

    Raises:
        MediaError: the configured encoder does not exist or cannot take any
            suitable pixel format.
    """
    import av

    if config.lossless:
        pix_fmt = "rgb48le" if info.high_bit_depth else "bgr0"
        return EncoderSettings(LOSSLESS_CODEC, pix_fmt, {}, lossless=True)
    if config.codec in (MATCH_CODEC, AUTO_CODEC) or config.crf is None:
        config, _ = resolve_codec(config, info)  # not resolved by the job: here (cached)
    try:
        av.codec.Codec(config.codec, "w")
    except (av.FFmpegError, ValueError):
        raise MediaError(info.path, f"video encoder {config.codec!r} is not available") from None
    pix_fmt = _pixel_format(config.codec, info)
    if pix_fmt is None:
        raise MediaError(
            info.path,
            f"encoder {config.codec!r} supports none of the pixel formats for a "
            f"{info.width}x{info.height} {info.bit_depth}-bit video",
        )
    if config.codec in _NVENC_ENCODERS:
        preset = _NVENC_PRESETS.get(config.preset, config.preset)
        options = {"rc": "vbr", "cq": str(min(config.crf, 51)), "b": "0", "preset": preset}
    else:
        options = {"crf": str(config.crf), **_EXTRA_OPTIONS.get(config.codec, {})}
        if config.codec in _PRESET_ENCODERS:
            options["preset"] = config.preset
        for key, value in encoder_hdr_options(config.codec, info.hdr_metadata).items():
            options[key] = f"{options[key]}:{value}" if key in options else value
    tag = "hvc1" if config.codec in HVC1_ENCODERS else None
    return EncoderSettings(config.codec, pix_fmt, options, lossless=False, codec_tag=tag)


def encode_part(
    frames: np.ndarray,
    pts: np.ndarray,
    info: VideoInfo,
    dest: str | os.PathLike[str],
    config: EncodeConfig,
) -> None:
    """Encode a chunk's output frames (context already dropped) into the part file ``dest``.

    Args:
        frames: ``[n, H, W, 3]`` RGB, ``uint8`` (or ``uint16`` for sources deeper
            than 8 bits), at the source's size.
        pts: ``[n]`` strictly increasing timestamps in ``info.time_base``.
        info: the source's probe result, or the video to write instead of it
            (:func:`nhance_batch.media.hdrmeta.output_info`: an HDR source as SDR).
        dest: local path of the part (MP4, see :data:`PART_FORMAT`).
        config: encoder settings; see the module docstring for pixel formats.

    Raises:
        ValueError: ``frames`` or ``pts`` do not fit ``info``.
        MediaError: the encoder or muxer failed.
    """
    import av

    _check_frames(frames, pts, info)
    settings = encoder_settings(info, config)
    in_format = rgb_format(info.high_bit_depth)
    if settings.lossless:
        convert = Converter(format=settings.pix_fmt)
    else:
        convert = Converter(
            format=settings.pix_fmt,
            dst_colorspace=sws_colorspace(info.color),
            dst_color_range=sws_range(info.color),
        )
    try:
        with open_output(dest, PART_FORMAT, mov_options(info.time_base)) as container:
            stream = container.add_stream(
                settings.codec, rate=nominal_rate(info), options=settings.options
            )
            stream.width = info.width
            stream.height = info.height
            stream.pix_fmt = settings.pix_fmt
            if settings.codec_tag:
                stream.codec_tag = settings.codec_tag
            if info.sample_aspect_ratio:
                stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
            stream.time_base = info.time_base
            stream.codec_context.time_base = info.time_base
            stream.codec_context.thread_type = "AUTO"
            _tag_colors(stream.codec_context, info, settings.lossless)
            for array, timestamp in zip(frames, pts, strict=True):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=in_format)
                frame = convert(frame)
                frame.pts = int(timestamp)
                frame.time_base = info.time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except av.FFmpegError as exc:
        raise MediaError(os.fspath(dest), f"encoding failed ({ffmpeg_reason(exc)})") from None


def mov_options(time_base: Fraction) -> dict[str, str]:
    """MP4/MOV muxer options that keep timestamps in ``time_base`` exact.

    A track that does not start at zero gets an edit list whose durations are
    in the *movie* timescale (1000 by default), which would round the start
    to a millisecond; use the time base's own denominator instead. The colour
    tags go into a ``colr`` box too: FFV1 (lossless) has nowhere else to keep
    them, and MP4 writes that box only when asked.
    """
    den = time_base.denominator
    options = {"movflags": "+write_colr"}
    if 0 < den < 2**31:
        options["movie_timescale"] = str(den)
    return options


def _check_frames(frames: np.ndarray, pts: np.ndarray, info: VideoInfo) -> None:
    dtype = np.uint16 if info.high_bit_depth else np.uint8
    shape = (info.height, info.width, 3)
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[1:] != shape:
        got = getattr(frames, "shape", None)
        raise ValueError(f"frames must be [n, {info.height}, {info.width}, 3], got {got}")
    if frames.dtype != dtype:
        raise ValueError(
            f"frames must be {np.dtype(dtype).name} for a {info.bit_depth}-bit source, got {frames.dtype}"
        )
    pts = np.asarray(pts)
    if pts.ndim != 1 or pts.shape[0] != frames.shape[0]:
        raise ValueError(f"pts must be [{frames.shape[0]}], got {pts.shape}")
    if frames.shape[0] == 0:
        raise ValueError("a part needs at least one frame")
    if not np.issubdtype(pts.dtype, np.integer) or (np.diff(pts) <= 0).any():
        raise ValueError("pts must be strictly increasing integers")


def nominal_rate(info: VideoInfo) -> Fraction:
    """The nominal frame rate of ``info``'s video: the encoder's (rate control only;
    timestamps come from pts) and the muxer's (a MOV timecode track counts frames at it)."""
    if info.average_rate:
        return info.average_rate
    if info.frame_count > 1 and info.pts[-1] > info.pts[0]:
        rate = (info.frame_count - 1) / ((info.pts[-1] - info.pts[0]) * info.time_base)
        return Fraction(rate).limit_denominator(1001)
    return _FALLBACK_RATE


def _tag_colors(codec_context: Any, info: VideoInfo, lossless: bool) -> None:
    """Write the source's colour tags into the stream (RGB keeps only primaries/transfer)."""
    color = info.color
    if color.primaries is not None:
        codec_context.color_primaries = color.primaries
    if color.transfer is not None:
        codec_context.color_trc = color.transfer
    if lossless:
        return
    if color.matrix is not None:
        codec_context.colorspace = color.matrix
    if color.range is not None:
        codec_context.color_range = color.range

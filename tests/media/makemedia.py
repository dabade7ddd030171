"""Make small, deterministic test videos with PyAV.

Usage from any test folder::

    from tests.media.makemedia import make_video
    path = make_video(tmp_path / "clip.mp4", width=64, height=48, frames=20)

Pictures are a moving colour gradient with a little seeded noise, so every
frame differs and encoders have real work (B-frames, motion). Audio tracks are
sine tones (AAC), one frequency per track; the subtitle track has one cue per
second (``mov_text`` in MP4/MOV, SubRip elsewhere).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

AUDIO_RATE = 48000
_AUDIO_FRAME = 1024
#: Colour tags written on every test video (BT.709, limited range).
BT709 = 1
LIMITED_RANGE = 1


def picture(index: int, width: int, height: int, *, high: bool = False, noise: float = 6.0) -> np.ndarray:
    """Frame ``index`` of the test pattern: ``[H, W, 3]`` uint8 (uint16 when ``high``)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = index * 3.0
    r = 128 + 100 * np.sin((x + t) / max(width, 1) * 2 * np.pi)
    g = 128 + 100 * np.cos((y - t) / max(height, 1) * 2 * np.pi)
    b = 128 + 100 * np.sin((x + y + 2 * t) / max(width + height, 1) * 2 * np.pi)
    rgb = np.stack([r, g, b], axis=-1)
    rng = np.random.default_rng(index)
    rgb += rng.normal(0.0, noise, size=rgb.shape)
    rgb = np.clip(rgb, 0, 255)
    if high:
        return (rgb * 257).astype(np.uint16)
    return rgb.astype(np.uint8)


def make_video(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    frames: int,
    rate: Fraction = Fraction(25),
    vfr_pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio_tracks: int = 0,
    subtitle: bool = False,
    rotation: int = 0,
    gop: int | None = None,
    bframes: bool = True,
    container: str | None = None,
    sar: Fraction | None = None,
    timecode: str | None = None,
    tags: dict[str, str] | None = None,
    stream_tags: dict[str, str] | None = None,
    faststart: bool = False,
) -> Path:
    """Write a test video to ``path`` and return the path.

    Args:
        width, height: picture size (odd sizes need a 4:4:4 ``pix_fmt``).
        frames: number of frames.
        rate: nominal frame rate; CFR timestamps are ``i`` in time base ``1/rate``.
        vfr_pts: explicit strictly increasing timestamps (one per frame) in
            ``time_base``, for variable frame rate clips.
        time_base: encoder time base (default ``1/rate``).
        pix_fmt: encoder pixel format (``yuv420p10le`` for a 10-bit clip).
        codec: video encoder.
        audio_tracks: number of AAC tracks (languages eng, fra, deu...).
        subtitle: add a subtitle track.
        rotation: display rotation in degrees (counter-clockwise, as read back).
        gop: keyframe interval (default: the encoder's).
        bframes: allow B-frames (x264: up to 3).
        container: FFmpeg muxer name (default: from the file name).
        sar: sample aspect ratio (pixel shape) written on the video stream.
        timecode: start timecode (``01:00:00:00``); the MOV muxer then writes a ``tmcd`` track.
        tags: container metadata; keys with a dot (``com.apple.quicktime.make``) are written
            as QuickTime metadata keys (``use_metadata_tags``).
        stream_tags: the video stream's metadata (``encoder``, ``title``, ``language``...).
        faststart: MP4/MOV index at the start of the file (so that cutting the file's end
            loses frames, not the index).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = time_base or Fraction(1) / rate
    if vfr_pts is not None:
        stamps = [int(p) for p in vfr_pts]
        if len(stamps) != frames or any(b <= a for a, b in zip(stamps, stamps[1:])):
            raise ValueError("vfr_pts must hold `frames` strictly increasing timestamps")
    else:
        step = Fraction(1) / rate / tb
        if step.denominator != 1:
            raise ValueError("1/rate must be a whole number of time_base units")
        stamps = [int(i * step) for i in range(frames)]
    duration = float((stamps[-1] * tb) + 1 / rate) if frames else 0.0
    high = av.VideoFormat(pix_fmt).components[0].bits > 8

    flags = [f for f, on in (("faststart", faststart),
                             ("use_metadata_tags", any("." in k for k in tags or {}))) if on]
    muxer_options = {"movflags": "+".join(flags)} if flags else {}
    with av.open(str(path), mode="w", format=container, options=muxer_options) as out:
        out.metadata.update(tags or {})
        video = out.add_stream(codec, rate=rate, options=_encoder_options(codec, gop, bframes))
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = tb
        video.codec_context.time_base = tb
        if gop:
            video.codec_context.gop_size = gop
        if not bframes:
            video.codec_context.max_b_frames = 0
        cc = video.codec_context
        cc.color_primaries = cc.color_trc = cc.colorspace = BT709
        cc.color_range = LIMITED_RANGE
        if rotation:
            video.set_display_rotation(rotation)
        if sar is not None:
            cc.sample_aspect_ratio = sar
        if timecode is not None:
            video.metadata["timecode"] = timecode
        video.metadata.update(stream_tags or {})
        if codec == "libx265" and out.format.name in ("mov", "mp4"):
            video.codec_tag = "hvc1"

        audio_streams = []
        for track in range(audio_tracks):
            stream = out.add_stream("aac", rate=AUDIO_RATE)
            stream.layout = "mono"
            stream.metadata["language"] = ("eng", "fra", "deu", "spa")[track % 4]
            audio_streams.append(stream)
        sub_stream, sub_codec = None, ""
        if subtitle:
            sub_codec = "mov_text" if out.format.name in ("mp4", "mov") else "subrip"
            sub_stream = out.add_mux_stream(sub_codec)
            sub_stream.metadata["language"] = "eng"

        out.start_encoding()
        for i, stamp in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(
                picture(i, width, height, high=high), format="rgb48le" if high else "rgb24"
            )
            frame = frame.reformat(format=pix_fmt, dst_colorspace=BT709, dst_color_range="MPEG")
            frame.pts = stamp
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode(None))

        for track, stream in enumerate(audio_streams):
            _write_tone(out, stream, 220.0 * (track + 2), duration)
        if sub_stream is not None:
            _write_subtitles(out, sub_stream, sub_codec, duration)
    return path


def _encoder_options(codec: str, gop: int | None, bframes: bool) -> dict[str, str]:
    if codec == "libx264":
        options = {"preset": "veryfast", "bf": "3" if bframes else "0"}
        if gop:
            options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        return options
    if codec == "libx265":
        params = "log-level=error" + (":bframes=0" if not bframes else "")
        if gop:
            params += f":keyint={gop}:min-keyint={gop}:scenecut=0"
        return {"preset": "ultrafast", "x265-params": params}
    if codec == "libsvtav1":
        return {"preset": "12"}
    if codec == "libvpx-vp9":
        return {"deadline": "realtime", "cpu-used": "8"}
    return {}


def truncate(path: str | os.PathLike[str], dest: str | os.PathLike[str], lose: int) -> Path:
    """Copy ``path`` to ``dest`` without its last ``lose`` bytes: a recording cut off mid-write
    (make the source with ``faststart`` so the index survives)."""
    data = Path(path).read_bytes()
    Path(dest).write_bytes(data[: len(data) - lose])
    return Path(dest)


def _write_tone(out: object, stream: object, freq: float, seconds: float) -> None:
    import av

    total = int(seconds * AUDIO_RATE)
    for start in range(0, total, _AUDIO_FRAME):
        n = min(_AUDIO_FRAME, total - start)
        t = np.arange(start, start + n) / AUDIO_RATE
        samples = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, AUDIO_RATE)
        out.mux(stream.encode(frame))  # type: ignore[attr-defined]
    out.mux(stream.encode(None))  # type: ignore[attr-defined]


def _write_subtitles(out: object, stream: object, codec: str, seconds: float) -> None:
    """One cue per second, muxed as raw packets (mov_text: 16-bit length + UTF-8)."""
    import av

    mov_text = codec == "mov_text"
    tb = Fraction(1, 1000)
    for second in range(max(1, int(seconds))):
        text = f"cue {second} é".encode()
        payload = len(text).to_bytes(2, "big") + text if mov_text else text
        packet = av.Packet(payload)
        packet.pts = packet.dts = second * 1000
        packet.duration = 800
        packet.time_base = tb
        packet.stream = stream
        out.mux(packet)  # type: ignore[attr-defined]

"""Phone-shaped media: the codec that matches the source, ``hvc1``, timecode tracks, Apple
metadata keys, the pixel shape, a 240 fps clip with an edit list, and recordings cut short."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from nhance_batch.config import EncodeConfig
from nhance_batch.media import (assemble, decode_all, decode_chunk, encode_part, plan_chunks,
                                plan_output, probe)
from nhance_batch.media import encode as encode_mod
from nhance_batch.media.encode import DEFAULT_CRF, encoder_settings, resolve_codec
from tests.media.makemedia import make_video, truncate

APPLE = {"com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 15",
         "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
         "creation_time": "2024-05-01T10:00:00.000000Z"}
# name -> (make_video keywords, encoder chosen by "match", output codec, output pixel format)
SOURCES = {
    "h264.mp4": ({}, "libx264", "h264", "yuv420p"),
    "h264_10.mp4": ({"pix_fmt": "yuv420p10le"}, "libx265", "hevc", "yuv420p10le"),
    "hevc8.mov": ({"codec": "libx265"}, "libx265", "hevc", "yuv420p"),
    "hevc10.mp4": ({"codec": "libx265", "pix_fmt": "yuv420p10le"}, "libx265", "hevc",
                   "yuv420p10le"),
    "av1.mp4": ({"codec": "libsvtav1"}, "libsvtav1", "av1", "yuv420p"),
    "vp9.webm": ({"codec": "libvpx-vp9"}, "libvpx-vp9", "vp9", "yuv420p"),
    "mpeg4.avi": ({"codec": "mpeg4"}, "libx264", "h264", "yuv420p"),
    # full range stays full range (the H.264 decoder names that yuvj420p)
    "mjpeg.mov": ({"codec": "mjpeg", "pix_fmt": "yuvj420p"}, "libx264", "h264", "yuvj420p"),
    "prores.mov": ({"codec": "prores_ks", "pix_fmt": "yuv422p10le"}, "libx265", "hevc",
                   "yuv420p10le"),
}


def enhance_like(source: Path, dest: Path, config: EncodeConfig = EncodeConfig(),
                 info=None, **kwargs):
    """The pipeline's media path on ``source`` with the frames unchanged: decode, one part,
    assemble. Returns the plan."""
    info = info or probe(source)
    config, _ = resolve_codec(config, info)
    frames = decode_all(source, info)
    part = dest.with_name(dest.name + ".part.mp4")
    encode_part(frames.frames, frames.pts, info, part, config)
    return assemble(source, info, [part], dest, config, **kwargs)


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return {"tags": dict(container.metadata), "video_tags": dict(video.metadata),
                "codec_tag": video.codec_tag, "sar": video.sample_aspect_ratio,
                "kinds": [s.type for s in container.streams], "format": container.format.name}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_match_keeps_the_source_codec_family(name: str, tmp_path: Path) -> None:
    options, encoder, codec, pix_fmt = SOURCES[name]
    src = make_video(tmp_path / name, width=64, height=48, frames=8, gop=4, **options)
    info = probe(src)
    resolved, note = resolve_codec(EncodeConfig(), info)
    assert (resolved.codec, resolved.crf, note) == (encoder, DEFAULT_CRF[encoder], None)
    out = tmp_path / f"out_{name}"
    assert enhance_like(src, out).notes == ()
    result = probe(out)
    assert (result.codec, result.pix_fmt, result.frame_count) == (codec, pix_fmt, 8)
    # MOV stays MOV, WebM WebM; AVI cannot take the parts' H.264 and becomes Matroska
    fallback = "matroska,webm" if name.endswith(".avi") else info.container
    assert result.container == fallback
    if codec == "hevc" and result.container.startswith("mov"):
        assert stream_facts(out)["codec_tag"] == "hvc1"


def test_ten_bit_becomes_high_10_only_when_named(tmp_path: Path) -> None:
    info = probe(make_video(tmp_path / "ten.mp4", width=64, height=48, frames=2,
                            pix_fmt="yuv420p10le"))
    assert encoder_settings(info, EncodeConfig()).codec == "libx265"
    named = encoder_settings(info, EncodeConfig(codec="libx264"))
    assert (named.codec, named.pix_fmt) == ("libx264", "yuv420p10le")


def test_an_explicit_crf_overrides_the_encoders_default(tmp_path: Path) -> None:
    info = probe(make_video(tmp_path / "h.mov", width=64, height=48, frames=2, codec="libx265"))
    assert resolve_codec(EncodeConfig(crf=30), info)[0].crf == 30
    assert encoder_settings(info, EncodeConfig(crf=30)).options["crf"] == "30"
    assert encoder_settings(info, EncodeConfig()).options["crf"] == str(DEFAULT_CRF["libx265"])


def test_auto_takes_the_hardware_encoder_of_the_matched_family(tmp_path, monkeypatch) -> None:
    hevc = probe(make_video(tmp_path / "h.mov", width=64, height=48, frames=2, codec="libx265"))
    h264 = probe(make_video(tmp_path / "a.mp4", width=64, height=48, frames=2))
    tried = []

    def fake_probe(name: str) -> str | None:
        tried.append(name)
        return None if name == "hevc_nvenc" else "cannot open it here"

    monkeypatch.setattr(encode_mod, "probe_encoder", fake_probe)
    encode_mod.choose_codec.cache_clear()
    try:
        assert resolve_codec(EncodeConfig(codec="auto"), hevc) == (
            EncodeConfig(codec="hevc_nvenc", crf=DEFAULT_CRF["libx265"]), None)
        resolved, note = resolve_codec(EncodeConfig(codec="auto"), h264)
    finally:
        encode_mod.choose_codec.cache_clear()
    assert resolved.codec == "libx264" and "h264_nvenc" in note and "using libx264" in note
    assert tried == ["hevc_nvenc", "h264_nvenc"]


def phone_mov(path: Path, **kwargs) -> Path:
    """An iPhone-like HEVC 8-bit MOV: tmcd track, Apple keys, non-square pixels, tags."""
    return make_video(path, width=64, height=48, frames=10, gop=5, codec="libx265",
                      audio_tracks=1, timecode="01:02:03:04", sar=Fraction(128, 117),
                      tags=APPLE, stream_tags={"encoder": "Apple HEVC Encoder",
                                               "title": "holiday"}, **kwargs)


def test_a_mov_with_a_timecode_track_keeps_everything(tmp_path: Path) -> None:
    src = phone_mov(tmp_path / "phone.mov")
    assert stream_facts(src)["kinds"] == ["video", "audio", "data"]
    out = tmp_path / "out.mov"
    plan = enhance_like(src, out)
    assert plan.notes == () and plan.timecode
    facts = stream_facts(out)
    assert facts["kinds"] == ["video", "audio", "data"]
    assert facts["video_tags"]["timecode"] == "01:02:03:04"
    assert {k: facts["tags"].get(k) for k in APPLE} == APPLE
    assert facts["video_tags"]["name"] == "holiday"  # MOV keeps a track title as its name
    assert facts["video_tags"].get("encoder") != "Apple HEVC Encoder"
    with av.open(str(out)) as container:
        assert container.streams.audio[0].metadata["language"] == "eng"
    assert (facts["codec_tag"], facts["sar"]) == ("hvc1", Fraction(128, 117))
    assert probe(out).display_aspect_ratio == probe(src).display_aspect_ratio


def test_a_container_that_cannot_carry_the_timecode_drops_it_with_a_note(tmp_path) -> None:
    src = phone_mov(tmp_path / "phone.mov")
    out = tmp_path / "out.mkv"
    plan = enhance_like(src, out, container="matroska")
    assert plan.notes == ("data stream #2 (TimeCodeHandler) dropped: matroska cannot carry it",)
    assert stream_facts(out)["kinds"] == ["video", "audio"]
    assert stream_facts(out)["sar"] == Fraction(128, 117)


def test_a_timecode_the_muxer_refuses_is_dropped_when_planned(tmp_path: Path) -> None:
    src = phone_mov(tmp_path / "phone.mov")
    info = dataclasses.replace(probe(src), average_rate=Fraction(1000))  # no timecode counts
    plan = plan_output(src, info, EncodeConfig())
    assert not plan.timecode
    assert plan.notes[0].startswith("timecode 01:02:03:04 dropped: mov cannot write it at 1000")
    out = tmp_path / "out.mov"
    enhance_like(src, out, info=info, plan=plan)
    assert "timecode" not in stream_facts(out)["video_tags"]


def test_slow_motion_with_an_edit_list_keeps_its_times_and_rate(tmp_path: Path) -> None:
    src = make_video(tmp_path / "slowmo.mov", width=64, height=48, frames=24, gop=8,
                     rate=Fraction(240), time_base=Fraction(1, 24000),
                     vfr_pts=[1000 + 100 * i for i in range(24)])
    info = probe(src)
    assert info.pts[0] != 0  # an edit list shifts the start
    out = tmp_path / "out.mov"
    enhance_like(src, out)
    result = probe(out)
    assert [p * result.time_base for p in result.pts] == [p * info.time_base for p in info.pts]
    assert result.average_rate == 240
    assert len(decode_all(out, result)) == 24


def test_a_recording_cut_short_keeps_the_frames_that_decode(tmp_path: Path) -> None:
    whole = make_video(tmp_path / "whole.mp4", width=64, height=48, frames=30, gop=10,
                       faststart=True)
    cut = truncate(whole, tmp_path / "cut.mp4", 600)
    info = probe(cut)
    every = av.open(str(cut))
    decodable = sum(1 for _ in encode_mod_frames(every))
    assert info.frame_count == decodable < 30
    start, end = info.lost
    lost = [p for p in probe(whole).pts if p not in info.pts]
    assert start == pytest.approx(float(lost[0] * info.time_base))
    assert end == pytest.approx(1.2)  # 30 frames at 25 fps
    assert f"from {start:.3f} s to {end:.3f} s" in info.lost_note
    assert len(decode_all(cut, info)) == info.frame_count
    last = plan_chunks(info.frame_count, 8, 2)[-1]
    assert len(decode_chunk(cut, info, last)) == last.ctx_end - last.ctx_start
    assert probe(whole).lost is None


def encode_mod_frames(container):
    """Every frame FFmpeg decodes, skipping packets that fail (what the ffmpeg tool does)."""
    from nhance_batch.media.probe import decode_tolerant

    with container:
        yield from decode_tolerant(container, container.streams.video[0])


def test_frames_keep_their_pixels_through_matching_codecs(tmp_path: Path) -> None:
    src = make_video(tmp_path / "h.mov", width=176, height=144, frames=6, codec="libx265")
    out = tmp_path / "out.mov"
    enhance_like(src, out)
    a, b = decode_all(src, probe(src)).frames, decode_all(out, probe(out)).frames
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35


def test_an_mp4_keeps_location_creation_time_and_languages(tmp_path: Path) -> None:
    tags = {"location": "+48.8584+002.2945/", "creation_time": "2024-05-01T10:00:00.000000Z"}
    src = make_video(tmp_path / "android.mp4", width=64, height=48, frames=4, tags=tags,
                     stream_tags={"language": "fra", "encoder": "c2.qti.avc.encoder"})
    out = tmp_path / "out.mp4"
    enhance_like(src, out)
    facts = stream_facts(out)
    assert {k: facts["tags"].get(k) for k in tags} == tags
    assert facts["video_tags"]["language"] == "fra"
    assert facts["video_tags"].get("encoder") != "c2.qti.avc.encoder"


def test_match_falls_back_to_hevc_where_the_familys_encoder_cannot_take_the_video(
        tmp_path: Path) -> None:
    vp9 = probe(make_video(tmp_path / "v.webm", width=64, height=48, frames=2,
                           codec="libvpx-vp9"))
    deep = dataclasses.replace(vp9, pix_fmt="yuv420p10le", bit_depth=10)
    fits = encode_mod._pixel_format("libvpx-vp9", deep) is not None  # a 10-bit libvpx build
    resolved, note = resolve_codec(EncodeConfig(), deep)
    if fits:
        assert (resolved.codec, note) == ("libvpx-vp9", None)
    else:
        assert resolved.codec == "libx265" and resolved.crf == DEFAULT_CRF["libx265"]
        assert note == ("codec match: libvpx-vp9 cannot encode 10-bit vp9 video here; those "
                        "are made with libx265")
    assert resolve_codec(EncodeConfig(), vp9)[0].codec == "libvpx-vp9"

from __future__ import annotations

import shutil
from fractions import Fraction
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nhance_batch.config import EncodeConfig
from nhance_batch.media import (
    MediaError,
    VideoInfo,
    assemble,
    decode_all,
    decode_chunk,
    encode_part,
    output_container,
    plan_chunks,
    probe,
)
from tests.media.conftest import packet_bytes, psnr

FAST = EncodeConfig(preset="veryfast")
LOSSLESS = EncodeConfig(lossless=True)


def identity(
    source: Path, work: Path, config: EncodeConfig, *, n: int = 8, k: int = 3, dest: str = "out.mp4"
) -> tuple[VideoInfo, Path]:
    """Run the pipeline with an identity enhancer; return the source's info and the output."""
    info = probe(source)
    parts = []
    for chunk in plan_chunks(info.frame_count, n, k):
        got = decode_chunk(source, info, chunk)
        own = slice(chunk.lead, chunk.lead + chunk.size)
        part = work / f"part {chunk.index:03d}.mp4"
        encode_part(got.frames[own], got.pts[own], info, part, config)
        parts.append(part)
    out = work / dest
    assemble(source, info, parts, out, config)
    return info, out


def assert_same_timeline(src: VideoInfo, out: VideoInfo) -> None:
    assert out.frame_count == src.frame_count
    assert [p * out.time_base for p in out.pts] == [p * src.time_base for p in src.pts]


def test_mp4_with_two_audio_tracks_subtitle_and_rotation(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("full.mp4")
    src, out_path = identity(source, tmp_path, FAST, n=8, k=3)
    out = probe(out_path)
    assert out.container == src.container
    assert out.time_base == src.time_base and out.pts == src.pts
    assert out.rotation == 90 and out.display_matrix == src.display_matrix
    assert out.color == src.color
    assert [(s.kind, s.codec, s.language) for s in out.other_streams] == [
        (s.kind, s.codec, s.language) for s in src.other_streams
    ]
    assert packet_bytes(out_path) == packet_bytes(source)
    assert len(packet_bytes(source)) == 3 and all(packet_bytes(source))


def test_mkv_keeps_srt_audio_rotation(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("full.mkv")
    src, out_path = identity(source, tmp_path, FAST, n=7, k=2, dest="out.mkv")
    out = probe(out_path)
    assert out.container.startswith("matroska")
    assert_same_timeline(src, out)
    assert out.rotation == 270
    kinds = [(s.kind, s.codec, s.language) for s in out.other_streams]
    assert kinds == [(s.kind, s.codec, s.language) for s in src.other_streams]
    assert [k[0] for k in kinds] == ["audio", "audio", "subtitle"]
    assert packet_bytes(out_path) == packet_bytes(source)


def test_vfr_timestamps_survive(clip: Callable[[str], Path], tmp_path: Path) -> None:
    src, out_path = identity(clip("vfr.mp4"), tmp_path, FAST, n=5, k=2)
    assert_same_timeline(src, probe(out_path))


def test_ntsc_late_start_timestamps_are_exact(clip: Callable[[str], Path], tmp_path: Path) -> None:
    src, out_path = identity(clip("ntsc.mp4"), tmp_path, FAST, n=4, k=1)
    out = probe(out_path)
    assert src.pts[0] > 0 and src.time_base == Fraction(1, 30000)
    assert out.time_base == src.time_base and out.pts == src.pts


def test_quality_of_identity(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("cif.mp4")
    src, out_path = identity(source, tmp_path, EncodeConfig(), n=5, k=1)
    assert_same_timeline(src, probe(out_path))
    assert psnr(decode_all(out_path, probe(out_path)).frames, decode_all(source, src).frames) >= 38


def test_odd_size(clip: Callable[[str], Path], tmp_path: Path) -> None:
    src, out_path = identity(clip("odd.mp4"), tmp_path, FAST, n=5, k=1)
    out = probe(out_path)
    assert (out.width, out.height) == (175, 143)
    assert_same_timeline(src, out)


def test_ten_bit(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("tenbit.mp4")
    src, out_path = identity(source, tmp_path, FAST, n=6, k=2)
    out = probe(out_path)
    assert (out.pix_fmt, out.bit_depth) == ("yuv420p10le", 10)
    assert_same_timeline(src, out)
    assert packet_bytes(out_path) == packet_bytes(source)
    assert psnr(decode_all(out_path, out).frames, decode_all(source, src).frames) >= 38


def test_non_ascii_names(clip: Callable[[str], Path], tmp_path: Path) -> None:
    work = tmp_path / "dossier été"
    work.mkdir()
    source = work / "vidéo 日本.mp4"
    shutil.copy(clip("full.mp4"), source)
    src, out_path = identity(source, work, FAST, n=16, k=2, dest="sortie 日本.mp4")
    assert_same_timeline(src, probe(out_path))
    assert packet_bytes(out_path) == packet_bytes(source)


def test_lossless_output_decodes_to_the_given_frames(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("full.mp4")
    src, out_path = identity(source, tmp_path, LOSSLESS, n=16, k=2)
    out = probe(out_path)
    assert out.codec == "ffv1" and out.container == src.container  # FFV1 fits MP4
    assert_same_timeline(src, out)
    assert out.rotation == 90
    np.testing.assert_array_equal(decode_all(out_path, out).frames, decode_all(source, src).frames)
    assert packet_bytes(out_path) == packet_bytes(source)


def test_lossless_falls_back_to_matroska_when_mov_cannot_carry_ffv1(
    clip: Callable[[str], Path], tmp_path: Path
) -> None:
    source = clip("plain.mov")
    src = probe(source)
    assert output_container(source, src, FAST) == "mov"
    assert output_container(source, src, LOSSLESS) == "matroska"
    src, out_path = identity(source, tmp_path, LOSSLESS, n=4, k=1, dest="out.mkv")
    out = probe(out_path)
    assert out.container.startswith("matroska") and out.codec == "ffv1"
    assert_same_timeline(src, out)
    assert packet_bytes(out_path) == packet_bytes(source)


def test_parts_that_do_not_match_are_refused(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("cfr.mp4")
    info = probe(source)
    frames = decode_all(source, info)
    encode_part(frames.frames[:10], frames.pts[:10], info, tmp_path / "a.mp4", FAST)
    encode_part(frames.frames[10:], frames.pts[10:], info, tmp_path / "b.mp4", LOSSLESS)
    with pytest.raises(MediaError, match="does not match"):
        assemble(source, info, [tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "out.mp4", FAST)
    with pytest.raises(MediaError, match="lossless"):
        assemble(source, info, [tmp_path / "a.mp4"], tmp_path / "out.mp4", LOSSLESS)
    with pytest.raises(MediaError, match="no parts"):
        assemble(source, info, [], tmp_path / "out.mp4", FAST)
    assert not (tmp_path / "out.mp4").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("out.mp4")]  # no temp


def test_missing_frames_are_detected(clip: Callable[[str], Path], tmp_path: Path) -> None:
    source = clip("cfr.mp4")
    info = probe(source)
    frames = decode_all(source, info)
    encode_part(frames.frames[:10], frames.pts[:10], info, tmp_path / "a.mp4", FAST)
    with pytest.raises(MediaError, match="timestamps differ"):
        assemble(source, info, [tmp_path / "a.mp4"], tmp_path / "out.mp4", FAST)
    assert not (tmp_path / "out.mp4").exists()

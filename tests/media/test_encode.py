from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nhance_batch.config import EncodeConfig
from nhance_batch.media import MediaError, VideoInfo, decode_all, encode_part, encoder_settings, probe
from tests.media.conftest import psnr
from tests.media.makemedia import picture

FAST = EncodeConfig(preset="veryfast")
LOSSLESS = EncodeConfig(lossless=True)


def _packets(path: Path) -> list[tuple[int, bool]]:
    import av

    with av.open(str(path)) as container:
        return [(p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]


def _smooth(info: VideoInfo, n: int) -> np.ndarray:
    return np.stack([picture(i, info.width, info.height, high=info.high_bit_depth, noise=0) for i in range(n)])


def test_default_encode_quality_keyframe_and_timestamps(
    clip: Callable[[str], Path], tmp_path: Path
) -> None:
    info = probe(clip("cif.mp4"))
    frames = _smooth(info, 10)
    pts = np.asarray(info.pts[2:12], dtype=np.int64)
    part = tmp_path / "part.mp4"
    encode_part(frames, pts, info, part, EncodeConfig())

    part_info = probe(part)
    assert (part_info.codec, part_info.pix_fmt) == ("h264", "yuv420p")
    assert [p * part_info.time_base for p in part_info.pts] == [p * info.time_base for p in pts]
    packets = _packets(part)
    assert packets[0] == (part_info.pts[0], True), "a part must start with a keyframe at its first frame"
    assert part_info.color == info.color
    decoded = decode_all(part, part_info).frames
    assert psnr(decoded, frames) >= 38


def test_lossless_round_trips_noise(clip: Callable[[str], Path], tmp_path: Path) -> None:
    info = probe(clip("cfr.mp4"))
    frames = np.random.default_rng(1).integers(0, 256, size=(5, 48, 64, 3), dtype=np.uint8)
    part = tmp_path / "part.mp4"
    encode_part(frames, np.array(info.pts[:5]), info, part, LOSSLESS)
    part_info = probe(part)
    assert part_info.codec == "ffv1"
    np.testing.assert_array_equal(decode_all(part, part_info).frames, frames)


def test_lossless_round_trips_16_bit_noise(clip: Callable[[str], Path], tmp_path: Path) -> None:
    info = probe(clip("tenbit.mp4"))
    frames = np.random.default_rng(2).integers(0, 65536, size=(4, 144, 176, 3), dtype=np.uint16)
    part = tmp_path / "part.mp4"
    encode_part(frames, np.array(info.pts[4:8]), info, part, LOSSLESS)
    part_info = probe(part)
    assert part_info.bit_depth == 16
    np.testing.assert_array_equal(decode_all(part, part_info).frames, frames)


def test_ten_bit_source_keeps_ten_bits(clip: Callable[[str], Path], tmp_path: Path) -> None:
    info = probe(clip("tenbit.mp4"))
    frames = _smooth(info, 6)
    part = tmp_path / "part.mp4"
    encode_part(frames, np.array(info.pts[:6]), info, part, FAST)
    part_info = probe(part)
    assert (part_info.pix_fmt, part_info.bit_depth) == ("yuv420p10le", 10)
    assert psnr(decode_all(part, part_info).frames, frames) >= 38


def test_odd_size_uses_444_and_keeps_size(clip: Callable[[str], Path], tmp_path: Path) -> None:
    info = probe(clip("odd.mp4"))
    assert encoder_settings(info, FAST).pix_fmt == "yuv444p"
    even = dataclasses.replace(info, width=176, height=144)
    assert encoder_settings(even, FAST).pix_fmt == "yuv420p"
    frames = _smooth(info, 4)
    part = tmp_path / "part.mp4"
    encode_part(frames, np.array(info.pts[:4]), info, part, FAST)
    part_info = probe(part)
    assert (part_info.width, part_info.height, part_info.pix_fmt) == (175, 143, "yuv444p")
    assert psnr(decode_all(part, part_info).frames, frames) >= 38


def test_bad_input_is_refused(clip: Callable[[str], Path], tmp_path: Path) -> None:
    info = probe(clip("cfr.mp4"))
    good = np.zeros((2, 48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        encode_part(good.astype(np.uint16), np.array([0, 1]), info, tmp_path / "p.mp4", FAST)
    with pytest.raises(ValueError, match="48, 64"):
        encode_part(good[:, :, :32], np.array([0, 1]), info, tmp_path / "p.mp4", FAST)
    with pytest.raises(ValueError, match="increasing"):
        encode_part(good, np.array([1, 1]), info, tmp_path / "p.mp4", FAST)
    assert not list(tmp_path.iterdir()), "nothing is written for refused input"
    with pytest.raises(MediaError, match="cannot write"):
        encode_part(good, np.array([0, 1]), info, tmp_path / "missing" / "p.mp4", FAST)

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path


from nhance_batch.media import ColorInfo, StreamInfo, probe
from tests.media.conftest import CLIPS

REAL_CLIP = Path(__file__).resolve().parents[3] / "shared" / "videos" / "carphone.mp4"


def _demux_order_pts(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        return [p.pts for p in container.demux(video=0) if p.pts is not None]


def test_probe_cfr_clip(clip: Callable[[str], Path]) -> None:
    info = probe(clip("cfr.mp4"))
    assert info.container.split(",")[0] == "mov"
    assert (info.codec, info.width, info.height) == ("h264", 64, 48)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p", 8)
    assert info.frame_count == len(info.pts) == 30
    step = int(Fraction(1, 25) / info.time_base)
    assert info.pts == tuple(range(0, 30 * step, step))
    assert info.average_rate == 25
    assert info.rotation == 0 and info.display_matrix is None
    assert info.color == ColorInfo(primaries=1, transfer=1, matrix=1, range=1)
    assert info.other_streams == ()


def test_pts_are_sorted_from_b_frame_packets(clip: Callable[[str], Path]) -> None:
    path = clip("cfr.mp4")
    demuxed = _demux_order_pts(path)
    assert demuxed != sorted(demuxed), "the clip should have B-frames (packets out of order)"
    assert probe(path).pts == tuple(sorted(demuxed))


def test_probe_vfr_clip(clip: Callable[[str], Path]) -> None:
    info = probe(clip("vfr.mkv"))
    assert info.container.startswith("matroska")
    assert info.time_base == Fraction(1, 1000)
    assert info.pts == tuple(CLIPS["vfr.mkv"]["vfr_pts"])


def test_probe_streams_rotation_and_pickle(clip: Callable[[str], Path]) -> None:
    info = probe(clip("full.mp4"))
    assert info.rotation == 90
    assert info.display_matrix is not None and len(info.display_matrix) == 9
    kinds = [(s.kind, s.codec, s.language) for s in info.other_streams]
    assert kinds == [("audio", "aac", "eng"), ("audio", "aac", "fra"), ("subtitle", "mov_text", "eng")]
    assert all(isinstance(s, StreamInfo) and s.time_base for s in info.other_streams)
    assert pickle.loads(pickle.dumps(info)) == info


def test_probe_ten_bit(clip: Callable[[str], Path]) -> None:
    info = probe(clip("tenbit.mp4"))
    assert (info.pix_fmt, info.bit_depth, info.high_bit_depth) == ("yuv420p10le", 10, True)


def test_probe_non_ascii_name(clip: Callable[[str], Path], tmp_path: Path) -> None:
    path = tmp_path / "vidéo 日本.mp4"
    shutil.copy(clip("nob.mp4"), path)
    info = probe(path)
    assert info.path == str(path) and info.frame_count == 20


def test_probe_real_clip() -> None:
    info = probe(REAL_CLIP)
    assert (info.width, info.height, info.frame_count) == (176, 144, 120)
    assert info.pts == tuple(sorted(_demux_order_pts(REAL_CLIP)))

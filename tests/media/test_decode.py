from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nhance_batch.media import Chunk, MediaError, decode_all, decode_chunk, plan_chunks, probe

# (chunk_frames, overlap): N=1, K=0, K>N, N >= frame count, GOP-sized and odd sizes
PLANS = [(1, 0), (1, 2), (4, 9), (5, 0), (8, 3), (100, 2)]


@pytest.mark.parametrize("name", ["cfr.mp4", "longgop.mp4", "vfr.mp4", "vfr.mkv", "nob.mp4", "ntsc.mp4"])
@pytest.mark.parametrize(("n", "k"), PLANS)
def test_chunks_are_frame_exact(clip: Callable[[str], Path], name: str, n: int, k: int) -> None:
    path = clip(name)
    info = probe(path)
    full = decode_all(path, info)
    assert len(full) == info.frame_count
    assert full.pts.tolist() == list(info.pts)

    own_frames, own_pts = [], []
    for chunk in plan_chunks(info.frame_count, n, k):
        got = decode_chunk(path, info, chunk)
        assert got.pts.tolist() == list(info.pts[chunk.ctx_start : chunk.ctx_end])
        np.testing.assert_array_equal(got.frames, full.frames[chunk.ctx_start : chunk.ctx_end])
        own_frames.append(got.frames[chunk.lead : chunk.lead + chunk.size])
        own_pts.append(got.pts[chunk.lead : chunk.lead + chunk.size])
    np.testing.assert_array_equal(np.concatenate(own_frames), full.frames)
    np.testing.assert_array_equal(np.concatenate(own_pts), full.pts)


def test_decoded_frames_differ(clip: Callable[[str], Path]) -> None:
    path = clip("cfr.mp4")
    frames = decode_all(path, probe(path)).frames
    assert frames.dtype == np.uint8 and frames.shape == (30, 48, 64, 3)
    assert all((frames[i] != frames[i + 1]).any() for i in range(len(frames) - 1))


def test_ten_bit_decodes_to_uint16(clip: Callable[[str], Path]) -> None:
    path = clip("tenbit.mp4")
    info = probe(path)
    got = decode_chunk(path, info, Chunk(0, 3, 9, 1, 11))
    assert got.frames.dtype == np.uint16 and got.frames.shape == (10, 144, 176, 3)
    assert got.frames.max() > 255  # full 16-bit scale, not 10-bit values
    np.testing.assert_array_equal(got.frames, decode_all(path, info).frames[1:11])


def test_chunk_outside_video(clip: Callable[[str], Path]) -> None:
    path = clip("nob.mp4")
    info = probe(path)
    with pytest.raises(MediaError, match="20"):
        decode_chunk(path, info, Chunk(0, 15, 21, 15, 21))
    with pytest.raises(ValueError):
        decode_chunk(path, info, Chunk(0, 5, 3, 5, 3))

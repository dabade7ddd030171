"""Streaming upright frames: every frame, chosen frames with seeks over long gaps."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analysis.helpers import read_frames
from tests.media.makemedia import make_video


@pytest.mark.parametrize("gop", [5, 40])
def test_chosen_frames_equal_a_straight_decode(tmp_path, monkeypatch, gop):
    from nhance_batch.analysis import frames as frames_module
    from nhance_batch.analysis.frames import iter_frames
    from nhance_batch.media.probe import probe

    path = make_video(tmp_path / "clip.mp4", width=64, height=48, frames=30, gop=gop)
    info = probe(path)
    every = list(iter_frames(str(path), info))
    assert [i for i, _, _ in every] == list(range(30))
    assert [p for _, p, _ in every] == list(info.pts)
    monkeypatch.setattr(frames_module, "SEEK_GAP_FRAMES", 3)  # seek between most picks
    wanted = [29, 2, 3, 11, 12, 20, 0]
    picked = list(iter_frames(str(path), info, wanted))
    assert [i for i, _, _ in picked] == sorted(wanted)
    for i, _, frame in picked:
        assert np.array_equal(frame, every[i][2]), i
    reference, _ = read_frames(path)  # PyAV's own decode, no colour tags: close, not equal
    assert np.abs(every[7][2].astype(int) - reference[7].astype(int)).mean() < 4
    with pytest.raises(ValueError):
        list(iter_frames(str(path), info, [30]))

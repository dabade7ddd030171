"""Stills: the frame shown at a time, upright, as PNG."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

from tests.analysis.helpers import flat, write_video


def test_frame_at_picks_the_frame_shown_at_t(tmp_path):
    from nhance_batch.analysis.stills import frame_at, png_bytes

    pts = [0, 100, 150, 600, 1000]  # ms, variable frame rate
    frames = [flat(20 + 40 * i, 32, 24) for i in range(5)]
    path = write_video(tmp_path / "vfr.mkv", frames, pts, time_base=Fraction(1, 1000),
                       rotation=90)
    for t, index in ((0.0, 0), (0.099, 0), (0.1, 1), (0.3, 2), (0.6, 3), (0.99, 3), (5.0, 4)):
        got = frame_at(str(path), t)
        assert got.shape == (32, 24, 3)  # upright
        assert abs(int(got.mean()) - (20 + 40 * index)) <= 1, (t, got.mean())
    from PIL import Image

    image = Image.open(io.BytesIO(png_bytes(frame_at(str(path), 0.3))))
    assert image.format == "PNG" and image.size == (24, 32)
    assert abs(np.asarray(image).mean() - 100) <= 1

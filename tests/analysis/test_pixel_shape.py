"""Non-square pixels (a sample aspect ratio) are shown square in previews, comparisons and
stills; metrics keep the coded pixels."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from nhance_batch.analysis.compare import render_compare
from nhance_batch.analysis.frames import display_size, iter_frames
from nhance_batch.analysis.preview import render_preview
from nhance_batch.analysis.stills import frame_at
from nhance_batch.media import probe
from tests.media.makemedia import make_video

SAR = Fraction(128, 117)


def wide_pixels(path: Path, **kwargs) -> Path:
    return make_video(path, width=64, height=48, frames=6, gop=3, sar=SAR, **kwargs)


def test_display_size_makes_pixels_square(tmp_path: Path) -> None:
    info = probe(wide_pixels(tmp_path / "w.mp4"))
    assert info.sample_aspect_ratio == SAR
    assert display_size(info) == (64, 48)  # coded pixels unless asked
    assert display_size(info, SAR) == (70, 48)  # 64 * 128 / 117 = 70.0
    rotated = probe(wide_pixels(tmp_path / "r.mp4", rotation=90))
    assert display_size(rotated, SAR) == (48, 70)


def test_stills_previews_and_comparisons_show_square_pixels(tmp_path: Path) -> None:
    src = wide_pixels(tmp_path / "w.mp4")
    info = probe(src)
    still = frame_at(src, 0.0)
    assert still.shape == (48, 70, 3)
    coded = next(iter_frames(src, info))[2]
    # the resampled picture is the coded one stretched: column means follow the same curve
    np.testing.assert_allclose(still.mean(axis=(0, 2))[::10],
                               np.interp(np.arange(70)[::10] * 64 / 70, np.arange(64),
                                         coded.mean(axis=(0, 2))), atol=6)
    render_preview(str(src), str(tmp_path / "p.mp4"))
    preview = probe(tmp_path / "p.mp4")
    assert (preview.width, preview.height, preview.sample_aspect_ratio) == (70, 48, None)
    render_compare(str(src), str(src), str(tmp_path / "c.mp4"), mode="side-by-side")
    compare = probe(tmp_path / "c.mp4")
    assert (compare.width, compare.height) == (140, 48)


def test_a_comparison_lines_up_with_an_output_that_lost_its_pixel_shape(tmp_path) -> None:
    src = wide_pixels(tmp_path / "w.mp4")
    square = make_video(tmp_path / "s.mp4", width=64, height=48, frames=6, gop=3)
    render_compare(str(src), str(square), str(tmp_path / "c.mp4"), mode="split")
    assert (probe(tmp_path / "c.mp4").width, probe(tmp_path / "c.mp4").height) == (70, 48)

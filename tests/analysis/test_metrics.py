"""Metrics on synthetic frames with known values, and sampling of whole videos."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from tests.analysis.helpers import flat, write_video


def test_flat_grey_frame():
    from nhance_batch.analysis.metrics import frame_metrics

    m = frame_metrics(flat(128, 176, 144))
    assert m["luminance"] == pytest.approx(128 / 255, abs=1e-4)
    for name in ("contrast", "colourfulness", "noise", "sharpness", "clipped_highlights",
                 "crushed_shadows"):
        assert m[name] == pytest.approx(0.0, abs=1e-6), name


def test_known_noise_sigma_is_recovered():
    from nhance_batch.analysis.metrics import frame_metrics, noise_sigma

    rng = np.random.default_rng(7)
    for sigma in (0.01, 0.03, 0.08):
        grey = 0.5 + rng.normal(0.0, sigma, size=(288, 352))
        frame = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
        m = frame_metrics(frame)
        assert m["noise"] == pytest.approx(sigma, rel=0.05)
        assert m["contrast"] == pytest.approx(sigma, rel=0.05)
    # a smooth ramp has no noise: the estimator ignores picture structure of that kind
    ramp = np.repeat(np.linspace(0, 1, 352)[None, :], 288, axis=0)
    assert noise_sigma(ramp) < 1e-3


def test_colourfulness_contrast_sharpness_and_clipping_known_values():
    from nhance_batch.analysis.metrics import frame_metrics

    half = np.zeros((100, 100, 3), dtype=np.uint8)
    half[:, :50, 0] = 255  # red | green
    half[:, 50:, 1] = 255
    # rg = +-255 (mean 0, sd 255), yb = 127.5 everywhere: 255 + 0.3 * 127.5
    assert frame_metrics(half)["colourfulness"] == pytest.approx(293.25, rel=1e-4)

    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    board = np.repeat(checker[..., None], 3, axis=2)
    m = frame_metrics(board)
    assert m["sharpness"] == pytest.approx(16.0, rel=1e-4)  # Laplacian +-4 everywhere
    assert m["contrast"] == pytest.approx(0.5, rel=1e-4)
    assert m["clipped_highlights"] == pytest.approx(0.5)
    assert m["crushed_shadows"] == pytest.approx(0.5)

    quarter = flat(128, 40, 40)
    quarter[:20, :20] = 255
    quarter[30:, :] = 0
    m = frame_metrics(quarter)
    assert m["clipped_highlights"] == pytest.approx(0.25)
    assert m["crushed_shadows"] == pytest.approx(0.25)


def test_sampling_every_second_at_most_max_frames():
    from nhance_batch.analysis.metrics import sample_indices

    times = np.arange(250) / 25.0  # 10 s at 25 fps
    assert sample_indices(times, 1.0, 64) == [0, 25, 50, 75, 100, 125, 150, 175, 200, 225]
    assert sample_indices(times, 1.0, 3) == [0, 100, 225]  # spread over the 10 candidates
    vfr = np.array([0.0, 0.4, 1.3, 1.9, 2.0, 3.5])
    assert sample_indices(vfr, 1.0, 64) == [0, 2, 4, 5]


def test_video_metrics_of_a_dark_and_a_bright_clip(tmp_path):
    from nhance_batch.analysis.metrics import video_metrics

    tb = Fraction(1, 10)
    rng = np.random.default_rng(1)
    dark = [np.clip(30 + rng.normal(0, 4, (48, 64, 3)), 0, 255).astype(np.uint8)
            for _ in range(25)]
    bright = [np.clip(2.5 * f.astype(np.float32), 0, 255).astype(np.uint8) for f in dark]
    before = write_video(tmp_path / "dark.mkv", dark, range(25), time_base=tb)
    after = write_video(tmp_path / "bright.mkv", bright, range(25), time_base=tb)
    m = video_metrics(str(before), str(after))
    assert m["samples"] == 3 and m["sample_times"] == [0.0, 1.0, 2.0]
    assert m["low_light"] is True
    assert m["before"]["luminance"] == pytest.approx(30 / 255, abs=0.01)
    assert m["change"]["luminance_gain"] == pytest.approx(2.5, rel=0.03)
    assert m["change"]["noise_amplification"] == pytest.approx(2.5, rel=0.15)
    assert m["noise_estimator"] == "immerkaer-highpass-mean-abs"
    assert sum(m["histogram"]["before"]) == pytest.approx(1.0)
    assert np.argmax(m["histogram"]["after"]) > np.argmax(m["histogram"]["before"])
    import json

    json.dumps(m)  # JSON-able
    m2 = video_metrics(str(after), str(after), max_frames=2)
    assert m2["low_light"] is False and m2["samples"] == 2
    assert m2["change"]["luminance_gain"] == pytest.approx(1.0)

    short = write_video(tmp_path / "short.mkv", dark[:5], range(5), time_base=tb)
    with pytest.raises(ValueError, match="frame counts differ"):
        video_metrics(str(before), str(short))


def test_memory_stays_about_one_frame(tmp_path):
    """Streamed: measuring 120 frames holds about one frame's arrays, not all of them."""
    import tracemalloc

    from nhance_batch.analysis.metrics import video_metrics

    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (144, 176, 3), dtype=np.uint8) for _ in range(120)]
    clip = write_video(tmp_path / "long.mkv", frames, range(120), time_base=Fraction(1, 25))
    del frames
    video_metrics(str(clip), str(clip), max_frames=2)  # imports and first-use caches first
    tracemalloc.start()
    try:
        m = video_metrics(str(clip), str(clip), every_s=0.01, max_frames=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m["samples"] == 120
    all_frames = 120 * 144 * 176 * 3
    assert peak < all_frames / 4, peak  # one frame's float copies are ~1.2 MB; all frames 9 MB

"""Comparison videos: split, swipe and side-by-side, timestamps, audio, rotation, sizes."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from tests.analysis.helpers import flat, psnr, read_frames, video_format, write_video
from tests.media.conftest import packet_bytes
from tests.media.makemedia import make_video

LABEL_ROWS = 24  # labels sit in the top rows; sides are compared below them
DIVIDER_MARGIN = 4


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """BEFORE: x264 clip with audio; AFTER: its frames inverted, lossless FFV1 in Matroska."""
    folder = tmp_path_factory.mktemp("pair")
    before = make_video(folder / "before.mp4", width=176, height=144, frames=12, gop=6,
                        audio_tracks=1)
    frames, times = read_frames(before)
    pts = [round(t * 1000) for t in times]
    after = write_video(folder / "after.mkv", [255 - f for f in frames], pts,
                        time_base=Fraction(1, 1000))
    return before, after


def test_split_left_is_before_right_is_after(pair, tmp_path):
    from nhance_batch.analysis.compare import render_compare

    before, after = pair
    out = tmp_path / "split.mp4"
    render_compare(str(before), str(after), str(out), mode="split", position=0.5)
    got, _ = read_frames(out)
    want_before, _ = read_frames(before)
    want_after, _ = read_frames(after)
    assert len(got) == len(want_before) == 12
    half = 176 // 2
    left = np.s_[LABEL_ROWS:, : half - DIVIDER_MARGIN]
    right = np.s_[LABEL_ROWS:, half + DIVIDER_MARGIN:]
    for frame, b, a in zip(got, want_before, want_after, strict=True):
        assert psnr(frame[left], b[left]) >= 35
        assert psnr(frame[right], a[right]) >= 35
        assert psnr(frame[left], a[left]) < 20  # the sides really differ
    # the divider: the two columns at the middle are white
    assert got[0][LABEL_ROWS:, half - 1: half + 1].mean() > 240


def test_swipe_divider_left_at_start_right_at_half_period(tmp_path):
    from nhance_batch.analysis.compare import render_compare

    pts = list(range(21))  # 20 fps: frame 10 is at t = 0.5 s
    tb = Fraction(1, 20)
    before = write_video(tmp_path / "b.mkv", [flat(40, 64, 48)] * 21, pts, time_base=tb)
    after = write_video(tmp_path / "a.mkv", [flat(90, 64, 48)] * 21, pts, time_base=tb)
    out = tmp_path / "swipe.mp4"
    render_compare(str(before), str(after), str(out), mode="swipe", period=1.0, labels=False)
    frames, times = read_frames(out)
    assert times[10] == pytest.approx(0.5)

    def divider(frame):
        return np.flatnonzero(frame[:, :, 1].mean(axis=0) > 200).tolist()

    assert divider(frames[0]) == [0, 1]
    assert divider(frames[10]) == [62, 63]
    assert divider(frames[20]) == [0, 1]  # back at the left edge after a whole period
    quarter = divider(frames[5])
    assert quarter and abs(np.mean(quarter) - 31.5) <= 1
    # before is left of the divider at the quarter: dark left, brighter right
    assert frames[5][:, :20, 1].mean() < 60 < frames[5][:, 44:, 1].mean()


def test_timestamps_frames_and_audio_follow_after_and_before(tmp_path):
    from nhance_batch.analysis.compare import render_compare

    vfr = [0, 40, 80, 200, 210, 220, 400, 433, 466, 500, 700, 710, 760, 800]
    before = make_video(tmp_path / "before.mp4", width=64, height=48, frames=len(vfr),
                        time_base=Fraction(1, 1000), vfr_pts=vfr, gop=5, audio_tracks=1)
    frames, _ = read_frames(before)
    # AFTER in another time base (1/90000): the comparison must carry AFTER's timestamps
    after_pts = [p * 90 for p in vfr]
    after = write_video(tmp_path / "after.mkv", frames, after_pts, time_base=Fraction(1, 90000),
                        container="nut")
    for mode in ("split", "swipe", "side-by-side"):
        out = tmp_path / f"{mode}.mp4"
        render_compare(str(before), str(after), str(out), mode=mode)
        got, times = read_frames(out)
        assert len(got) == len(vfr)
        assert times == pytest.approx([p / 1000 for p in vfr], abs=1e-6)
        assert packet_bytes(out, ("audio",)) == packet_bytes(before, ("audio",))
        fmt = video_format(out)
        assert (fmt["codec"], fmt["pix_fmt"]) == ("h264", "yuv420p")
        assert fmt["width"] == (128 if mode == "side-by-side" else 64)
        data = out.read_bytes()
        assert data.find(b"moov") < data.find(b"mdat")  # faststart


def test_rotation_is_applied_to_both_sides(tmp_path):
    from nhance_batch.analysis.compare import render_compare

    # BEFORE is coded 176x144 with a 90-degree display rotation: shown 144x176, turned
    # counter-clockwise (FFmpeg's transpose=cclock for this display matrix).
    before = make_video(tmp_path / "rot.mp4", width=176, height=144, frames=6, rotation=90,
                        gop=3)
    coded, times = read_frames(before)
    upright = [np.ascontiguousarray(np.rot90(f, 1)) for f in coded]
    after = write_video(tmp_path / "upright.mkv", [255 - f for f in upright],
                        [round(t * 1000) for t in times], time_base=Fraction(1, 1000))
    out = tmp_path / "sbs.mp4"
    render_compare(str(before), str(after), str(out), mode="side-by-side", labels=False)
    got, _ = read_frames(out)
    assert got[0].shape == (176, 288, 3)
    for frame, b, a in zip(got, upright, [255 - f for f in upright], strict=True):
        assert psnr(frame[:, :144], b) >= 35
        assert psnr(frame[:, 144:], a) >= 35
        assert psnr(frame[:, :144], np.rot90(b, 2)) < 30  # a wrong turn would not pass


def test_odd_sizes_are_padded_even(tmp_path):
    from nhance_batch.analysis.compare import render_compare

    frames = [flat(100, 45, 33)] * 3
    a = write_video(tmp_path / "a.mkv", frames, [0, 1, 2], time_base=Fraction(1, 25))
    out = tmp_path / "odd.mp4"
    render_compare(str(a), str(a), str(out))
    fmt = video_format(out)
    assert (fmt["width"], fmt["height"], fmt["pix_fmt"]) == (46, 34, "yuv420p")


def test_mismatches_exit_2_with_the_reason(tmp_path):
    from nhance_batch.cli import cli

    tb = Fraction(1, 25)
    small = write_video(tmp_path / "small.mkv", [flat(50, 64, 48)] * 4, range(4), time_base=tb)
    big = write_video(tmp_path / "big.mkv", [flat(50, 80, 48)] * 4, range(4), time_base=tb)
    short = write_video(tmp_path / "short.mkv", [flat(50, 64, 48)] * 3, range(3), time_base=tb)
    runner = CliRunner()
    result = runner.invoke(cli, ["compare", str(small), str(big), str(tmp_path / "x.mp4")])
    assert result.exit_code == 2, result.output
    assert "sizes differ" in result.output and "64x48" in result.output and "80x48" in result.output
    result = runner.invoke(cli, ["compare", str(small), str(short), str(tmp_path / "y.mp4")])
    assert result.exit_code == 2
    assert "frame counts differ" in result.output
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()
    ok = runner.invoke(cli, ["compare", str(small), str(small), str(tmp_path / "z.mp4"),
                             "--mode", "side-by-side", "--no-labels"])
    assert ok.exit_code == 0, ok.output
    assert video_format(tmp_path / "z.mp4")["width"] == 128


def test_swipe_position_function():
    from nhance_batch.analysis.compare import swipe_position

    assert swipe_position(0.0, 4.0) == 0.0
    assert swipe_position(2.0, 4.0) == 1.0
    assert swipe_position(1.0, 4.0) == pytest.approx(0.5)
    assert swipe_position(4.0, 4.0) == pytest.approx(0.0)
    assert swipe_position(7.0, 4.0) == pytest.approx(0.5)


def test_audio_browsers_cannot_play_is_reencoded_to_aac(tmp_path):
    """PCM in Matroska: copying it into the MP4 would make a file browsers refuse."""
    import av

    from nhance_batch.analysis.compare import render_compare

    source = tmp_path / "pcm.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "bgr0"
        audio = out.add_stream("pcm_s16le", rate=48000)
        audio.layout = "mono"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(flat(20 * i, 64, 48), format="rgb24")
            frame = frame.reformat(format="bgr0")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(48000 * 10 // 25) / 48000
        samples = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None, :]
        tone = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        tone.sample_rate, tone.pts = 48000, 0
        out.mux(audio.encode(tone))
        out.mux(audio.encode(None))
    out_path = tmp_path / "cmp.mp4"
    render_compare(str(source), str(source), str(out_path))
    with av.open(str(out_path)) as result:
        stream = result.streams.audio[0]
        assert stream.codec_context.name == "aac"
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in result.decode(stream)])
    assert len(decoded) >= samples.shape[1]
    assert decoded.std() > 0.1  # the tone, not silence (float samples, amplitude 0.24)
    assert video_format(out_path)["frames"] == 10

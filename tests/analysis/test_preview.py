"""Previews: H.264 yuv420p MP4 that browsers play, with the source's frames, times and audio."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from tests.analysis.helpers import psnr, read_frames, video_format, write_video
from tests.media.conftest import packet_bytes
from tests.media.makemedia import make_video


def test_lossless_odd_sized_output_gets_a_browser_preview(tmp_path):
    from nhance_batch.analysis.preview import render_preview

    vfr = [0, 33, 50, 100, 180, 200, 233, 300, 400, 410]
    source = make_video(tmp_path / "source.mp4", width=175, height=143, frames=len(vfr),
                        pix_fmt="yuv444p", time_base=Fraction(1, 1000), vfr_pts=vfr, gop=4,
                        audio_tracks=1)
    frames, _ = read_frames(source)
    lossless = write_video(tmp_path / "enhanced.mkv", frames, vfr, time_base=Fraction(1, 1000))
    assert video_format(lossless)["codec"] == "ffv1"
    out = tmp_path / "preview.mp4"
    render_preview(str(lossless), str(out), audio_from=str(source))
    fmt = video_format(out)
    assert fmt["codec"] == "h264" and fmt["pix_fmt"] == "yuv420p"
    assert (fmt["width"], fmt["height"]) == (176, 144)
    assert fmt["frames"] == len(vfr)
    got, times = read_frames(out)
    assert times == pytest.approx([p / 1000 for p in vfr], abs=1e-6)
    for g, f in zip(got, frames, strict=True):
        assert psnr(g[:143, :175], f) >= 35
    assert packet_bytes(out, ("audio",)) == packet_bytes(source, ("audio",))
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")


def test_ten_bit_rotated_output_preview(tmp_path):
    from nhance_batch.analysis.preview import render_preview

    source = make_video(tmp_path / "ten.mp4", width=176, height=144, frames=8,
                        pix_fmt="yuv420p10le", gop=4, rotation=270, audio_tracks=1)
    assert video_format(source)["pix_fmt"] == "yuv420p10le"
    out = tmp_path / "preview.mp4"
    render_preview(str(source), str(out))  # audio from the video itself
    fmt = video_format(out)
    assert (fmt["codec"], fmt["pix_fmt"], fmt["frames"]) == ("h264", "yuv420p", 8)
    assert (fmt["width"], fmt["height"]) == (144, 176)  # upright
    assert packet_bytes(out, ("audio",)) == packet_bytes(source, ("audio",))
    import av

    with av.open(str(source)) as c:
        coded = next(c.decode(video=0)).to_ndarray(format="rgb24")
    got, _ = read_frames(out)
    # rotation 270 (clockwise display): FFmpeg's transpose=clock
    assert psnr(got[0], np.ascontiguousarray(np.rot90(coded, -1))) >= 35

"""The per-video work after assembly: metrics and preview, and failures as notes."""

from __future__ import annotations

from fractions import Fraction

from tests.analysis.helpers import read_frames, video_format, write_video
from tests.media.makemedia import make_video


def test_metrics_and_preview_of_an_assembled_output(tmp_path):
    from nhance_batch.analysis.extras import video_extras

    source = make_video(tmp_path / "src.mp4", width=64, height=48, frames=8, gop=4,
                        audio_tracks=1)
    frames, times = read_frames(source)
    output = write_video(tmp_path / "out.mkv", frames, [round(t * 1000) for t in times],
                         time_base=Fraction(1, 1000))
    dest = tmp_path / "job" / "_nhance" / "preview" / "src.mp4"
    extras = video_extras(str(source), str(output), preview_dest=str(dest))
    assert extras.note is None
    assert extras.preview == str(dest)
    assert video_format(dest)["codec"] == "h264" and video_format(dest)["frames"] == 8
    assert extras.metrics["samples"] == 1 and extras.metrics["low_light"] is False
    assert 0.3 < extras.metrics["before"]["luminance"] < 0.7


def test_failures_become_notes(tmp_path):
    from nhance_batch.analysis.extras import video_extras

    source = make_video(tmp_path / "src.mp4", width=64, height=48, frames=8, gop=4)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    extras = video_extras(str(source), str(broken), preview_dest=str(tmp_path / "p.mp4"))
    assert extras.metrics is None and extras.preview is None
    assert "metrics not measured" in extras.note and "no preview" in extras.note
    assert not (tmp_path / "p.mp4").exists()

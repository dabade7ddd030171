"""Phone-shaped media end to end through the sequential executor: the codec, the size ratio
and the notes in the summary and in ``status --json``; a damaged recording done with a note,
or failed under ``strict``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from nhance_batch.config import run_config
from nhance_batch.pipeline.driver import run_job
from nhance_batch.state.status import status_document
from tests.media.makemedia import make_video, truncate
from tests.media.test_phone import APPLE, phone_mov


def run(source: Path, output: Path, **settings):
    config = run_config(str(source), str(output), chunk_frames=6, **settings)
    summary = run_job(config, executor="sequential")
    return summary, status_document(str(output))


def test_a_phone_mov_comes_out_as_hevc_with_everything_kept(tmp_path: Path) -> None:
    src = phone_mov(tmp_path / "in" / "phone.mov")
    summary, status = run(src, tmp_path / "out")
    video = summary.videos[0]
    assert (video.status, video.output_codec, video.note) == ("done", "libx265", None)
    assert video.size_ratio == round((tmp_path / "out" / "phone.mov").stat().st_size
                                     / src.stat().st_size, 3)
    row = status["videos"][0]
    assert (row["output_codec"], row["size_ratio"]) == ("libx265", video.size_ratio)
    with av.open(str(tmp_path / "out" / "phone.mov")) as out:
        v = out.streams.video[0]
        assert (v.codec_tag, v.sample_aspect_ratio) == ("hvc1", Fraction(128, 117))
        assert v.metadata["timecode"] == "01:02:03:04"
        assert {k: out.metadata.get(k) for k in APPLE} == APPLE
        assert [s.type for s in out.streams] == ["video", "audio", "data"]


def test_a_stream_the_output_cannot_carry_is_named_in_the_notes(tmp_path: Path) -> None:
    src = phone_mov(tmp_path / "in" / "phone.mov")
    summary, status = run(src, tmp_path / "out", lossless=True)  # FFV1: Matroska
    note = "data stream #2 (TimeCodeHandler) dropped: matroska cannot carry it"
    assert summary.videos[0].status == "done" and note in summary.videos[0].note
    assert note in status["videos"][0]["note"]
    assert summary.videos[0].output_codec == "ffv1"


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cut")
    whole = make_video(folder / "whole.mp4", width=64, height=48, frames=30, gop=10,
                       faststart=True)
    (folder / "in").mkdir()
    return truncate(whole, folder / "in" / "cut.mp4", 600)


def test_a_damaged_recording_is_done_with_a_note_in_seconds(cut_clip, tmp_path) -> None:
    summary, status = run(cut_clip, tmp_path / "out")
    video = summary.videos[0]
    assert video.status == "done" and video.frames == 22
    assert "damaged recording: frames from 0.840 s to 1.200 s (its end) do not decode" \
        in video.note
    assert status["videos"][0]["note"] == video.note
    with av.open(str(tmp_path / "out" / "cut.mp4")) as out:
        assert sum(1 for _ in out.decode(video=0)) == 22


def test_strict_fails_a_damaged_recording(cut_clip, tmp_path) -> None:
    summary, _ = run(cut_clip, tmp_path / "out", strict=True)
    video = summary.videos[0]
    assert video.status == "failed" and "strict" in video.error and "0.840 s" in video.error
    assert not (tmp_path / "out" / "cut.mp4").exists()

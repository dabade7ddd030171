"""Chunks sized by time, progress within chunks, and what a resume keeps and says (issue 23)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from nhance_batch.config import ChunkConfig, EncodeConfig, RunConfig
from nhance_batch.state.jobstate import read_manifest
from nhance_batch.state.manifest import DONE
from tests.media.makemedia import make_video
from tests.pipeline.test_resume import StopAfter, run_sequential


def calibrated(monkeypatch, tmp_path, mpx_s: float) -> None:
    """This machine's calibration cache says the enhancer runs ``mpx_s`` megapixels/s."""
    from nhance_batch.estimate.calibration import _cpu_model

    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    machine = {"host": socket.gethostname(), "cpu": _cpu_model(), "cores": os.cpu_count(),
               "gpu": None, "model": "iphone", "precision": "float32"}
    entry = {"machine": machine, "enhance_mpx_s": mpx_s, "gpu": False,
             "measured_at": "2026-01-01T00:00:00+00:00"}
    (cache / "calibration.json").write_text(json.dumps({"k": entry}))
    monkeypatch.setenv("NHANCE_CACHE", str(cache))


def timed_config(inp, out, seconds: float) -> RunConfig:
    return RunConfig(input=str(inp), output=str(out),
                     chunk=ChunkConfig(chunk_seconds=seconds, overlap=2),
                     encode=EncodeConfig(lossless=True), temporal_radius=2)


def test_chunks_are_sized_by_the_calibrated_rate(monkeypatch, tmp_path):
    from nhance_batch.config import ModelConfig
    from nhance_batch.estimate.known_rate import known_enhancer_rate

    calibrated(monkeypatch, tmp_path, 0.1)
    rate = known_enhancer_rate(ModelConfig())
    assert rate.mpx_s == 0.1 and "calibration" in rate.source
    assert known_enhancer_rate(ModelConfig(), cpu_workers=2).mpx_s == 0.05
    assert known_enhancer_rate(ModelConfig(precision="bfloat16")).source.startswith("assumed")
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=80, gop=8)
    # 0.1 Mpx/s at 64x48: 32.6 frames a second; 1.5 s of work is 48 frames, 44 of them own
    summary, _ = run_sequential(timed_config(tmp_path / "in", tmp_path / "out", 1.5))
    assert summary.exit_code == 0
    video = read_manifest(str(tmp_path / "out" / "_nhance" / "manifest.parquet")).videos[0]
    assert video.chunk_frames == 44 and len(video.chunks) == 2


def test_a_resume_keeps_the_recorded_plan_when_the_rate_changed(monkeypatch, tmp_path):
    calibrated(monkeypatch, tmp_path, 0.1)
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=90, gop=8)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sequential(timed_config(tmp_path / "in", out, 1.0), reporter=StopAfter(1))
    first = read_manifest(str(out / "_nhance" / "manifest.parquet")).videos[0]
    assert first.chunk_frames == 28 and len(first.chunks) == 4  # the 27-frame context bound
    assert [c.status for c in first.chunks].count(DONE) == 1
    calibrated(monkeypatch, tmp_path, 10.0)  # now 100x faster: 1 s would be all 90 frames
    summary, submitted = run_sequential(timed_config(tmp_path / "in", out, 1.0))
    assert summary.exit_code == 0
    assert (summary.chunks_skipped, summary.chunks_computed) == (1, 3)
    again = read_manifest(str(out / "_nhance" / "manifest.parquet")).videos[0]
    assert [(c.start, c.end) for c in again.chunks] == [(c.start, c.end) for c in first.chunks]

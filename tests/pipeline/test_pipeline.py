"""The real pipeline (probe, chunked decode, DPED, temporal, encode, assemble) on Ray and in
the sequential executor, on made-up clips with audio, VFR, rotation, odd sizes and broken
files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from nhance_batch.config import ChunkConfig, ClusterConfig, EncodeConfig, RunConfig
from nhance_batch.pipeline.driver import Driver
from nhance_batch.pipeline.executor import SequentialExecutor
from tests.pipeline.conftest import (assert_plays_like, copy_clip, enhance_directly,
                                     frames_and_times, make_broken)

LOSSLESS = EncodeConfig(lossless=True)


def run_job(input_spec, output, *, chunk, overlap, radius, executor="ray", workers=1,
            encode=LOSSLESS):
    config = RunConfig(input=str(input_spec), output=str(output),
                       chunk=ChunkConfig(chunk_frames=chunk, overlap=overlap),
                       encode=encode, cluster=ClusterConfig(workers=workers),
                       temporal_radius=radius)
    if executor == "ray":
        from nhance_batch.pipeline.ray_executor import RayExecutor

        ex = RayExecutor(config.model, config.cluster)
    else:
        ex = SequentialExecutor(config.model)
    try:
        return Driver.for_config(config).run(ex)
    finally:
        ex.shutdown()


def test_chunked_run_equals_single_chunk_run(local_ray, clips, tmp_path):
    src = copy_clip(clips["plain"], tmp_path / "in" / "plain.mp4")
    chunked = run_job(src, tmp_path / "chunked", chunk=7, overlap=3, radius=3)
    single = run_job(src, tmp_path / "single", chunk=1000, overlap=3, radius=3)
    assert chunked.exit_code == single.exit_code == 0
    assert chunked.chunks_computed == 4 and single.chunks_computed == 1
    a, times_a = frames_and_times(tmp_path / "chunked" / "plain.mp4")
    b, times_b = frames_and_times(tmp_path / "single" / "plain.mp4")
    assert a.shape == (24, 48, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert times_a == times_b
    assert_plays_like(src, tmp_path / "chunked" / "plain.mp4")
    # the stabilisation did act: the output is not the per-frame enhancer output
    source_frames, _ = frames_and_times(src)
    assert not np.array_equal(a, enhance_directly(source_frames))


def test_radius_zero_equals_the_enhancer_frame_by_frame(local_ray, clips, tmp_path):
    src = copy_clip(clips["audio"], tmp_path / "in" / "audio.mp4")
    summary = run_job(src, tmp_path / "out", chunk=5, overlap=0, radius=0)
    assert summary.exit_code == 0
    out, _ = frames_and_times(tmp_path / "out" / "audio.mp4")
    source_frames, _ = frames_and_times(src)
    np.testing.assert_array_equal(out, enhance_directly(source_frames))
    assert_plays_like(src, tmp_path / "out" / "audio.mp4")


def test_sequential_executor_matches_ray(local_ray, clips, tmp_path):
    src = copy_clip(clips["odd"], tmp_path / "in" / "odd.mp4")
    ray_summary = run_job(src, tmp_path / "ray", chunk=4, overlap=2, radius=2)
    seq_summary = run_job(src, tmp_path / "seq", chunk=4, overlap=2, radius=2,
                          executor="sequential")
    assert ray_summary.exit_code == seq_summary.exit_code == 0
    a, _ = frames_and_times(tmp_path / "ray" / "odd.mp4")
    b, _ = frames_and_times(tmp_path / "seq" / "odd.mp4")
    assert a.shape == (9, 27, 35, 3)
    np.testing.assert_array_equal(a, b)


def test_cli_batch_with_broken_files(clips, tmp_path):
    """The CLI on a folder (nested, with audio, VFR, rotation, odd size) plus broken files:
    good outputs complete and verify, each broken file is reported, exit code 1."""
    inp = tmp_path / "in"
    good = {
        "audio.mp4": copy_clip(clips["audio"], inp / "audio.mp4"),
        "sub/vfr.mkv": copy_clip(clips["vfr"], inp / "sub" / "vfr.mkv"),
        "sub/deeper/rotated.mp4": copy_clip(clips["rotated"], inp / "sub" / "deeper" /
                                            "rotated.mp4"),
        "odd.mp4": copy_clip(clips["odd"], inp / "odd.mp4"),
    }
    broken = make_broken(inp / "broken", clips["audio"])
    (inp / "readme.txt").write_text("not a video name: ignored")
    out = tmp_path / "out"
    summary_path = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-m", "nhance_batch", "run", str(inp), str(out), "--chunk-frames", "5",
         "--overlap", "2", "--temporal-radius", "2", "--workers", "1",
         "--summary-json", str(summary_path)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    by_input = {v["input"]: v for v in summary["videos"]}
    assert len(by_input) == 8
    for rel, src in good.items():
        video = by_input[str(src)]
        assert video["status"] == "done", video
        assert video["added_flicker"] is not None and video["frames"] > 0
        assert_plays_like(src, out / rel)
    for kind, path in broken.items():
        video = by_input[str(path)]
        assert video["status"] == "failed" and str(path) in video["error"], (kind, video)
        assert not (out / "broken" / path.name).exists()
    assert "playlist" in by_input[str(broken["playlist"])]["error"].lower() or \
        "hls" in by_input[str(broken["playlist"])]["error"].lower()
    assert summary["failed"] == 4
    assert set(summary["stage_fps"]) == {"decode", "enhance", "encode"}
    assert all(v > 0 for v in summary["stage_fps"].values())
    assert "failed" in proc.stderr  # the printed summary

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
    from nhance_batch.model.autotune import cpu_name

    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    machine = {"host": socket.gethostname(), "cpu": cpu_name(), "cores": os.cpu_count(),
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
    from nhance_batch.rates import known_enhancer_rate

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


class Watching(StopAfter):
    """Records, at every refresh of the live line, (frames enhanced, frames committed, ETA)
    and what ``status --json`` says at that moment."""

    def __init__(self, out):
        super().__init__(10**9)
        self.out, self.seen, self.status = out, [], []

    def refresh(self) -> None:
        from nhance_batch.state.status import status_document

        self.seen.append((self.frames_enhanced, self.done, self.eta_s))
        if self.total and 0 < self.frames_enhanced < self.total and self.done == 0:
            self.status.append(status_document(str(self.out)))


def test_progress_moves_within_a_chunk_and_status_shows_it(monkeypatch, tmp_path):
    import nhance_batch.state.jobstate as jobstate

    monkeypatch.setattr(jobstate, "LIVE_INTERVAL_S", 0.0)
    calibrated(monkeypatch, tmp_path, 0.05)
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=24, gop=8)
    out = tmp_path / "out"
    config = RunConfig(input=str(tmp_path / "in"), output=str(out),
                       chunk=ChunkConfig(chunk_frames=24, overlap=2),
                       model={"batch_size": 2, "jit": "off"},
                       encode=EncodeConfig(lossless=True), temporal_radius=2)
    reporter = Watching(out)
    summary, _ = run_sequential(config, reporter=reporter)
    assert summary.exit_code == 0 and summary.chunks_computed == 1
    # one chunk, twelve passes: the enhanced count moves before the chunk is committed
    within = sorted({enhanced for enhanced, done, _ in reporter.seen if done == 0})
    assert len([n for n in within if 0 < n < 24]) >= 5
    # the ETA is known from the start (the calibrated rate), before any frame is enhanced
    assert all(eta is not None for _, _, eta in reporter.seen[1:])
    assert reporter.seen[-1][:2] == (24, 24)
    # status --json counts the frames enhanced in the chunk in flight
    assert reporter.status
    moving = [s["progress"] for s in reporter.status]
    assert all(p["frames_committed"] == 0 for p in moving)
    assert max(p["frames_done"] for p in moving) > 0
    assert all(s["eta_seconds"] is not None and s["driver_alive"] for s in reporter.status)
    assert summary.first_frame_seconds is not None and summary.first_frame_seconds > 0


def test_the_busy_share_counts_the_chunk_in_progress():
    from nhance_batch.pipeline.busy import BusyMeter

    now = [0.0]
    meter = BusyMeter(clock=lambda: now[0])
    meter.ready("a")
    now[0] = 10.0
    meter.add("a", 2.0)
    assert meter.snapshot()["overall"] == 0.2
    # 7 s into a chunk that has not come back: the share is not 20% but 90%
    assert meter.snapshot({"a": 7.0})["overall"] == 0.9


def test_the_eta_is_planned_first_then_measured():
    from nhance_batch.pipeline.pace import SETTLE_S, Pace

    now = [0.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.eta(100, planned=2.0) == (2.0, 50.0)  # nothing enhanced yet: the plan
    assert pace.eta(100, planned=None) == (None, None)
    now[0] = 5.0
    pace.note(10)
    for step in range(1, 40):
        now[0] = 5.0 + step
        pace.note(10 + 4 * step)  # the enhancer really runs 4 frames a second
    fps, eta = pace.eta(100, planned=2.0)
    assert now[0] - 5.0 >= SETTLE_S and fps == pytest.approx(4.0) and eta == pytest.approx(25.0)
    assert pace.first_frame_seconds() == 5.0


def test_a_killed_run_is_recorded_interrupted_and_the_takeover_says_what_it_found(tmp_path):
    from nhance_batch.state.manifest import RUNNING, load_manifest, save_manifest
    from tests.pipeline.test_resume import config_for, status_json

    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=12, gop=4)
    make_video(tmp_path / "in" / "b.mp4", width=64, height=48, frames=12, gop=4)
    out = tmp_path / "out"
    config = config_for(tmp_path / "in", out)
    with pytest.raises(KeyboardInterrupt):
        run_sequential(config, reporter=StopAfter(4))  # a's 3 chunks, b's first
    # as a kill -9 leaves it: the run still "running", its driver (a pid never used) gone
    path = out / "_nhance" / "manifest.parquet"
    manifest = load_manifest(str(path))
    assert manifest.runs[0].status == "interrupted"  # an exception is recorded as such
    manifest.runs[0].status, manifest.runs[0].pid = RUNNING, 2**22 + 1
    save_manifest(manifest, str(path))
    assert status_json(out)["runs"][0]["status"] == "interrupted"  # its driver is gone

    reporter = StopAfter(10**9)
    summary, submitted = run_sequential(config, reporter=reporter)
    assert (summary.exit_code, summary.chunks_skipped, summary.chunks_computed) == (0, 4, 2)
    assert reporter.notes == [f"took over from a dead driver (pid {2**22 + 1}, run 1): "
                              "0 video(s) done, 4 chunk(s) reused, 2 video(s) to do"]
    assert [r["status"] for r in status_json(out)["runs"]] == ["interrupted", "done"]
    # a later run finds nothing running and says so plainly
    again = StopAfter(10**9)
    run_sequential(config, reporter=again)
    assert again.notes == ["resuming after run 2: 2 video(s) done, 0 chunk(s) reused, "
                           "0 video(s) to do"]


def test_kill_9_of_a_ray_run_loses_only_chunks_in_flight_and_leaves_no_ray_process(
        monkeypatch, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from nhance_batch.pipeline.ray_reaper import MARKER, session_processes
    from tests.pipeline.test_resume import status_json

    calibrated(monkeypatch, tmp_path, 0.005)  # 20 s is 32 frames here: 40-frame chunks
    src = make_video(tmp_path / "in" / "clip.mp4", width=64, height=48, frames=160, gop=10)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "nhance_batch", "run", str(src.parent), str(out),
               "--lossless"]
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest_path = str(out / "_nhance" / "manifest.parquet")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            manifest = read_manifest(manifest_path)
            if manifest and manifest.videos and any(
                    c.status == DONE for c in manifest.videos[0].chunks):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("no chunk was committed within 300 s")
        markers = Path("/tmp/ray").glob(f"session_*/{MARKER}")
        sessions = [m.parent for m in markers if not m.parent.is_symlink()
                    and json.loads(m.read_text())["pid"] == proc.pid]
        assert len(sessions) == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
        proc.wait()
    # every process of its embedded Ray ends soon after it (the watcher)
    deadline = time.monotonic() + 60
    while session_processes(str(sessions[0])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(str(sessions[0])) == []
    first = read_manifest(manifest_path).videos[0].chunks
    total, committed = len(first), sum(c.status == DONE for c in first)
    assert total == 4 and 1 <= committed < total
    assert status_json(out)["runs"][0]["status"] == "interrupted"

    summary_path = tmp_path / "summary.json"
    rerun = subprocess.run(command + ["--summary-json", str(summary_path)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"took over from a dead driver (pid {proc.pid}, run 1)" in rerun.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["chunks_skipped"] == committed > 0
    assert summary["chunks_computed"] == total - committed < total
    assert [r["status"] for r in status_json(out)["runs"]] == ["interrupted", "done"]


def test_status_adds_the_live_record_of_the_latest_run_only():
    from datetime import datetime, timedelta, timezone

    from nhance_batch.state.jobstate import LiveRecord
    from nhance_batch.state.manifest import ChunkRecord, Manifest, VideoRecord
    from nhance_batch.state.status import add_live, summarize

    chunks = [ChunkRecord(0, 0, 40, 0, 43, status=DONE), ChunkRecord(1, 40, 80, 37, 83)]
    manifest = Manifest(job={}, videos=[VideoRecord(input="/in/a.mp4", relative="a.mp4",
                                                    frames=80, chunks=chunks)], runs=[])
    manifest.new_run("host", 1)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    live = LiveRecord(1, t0.isoformat(), fps=2.0, eta_seconds=30.0,
                      enhancing=[{"video": "a.mp4", "chunk": 0, "frames": 40},
                                 {"video": "a.mp4", "chunk": 1, "frames": 12}])
    report = summarize(manifest)
    add_live(report, manifest, live, now=t0 + timedelta(seconds=10))
    # chunk 0 is committed already: counted once; chunk 1's 12 enhanced frames are added
    assert report["progress"]["frames_done"] == 52
    assert report["progress"]["frames_committed"] == 40
    assert report["eta_seconds"] == 20.0 and report["progress"]["fps"] == 2.0
    stale = summarize(manifest)
    add_live(stale, manifest, LiveRecord(7, t0.isoformat(), enhancing=live.enhancing))
    assert stale["progress"]["frames_done"] == 40

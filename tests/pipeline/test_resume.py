"""Manifest, resume and status: a killed run finishes where it stopped (issue 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.config import ChunkConfig, EncodeConfig, RunConfig
from nhance_batch.state.lease import Lease
from nhance_batch.state.jobstate import read_manifest
from nhance_batch.state.lease import live_holder
from nhance_batch.state.manifest import DONE
from nhance_batch.pipeline.driver import Driver
from nhance_batch.pipeline.executor import SequentialExecutor
from nhance_batch.pipeline.progress import NullReporter
from tests.media.makemedia import make_video
from tests.pipeline.conftest import assert_plays_like, frames_and_times

SETTINGS = ["--lossless", "--chunk-frames", "5", "--overlap", "2", "--temporal-radius", "2"]


def config_for(inp, out) -> RunConfig:
    return RunConfig(input=str(inp), output=str(out), chunk=ChunkConfig(chunk_frames=5, overlap=2),
                     encode=EncodeConfig(lossless=True), temporal_radius=2)


class Recording(SequentialExecutor):
    """The sequential executor, remembering which chunks it was asked to compute."""

    def __init__(self, model):
        super().__init__(model)
        self.submitted: list[tuple[int, int]] = []

    def submit_chunk(self, task):
        self.submitted.append((task.video, task.chunk.index))
        return super().submit_chunk(task)


class StopAfter(NullReporter):
    """Interrupts the run (as Ctrl-C would) once ``n`` chunks have finished."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.chunks = n, 0

    def advance(self, frames: int) -> None:
        super().advance(frames)
        self.chunks += 1
        if self.chunks >= self.n:
            raise KeyboardInterrupt


def run_sequential(config, reporter=None, **kwargs):
    executor = Recording(config.model)
    summary = Driver.for_config(config, reporter=reporter, **kwargs).run(executor)
    return summary, executor.submitted


def status_json(out) -> dict:
    result = CliRunner().invoke(cli, ["status", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_sigkill_mid_run_then_rerun_computes_only_the_rest(tmp_path):
    src = make_video(tmp_path / "in" / "clip.mp4", width=96, height=72, frames=60, gop=10,
                     audio_tracks=1)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(NHANCE_MANIFEST_SAVE_S="0")
    command = [sys.executable, "-m", "nhance_batch", "run", str(src.parent), str(out),
               *SETTINGS, "--workers", "1"]
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest_path = out / "_nhance" / "manifest.parquet"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            manifest = read_manifest(str(manifest_path))
            if manifest and manifest.videos and sum(
                    c.status == DONE for c in manifest.videos[0].chunks) >= 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no chunk was committed within 300 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = read_manifest(str(manifest_path))
    committed = {c.index for c in first.videos[0].chunks if c.status == DONE}
    total = len(first.videos[0].chunks)
    assert total == 12 and 2 <= len(committed) < total
    assert not (out / "clip.mp4").exists()  # no half-written output

    summary_path = tmp_path / "summary.json"
    rerun = subprocess.run(command + ["--summary-json", str(summary_path)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["run"] == 2
    assert summary["chunks_computed"] == total - len(committed)
    assert summary["chunks_skipped"] == len(committed)

    report = status_json(out)
    chunks = report["videos"][0]["chunks"]
    assert {c["index"] for c in chunks if c["run"] == 1} == committed
    assert {c["index"] for c in chunks if c["run"] == 2} == set(range(total)) - committed
    assert [r["run"] for r in report["runs"]] == [1, 2]
    assert report["videos"][0]["status"] == "done"

    # same frames as an uninterrupted run
    reference, _ = run_sequential(config_for(src.parent, tmp_path / "ref"))
    assert reference.exit_code == 0
    a, _ = frames_and_times(out / "clip.mp4")
    b, _ = frames_and_times(tmp_path / "ref" / "clip.mp4")
    np.testing.assert_array_equal(a, b)
    assert_plays_like(src, out / "clip.mp4")


def test_deleted_and_corrupted_parts_are_redone(tmp_path):
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=30, gop=6)
    config = config_for(tmp_path / "in", tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_sequential(config, reporter=StopAfter(4))
    manifest = read_manifest(str(tmp_path / "out" / "_nhance" / "manifest.parquet"))
    chunks = manifest.videos[0].chunks
    done = [c for c in chunks if c.status == DONE]
    assert [c.index for c in done] == [0, 1, 2, 3]
    os.unlink(done[1].part)
    raw = bytearray(open(done[2].part, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(done[2].part, "wb").write(bytes(raw))

    summary, submitted = run_sequential(config)
    assert summary.exit_code == 0
    assert sorted(index for _, index in submitted) == [1, 2, 4, 5]
    report = status_json(tmp_path / "out")
    runs = {c["index"]: c["run"] for c in report["videos"][0]["chunks"]}
    assert runs == {0: 1, 1: 2, 2: 2, 3: 1, 4: 2, 5: 2}
    # parts are removed once the video is committed
    assert not any((tmp_path / "out" / "_nhance" / "parts").rglob("*.mp4"))


def test_changed_input_is_redone_and_said(tmp_path):
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=10, gop=5)
    b = make_video(tmp_path / "in" / "b.mp4", width=64, height=48, frames=10, gop=5)
    config = config_for(tmp_path / "in", tmp_path / "out")
    first, _ = run_sequential(config)
    assert first.exit_code == 0
    out_a = tmp_path / "out" / "a.mp4"
    stamp = out_a.stat().st_mtime_ns
    make_video(b, width=64, height=48, frames=14, gop=7)  # b changes
    second, submitted = run_sequential(config)
    assert second.exit_code == 0
    assert {video for video, _ in submitted} == {1}  # only b
    assert second.chunks_computed == 3
    notes = {v.input: v.note for v in second.videos}
    assert "input changed" in notes[str(b)]
    assert out_a.stat().st_mtime_ns == stamp  # a finished video is not touched
    assert frames_and_times(tmp_path / "out" / "b.mp4")[0].shape[0] == 14
    third, submitted = run_sequential(config)
    assert submitted == [] and third.already_done  # nothing left to do
    assert third.chunks_computed == third.chunks_skipped == 0


def test_second_driver_refused_until_the_lease_expires_or_force(tmp_path, monkeypatch):
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=6, gop=3)
    out = tmp_path / "out"
    (out / "_nhance").mkdir(parents=True)
    holder = Lease(str(out / "_nhance" / "lease.json"), ttl=1.0)
    holder.acquire()
    holder.start_heartbeat()
    runner = CliRunner()
    args = ["run", str(tmp_path / "in"), str(out), *SETTINGS, "--executor", "sequential"]
    try:
        refused = runner.invoke(cli, args)
        assert refused.exit_code == 2
        assert "--force" in refused.output and str(os.getpid()) in refused.output
        # the refused driver wrote no state, and the holder still holds the lease
        assert not (out / "_nhance" / "manifest.parquet").exists()
        assert not (out / "_nhance" / "journal").exists()
        assert live_holder(str(out / "_nhance" / "lease.json"))["owner"] == holder.owner
    finally:
        holder.release()
    stale = Lease(str(out / "_nhance" / "lease.json"), ttl=0.3, owner="dead-driver")
    stale.acquire()  # never heartbeats: expires after 0.3 s
    time.sleep(0.5)
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    # a live holder can be taken over with --force
    live = Lease(str(out / "_nhance" / "lease.json"), ttl=30.0, owner="other")
    live.acquire()
    forced = runner.invoke(cli, args + ["--force"])
    assert forced.exit_code == 0, forced.output


def test_resume_command_and_changed_settings(tmp_path):
    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=12, gop=4)
    config = config_for(tmp_path / "in", tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_sequential(config, reporter=StopAfter(1))
    runner = CliRunner()
    out = str(tmp_path / "out")
    summary = tmp_path / "s.json"
    result = runner.invoke(cli, ["resume", out, "--executor", "sequential",
                                 "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output
    assert json.loads(summary.read_text())["chunks_computed"] == 2
    assert status_json(out)["videos"][0]["status"] == "done"
    other = ["run", str(tmp_path / "in"), out, "--lossless", "--chunk-frames", "4",
             "--overlap", "2", "--temporal-radius", "2", "--executor", "sequential"]
    refused = runner.invoke(cli, other)
    assert refused.exit_code == 2 and "chunk_frames" in refused.output
    redone = runner.invoke(cli, other + ["--force", "--summary-json", str(summary)])
    assert redone.exit_code == 0, redone.output
    assert json.loads(summary.read_text())["chunks_computed"] == 3
    assert runner.invoke(cli, ["status", str(tmp_path / "nothing")]).exit_code == 2


def test_resume_keeps_strength_and_hdr_and_jobs_recorded_before_them_resume(tmp_path):
    """The manifest records strength and hdr; ``resume`` runs with them, a run with another
    strength is refused, and a job recorded before these settings (without them) resumes."""
    from nhance_batch.state.jobstate import JobState, job_settings
    from nhance_batch.state.layout import JobLayout

    make_video(tmp_path / "in" / "a.mp4", width=64, height=48, frames=12, gop=4)
    config = config_for(tmp_path / "in", tmp_path / "out").model_copy(update={
        "model": RunConfig.model_fields["model"].default.model_copy(update={"strength": 0.5}),
        "encode": EncodeConfig(lossless=True, hdr="sdr")})
    with pytest.raises(KeyboardInterrupt):
        run_sequential(config, reporter=StopAfter(1))
    job = read_manifest(str(tmp_path / "out" / "_nhance" / "manifest.parquet")).job
    assert job["strength"] == 0.5 and job["encode"]["hdr"] == "sdr"
    runner = CliRunner()
    result = runner.invoke(cli, ["resume", str(tmp_path / "out"), "--executor", "sequential"])
    assert result.exit_code == 0, result.output
    refused = runner.invoke(cli, ["run", str(tmp_path / "in"), str(tmp_path / "out"),
                                  *SETTINGS, "--executor", "sequential"])
    assert refused.exit_code == 2 and "strength" in refused.output
    old = {k: v for k, v in job_settings(config_for("in", "o")).items() if k != "strength"}
    old["encode"] = {k: v for k, v in old["encode"].items() if k != "hdr"}
    layout = JobLayout.create("in", str(tmp_path / "old"))
    JobState.open(layout, old).flush(compact=True)
    assert "strength" not in read_manifest(layout.manifest).job
    JobState.open(layout, job_settings(config_for("in", "o")))  # no mismatch raised

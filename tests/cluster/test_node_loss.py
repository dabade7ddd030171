"""Nodes join and die in the middle of a job on a multi-node cluster: the enhancer pool grows
onto a new GPU node, a killed node's chunks are redone on the others (its restarting actor,
with no GPU left for it, blocks nothing), and the outputs equal a single-node run's."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cluster.conftest import cli_env
from tests.media.makemedia import make_video

CHUNK, RADIUS, FRAMES, CLIPS = 4, 1, 32, 10


def _committed_parts(out: Path) -> list[Path]:
    return [p for p in (out / "_nhance" / "parts").rglob("*.mp4") if ".tmp" not in p.name]


def _reference(inp: Path, out: Path) -> None:
    """The same job in this process, one chunk at a time (no Ray)."""
    from nhance_batch.config import ChunkConfig, EncodeConfig, RunConfig
    from nhance_batch.pipeline.driver import Driver
    from nhance_batch.pipeline.executor import SequentialExecutor

    config = RunConfig(input=str(inp), output=str(out),
                       chunk=ChunkConfig(chunk_frames=CHUNK, overlap=RADIUS),
                       encode=EncodeConfig(lossless=True), temporal_radius=RADIUS)
    executor = SequentialExecutor(config.model)
    try:
        assert Driver.for_config(config).run(executor).exit_code == 0
    finally:
        executor.shutdown()


class _Output:
    """Collects a subprocess's output in the background."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, job, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert job.poll() is None, f"job ended before {needle!r}:\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} in time:\n{self.text()[-3000:]}"
            time.sleep(0.2)


@pytest.mark.slow
def test_nodes_join_and_die_mid_job(gpu_cluster, tmp_path):
    from nhance_batch.media import decode_all, probe

    inp = tmp_path / "in"
    # enough work (1-2 min) that the job is still running when the new node's actor is up
    # (the autotuned enhancer is faster than the fixed XLA path this was first sized for)
    clips = [make_video(inp / f"clip{i}.mp4", width=96, height=72, frames=FRAMES, gop=8)
             for i in range(CLIPS)]
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    job = subprocess.Popen(
        [sys.executable, "-m", "nhance_batch", "run", str(inp), str(out), "--address",
         gpu_cluster.address, "--chunk-frames", str(CHUNK), "--temporal-radius", str(RADIUS),
         "--lossless", "--summary-json", str(summary)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=cli_env(gpu_cluster, NHANCE_POOL_CHECK_S="1"))
    output = _Output(job.stdout)
    try:
        deadline = time.monotonic() + 180
        while not _committed_parts(out):
            assert job.poll() is None, output.text()[-4000:]
            assert time.monotonic() < deadline, "no chunk was committed in time"
            time.sleep(0.1)
        # a GPU node joins: the pool grows onto it
        gpu_cluster.add_worker(num_gpus=1, num_cpus=1)
        output.wait_for("pool grows by 1", job, timeout=30)
        # a node dies (SIGKILL to its raylet and workers): no GPU is left for its actor
        victim = gpu_cluster.workers[0]
        gpu_cluster.remove_worker(victim, graceful=False)
        assert not victim.pids()
        job.wait(timeout=240)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    log = output.text()
    print("".join(line for line in output.lines if "enhancer actor" in line or "pool" in line
                  or "marked dead" in line))
    assert job.returncode == 0, log[-6000:]
    assert "unavailable (node lost" in log  # the dead node's chunks were redone elsewhere
    assert not _committed_parts(out)  # committed videos drop their parts

    result = json.loads(summary.read_text())
    assert result["failed"] == 0 and len(result["videos"]) == CLIPS
    reference = tmp_path / "reference"
    _reference(inp, reference)
    for clip in clips:
        produced = out / clip.name
        info = probe(produced)
        assert info.frame_count == FRAMES
        a = decode_all(produced, info).frames
        b = decode_all(reference / clip.name, probe(reference / clip.name)).frames
        np.testing.assert_array_equal(a, b)

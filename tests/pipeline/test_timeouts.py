"""A decode or encode task that hangs is ended after the task timeout and retried like any
other failure: the job finishes, and the chunk's attempts show the retry."""

from __future__ import annotations

import sys
import time

import numpy as np
from ray import cloudpickle

from nhance_batch.config import ChunkConfig, ClusterConfig, EncodeConfig, RunConfig
from nhance_batch.pipeline import ray_executor, stages
from nhance_batch.pipeline.driver import Driver
from nhance_batch.state.jobstate import read_manifest
from tests.pipeline.conftest import copy_clip, enhance_directly, frames_and_times

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers need no tests/ path
HANG_S = 240  # without the timeout the run would take at least this long


def decode_hanging_first(task):
    """The real decode, except that chunk 1's first attempt never returns."""
    if task.chunk.index == 1 and task.attempt == 1:
        time.sleep(HANG_S)
    return stages.decode_stage(task)


def encode_hanging_first(task, enhanced):
    if task.chunk.index == 2 and task.attempt == 1:
        time.sleep(HANG_S)
    return stages.encode_stage(task, enhanced)


def test_hung_decode_and_encode_are_ended_and_retried(local_ray, clips, tmp_path):
    src = copy_clip(clips["plain"], tmp_path / "in" / "plain.mp4")  # 24 frames
    config = RunConfig(input=str(src), output=str(tmp_path / "out"),
                       chunk=ChunkConfig(chunk_frames=8, overlap=0),
                       encode=EncodeConfig(lossless=True), cluster=ClusterConfig(workers=1),
                       temporal_radius=0)
    executor = ray_executor.RayExecutor(config.model, config.cluster, task_seconds=8,
                                        decode_fn=decode_hanging_first,
                                        encode_fn=encode_hanging_first)
    started = time.monotonic()
    try:
        summary = Driver.for_config(config).run(executor)
    finally:
        executor.shutdown()
    assert summary.exit_code == 0, summary.videos
    assert time.monotonic() - started < HANG_S - 60  # ended, not waited out
    manifest = read_manifest(str(tmp_path / "out" / "_nhance" / "manifest.parquet"))
    attempts = [c.attempts for c in manifest.videos[0].chunks]
    assert attempts[0] == 1 and attempts[1] == 2 and attempts[2] == 2, attempts
    out, _ = frames_and_times(tmp_path / "out" / "plain.mp4")
    source, _ = frames_and_times(src)
    np.testing.assert_array_equal(out, enhance_directly(source))

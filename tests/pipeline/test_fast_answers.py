"""Answers that need no cluster come before one starts: a missing INPUT, OUTPUT equal to
INPUT, an unknown model or encoder exit 2 without importing Ray or TensorFlow; a rerun of a
finished job says it is already done, lists its outputs and exits 0 without starting either;
``models --download`` exits 1 when a download fails."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error

import pytest
from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.config import ChunkConfig, EncodeConfig, RunConfig
from nhance_batch.pipeline.driver import Driver
from nhance_batch.pipeline.executor import SequentialExecutor
from nhance_batch.state.jobstate import JobConfigMismatch
from tests.media.makemedia import make_video

SETTINGS = ["--lossless", "--chunk-frames", "4", "--overlap", "1", "--temporal-radius", "1"]

# the command line in a fresh process, then which heavy modules that process imported
CLI_THEN_MODULES = (
    "import sys\n"
    "from click.testing import CliRunner\n"
    "from nhance_batch.cli import cli\n"
    "result = CliRunner().invoke(cli, sys.argv[1:])\n"
    "print(result.output)\n"
    "print('EXIT', result.exit_code)\n"
    "print('IMPORTED', sorted(m for m in ('ray', 'tensorflow', 'keras', 'jax')\n"
    "                         if m in sys.modules))\n")


def cli_in_fresh_process(*args: str) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, output) of ``nhance-batch ARGS``."""
    proc = subprocess.run([sys.executable, "-c", CLI_THEN_MODULES, *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    code = int(next(line for line in lines if line.startswith("EXIT ")).split()[1])
    imported = eval(next(line for line in lines if line.startswith("IMPORTED "))[9:])
    return code, imported, proc.stdout


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    """A job of two short videos, run to its end with the sequential executor."""
    root = tmp_path_factory.mktemp("finished")
    videos = root / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(videos / name, width=32, height=24, frames=6)
    config = RunConfig(input=str(videos), output=str(root / "out"),
                       chunk=ChunkConfig(chunk_frames=4, overlap=1),
                       encode=EncodeConfig(lossless=True), temporal_radius=1)
    executor = SequentialExecutor(config.model)
    assert Driver.for_config(config).run(executor).exit_code == 0
    return config


def test_missing_input_exits_2_before_any_cluster(tmp_path):
    code, imported, out = cli_in_fresh_process("run", tmp_path / "nothing.mp4", tmp_path / "o")
    assert code == 2 and "no such file" in out
    assert imported == []


def test_output_equal_to_input_exits_2_before_any_cluster(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", width=32, height=24, frames=3)
    code, imported, out = cli_in_fresh_process("run", videos, videos)
    assert code == 2 and "choose an OUTPUT outside the input" in out
    assert imported == []


@pytest.mark.parametrize("option, words", [(["--model", "pixel"], "--model-path"),
                                           (["--codec", "nosuch264"], "no such encoder")])
def test_unknown_model_or_encoder_exits_2_before_any_cluster(tmp_path, option, words):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", width=32, height=24, frames=3)
    code, imported, out = cli_in_fresh_process("run", videos, tmp_path / "out", *option)
    assert code == 2 and words in out
    assert imported == []


def test_a_finished_job_rerun_is_already_done_without_ray_or_tensorflow(finished_job):
    code, imported, out = cli_in_fresh_process("run", finished_job.input, finished_job.output,
                                               *SETTINGS)
    assert code == 0 and "already done: 2 videos" in out
    for name in ("a.mp4", "b.mp4"):
        assert os.path.join(finished_job.output, name) in out
    assert imported == []


class WorkWanted(Exception):
    """The run wanted to start its executor: it found something to compute."""


class MustNotStart(SequentialExecutor):
    def start(self) -> None:
        raise WorkWanted


def answer_without_work(config: RunConfig):
    """The run's summary when it starts nothing; None when it wanted to compute something."""
    try:
        return Driver.for_config(config).run(MustNotStart(config.model))
    except WorkWanted:
        return None


def test_already_done_answers_only_when_nothing_changed(finished_job, tmp_path):
    summary = answer_without_work(finished_job)
    assert summary is not None and summary.already_done and summary.exit_code == 0
    assert summary.chunks_computed == 0 and summary.chunks_skipped == 0
    assert [v.frames for v in summary.videos] == [6, 6] and summary.run == 1
    other = finished_job.model_copy(update={"temporal_radius": 2})
    with pytest.raises(JobConfigMismatch):  # settings differ: the run says so
        answer_without_work(other)
    output = os.path.join(finished_job.output, "b.mp4")
    os.rename(output, tmp_path / "b.mp4")
    try:
        assert answer_without_work(finished_job) is None  # an output is missing
    finally:
        os.rename(tmp_path / "b.mp4", output)
    source = os.path.join(finished_job.input, "a.mp4")
    stat = os.stat(source)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert answer_without_work(finished_job) is None  # an input changed
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert answer_without_work(finished_job) is not None


def test_enhance_image_refuses_an_unknown_model_before_loading_a_backend(tmp_path):
    code, imported, out = cli_in_fresh_process("enhance-image", tmp_path / "in.png",
                                               tmp_path / "out.png", "--model", "pixel")
    assert code == 2 and "unknown model 'pixel'" in out and "--model-path" in out
    assert imported == []


def test_models_download_exits_1_when_a_download_fails(tmp_path, monkeypatch):
    from nhance_batch.model import registry

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.delenv("NHANCE_MODELS", raising=False)
    monkeypatch.setenv("NHANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry.urllib.request, "urlopen", offline)
    result = CliRunner().invoke(cli, ["models", "--download"])
    assert result.exit_code == 1 and "could not be downloaded" in result.output
    listed = CliRunner().invoke(cli, ["models", "--no-download"])
    assert listed.exit_code == 0 and "unresolved" in listed.output


def test_a_finished_job_is_answered_under_its_lease(finished_job):
    """The answer comes from the state read under the output's lease: while another driver
    holds it, the rerun is refused like any run."""
    from nhance_batch.state.layout import JobLayout
    from nhance_batch.state.lease import LeaseError, lease_for

    layout = JobLayout.create(finished_job.input, finished_job.output)
    held = lease_for(layout.lease, layout.output_options)
    held.acquire()
    try:
        with pytest.raises(LeaseError):
            answer_without_work(finished_job)
    finally:
        held.release()
    assert answer_without_work(finished_job).already_done


def test_resume_reads_the_state_once_and_lays_the_job_out_once(finished_job, monkeypatch):
    """``resume`` reads the recorded settings from the manifest's footer; its run reads the
    whole state once (under the lease) and makes the job's layout once. (The job is left
    finished again: its redone video is committed.)"""
    from nhance_batch.state import jobstate
    from nhance_batch.state.layout import JobLayout

    reads, layouts = [], []
    read_manifest, create = jobstate.read_manifest, JobLayout.create.__func__
    monkeypatch.setattr(jobstate, "read_manifest",
                        lambda *a, **k: reads.append(a) or read_manifest(*a, **k))
    monkeypatch.setattr(JobLayout, "create", classmethod(
        lambda cls, *a, **k: layouts.append(a) or create(cls, *a, **k)))
    output = os.path.join(finished_job.output, "b.mp4")
    os.remove(output)  # so the resume has work to do
    result = CliRunner().invoke(cli, ["resume", finished_job.output, "--executor",
                                      "sequential"])
    assert result.exit_code == 0 and "already done" not in result.output
    assert os.path.exists(output)
    assert len(reads) == 1 and len(layouts) == 1

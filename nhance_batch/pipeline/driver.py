"""Running a job: :func:`run_job`, the one entry point that the CLI and the web app share, and
the :class:`Driver` of one invocation.

:func:`run_job` checks what needs no cluster (the model resolves, the encoder exists, INPUT
names videos and OUTPUT is not among them), makes the job's layout once, and runs a
:class:`Driver` with the executor the config asks for, which it shuts down whatever happens.
Errors that mean "this job cannot run as configured" derive from :class:`ConfigurationError`
or are one of :func:`configuration_errors`; callers map them to exit code 2 (the CLI) or a
failed job with its message (the web app).

:class:`Driver` is one invocation of a job (a "run"): it holds the output's lease, opens the
job's state (read once, under the lease), records runs that a dead driver left running as
interrupted, and matches the inputs with the state. A video is *untouched* (:func:`untouched`)
when it is done, its input has the fingerprint recorded and its output the size recorded: it
is skipped. When every input is untouched, the run answers "already done" from the state and
starts no executor; otherwise it says what it found, starts the executor and hands the work
to a :class:`~nhance_batch.pipeline.scheduler.Scheduler`.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from nhance_batch import storage
from nhance_batch.config import RunConfig
from nhance_batch.pipeline.executor import Executor
from nhance_batch.pipeline.outputs import OutputNames, check_output_safe, unsafe_key
from nhance_batch.pipeline.progress import NullReporter, Reporter
from nhance_batch.pipeline.scheduler import Scheduler
from nhance_batch.pipeline.summary import JobSummary, VideoSummary, rate
from nhance_batch.state.jobstate import JobState, job_extras, job_settings
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.lease import HeldLease
from nhance_batch.state.manifest import (DONE, FAILED, INTERRUPTED, PENDING, RUNNING,
                                         ChunkRecord, RunRecord, VideoRecord)


def list_inputs(layout: JobLayout) -> list[storage.StoredVideo]:
    """The job's inputs, each once, after checking that no output can land among them.

    Raises:
        FileNotFoundError: INPUT names nothing.
        UnsafeOutput: OUTPUT is or contains the input (or a single input's folder).
    """
    inputs = storage.list_videos(layout.input, layout.input_options, exclude=layout.output)
    # the same file listed twice (overlapping globs, duplicate entries) is one input
    unique = list({item.source: item for item in inputs}.values())
    if storage.is_local_url(layout.input):
        single = os.path.isfile(storage.local_path(layout.input))
    else:
        single = len(unique) == 1 and unique[0].source == layout.input
    check_output_safe(layout.input, layout.output, [i.source for i in unique],
                      single_file=single)
    return unique


def stored_size(url: str | None, options: dict) -> int | None:
    """The size of the file or object at ``url``; None when there is none."""
    if not url:
        return None
    try:
        return storage.size(url, options)
    except (FileNotFoundError, storage.StorageError):
        return None


def untouched(record: VideoRecord, fingerprint: str, output_options: dict) -> bool:
    """The video is done and nothing changed since: its input has the fingerprint recorded
    and its output the size recorded."""
    return (record.status == DONE and record.fingerprint == fingerprint
            and record.output_bytes is not None
            and stored_size(record.output, output_options) == record.output_bytes)


def already_done(records: list[VideoRecord], last_run: int, seconds: float) -> JobSummary:
    """The summary of a run that found every input untouched (``records``): ``already_done``
    set, no chunk computed or skipped (as for any untouched video), ``run`` the last run's
    number."""
    videos = [VideoSummary(v.input, v.output, v.status, v.frames or 0, v.seconds or 0.0,
                           rate(v.frames or 0, v.seconds or 0.0), v.added_flicker,
                           v.model_flicker, None, v.note)
              for v in records]
    return JobSummary(last_run, videos, {"decode": 0.0, "enhance": 0.0, "encode": 0.0},
                      seconds, sum(v.frames for v in videos), chunks_computed=0,
                      chunks_skipped=0, status=DONE, already_done=True)


class Driver:
    """Runs one invocation of a job (a "run") over the job state in ``layout``.

    Args:
        config: the job.
        layout: where its things are (made once, by the caller).
        inputs: its inputs (:func:`list_inputs`).
        reporter: live progress.
        force: take the lease over from a live driver, and redo a job whose settings changed.
        keep_parts: keep encoded parts after their video is committed.
        cancel: a set event stops the run between steps (committed work is kept).
    """

    def __init__(self, config: RunConfig, layout: JobLayout,
                 inputs: list[storage.StoredVideo], *, reporter: Reporter | None = None,
                 force: bool = False, keep_parts: bool = False,
                 cancel: threading.Event | None = None) -> None:
        self.config = config
        self.layout = layout
        self.inputs = inputs
        self.names = OutputNames(item.relative for item in inputs)
        self.reporter = reporter or NullReporter()
        self.force = force
        self.keep_parts = keep_parts
        self.cancel = cancel

    @classmethod
    def for_config(cls, config: RunConfig, **kwargs) -> Driver:
        """A driver of ``config``'s job in its default layout, its inputs listed."""
        layout = JobLayout.create(config.input, config.output, config.storage_options)
        return cls(config, layout, list_inputs(layout), **kwargs)

    def run(self, executor: Executor) -> JobSummary:
        """Run the job; ``executor`` is started only when there is work (the caller shuts it
        down)."""
        from nhance_batch.state.lease import lease_for

        storage.makedirs_for(self.layout.lease)
        lease = lease_for(self.layout.lease, self.layout.output_options)
        lease.acquire(force=self.force)
        lease.start_heartbeat()
        try:
            return self._run(lease, executor)
        finally:
            lease.release()

    def _run(self, lease: HeldLease, executor: Executor) -> JobSummary:
        started = time.monotonic()
        state = JobState.open(self.layout, job_settings(self.config), force=self.force,
                              extras=job_extras(self.config), lease=lease)
        found = self.take_over(state)
        records = self.reconcile(state)
        todo = {vid: record for vid, (record, work) in records.items() if work}
        self.tell_resume(state, todo, found)
        if not todo:  # every input untouched: nothing to start
            if found:
                state.flush(compact=True)
            runs = state.manifest.runs
            return already_done([record for record, _ in records.values()],
                                runs[-1].run if runs else 0, time.monotonic() - started)
        executor.start()
        summary = self.schedule(state, lease, executor, todo)
        # for the report; a run that computed nothing leaves the one of the run that did
        state.keep_summary(summary.as_dict(), replace=summary.chunks_computed > 0)
        return summary

    def schedule(self, state: JobState, lease: HeldLease, executor: Executor,
                 todo: dict[int, VideoRecord]) -> JobSummary:
        """Record this run, and let a scheduler run the videos of ``todo`` to their end."""
        run = state.new_run(socket.gethostname(), os.getpid())
        state.flush(compact=True)
        scheduler = Scheduler(self.config, self.layout, executor, state, run, todo, self.names,
                              reporter=self.reporter, lease=lease, keep_parts=self.keep_parts,
                              cancel=self.cancel)
        status = INTERRUPTED
        try:
            status = scheduler.execute()
        finally:
            run.finished = state.now()
            run.status = status
            if not lease.lost:
                state.flush(compact=True)
            self.reporter.stop()
        return scheduler.summary(status)

    def take_over(self, state: JobState) -> list[RunRecord]:
        """Runs the manifest still holds as running: their drivers are gone (this driver holds
        the lease), so they are recorded as interrupted; returned for :meth:`tell_resume`."""
        stopped = [run for run in state.manifest.runs if run.status == RUNNING]
        for run in stopped:
            run.status = INTERRUPTED
        return stopped

    def tell_resume(self, state: JobState, todo: dict[int, VideoRecord],
                    stopped: list[RunRecord]) -> None:
        """Say what this run found of earlier runs: a driver that died, videos done, chunks
        it will reuse."""
        if not state.manifest.runs:
            return
        done = sum(v.status == DONE for i, v in enumerate(state.manifest.videos)
                   if i not in todo)
        reused = sum(c.status == DONE for v in todo.values() for c in v.chunks)
        if stopped:
            last = stopped[-1]
            where = f"pid {last.pid}" + (f" on {last.host}" if last.host != socket.gethostname()
                                         else "")
            whose = "a driver it forced out" if self.force else "a dead driver"
            opening = f"took over from {whose} ({where}, run {last.run})"
        else:
            opening = f"resuming after run {max(r.run for r in state.manifest.runs)}"
        self.reporter.note(f"{opening}: {done} video(s) done, {reused} chunk(s) reused, "
                           f"{len(todo)} video(s) to do")

    def reconcile(self, state: JobState) -> dict[int, tuple[VideoRecord, bool]]:
        """Match the inputs with the job's state: each input's record, by its position in the
        manifest, and whether this run must work on it. The changed records reach storage
        whole, with the run's first compaction (:meth:`schedule`)."""
        manifest = state.manifest
        records: dict[int, tuple[VideoRecord, bool]] = {}
        for item in self.inputs:
            vid = manifest.position(item.relative)
            if vid is None:
                manifest.videos.append(VideoRecord(input=item.source, relative=item.relative))
                vid = len(manifest.videos) - 1
            record = manifest.videos[vid]
            records[vid] = record, self.reconcile_video(record, item)
        return records

    def reconcile_video(self, record: VideoRecord, item: storage.StoredVideo) -> bool:
        """Bring one video's record up to date with its input; False when it is finished
        and untouched."""
        problem = unsafe_key(item.relative)
        if problem:
            record.status = FAILED
            record.error = self.layout.redact(
                f"{item.source}: its path under the input ({item.relative!r}) {problem}, so "
                "its output would not stay inside OUTPUT")
            return True
        if record.output_name is None:  # its name depends on its key alone, as the check above
            record.output_name, why = self.names.primary(item.relative)
            record.note = record.note or why
        try:
            fp, size = storage.video_fingerprint(item, self.layout.input_options)
        except (OSError, storage.StorageError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            record.status = FAILED
            record.error = self.layout.redact(f"{item.source}: {reason}")
            return True
        if record.fingerprint is None:
            record.fingerprint, record.size = fp, size
        elif record.fingerprint != fp:
            record.note = f"input changed since run {record.run or '?'}; re-planned and redone"
            record.fingerprint, record.size, record.chunks = fp, size, []
            record.status, record.error, record.frames = PENDING, None, None
        elif untouched(record, fp, self.layout.output_options):
            return False  # finished: not touched
        record.input = item.source
        record.status, record.error = PENDING, None
        for chunk in record.chunks:
            if chunk.status == DONE and not self._part_ok(chunk):
                chunk.status, chunk.run, chunk.part_sha256 = PENDING, None, None
            elif chunk.status != DONE:
                chunk.status, chunk.error = PENDING, None
        return True

    def _size(self, url: str | None) -> int | None:
        return stored_size(url, self.layout.output_options)

    def _part_ok(self, chunk: ChunkRecord) -> bool:
        """A committed part still holds what was recorded: its size, and locally its sha256
        (in a store the size was checked by the upload; re-hashing would mean downloading)."""
        from nhance_batch.checksum import file_sha256

        if chunk.status != DONE or self._size(chunk.part) != chunk.part_bytes:
            return False
        if storage.is_local_url(chunk.part):
            return file_sha256(storage.local_path(chunk.part)) == chunk.part_sha256
        return True


class ConfigurationError(RuntimeError):
    """The job cannot run as configured (the message says why and what to do)."""


def configuration_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of :func:`run_job` that mean the job cannot run as configured."""
    from nhance_batch.model.registry import ModelError
    from nhance_batch.pipeline.executor import WorkerStartError
    from nhance_batch.pipeline.outputs import UnsafeOutput
    from nhance_batch.state.jobstate import JobConfigMismatch
    from nhance_batch.state.lease import LeaseError, LeaseLost
    from nhance_batch.storage import StorageError

    return (ConfigurationError, ModelError, JobConfigMismatch, LeaseError, LeaseLost,
            UnsafeOutput, FileNotFoundError, WorkerStartError, StorageError)


def make_executor(config: RunConfig, name: str = "ray"):
    """The executor ``name`` (``ray`` or ``sequential``) for ``config``, not yet started."""
    if name == "sequential":
        from nhance_batch.pipeline.executor import SequentialExecutor

        return SequentialExecutor(config.model)
    if name != "ray":
        raise ConfigurationError(f"unknown executor {name!r} (ray or sequential)")
    from nhance_batch.pipeline.ray_executor import RayExecutor

    return RayExecutor(config.model, config.cluster, task_seconds=config.limits.task_seconds)


def run_job(config: RunConfig, *, executor: str = "ray", manifest: str | None = None,
            force: bool = False, keep_parts: bool = False, reporter: Reporter | None = None,
            cancel: threading.Event | None = None) -> JobSummary:
    """Run (or resume) the job ``config`` to its end and return the run's summary.

    Args:
        config: the job.
        executor: ``ray`` (the embedded local Ray, or ``config.cluster.address``) or
            ``sequential`` (everything in this process).
        manifest: the manifest's URL (default ``OUTPUT/_nhance/manifest.parquet``).
        force: take over from a live driver; redo a job whose settings changed.
        keep_parts: keep encoded parts after their video is committed.
        reporter: live progress (default: none shown).
        cancel: set it to stop the run between steps; committed work is kept and the run
            is recorded as ``cancelled`` (the summary's ``status``).

    What needs no cluster is checked first, in about a second, before an executor starts:
    the model resolves, the encoder exists, INPUT names videos and OUTPUT is not among
    them. A job whose every input is done and unchanged is answered from its state: no
    executor starts, and the summary has ``already_done`` set.

    Raises:
        One of :func:`configuration_errors` when the job cannot run as configured (the
        model is missing or broken, OUTPUT holds another job or another live driver,
        OUTPUT would overwrite sources, INPUT names nothing, no enhancer could start).
    """
    from nhance_batch.model.registry import resolve

    resolve(config.model.name, config.model.path)
    _check_encoder(config)
    layout = JobLayout.create(config.input, config.output, config.storage_options,
                              manifest=manifest)
    driver = Driver(config, layout, list_inputs(layout), reporter=reporter, force=force,
                    keep_parts=keep_parts, cancel=cancel)
    runner = make_executor(config, executor)
    try:
        return driver.run(runner)
    finally:
        runner.shutdown()


def _check_encoder(config: RunConfig) -> None:
    """Refuse an encoder this install's FFmpeg does not have, before any work."""
    from nhance_batch.media.encode import AUTO_CODEC, MATCH_CODEC

    codec = config.encode.codec
    if config.encode.lossless or codec in (MATCH_CODEC, AUTO_CODEC):
        return
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception as exc:  # noqa: BLE001 - PyAV's error type differs between versions
        raise ConfigurationError(
            f"--codec {codec}: this install's FFmpeg has no such encoder ({exc}); use "
            "match, auto, libx264, libx265, or another encoder `ffmpeg -encoders` lists"
        ) from None

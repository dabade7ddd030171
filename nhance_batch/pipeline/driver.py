"""The driver: list the inputs, check where outputs go, take the lease, and run the job.

:class:`Driver` is one invocation of a job (a "run"): it lists the inputs, refuses a job that
would write among its sources, holds the output's lease, opens the job's state, matches the
inputs with it (what is finished and still verifies is skipped) and hands the work to a
:class:`~nhance_batch.pipeline.scheduler.Scheduler`.
"""

from __future__ import annotations

import os
import socket
import threading

from nhance_batch import storage
from nhance_batch.config import RunConfig
from nhance_batch.pipeline.executor import Executor
from nhance_batch.pipeline.finished import stored_size, untouched
from nhance_batch.pipeline.outputs import OutputNames, check_output_safe, unsafe_key
from nhance_batch.pipeline.progress import NullReporter, Reporter
from nhance_batch.pipeline.scheduler import HeldLease, Scheduler
from nhance_batch.pipeline.summary import JobSummary
from nhance_batch.state.jobstate import JobState, job_settings
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.manifest import DONE, FAILED, PENDING, RUNNING, ChunkRecord, VideoRecord


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


class Driver:
    """Runs one invocation of a job (a "run") over the job state in ``config.output``.

    Args:
        config: the job.
        executor: runs the stages (started by the caller).
        reporter: live progress.
        manifest_path: the manifest's URL (default ``OUTPUT/_nhance/manifest.parquet``).
        force: take the lease over from a live driver, and redo a job whose settings changed.
        keep_parts: keep encoded parts after their video is committed.
        cancel: a set event stops the run between steps (committed work is kept).
        inputs: the inputs, when the caller listed them already (:func:`list_inputs`).
    """

    def __init__(self, config: RunConfig, executor: Executor, *,
                 reporter: Reporter | None = None, manifest_path: str | None = None,
                 force: bool = False, keep_parts: bool = False,
                 cancel: threading.Event | None = None,
                 inputs: list[storage.StoredVideo] | None = None) -> None:
        self.config = config
        self.executor = executor
        self.reporter = reporter or NullReporter()
        self.layout = JobLayout.create(config.input, config.output, config.storage_options,
                                       manifest=manifest_path)
        self.force = force
        self.keep_parts = keep_parts
        self.cancel = cancel
        self._inputs = inputs

    def list_inputs(self) -> list[storage.StoredVideo]:
        """The job's inputs (:func:`list_inputs`), kept for :meth:`run`."""
        self._inputs = list_inputs(self.layout)
        return self._inputs

    def run(self) -> JobSummary:
        from nhance_batch.state.lease import lease_for

        inputs = self._inputs if self._inputs is not None else self.list_inputs()
        storage.makedirs_for(self.layout.lease)
        lease = lease_for(self.layout.lease, self.layout.output_options)
        lease.acquire(force=self.force)
        lease.start_heartbeat()
        try:
            return self._run(lease, inputs)
        finally:
            lease.release()

    def _run(self, lease: HeldLease, inputs: list[storage.StoredVideo]) -> JobSummary:
        state = JobState.open(self.layout, job_settings(self.config), force=self.force,
                              extras={"previews": self.config.previews},
                              lease=lease)
        names = OutputNames(item.relative for item in inputs)
        todo = self.reconcile(state, inputs, names)
        run = state.new_run(socket.gethostname(), os.getpid())
        state.flush(compact=True)
        scheduler = Scheduler(self.config, self.layout, self.executor, state, run, todo, names,
                              reporter=self.reporter, lease=lease, keep_parts=self.keep_parts,
                              cancel=self.cancel)
        status = "interrupted"
        try:
            status = scheduler.execute()
        finally:
            run.finished = state.now()
            run.status = status
            for video in todo.values():
                if video.status == RUNNING:
                    video.status = PENDING
                    state.video_changed(video)
            if not lease.lost:
                state.flush(compact=True)
            self.reporter.stop()
        return scheduler.summary(status)

    def reconcile(self, state: JobState, inputs: list[storage.StoredVideo],
                  names: OutputNames) -> dict[int, VideoRecord]:
        """Match the inputs with the job's state; the videos this run must work on, by their
        position in the manifest."""
        manifest = state.manifest
        todo: dict[int, VideoRecord] = {}
        for item in inputs:
            vid = manifest.position(item.relative)
            if vid is None:
                manifest.videos.append(VideoRecord(input=item.source, relative=item.relative))
                vid = len(manifest.videos) - 1
            record = manifest.videos[vid]
            if self.reconcile_video(record, item, names):
                todo[vid] = record
                state.video_changed(record)
        return todo

    def reconcile_video(self, record: VideoRecord, item: storage.StoredVideo,
                        names: OutputNames) -> bool:
        """Bring one video's record up to date with its input; False when it is finished
        and untouched."""
        problem = unsafe_key(item.relative)
        if problem:
            record.status = FAILED
            record.error = self.layout.redact(
                f"{item.source}: its path under the input ({item.relative!r}) {problem}, so "
                "its output would not stay inside OUTPUT")
            return True
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
        if record.output_name is None:
            record.output_name, why = names.primary(item.relative)
            record.note = record.note or why
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

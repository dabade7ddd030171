"""The job queue: one job at a time, in a background thread of the server, through the
library's ``run_job`` (never a subprocess of the CLI).

States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``; ``resume`` puts a
finished job back in the queue. After a restart, jobs that were queued or running are queued
again (running ones first) and resume from their manifests: committed chunks are kept.
A server that stops while a job runs cancels it between chunks and leaves it ``queued``, so the
next start resumes it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from nhance_batch.web.settings import JobSettings, ServerConfig
from nhance_batch.web.store import (ACTIVE, CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobNotFound,
                                    JobStore)

log = logging.getLogger("nhance_batch.web")


class JobStateError(RuntimeError):
    """The operation does not apply to the job in its current state (HTTP 409)."""


def _default_run_job(config, **kwargs):
    from nhance_batch.pipeline.driver import run_job

    return run_job(config, **kwargs)


def summarize_outcome(summary: Any) -> tuple[str, str | None]:
    """(state, error) of a finished run: ``done`` when at least one video succeeded (the error
    then says how many failed), ``failed`` when every video failed."""
    videos = list(getattr(summary, "videos", []) or [])
    failed = [v for v in videos if getattr(v, "status", None) == FAILED]
    if not failed:
        return DONE, None
    first = next((v.error for v in failed if getattr(v, "error", None)), None)
    detail = f": {first}" if first else ""
    if len(failed) == len(videos):
        return FAILED, (f"every video failed ({len(failed)})" if len(failed) > 1
                        else "the video failed") + detail
    return DONE, f"{len(failed)} of {len(videos)} videos failed{detail}"


class JobRunner:
    """Runs the store's jobs one at a time."""

    def __init__(self, store: JobStore, server: ServerConfig, *,
                 run_job: Callable[..., Any] | None = None) -> None:
        self.store = store
        self.server = server
        self._run_job = run_job or _default_run_job
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._current: str | None = None
        self._cancel: threading.Event | None = None
        self._user_cancelled = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Queue the jobs a previous server left queued or running, then start the worker."""
        records = [self.store.get(i) for i in self.store.ids()]
        running = sorted((r for r in records if r.state == RUNNING), key=lambda r: r.created)
        queued = sorted((r for r in records if r.state == QUEUED), key=lambda r: r.created)
        with self._cond:
            for record in running + queued:
                if record.state == RUNNING:
                    self.store.update(record.id, state=QUEUED)
                self._queue.append(record.id)
        self._thread = threading.Thread(target=self._loop, name="nhance-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop after the running job's current chunk; it stays queued for the next start."""
        with self._cond:
            self._stopping = True
            if self._cancel is not None:
                self._cancel.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- operations ----------------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        with self._cond:
            self._queue.append(job_id)
            self._cond.notify_all()

    def cancel(self, job_id: str) -> None:
        with self._cond:
            record = self.store.get(job_id)
            if job_id == self._current and self._cancel is not None:
                self._user_cancelled = True
                self._cancel.set()
                return
            if record.state not in ACTIVE:
                raise JobStateError(f"job {job_id} is {record.state}; only queued or running "
                                    "jobs can be cancelled")
            if job_id in self._queue:
                self._queue.remove(job_id)
            self.store.update(job_id, state=CANCELLED, error=None)

    def resume(self, job_id: str) -> None:
        with self._cond:
            record = self.store.get(job_id)
            if record.state in ACTIVE or job_id == self._current:
                raise JobStateError(f"job {job_id} is {record.state} already")
            self.store.update(job_id, state=QUEUED, error=None)
            self._queue.append(job_id)
            self._cond.notify_all()

    def delete(self, job_id: str, timeout: float = 120.0) -> None:
        """Cancel the job if it runs, wait for it to stop, and remove its files."""
        with self._cond:
            self.store.get(job_id)
            if job_id in self._queue:
                self._queue.remove(job_id)
            if job_id == self._current and self._cancel is not None:
                self._user_cancelled = True
                self._cancel.set()
            if not self._cond.wait_for(lambda: self._current != job_id, timeout):
                raise JobStateError(f"job {job_id} did not stop within {timeout:.0f} s")
            self.store.remove(job_id)

    def current(self) -> str | None:
        return self._current

    # -- the worker ----------------------------------------------------------------------
    def _next(self) -> str | None:
        with self._cond:
            while not self._stopping:
                while self._queue:
                    job_id = self._queue.popleft()
                    try:
                        record = self.store.get(job_id)
                    except JobNotFound:
                        continue
                    if record.state != QUEUED:
                        continue
                    self._current = job_id
                    self._cancel = threading.Event()
                    self._user_cancelled = False
                    self.store.update(job_id, state=RUNNING, error=None)
                    return job_id
                self._cond.wait()
            return None

    def _loop(self) -> None:
        while True:
            job_id = self._next()
            if job_id is None:
                return
            try:
                state, error = self._execute(job_id)
            except BaseException as exc:  # noqa: BLE001 - the queue must survive any job
                log.exception("job %s", job_id)
                state, error = FAILED, f"{type(exc).__name__}: {exc}"
            with self._cond:
                if self._user_cancelled:
                    state, error = CANCELLED, None
                elif self._stopping and state != FAILED:
                    state, error = QUEUED, None  # interrupted by shutdown: resumed next start
                try:
                    self.store.update(job_id, state=state, error=error)
                except JobNotFound:
                    pass
                self._current, self._cancel = None, None
                self._cond.notify_all()

    def _execute(self, job_id: str) -> tuple[str, str | None]:
        from nhance_batch.pipeline.driver import configuration_errors

        record = self.store.get(job_id)
        settings = JobSettings.model_validate(
            {k: v for k, v in record.settings.items() if k in JobSettings.model_fields})
        config = settings.run_config(record.input, str(self.store.output_dir(job_id)),
                                     self.server)
        try:
            summary = self._run_job(config, executor=self.server.executor, cancel=self._cancel)
        except configuration_errors() as exc:
            return FAILED, f"{type(exc).__name__}: {exc}"
        if self._cancel is not None and self._cancel.is_set():
            return CANCELLED, None
        return summarize_outcome(summary)

"""The web service's jobs on disk: one normal job folder per job, plus its ``job.json``.

Layout of the data folder::

    DATA/jobs/<id>/job.json     id, state, created, settings, error (written atomically)
    DATA/jobs/<id>/input/       the uploaded files (a server-side job reads its input in place)
    DATA/jobs/<id>/output/      the job's OUTPUT, with its manifest in output/_nhance/
    DATA/jobs/<id>/web/         what the web pages render on demand (previews of inputs)

So ``nhance-batch status DATA/jobs/<id>/output`` and ``resume`` work on it from the CLI.

A job document is ``{"id", "state", "created", "settings", "error", "status"}`` where ``status``
is the ``status --json`` document of the job's OUTPUT (None before the job has a manifest).
Each document has a version, a number that grows with every change (milliseconds of the
wall clock at the change, so it keeps growing across restarts): the events stream's ``id:``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)

_ID = re.compile(r"^[0-9a-f]{16}$")
_STATUS_TTL_S = 0.5  # a running job's status is read again at most this often


class JobNotFound(KeyError):
    """No job with that id."""


def valid_id(job_id: str) -> bool:
    return bool(_ID.match(job_id))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _write_json(path: Path, data: dict) -> None:
    from nhance_batch.storage import atomic_local_file

    with atomic_local_file(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1)


@dataclass
class JobRecord:
    """What ``job.json`` holds."""

    id: str
    state: str
    created: str
    settings: dict[str, Any]
    error: str | None = None
    #: where the job reads its videos: the uploads' folder (as a glob, so every uploaded file
    #: is tried, and a non-video fails with its error) or the server-side input
    input: str = ""
    #: the uploaded files' names, as stored in ``input/``
    uploads: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "created": self.created,
                "settings": self.settings, "error": self.error, "input": self.input,
                "uploads": self.uploads}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobRecord":
        return cls(id=data["id"], state=data["state"], created=data["created"],
                   settings=dict(data.get("settings") or {}), error=data.get("error"),
                   input=data.get("input", ""), uploads=list(data.get("uploads") or []))


@dataclass
class _Cached:
    key: Any = None
    read_at: float = 0.0
    status: dict | None = None
    digest: str | None = None
    version: int = 0
    doc_key: Any = None
    doc_status: Any = None


class JobStore:
    """Every job of one data folder: records in memory, written through to ``job.json``;
    status documents read from each job's manifest and cached until its state files change."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data).resolve()
        self.jobs_dir = self.data / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._records: dict[str, JobRecord] = {}
        self._cache: dict[str, _Cached] = {}
        self._load()

    # -- folders -------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        if not valid_id(job_id):
            raise JobNotFound(job_id)
        return self.jobs_dir / job_id

    def input_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "input"

    def output_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "output"

    def web_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "web"

    def _load(self) -> None:
        for entry in sorted(self.jobs_dir.iterdir()):
            path = entry / "job.json"
            if not (valid_id(entry.name) and path.is_file()):
                continue
            try:
                record = JobRecord.from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign file: not a job of ours
            if record.id == entry.name and record.state in STATES:
                self._records[record.id] = record

    # -- records -------------------------------------------------------------------------
    def new_id(self) -> str:
        while True:
            job_id = secrets.token_hex(8)
            if job_id not in self._records and not (self.jobs_dir / job_id).exists():
                return job_id

    def reserve(self) -> str:
        """A new job's id and its (empty) folders; the job exists once :meth:`create` runs."""
        with self._lock:
            job_id = self.new_id()
            self.input_dir(job_id).mkdir(parents=True)
            self.output_dir(job_id).mkdir()
            return job_id

    def discard(self, job_id: str) -> None:
        """Remove a reserved job's folder (a refused or failed upload): nothing left behind."""
        with self._lock:
            self._records.pop(job_id, None)
            self._cache.pop(job_id, None)
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def create(self, job_id: str, settings: dict[str, Any], input_spec: str,
               uploads: list[str] | None = None) -> JobRecord:
        record = JobRecord(id=job_id, state=QUEUED, created=_now(), settings=settings,
                           input=input_spec, uploads=list(uploads or []))
        with self._lock:
            _write_json(self.job_dir(job_id) / "job.json", record.as_json())
            self._records[job_id] = record
        return record

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                raise JobNotFound(job_id)
            return record

    def ids(self) -> list[str]:
        """Every job, newest first."""
        with self._lock:
            return [r.id for r in sorted(self._records.values(), key=lambda r: r.created,
                                         reverse=True)]

    def update(self, job_id: str, **changes: Any) -> JobRecord:
        with self._lock:
            record = self.get(job_id)
            for name, value in changes.items():
                setattr(record, name, value)
            _write_json(self.job_dir(job_id) / "job.json", record.as_json())
            return record

    def remove(self, job_id: str) -> None:
        with self._lock:
            self.get(job_id)
            self._records.pop(job_id)
            self._cache.pop(job_id, None)
            folder = self.job_dir(job_id)
            # rename first, so a half-deleted job is never read back as a job
            trash = self.jobs_dir / f".deleted-{job_id}-{secrets.token_hex(4)}"
            os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- documents -----------------------------------------------------------------------
    def state_signature(self, job_id: str) -> Any:
        """A cheap signature of the job's state files (names, sizes, modification times):
        it changes whenever one is written; None while the job has no state folder."""
        folder = self.output_dir(job_id) / "_nhance"
        entries = []
        for sub in (folder, folder / "journal"):
            try:
                with os.scandir(sub) as it:
                    for e in it:
                        if e.is_file():
                            st = e.stat()
                            entries.append((sub.name, e.name, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                if sub is folder:
                    return None
        return tuple(sorted(entries))

    def status(self, job_id: str, record: JobRecord | None = None) -> dict | None:
        """The job's ``status --json`` document (None while it has no manifest)."""
        from nhance_batch.state.status import status_document

        record = record or self.get(job_id)
        cached = self._cache.setdefault(job_id, _Cached())
        key = self.state_signature(job_id)
        fresh = time.monotonic() - cached.read_at < _STATUS_TTL_S
        if cached.read_at and key == cached.key and (record.state != RUNNING or fresh):
            return cached.status
        if key is None:
            status = None
        else:
            try:
                status = status_document(str(self.output_dir(job_id)))
            except Exception as exc:  # a manifest being replaced, or unreadable: say so
                status = cached.status if cached.status is not None else None
                if status is None:
                    status = {"error": f"{type(exc).__name__}: {exc}"}
        cached.key, cached.read_at, cached.status = key, time.monotonic(), status
        return status

    def document(self, job_id: str) -> tuple[dict, int]:
        """The job document and its version."""
        with self._lock:
            record = self.get(job_id)
            doc = {"id": record.id, "state": record.state, "created": record.created,
                   "settings": record.settings, "error": record.error,
                   "status": self.status(job_id, record)}
            cached = self._cache.setdefault(job_id, _Cached())
            # the same record values and the same cached status object: nothing changed
            same = (record.state, record.error)
            if cached.doc_key == same and cached.doc_status is doc["status"] and cached.digest:
                return doc, cached.version
            cached.doc_key, cached.doc_status = same, doc["status"]
            digest = json.dumps(doc, sort_keys=True, default=str)
            if digest != cached.digest:
                cached.digest = digest
                cached.version = max(cached.version + 1, time.time_ns() // 1_000_000)
            return doc, cached.version

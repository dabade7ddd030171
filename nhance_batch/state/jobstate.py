"""The job's state as the driver keeps it: the manifest in memory, its changes on storage.

The Parquet manifest is the compacted state. Between compactions every change goes to an
append-only journal beside it (:mod:`nhance_batch.state.journal`): a chunk commit costs one
record, not a rewrite of the whole manifest, so a job of 10,000 videos commits chunks as fast
as one of ten. The journal is compacted into the manifest at most every
``NHANCE_MANIFEST_SAVE_S`` seconds (60) and at the start and end of every run. Readers
(:func:`read_manifest`: ``status``, the report, the web app) see the manifest with the journal
replayed on top, so they are never behind by more than the journal's flush interval.

The manifest and its journal hold committed work only; a chunk is committed when it is
encoded, which may be a minute after its first frame was enhanced. So a running driver also
writes, every :data:`LIVE_INTERVAL_S` seconds, a small record of what it has enhanced so far
(:class:`LiveRecord`, ``OUTPUT/_nhance/progress.json``), written whole (a rename locally, one
object in a store); readers (``status``, the web app) add it to the manifest's counts while its
driver is alive.

A driver that has lost its lease (another driver took over) writes nothing more.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nhance_batch import storage
from nhance_batch.config import RunConfig, run_config
from nhance_batch.state.journal import Journal, replay
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.manifest import (PENDING, ChunkRecord, Manifest, RunRecord,
                                         VideoRecord, load_job, load_manifest, save_manifest)

# The journal is compacted into the Parquet manifest at most this often.
COMPACT_INTERVAL_S = float(os.environ.get("NHANCE_MANIFEST_SAVE_S", "60"))
# Journal records are written out (a line per record locally, one object per flush in a
# store) at most this often.
FLUSH_INTERVAL_S = float(os.environ.get("NHANCE_JOURNAL_FLUSH_S", "1"))
#: Seconds between two writes of the live progress record by a running driver.
LIVE_INTERVAL_S = 2.0

log = logging.getLogger(__name__)


class JobConfigMismatch(RuntimeError):
    """The output folder holds a job with other settings (resume refused without --force)."""


def job_settings(config: RunConfig) -> dict[str, Any]:
    """The settings a resume must share with the run that started the job. The manifest
    records them with ``input`` and ``previews`` (:meth:`JobState.open`); the inverse is
    :func:`run_config_from_settings`."""
    model = config.model
    return {
        "model": model.name, "model_path": str(model.path) if model.path else None,
        "precision": model.precision, "chunk_frames": config.chunk.chunk_frames,
        "overlap": config.chunk.overlap, "temporal_radius": config.temporal_radius,
        "encode": config.encode.model_dump(), "strength": model.strength,
        "strict": config.strict,
    }


def job_extras(config: RunConfig) -> dict[str, Any]:
    """Settings recorded for a resume that may differ between runs without redoing work:
    ``previews``, and ``chunk_seconds`` (it sizes only the chunks of videos not yet cut:
    a recorded plan is kept)."""
    return {"previews": config.previews, "chunk_seconds": config.chunk.chunk_seconds}


def run_config_from_settings(settings: Mapping[str, Any], *, output: str,
                             overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The :class:`RunConfig` of a recorded job: ``settings`` is the manifest's job record
    (:func:`job_settings` with ``input`` and :func:`job_extras`), ``overrides`` the
    :func:`~nhance_batch.config.run_config` keywords a resume may change (cluster, threads,
    limits, storage options). Settings that records of older versions lack take the values
    those versions ran with (:data:`_LATER_SETTINGS`; ``model_path``, ``precision`` and
    ``chunk_seconds``: the defaults).

    Raises:
        nhance_batch.config.ConfigError: the record does not make a valid job.
        TypeError: an override names a recorded setting.
    """
    job = {**settings, **{key: _recorded(settings, key) for key in _LATER_SETTINGS}}
    encode = job["encode"]
    lossless = bool(encode["lossless"])
    # run_config refuses a codec, crf or preset beside lossless (which ignores them)
    lossy = {} if lossless else {k: encode[k] for k in ("codec", "crf", "preset")}
    model_path = job.get("model_path")
    return run_config(
        job["input"], output, model=job["model"],
        model_path=Path(model_path) if model_path else None,
        precision=job.get("precision"), chunk_frames=job["chunk_frames"],
        chunk_seconds=job.get("chunk_seconds"),
        overlap=job["overlap"], temporal_radius=job["temporal_radius"],
        lossless=lossless, previews=bool(job.get("previews")), hdr=encode["hdr"],
        strength=job["strength"], strict=job["strict"], **lossy, **(overrides or {}))


# Settings added after jobs were first recorded, with the value those jobs ran with: a job
# recorded without them resumes with these (one level of nesting, as in ``encode``).
_LATER_SETTINGS = {"strength": 1.0, "strict": False, "encode": {"hdr": "keep"}}


def _recorded(job: Mapping[str, Any], key: str):
    """``job``'s value of setting ``key``, completed with :data:`_LATER_SETTINGS`."""
    later, value = _LATER_SETTINGS.get(key), job.get(key)
    if isinstance(later, dict) and isinstance(value, dict):
        return {**later, **value}
    return later if value is None else value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(url: str, storage_options: dict | None = None) -> Manifest | None:
    """The job's state at the manifest ``url`` (a local path or store URL), with its journal
    replayed; None if there is none."""
    fs, path = storage.resolve(url, storage_options)
    fs.invalidate_cache()
    manifest = storage.with_retries(load_manifest, path, fs, what="reading the manifest",
                                    url=url, storage_options=storage_options)
    if manifest is None:
        return None
    replay(manifest, storage.join(storage.parent(url), "journal"), storage_options)
    return manifest


def read_job_settings(url: str, storage_options: dict | None = None) -> dict | None:
    """The settings recorded in the manifest at ``url`` (only its footer is read: ``resume``
    reads the whole state once, when its run holds the lease); None if there is none."""
    fs, path = storage.resolve(url, storage_options)
    fs.invalidate_cache()
    return storage.with_retries(load_job, path, fs, what="reading the manifest", url=url,
                                storage_options=storage_options)


@dataclass
class LiveRecord:
    """What a running driver has done so far.

    Attributes:
        run: the run's number in the manifest.
        updated: when it was written (UTC, ISO 8601).
        frames_enhanced: own frames of the job enhanced so far: committed (this run's and
            earlier runs') and in chunks not yet committed.
        frames_committed: own frames of committed chunks.
        frames_total: frames of the videos probed so far.
        fps: the enhancer's frames per second used for the ETA (measured, or known from
            the rate before enough was measured).
        eta_seconds: seconds still to go when written; None while unknown.
        enhancing: the chunks not yet committed, ``{"video": relative, "chunk": index,
            "frames": own frames enhanced}``.
    """

    run: int
    updated: str
    frames_enhanced: int = 0
    frames_committed: int = 0
    frames_total: int = 0
    fps: float | None = None
    eta_seconds: float | None = None
    enhancing: list[dict[str, Any]] = field(default_factory=list)


def live_url(layout: JobLayout) -> str:
    return storage.join(layout.state_dir, "progress.json")


def read_live(layout: JobLayout) -> LiveRecord | None:
    """The record, or None when there is none or it cannot be read."""
    try:
        data = json.loads(storage.read_bytes(live_url(layout), layout.output_options))
        return LiveRecord(**data)
    except (OSError, ValueError, TypeError, storage.StorageError):
        return None


class JobState:
    """The manifest of the job in a layout, and how its changes reach storage.

    Use :meth:`open`; then report changes with :meth:`video_changed` and
    :meth:`chunk_committed`, call :meth:`maybe_flush` from the scheduling loop, and
    :meth:`flush` (``compact=True``) at the start and end of a run.
    """

    def __init__(self, layout: JobLayout, manifest: Manifest, lease: Any = None) -> None:
        self.layout = layout
        self.manifest = manifest
        self.lease = lease
        self.journal = Journal(layout.journal_dir, layout.manifest_options,
                               start_segment=manifest.journal_segment + 1)
        self._last_flush = time.monotonic()
        self._next_compact = time.monotonic() + COMPACT_INTERVAL_S
        self._live_written = float("-inf")

    @classmethod
    def open(cls, layout: JobLayout, settings: dict, *, force: bool = False,
             lease: Any = None, extras: dict | None = None) -> JobState:
        """The job's state in ``layout`` for a run with ``settings``.

        Raises:
            JobConfigMismatch: the job was started with other settings (unless ``force``,
                which re-plans every video).
        """
        # extras (such as previews) are recorded for resume but may differ between runs
        job = {**settings, **(extras or {}), "input": layout.input}
        manifest = read_manifest(layout.manifest, layout.manifest_options)
        if manifest is None:
            return cls(layout, Manifest(job=job, videos=[], runs=[]), lease)
        changed = sorted(k for k in settings if _recorded(manifest.job, k) != settings[k])
        if changed:
            if not force:
                raise JobConfigMismatch(
                    f"{layout.output} holds a job with other settings ({', '.join(changed)}:"
                    f" {', '.join(f'{k}={manifest.job.get(k)!r}' for k in changed)}); rerun "
                    "with the same settings to resume, or add --force to redo every video with "
                    "the new ones")
            for video in manifest.videos:
                video.status, video.chunks, video.note = PENDING, [], "settings changed; redone"
        manifest.job = job
        return cls(layout, manifest, lease)

    # -- changes -----------------------------------------------------------------------
    @staticmethod
    def now() -> str:
        return _now()

    def new_run(self, host: str, pid: int) -> RunRecord:
        return self.manifest.new_run(host, pid)

    def video_changed(self, video: VideoRecord, *, chunks: bool = True) -> None:
        """``video``'s record (its status, plan, output...) changed; ``chunks=False`` when
        its chunks did not change since they were last reported."""
        self.journal.video(video, with_chunks=chunks)

    def chunk_committed(self, video: VideoRecord, chunk: ChunkRecord) -> None:
        """One chunk of ``video`` was committed (or changed state)."""
        self.journal.chunk(video.relative, chunk)

    def note_live(self, record: LiveRecord) -> None:
        """Write the live progress record when :data:`LIVE_INTERVAL_S` seconds have passed
        since its last write. A store that refuses it is logged at debug level: the record is
        a courtesy to readers, never a reason to stop a run."""
        now = time.monotonic()
        if now - self._live_written < LIVE_INTERVAL_S or not self._writable():
            return
        self._live_written = now
        layout = self.layout
        try:
            storage.write_bytes(live_url(layout), json.dumps(asdict(record)).encode(),
                                layout.output_options)
        except (OSError, storage.StorageError) as exc:
            log.debug("progress record not written: %s", layout.redact(exc))

    def keep_summary(self, document: dict[str, Any], *, replace: bool = True) -> None:
        """Write the run's summary (``JobSummary.as_dict()``) beside the state for the report;
        with ``replace`` False, only where there is none yet. Best effort: a store that
        refuses it costs the report its throughput curve, never the run."""
        layout = self.layout
        if not self._writable():
            return
        try:
            if not replace and storage.exists(layout.summary, layout.output_options):
                return
            storage.write_bytes(layout.summary, json.dumps(document, default=str).encode(),
                                layout.output_options)
        except Exception as exc:  # noqa: BLE001 - best effort, as said above
            log.warning("run summary not kept: %s", layout.redact(exc))

    # -- to storage --------------------------------------------------------------------
    def _writable(self) -> bool:
        return self.lease is None or not self.lease.lost

    def maybe_flush(self) -> None:
        """Write pending journal records, and compact, when their intervals have passed."""
        now = time.monotonic()
        if now >= self._next_compact:
            self.flush(compact=True)
        elif now - self._last_flush >= FLUSH_INTERVAL_S and self.journal.pending:
            self.flush()

    def flush(self, *, compact: bool = False) -> None:
        """Write pending journal records; with ``compact``, fold the journal into the
        manifest (the whole file, atomically) and remove the folded segments."""
        if not self._writable():
            return
        layout = self.layout
        if not compact:
            self.journal.flush()  # its store calls retry on their own
            self._last_flush = time.monotonic()
            return
        started = time.monotonic()
        segment = self.journal.rotate()
        self.manifest.journal_segment = segment
        fs, path = storage.resolve(layout.manifest, layout.manifest_options)
        storage.with_retries(save_manifest, self.manifest, path, fs, what="saving the manifest",
                             url=layout.manifest, storage_options=layout.storage_options)
        self.journal.remove_through(segment)
        now = self._last_flush = time.monotonic()
        # a big manifest takes a while to rewrite: compact at most a tenth of the time
        self._next_compact = now + max(COMPACT_INTERVAL_S, 9 * (now - started))

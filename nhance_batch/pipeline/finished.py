"""A job with nothing left to do, recognised before anything starts.

A video needs no work when it is *untouched* (:func:`untouched`): done, its input's
fingerprint the one recorded, and its output the size recorded. The driver skips such videos
(:meth:`~nhance_batch.pipeline.driver.Driver.reconcile_video`); when every input of a job is
untouched and the job's settings are the recorded ones, :func:`already_done` answers from the
manifest and the listing alone, so a rerun of a finished job starts no cluster, takes no
lease and writes nothing.
"""

from __future__ import annotations

import time

from nhance_batch import storage
from nhance_batch.config import RunConfig
from nhance_batch.pipeline.summary import JobSummary, VideoSummary, rate
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.manifest import DONE, Manifest, VideoRecord


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


def already_done(config: RunConfig, layout: JobLayout, inputs: list[storage.StoredVideo],
                 recorded: Manifest | None = None) -> JobSummary | None:
    """The summary of a job whose every input is untouched (``already_done`` set; no chunk
    computed or skipped, as for any untouched video), or None when a run has anything to do,
    or the settings differ, or the state cannot be read (the run then says why).
    ``recorded`` is the job's state when the caller has just read it (``resume``)."""
    from nhance_batch.state.jobstate import job_settings, read_manifest

    started = time.monotonic()
    if not inputs:
        return None
    try:
        manifest = recorded or read_manifest(layout.manifest, layout.manifest_options)
    except Exception:  # noqa: BLE001 - the run reads it again and reports what is wrong
        return None
    if manifest is None or any(manifest.job.get(k) != v
                               for k, v in job_settings(config).items()):
        return None
    records = []
    for item in inputs:  # stops at the first video with work to do
        record = _untouched_record(manifest, item, layout)
        if record is None:
            return None
        records.append(record)
    return _summary(manifest, records, time.monotonic() - started)


def _untouched_record(manifest: Manifest, item: storage.StoredVideo,
                      layout: JobLayout) -> VideoRecord | None:
    record = manifest.video(item.relative)
    if record is None or record.status != DONE:
        return None
    try:
        fingerprint, _ = storage.video_fingerprint(item, layout.input_options)
    except (OSError, storage.StorageError):
        return None
    return record if untouched(record, fingerprint, layout.output_options) else None


def _summary(manifest: Manifest, records: list[VideoRecord], seconds: float) -> JobSummary:
    videos = [VideoSummary(v.input, v.output, v.status, v.frames or 0, v.seconds or 0.0,
                           rate(v.frames or 0, v.seconds or 0.0), v.added_flicker,
                           v.model_flicker, None, v.note)
              for v in records]
    last_run = manifest.runs[-1].run if manifest.runs else 0
    return JobSummary(last_run, videos, {"decode": 0.0, "enhance": 0.0, "encode": 0.0},
                      seconds, sum(v.frames for v in videos), chunks_computed=0,
                      chunks_skipped=0, status=DONE, already_done=True)

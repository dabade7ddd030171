"""The status document of a job: what ``nhance-batch status --json`` prints and the web app
serves, from the job's state (manifest and journal) and its lease.

:func:`summarize` builds it from a manifest alone (pure); :func:`status_document` reads the
job's state and adds whether its driver is alive.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from nhance_batch.state.jobstate import LiveRecord, read_live
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.manifest import (DONE, FAILED, INTERRUPTED, ChunkRecord, Manifest,
                                         RunRecord, VideoRecord)


def status_document(output: str, manifest: str | None = None,
                    storage_options: dict | None = None) -> dict[str, Any] | None:
    """The status of the job in ``output`` (its manifest at ``manifest`` if given); None when
    there is no job there.

    Keys: those of :func:`summarize`, and ``driver_alive``. A video left ``running`` by a
    driver that is gone shows as ``pending``, and its run as ``interrupted``. While the
    driver is alive, its progress record (:class:`~nhance_batch.state.jobstate.LiveRecord`) adds the frames
    enhanced in chunks not yet committed to ``progress.frames_done``, and gives the ETA.

    Raises:
        ManifestError: a manifest is there but cannot be read.
        StorageError: the store cannot be read.
    """
    from nhance_batch.state.jobstate import read_manifest
    from nhance_batch.state.lease import live_holder

    layout = JobLayout.for_job(output, storage_options, manifest=manifest)
    recorded = read_manifest(layout.manifest, layout.manifest_options)
    if recorded is None:
        return None
    report = summarize(recorded)
    alive = live_holder(layout.lease, layout.output_options) is not None
    report["driver_alive"] = alive
    if alive:
        add_live(report, recorded, read_live(layout))
    else:  # a driver that died mid-run left "running" rows: nothing runs them now
        for video in report["videos"]:
            if video["status"] == "running":
                video["status"] = "pending"
        for run in report["runs"]:
            if run["status"] == "running":
                run["status"] = INTERRUPTED
    return report


def add_live(report: dict[str, Any], manifest: Manifest, live: LiveRecord | None,
             now: datetime | None = None) -> None:
    """Add a running driver's progress record to ``report``: frames enhanced in chunks the
    manifest does not hold as done yet, and the record's ETA less the time since it was
    written. A record of another run than the latest changes nothing."""
    latest = _latest_run(manifest)
    if live is None or latest is None or live.run != latest.run:
        return
    done = {(v.relative, c.index) for v in manifest.videos for c in v.chunks
            if c.status == DONE}
    extra = sum(int(e.get("frames") or 0) for e in live.enhancing
                if (e.get("video"), e.get("chunk")) not in done)
    progress = report["progress"]
    progress["frames_done"] = progress["frames_committed"] + extra
    progress["fps"] = live.fps
    written = _parse_time(live.updated)
    if live.eta_seconds is not None and written is not None:
        age = ((now or datetime.now(timezone.utc)) - written).total_seconds()
        report["eta_seconds"] = round(max(0.0, live.eta_seconds - max(0.0, age)), 1)


def summarize(manifest: Manifest, now: datetime | None = None) -> dict[str, Any]:
    """The JSON-able summary of a manifest behind ``nhance-batch status --json``.

    Keys: ``videos`` (per video ``input``, ``output``, ``status``, ``error``, ``frames``,
    ``note``, ``chunks_done``, ``chunks_total``, ``added_flicker``, ``metrics``, ``preview``,
    ``output_codec``, ``size_ratio``, ``chunks``), ``runs``, ``enhancer_busy`` (the latest
    run's), ``progress`` and ``eta_seconds`` (:func:`eta_seconds`, with ``now`` as the clock).
    """
    latest = _latest_run(manifest)
    return {
        "videos": [_video_entry(video) for video in manifest.videos],
        "runs": [
            {"run": r.run, "started": r.started, "finished": r.finished, "status": r.status,
             "enhancer_busy": r.enhancer_busy}
            for r in manifest.runs
        ],
        "enhancer_busy": latest.enhancer_busy if latest is not None else None,
        "progress": _progress(manifest),
        "eta_seconds": eta_seconds(manifest, now or datetime.now(timezone.utc)),
    }


def eta_seconds(manifest: Manifest, now: datetime) -> float | None:
    """Seconds still to go: the frames still to do (:func:`_remaining_frames`) over the rate
    of the latest run (its done frames over its elapsed time, to its finish or to ``now``);
    0.0 when nothing remains, None when the latest run has nothing measured yet."""
    remaining = sum(_remaining_frames(video) for video in manifest.videos)
    if remaining == 0:
        return 0.0
    latest = _latest_run(manifest)
    if latest is None:
        return None
    started = _parse_time(latest.started)
    until = _parse_time(latest.finished) or now
    measured = sum(_own_frames(c) for v in manifest.videos for c in v.chunks
                   if c.status == DONE and c.run == latest.run)
    if started is None or measured <= 0:
        return None
    elapsed = (until - started).total_seconds()
    return remaining / (measured / elapsed) if elapsed > 0 else None


def _video_entry(video: VideoRecord) -> dict[str, Any]:
    done = sum(c.status == DONE for c in video.chunks)
    return {
        "input": video.input,
        "output": video.output,
        "status": video.status,
        "error": video.error,
        "frames": video.frames,
        "note": video.note,
        "chunks_done": done,
        "chunks_total": len(video.chunks),
        "added_flicker": video.added_flicker,
        "metrics": video.metrics,
        "preview": video.preview,
        "output_codec": video.output_codec,
        "size_ratio": (round(video.output_bytes / video.size, 3)
                       if video.output_bytes and video.size else None),
        "chunks": [{"index": c.index, "status": c.status, "run": c.run,
                    "attempts": c.attempts, "error": c.error} for c in video.chunks],
    }


def _progress(manifest: Manifest) -> dict[str, Any]:
    """Counts of videos, frames and chunks; frames done and committed are the own frames
    (``end - start``) of done chunks (:func:`add_live` adds those enhanced and not yet
    committed to ``frames_done``); ``fps``: the running driver's, else None."""
    videos = manifest.videos
    committed = sum(_own_frames(c) for v in videos for c in v.chunks if c.status == DONE)
    return {
        "videos_total": len(videos),
        "videos_done": sum(v.status == DONE for v in videos),
        "videos_failed": sum(v.status == FAILED for v in videos),
        "frames_total": sum(v.frames or 0 for v in videos),
        "frames_done": committed,
        "frames_committed": committed,
        "fps": None,
        "chunks_total": sum(len(v.chunks) for v in videos),
        "chunks_done": sum(c.status == DONE for v in videos for c in v.chunks),
    }


def _remaining_frames(video: VideoRecord) -> int:
    """Frames still to do in a video neither done nor failed: the own frames of its chunks not
    done, or all its frames if it is not planned yet and the count is known."""
    if video.status in (DONE, FAILED):
        return 0
    if video.chunks:
        return sum(_own_frames(c) for c in video.chunks if c.status != DONE)
    return video.frames or 0


def _latest_run(manifest: Manifest) -> RunRecord | None:
    return max(manifest.runs, key=lambda r: r.run) if manifest.runs else None


def _own_frames(chunk: ChunkRecord) -> int:
    return max(0, chunk.end - chunk.start)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

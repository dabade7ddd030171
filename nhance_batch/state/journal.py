"""The manifest's journal: append-only records of what changed since the last compaction.

Records are JSON lines, grouped in numbered *segments*. A record is either a video's whole
record (``{"t": "v", "video": {...}}``, written when it is planned, fails or is committed) or
one chunk (``{"t": "c", "rel": relative, "chunk": {...}}``, written when it is committed).
Locally a segment is one file, ``seg-00000007.jsonl``, appended to and flushed (a killed
driver loses at most the records of its last flush interval; they are recomputed). Object
stores cannot append, so each flush writes one object, ``seg-00000007-000042.jsonl``.

Compaction (:class:`~nhance_batch.state.jobstate.JobState`) closes the current segment,
saves the manifest recording the last segment it holds (``nhance.journal_segment``), then
deletes the segments up to it; :func:`replay` applies only newer segments, so a crash between
the two steps never applies a record twice. Replaying sets state, it never adds, so it is
idempotent anyway. A torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from dataclasses import fields
from typing import Any

import numpy as np

from nhance_batch import storage
from nhance_batch.state.manifest import ChunkRecord, Manifest, VideoRecord

log = logging.getLogger(__name__)
_SEGMENT = re.compile(r"^seg-(\d{8})(?:-(\d{6}))?\.jsonl$")


def _segment_of(name: str) -> int | None:
    match = _SEGMENT.match(name)
    return int(match.group(1)) if match else None


def _list(journal_dir: str, options: dict | None) -> list[tuple[str, str]]:
    """``(name, url)`` of the journal's files in write order."""
    if storage.is_local_url(journal_dir):
        folder = storage.local_path(journal_dir)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return [(n, os.path.join(folder, n)) for n in sorted(names) if _SEGMENT.match(n)]
    fs, path = storage.resolve(journal_dir, options)
    fs.invalidate_cache(path)
    try:
        found = storage.with_retries(fs.ls, path, detail=False, what="listing",
                                     url=journal_dir, storage_options=options)
    except FileNotFoundError:
        return []
    names = sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in found)
    return [(n, storage.join(journal_dir, n)) for n in names if _SEGMENT.match(n)]


_CHUNK_FIELDS = tuple(f.name for f in fields(ChunkRecord))
_VIDEO_FIELDS = tuple(f.name for f in fields(VideoRecord) if f.name != "chunks")


def _chunk_dict(chunk: ChunkRecord) -> dict[str, Any]:
    # shallow (dataclasses.asdict deep-copies every float: 6 ms a chunk); gains as the
    # base64 of their float64 bytes, exact and ten times faster to write than JSON numbers
    out = {name: getattr(chunk, name) for name in _CHUNK_FIELDS}
    for name in ("gains_before", "gains_after"):
        if out[name] is not None:
            out[name] = {"f8": base64.b64encode(np.asarray(out[name]).tobytes()).decode()}
    return out


def _chunk_from(data: dict[str, Any]) -> ChunkRecord:
    for name in ("gains_before", "gains_after"):
        value = data.get(name)
        if isinstance(value, dict):
            data[name] = np.frombuffer(base64.b64decode(value["f8"]), dtype=np.float64)
    return ChunkRecord(**data)


def _video_dict(video: VideoRecord, with_chunks: bool) -> dict[str, Any]:
    data = {name: getattr(video, name) for name in _VIDEO_FIELDS}
    if with_chunks:
        data["chunks"] = [_chunk_dict(c) for c in video.chunks]
    return data


class Journal:
    """The writer of one driver's journal records.

    Args:
        journal_dir: the journal's folder (local path or store URL).
        options: the options of its store.
        start_segment: the lowest segment number this writer may use; it also starts past
            every segment already there (a killed driver's).
    """

    def __init__(self, journal_dir: str, options: dict | None, *, start_segment: int) -> None:
        self.dir = journal_dir
        self.options = options
        self.local = storage.is_local_url(journal_dir)
        existing = [_segment_of(name) for name, _ in _list(journal_dir, options)]
        self.segment = max([start_segment, *(s + 1 for s in existing if s is not None)])
        self._pending: list[str] = []
        self._part = 0
        self._file = None
        self.kept_segments = 0  # folded segments the store would not let us delete

    @property
    def pending(self) -> int:
        return len(self._pending)

    def video(self, video: VideoRecord, *, with_chunks: bool = True) -> None:
        """Record ``video``'s state; without its chunks when they were all recorded since
        their last change (a committed video: its chunk records are already written)."""
        self._pending.append(json.dumps({"t": "v", "video": _video_dict(video, with_chunks)}))

    def chunk(self, relative: str, chunk: ChunkRecord) -> None:
        self._pending.append(json.dumps({"t": "c", "rel": relative,
                                         "chunk": _chunk_dict(chunk)}))

    def flush(self) -> None:
        """Write the pending records to the current segment."""
        if not self._pending:
            return
        data = ("\n".join(self._pending) + "\n").encode()
        if self.local:
            if self._file is None:
                folder = storage.local_path(self.dir)
                os.makedirs(folder, exist_ok=True)
                self._file = open(os.path.join(folder, f"seg-{self.segment:08d}.jsonl"), "ab")
            self._file.write(data)
            self._file.flush()
        else:
            url = storage.join(self.dir, f"seg-{self.segment:08d}-{self._part:06d}.jsonl")
            storage.write_bytes(url, data, self.options)
            self._part += 1
        self._pending.clear()

    def rotate(self) -> int:
        """Close the current segment and start the next; the number of the closed one."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        closed = self.segment
        self.segment += 1
        self._part = 0
        return closed

    def remove_through(self, segment: int) -> None:
        """Delete every segment numbered ``segment`` or lower (folded into the manifest).

        A store that refuses deletions (a bucket policy without DeleteObject) keeps them:
        folded segments are never replayed, so they only take space."""
        for name, url in _list(self.dir, self.options):
            number = _segment_of(name)
            if number is not None and number <= segment:
                try:
                    storage.remove(url, self.options, missing_ok=True)
                except (PermissionError, storage.StorageError) as exc:
                    if not self.kept_segments:
                        log.warning("journal segments folded into the manifest are kept: "
                                    "deleting %s failed (%s)", name, exc)
                    self.kept_segments += 1


def replay(manifest: Manifest, journal_dir: str, options: dict | None = None) -> int:
    """Apply the journal's records newer than the manifest's segment; the records applied."""
    applied = 0
    for name, url in _list(journal_dir, options):
        number = _segment_of(name)
        if number is None or number <= manifest.journal_segment:
            continue
        try:
            text = storage.read_bytes(url, options).decode("utf-8", "replace")
        except FileNotFoundError:
            continue  # compacted away while listing
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line
            applied += _apply(manifest, record)
    return applied


def _apply(manifest: Manifest, record: dict[str, Any]) -> int:
    if record.get("t") == "v":
        data = dict(record["video"])
        chunks = data.pop("chunks", None)
        i = manifest.position(data["relative"])
        old = manifest.videos[i] if i is not None else None
        video = VideoRecord(**{k: v for k, v in data.items() if k in _VIDEO_FIELDS},
                            chunks=[_chunk_from(c) for c in chunks] if chunks is not None
                            else (old.chunks if old is not None else []))
        if i is None:
            manifest.videos.append(video)
        else:
            manifest.videos[i] = video
        return 1
    if record.get("t") == "c":
        video = manifest.video(record["rel"])
        chunk = _chunk_from(record["chunk"])
        if video is not None and 0 <= chunk.index < len(video.chunks):
            old = video.chunks[chunk.index]
            if (old.start, old.end) == (chunk.start, chunk.end):
                video.chunks[chunk.index] = chunk
                return 1
    return 0

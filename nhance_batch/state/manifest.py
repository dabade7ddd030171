"""The job manifest: every input video, its chunk plan and each chunk's state, as Parquet.

One row per input video; its chunks are a nested list column. The job's configuration and the
list of runs (invocations of the job) live in the file's key-value metadata as JSON. Every save
is atomic: the whole file is written under a temporary name, then renamed over the old one, so
a crash at any instant leaves either the old or the new manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nhance_batch.storage.objects import TEMP_MARK as _TEMP_MARK

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
#: a run whose driver stopped before the end (killed, interrupted, taken over)
INTERRUPTED = "interrupted"


class Gains:
    """A chunk's per-frame gains (frame-major R, G, B) as one float64 array.

    A list of Python floats costs 32 bytes a value; a job of 10,000 videos x 20 chunks of 110
    frames holds 132 million of them, so the manifest keeps them as arrays (8 bytes a value).
    It compares equal to any sequence of the same values, iterates as floats, and converts
    with ``numpy.asarray`` and :meth:`tolist`.
    """

    __slots__ = ("array",)

    def __init__(self, values) -> None:
        self.array = np.ascontiguousarray(values, dtype=np.float64).ravel()

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __iter__(self):
        return iter(self.array.tolist())

    def __getitem__(self, key):
        item = self.array[key]
        return item.tolist()

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    def __eq__(self, other) -> bool:
        if isinstance(other, Gains):
            other = other.array
        try:
            return bool(np.array_equal(self.array, np.asarray(other, dtype=np.float64)))
        except (TypeError, ValueError):
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def tolist(self) -> list[float]:
        return self.array.tolist()

    def __repr__(self) -> str:
        return f"Gains({self.array.tolist()!r})"

    def __getstate__(self):
        return self.array

    def __setstate__(self, state):
        self.array = state


@dataclass
class ChunkRecord:
    """One chunk of a video: its frames, and what happened to it."""

    index: int
    start: int
    end: int
    ctx_start: int
    ctx_end: int
    status: str = PENDING
    run: int | None = None          # the run that committed it
    attempts: int = 0
    error: str | None = None
    part: str | None = None
    part_bytes: int | None = None
    part_sha256: str | None = None
    decode_s: float | None = None
    enhance_s: float | None = None
    encode_s: float | None = None
    gains_before: Gains | None = None  # [own frames * 3], per frame R, G, B
    gains_after: Gains | None = None

    def __post_init__(self) -> None:
        for name in ("gains_before", "gains_after"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Gains):
                setattr(self, name, Gains(value))


@dataclass
class VideoRecord:
    """One input video: where it is and goes, its fingerprint, plan and state."""

    input: str
    relative: str
    output: str | None = None
    fingerprint: str | None = None
    size: int | None = None
    status: str = PENDING
    error: str | None = None
    note: str | None = None
    frames: int | None = None
    chunk_frames: int | None = None
    overlap: int | None = None
    run: int | None = None          # the run that committed the output
    seconds: float | None = None
    added_flicker: float | None = None
    model_flicker: float | None = None
    output_bytes: int | None = None
    output_name: str | None = None  # the key under OUTPUT, decided at plan time
    preview: str | None = None      # the browser-playable preview (run --previews)
    metrics: dict[str, Any] | None = None  # before/after quality metrics (stored as JSON)
    output_codec: str | None = None  # the video encoder, decided per video at plan time
    chunks: list[ChunkRecord] = field(default_factory=list)


@dataclass
class RunRecord:
    """One invocation of the job."""

    run: int
    started: str
    finished: str | None = None
    host: str | None = None
    pid: int | None = None
    status: str = RUNNING
    #: how the enhancer ran in this run (path, batch, precision), when known
    enhancer: dict[str, Any] | None = None
    #: the enhancer's busy share so far (``BusyMeter.snapshot``: overall and per actor)
    enhancer_busy: dict[str, Any] | None = None


SCHEMA_VERSION = 1
"""Bumped when the layout changes incompatibly; a newer file is refused, never misread."""

_META_JOB = b"nhance.job"
_META_RUNS = b"nhance.runs"
_META_VERSION = b"nhance.schema_version"
_META_JOURNAL = b"nhance.journal_segment"

_GAINS = pa.list_(pa.field("element", pa.float64()))  # Parquet's standard element name

CHUNK_TYPE = pa.struct(
    [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("end", pa.int64(), nullable=False),
        pa.field("ctx_start", pa.int64(), nullable=False),
        pa.field("ctx_end", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("run", pa.int64()),
        pa.field("attempts", pa.int64(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("part", pa.string()),
        pa.field("part_bytes", pa.int64()),
        pa.field("part_sha256", pa.string()),
        pa.field("decode_s", pa.float64()),
        pa.field("enhance_s", pa.float64()),
        pa.field("encode_s", pa.float64()),
        pa.field("gains_before", _GAINS),
        pa.field("gains_after", _GAINS),
    ]
)
"""The Arrow type of one element of the ``chunks`` column (the fields of :class:`ChunkRecord`)."""

SCHEMA = pa.schema(
    [
        pa.field("input", pa.string(), nullable=False),
        pa.field("relative", pa.string(), nullable=False),
        pa.field("output", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("note", pa.string()),
        pa.field("frames", pa.int64()),
        pa.field("chunk_frames", pa.int64()),
        pa.field("overlap", pa.int64()),
        pa.field("run", pa.int64()),
        pa.field("seconds", pa.float64()),
        pa.field("added_flicker", pa.float64()),
        pa.field("model_flicker", pa.float64()),
        pa.field("output_bytes", pa.int64()),
        pa.field("output_name", pa.string()),
        pa.field("preview", pa.string()),
        pa.field("metrics", pa.string()),
        pa.field("output_codec", pa.string()),
        pa.field("chunks", pa.list_(pa.field("element", CHUNK_TYPE, nullable=False))),
    ]
)
"""The manifest's Arrow schema: one row per video (the fields of :class:`VideoRecord`).

The job, the runs and :data:`SCHEMA_VERSION` ride in the key-value metadata that
:meth:`Manifest.to_table` adds; this module-level schema carries none.
"""

_CHUNK_FIELDS = tuple(f.name for f in fields(ChunkRecord))
_VIDEO_FIELDS = tuple(f.name for f in fields(VideoRecord))
_RUN_FIELDS = tuple(f.name for f in fields(RunRecord))
assert _CHUNK_FIELDS == tuple(f.name for f in CHUNK_TYPE), "CHUNK_TYPE out of step with ChunkRecord"
assert _VIDEO_FIELDS == tuple(SCHEMA.names), "SCHEMA out of step with VideoRecord"

_STALE_TEMP_S = 600.0  # a temp file this old is litter from a killed save, never a save in flight


class ManifestError(RuntimeError):
    """The manifest file exists but cannot be read as an nhance manifest."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """Everything the job knows: its configuration, every video and chunk, and every run.

    ``job`` is the JSON-able configuration that decides the output (model, chunking,
    encoding, temporal radius); a resume compares it with the new invocation's and refuses
    on a difference. It must survive a JSON round trip (tuples come back as lists).
    """

    job: dict[str, Any]
    videos: list[VideoRecord] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    #: the last journal segment folded into this manifest (nhance_batch.state.journal)
    journal_segment: int = 0
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _indexed: int = field(default=0, init=False, repr=False, compare=False)
    _last: VideoRecord | None = field(default=None, init=False, repr=False, compare=False)

    def video(self, relative: str) -> VideoRecord | None:
        """The video whose ``relative`` path is ``relative``, or None.

        Backed by an index that follows appends to ``videos`` in O(1) amortized time. Other
        changes (insert, remove, reorder, a new list) are noticed and trigger a rebuild; the
        one change it cannot see is replacing a record in place with one of another name:
        call :meth:`reindex` after doing that.
        """
        videos = self.videos
        i = self._index.get(relative)
        if i is not None and i < len(videos) and videos[i].relative == relative:
            return videos[i]
        n = self._indexed
        intact = n <= len(videos) and (n == 0 or videos[n - 1] is self._last)
        if i is None and intact:
            for k in range(n, len(videos)):  # index only what was appended since
                self._index.setdefault(videos[k].relative, k)
            self._indexed = len(videos)
            self._last = videos[-1] if videos else None
            i = self._index.get(relative)
            if i is None:
                return None
            if videos[i].relative == relative:
                return videos[i]
        self.reindex()
        i = self._index.get(relative)
        return None if i is None else videos[i]

    def position(self, relative: str) -> int | None:
        """The index in ``videos`` of the video at ``relative``, or None."""
        record = self.video(relative)
        if record is None:
            return None
        i = self._index.get(relative)
        return i if i is not None and self.videos[i] is record else self.videos.index(record)

    def reindex(self) -> None:
        """Rebuild the look-up index of :meth:`video` from ``videos``."""
        self._index = {}
        for k, v in enumerate(self.videos):
            self._index.setdefault(v.relative, k)
        self._indexed = len(self.videos)
        self._last = self.videos[-1] if self.videos else None

    def new_run(self, host: str, pid: int) -> RunRecord:
        """Append and return a new run, numbered one past the highest so far, started now (UTC)."""
        number = max((r.run for r in self.runs), default=0) + 1
        record = RunRecord(run=number, started=_utc_now(), host=host, pid=pid)
        self.runs.append(record)
        return record

    def to_table(self) -> pa.Table:
        """The manifest as an Arrow table in :data:`SCHEMA`, job and runs in its metadata."""
        rows = []
        for v in self.videos:
            row = {name: getattr(v, name) for name in _VIDEO_FIELDS if name != "chunks"}
            if v.metrics is not None:
                row["metrics"] = json.dumps(v.metrics, sort_keys=True)
            row["chunks"] = [{name: _plain(getattr(c, name)) for name in _CHUNK_FIELDS}
                             for c in v.chunks]
            rows.append(row)
        metadata = {
            _META_VERSION: str(SCHEMA_VERSION).encode(),
            _META_JOB: json.dumps(self.job, sort_keys=True).encode(),
            _META_RUNS: json.dumps([asdict(r) for r in self.runs]).encode(),
            _META_JOURNAL: str(self.journal_segment).encode(),
        }
        schema = SCHEMA.with_metadata(metadata)
        return pa.Table.from_pylist(rows, schema=schema)

    @classmethod
    def from_table(cls, table: pa.Table) -> Manifest:
        """Rebuild a manifest from :meth:`to_table`'s table (or one read back from Parquet).

        Raises :class:`ManifestError` if the table is not an nhance manifest, or one written
        by a newer nhance-batch (a higher schema version). Columns this version does not know
        are ignored; ones it knows but the file lacks take the dataclass defaults.
        """
        job, runs_raw, journal_segment = _read_metadata(table.schema.metadata or {})
        for required in ("input", "relative"):
            if required not in table.column_names:
                raise ManifestError(f"not an nhance manifest (no {required!r} column)")
        try:
            runs = [RunRecord(**{k: r[k] for k in _RUN_FIELDS if k in r}) for r in runs_raw]
            videos = []
            for row in table.to_pylist():
                known = {k: row[k] for k in _VIDEO_FIELDS if k in row and k != "chunks"}
                if known.get("metrics") is not None:
                    known["metrics"] = json.loads(known["metrics"])
                chunks = [
                    ChunkRecord(**{k: c[k] for k in _CHUNK_FIELDS if k in c})
                    for c in (row.get("chunks") or [])
                ]
                videos.append(VideoRecord(**known, chunks=chunks))
        except (TypeError, KeyError) as exc:
            raise ManifestError(f"malformed nhance manifest: {exc}") from exc
        return cls(job=job, videos=videos, runs=runs, journal_segment=journal_segment)


def _read_metadata(meta: dict) -> tuple[dict, list, int]:
    """The job, the raw runs and the journal segment of a manifest's key-value metadata.

    Raises :class:`ManifestError` when they are missing, corrupt or of a newer schema.
    """
    if _META_VERSION not in meta:
        raise ManifestError("not an nhance manifest (no nhance.schema_version metadata)")
    try:
        version = int(meta[_META_VERSION])
        job = json.loads(meta.get(_META_JOB, b"{}"))
        runs_raw = json.loads(meta.get(_META_RUNS, b"[]"))
        journal_segment = int(meta.get(_META_JOURNAL, b"0"))
    except ValueError as exc:
        raise ManifestError(f"corrupt nhance manifest metadata: {exc}") from exc
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"manifest schema version {version} is newer than this nhance-batch understands "
            f"({SCHEMA_VERSION}); upgrade nhance-batch"
        )
    if not isinstance(job, dict) or not isinstance(runs_raw, list):
        raise ManifestError("corrupt nhance manifest metadata: job or runs of the wrong type")
    return job, runs_raw, journal_segment


def _plain(value: Any) -> Any:
    return value.array if isinstance(value, Gains) else value


def _is_local(fs: Any) -> bool:
    if fs is None:
        return True
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _local_path(path: str, fs: Any) -> str:
    return path if fs is None else fs._strip_protocol(path)


def _read(path: str, fs: Any, read: Any) -> Any:
    """``read`` of the manifest file at ``path``, opened for reading; None if there is none.

    ``fs`` is an fsspec filesystem, or None for a local path. Only the exact path is read:
    temporary files a killed save left beside it are never taken for it. Raises
    :class:`ManifestError`, naming the path, when the file cannot be read.
    """
    try:
        if _is_local(fs):
            local = _local_path(path, fs)
            if not os.path.exists(local):
                return None
            with open(local, "rb") as f:
                return read(f)
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            return read(f)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc}") from exc


def _unreadable(path: str, exc: Exception) -> ManifestError:
    return ManifestError(
        f"{path} is not a readable Parquet manifest ({exc}); move it away to start afresh")


def load_manifest(path: str, fs: Any = None) -> Manifest | None:
    """Read the manifest at ``path`` (:func:`_read`); None if there is none. Raises
    :class:`ManifestError`, naming the path, if the file exists but is not a readable nhance
    manifest."""
    data = _read(path, fs, lambda f: f.read())
    if data is None:
        return None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc
    try:
        return Manifest.from_table(table)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc


def load_job(path: str, fs: Any = None) -> dict | None:
    """The job settings recorded in the manifest at ``path``, read from the file's footer
    alone, without its videos; None if there is none. Raises :class:`ManifestError` as
    :func:`load_manifest` does."""
    try:
        schema = _read(path, fs, pq.read_schema)
    except (pa.ArrowException, ValueError) as exc:
        raise _unreadable(path, exc) from exc
    if schema is None:
        return None
    try:
        return _read_metadata(schema.metadata or {})[0]
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc


def _to_parquet(manifest: Manifest, sink: Any) -> None:
    pq.write_table(manifest.to_table(), sink, compression="zstd")


def save_manifest(manifest: Manifest, path: str, fs: Any = None) -> None:
    """Write ``manifest`` to ``path`` atomically.

    Locally (``fs`` None or an fsspec local filesystem) through the storage layer's one atomic
    write (:func:`~nhance_batch.storage.atomic_local_file`: a temporary file beside ``path``,
    fsynced, renamed over it, the folder fsynced): a crash at any instant leaves either the
    old or the new manifest at ``path``. Temp files older than ten minutes (litter from a
    killed save) are removed. On another fsspec filesystem (object stores have no rename) the
    file is serialized in memory and uploaded whole in one ``pipe``, which object stores
    publish atomically.
    """
    if not _is_local(fs):
        sink = pa.BufferOutputStream()
        _to_parquet(manifest, sink)
        fs.pipe_file(path, sink.getvalue().to_pybytes())
        return
    from nhance_batch.storage import atomic_local_file

    local = _local_path(path, fs)
    os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
    with atomic_local_file(local) as temp, open(temp, "wb") as f:
        _to_parquet(manifest, f)
    _remove_stale_temps(local)


def _remove_stale_temps(local: str) -> None:
    folder, base = os.path.split(os.path.abspath(local))
    prefix = base + _TEMP_MARK
    cutoff = time.time() - _STALE_TEMP_S
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

"""The driver: list and probe the inputs, plan chunks, fan them out, assemble, commit, record.

The driver owns the job's state (the manifest) and the retries; executors only run stages. Work
in flight is bounded (a few chunks per enhancer actor, a few probes), so memory stays flat
however long or many the videos are. A video whose probe, decode, enhance, encode or assembly
fails is recorded with its error and the others go on.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nhance_batch.config import RunConfig
from nhance_batch.state.manifest import (DONE, FAILED, PENDING, RUNNING, ChunkRecord, Manifest,
                                   VideoRecord, load_manifest, save_manifest)
from nhance_batch import storage
from nhance_batch.pipeline import stages
from nhance_batch.pipeline.executor import Executor
from nhance_batch.pipeline.progress import NullReporter, Reporter

STATE_DIR = "_nhance"
# Chunk completions are saved at most this often (NHANCE_MANIFEST_SAVE_S overrides); video
# commits, failures and the end of a run are saved at once.
SAVE_INTERVAL_S = float(os.environ.get("NHANCE_MANIFEST_SAVE_S", "2"))


class JobConfigMismatch(RuntimeError):
    """The output folder holds a job with other settings (resume refused without --force)."""


@dataclass
class StageTotals:
    frames: dict[str, int] = field(default_factory=lambda: {"decode": 0, "enhance": 0,
                                                            "encode": 0})
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "enhance": 0.0,
                                                               "encode": 0.0})

    def fps(self) -> dict[str, float]:
        return {k: stages.rate(self.frames[k], self.seconds[k]) for k in self.frames}


@dataclass
class VideoSummary:
    input: str
    output: str | None
    status: str
    frames: int
    seconds: float
    fps: float
    added_flicker: float | None
    model_flicker: float | None
    error: str | None
    note: str | None


@dataclass
class JobSummary:
    run: int
    videos: list[VideoSummary]
    stage_fps: dict[str, float]
    seconds: float
    frames: int
    chunks_computed: int
    chunks_skipped: int
    #: ``(seconds since the run started, output frames committed so far)`` after each chunk
    #: this run computed: the job's throughput curve (start-up, steady state, tail).
    progress: list[tuple[float, int]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(v.status == FAILED for v in self.videos)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return {**asdict(self), "failed": self.failed}


def job_settings(config: RunConfig) -> dict:
    """The settings a resume must share with the run that started the job."""
    model = config.model
    return {
        "model": model.name, "model_path": str(model.path) if model.path else None,
        "precision": model.precision, "chunk_frames": config.chunk.chunk_frames,
        "overlap": config.chunk.overlap, "temporal_radius": config.temporal_radius,
        "encode": asdict(config.encode),
    }


def manifest_url(output: str, manifest: str | None = None) -> str:
    """Where the manifest of the job in ``output`` is: ``manifest`` or OUTPUT/_nhance/."""
    return manifest or storage.join(output, STATE_DIR, "manifest.parquet")


def read_manifest(url: str, storage_options: dict | None = None) -> Manifest | None:
    """The manifest at ``url`` (local path or store URL), None if there is none."""
    fs, path = storage.resolve(url, storage_options)
    fs.invalidate_cache()
    return storage.with_retries(load_manifest, path, fs, what="reading the manifest", url=url,
                                storage_options=storage_options)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _key(relative: str) -> str:
    return hashlib.sha1(relative.encode()).hexdigest()[:16]


def _flicker(chunks: list[ChunkRecord], attr: str) -> float | None:
    from nhance_batch.temporal import added_flicker

    parts = [getattr(c, attr) for c in sorted(chunks, key=lambda c: c.index)]
    if not parts or any(p is None for p in parts):
        return None
    return float(added_flicker(np.asarray(sum(parts, []), np.float64).reshape(-1, 3)))


_CONTAINER_SUFFIXES = {"mp4": {".mp4", ".m4v"}, "mov": {".mov"}, "matroska": {".mkv"},
                       "webm": {".webm"}}


def _output_suffix(relative: str, container: str) -> str | None:
    """A new suffix when the output container differs from what the input's name says."""
    suffix = Path(relative).suffix.lower()
    if container == "matroska" and suffix not in _CONTAINER_SUFFIXES["matroska"]:
        return ".mkv"
    return None


class Driver:
    """Runs one invocation of a job (a "run") over the manifest in ``config.output``."""

    def __init__(self, config: RunConfig, executor: Executor, *,
                 reporter: Reporter | None = None, manifest_path: str | None = None,
                 force: bool = False, keep_parts: bool = False) -> None:
        self.config = config
        self.executor = executor
        self.reporter = reporter or NullReporter()
        self.options = config.storage_options
        self.state_dir = storage.join(config.output, STATE_DIR)
        self.manifest_path = manifest_url(config.output, manifest_path)
        self.local_output = storage.is_local_url(config.output)
        self.force = force
        self.keep_parts = keep_parts
        self.totals = StageTotals()
        self._last_save = 0.0
        self._computed = 0
        self._skipped = 0
        self._progress: list[tuple[float, int]] = []

    # -- state -------------------------------------------------------------------------
    def _open_manifest(self) -> Manifest:
        settings = job_settings(self.config)
        job = {**settings, "input": self.config.input}
        manifest = read_manifest(self.manifest_path, self.options)
        if manifest is None:
            return Manifest(job=job, videos=[], runs=[])
        changed = sorted(k for k in settings if manifest.job.get(k) != settings[k])
        if changed:
            if not self.force:
                raise JobConfigMismatch(
                    f"{self.config.output} holds a job with other settings ({', '.join(changed)}:"
                    f" {', '.join(f'{k}={manifest.job.get(k)!r}' for k in changed)}); rerun with "
                    "the same settings to resume, or add --force to redo every video with the "
                    "new ones")
            for video in manifest.videos:
                video.status, video.chunks, video.note = PENDING, [], "settings changed; redone"
        manifest.job = job
        return manifest

    def _save(self, manifest: Manifest, *, now: bool = False) -> None:
        if now or time.monotonic() - self._last_save >= SAVE_INTERVAL_S:
            fs, path = storage.resolve(self.manifest_path, self.options)
            storage.with_retries(save_manifest, manifest, path, fs, what="saving the manifest",
                                 url=self.manifest_path, storage_options=self.options)
            self._last_save = time.monotonic()

    def _size(self, url: str | None) -> int | None:
        if not url:
            return None
        try:
            return storage.size(url, self.options)
        except (FileNotFoundError, storage.StorageError):
            return None

    def _part_ok(self, chunk: ChunkRecord) -> bool:
        """A committed part still holds what was recorded: its size, and locally its sha256
        (in a store the size was checked by the upload; re-hashing would mean downloading)."""
        from nhance_batch.checksum import file_sha256

        if chunk.status != DONE or self._size(chunk.part) != chunk.part_bytes:
            return False
        if storage.is_local_url(chunk.part):
            return file_sha256(storage.local_path(chunk.part)) == chunk.part_sha256
        return True

    def _reconcile(self, manifest: Manifest,
                   inputs: list[storage.StoredVideo]) -> list[VideoRecord]:
        """Match the inputs with the manifest; return the videos this run must work on."""
        todo = []
        for item in inputs:
            record = manifest.video(item.relative)
            try:
                fp, size = storage.video_fingerprint(item, self.options)
            except (OSError, storage.StorageError) as exc:
                if record is None:
                    record = VideoRecord(input=item.source, relative=item.relative)
                    manifest.videos.append(record)
                reason = getattr(exc, "strerror", None) or exc
                record.status = FAILED
                record.error = storage.redact(f"{item.source}: {reason}", self.options)
                todo.append(record)
                continue
            if record is None:
                record = VideoRecord(input=item.source, relative=item.relative,
                                     fingerprint=fp, size=size)
                manifest.videos.append(record)
            elif record.fingerprint != fp:
                record.note = (f"input changed since run {record.run or '?'}; re-planned and "
                               "redone" if record.fingerprint else None)
                record.fingerprint, record.size, record.chunks = fp, size, []
                record.status, record.error, record.frames = PENDING, None, None
            elif record.status == DONE and record.output_bytes is not None \
                    and self._size(record.output) == record.output_bytes:
                continue  # finished: not touched
            record.input = item.source
            record.status, record.error = PENDING, None
            for chunk in record.chunks:
                if chunk.status == DONE and not self._part_ok(chunk):
                    chunk.status, chunk.run, chunk.part_sha256 = PENDING, None, None
                elif chunk.status != DONE:
                    chunk.status, chunk.error = PENDING, None
            todo.append(record)
        return todo

    # -- the run -----------------------------------------------------------------------
    def run(self) -> JobSummary:
        from nhance_batch.state.lease import lease_for

        storage.makedirs_for(storage.join(self.state_dir, "lease.json"))
        lease = lease_for(storage.join(self.state_dir, "lease.json"), self.options)
        lease.acquire(force=self.force)
        lease.start_heartbeat()
        try:
            return self._run(lease)
        finally:
            lease.release()

    def _run(self, lease: Any) -> JobSummary:
        started = time.monotonic()
        manifest = self._open_manifest()
        inputs = storage.list_videos(self.config.input, self.options,
                                     exclude=self.config.output)
        todo = self._reconcile(manifest, inputs)
        run = manifest.new_run(socket.gethostname(), os.getpid())
        self._save(manifest, now=True)
        index = {id(v): i for i, v in enumerate(manifest.videos)}
        by_id = {index[id(v)]: v for v in todo}
        infos: dict[int, Any] = {}
        video_started: dict[int, float] = {}
        run_attempts: dict[tuple[int, int], int] = {}
        done_in_run: set[int] = set()

        self.reporter.start(videos=len(todo))
        probe_queue = deque(vid for vid, video in by_id.items() if video.status != FAILED)
        for video in by_id.values():
            if video.status == FAILED:
                self.reporter.video_finished(ok=False)
        chunk_queue: deque[stages.ChunkTask] = deque()
        in_flight: dict[Any, tuple[str, int, Any]] = {}

        def source(video: VideoRecord) -> stages.Source:
            return stages.Source(video.input, storage.options_for(video.input, self.options),
                                 video.fingerprint, video.size)

        def fail(vid: int, error: str) -> None:
            video = by_id[vid]
            video.status, video.error = FAILED, storage.redact(error, self.options)
            for task in [t for t in chunk_queue if t.video == vid]:
                chunk_queue.remove(task)
            self.reporter.video_finished(ok=False)
            self._save(manifest, now=True)

        def enqueue_chunks(vid: int) -> None:
            video, info = by_id[vid], infos[vid]
            key = _key(video.relative)
            for chunk in video.chunks:
                if chunk.status == DONE:
                    self._skipped += 1
                    self.reporter.advance(chunk.end - chunk.start)
                    continue
                plan = stages.Chunk(chunk.index, chunk.start, chunk.end, chunk.ctx_start,
                                    chunk.ctx_end)
                part = storage.join(self.state_dir, "parts", key, f"{chunk.index:05d}.mp4")
                chunk_queue.append(stages.ChunkTask(
                    vid, source(video), info, plan, part, self.config.temporal_radius,
                    self.config.encode, attempt=chunk.attempts + 1))
            maybe_assemble(vid)

        def maybe_assemble(vid: int) -> None:
            video = by_id[vid]
            if video.status == FAILED or any(c.status != DONE for c in video.chunks):
                return
            from nhance_batch.media import output_container

            info = infos[vid]
            container = output_container(video.relative, info, self.config.encode)
            suffix = _output_suffix(video.relative, container)
            relative = Path(video.relative)
            dest = storage.join(self.config.output,
                                *(relative.with_suffix(suffix) if suffix else relative).parts)
            scratch = None
            if self.local_output:  # beside the output, so that a rename commits it
                scratch = os.path.join(storage.local_path(self.state_dir), "tmp",
                                       _key(video.relative) + os.path.splitext(dest)[1])
            parts = tuple(c.part for c in sorted(video.chunks, key=lambda c: c.index))
            task = stages.AssembleTask(vid, source(video), info, parts, scratch, dest,
                                       self.config.encode)
            in_flight[self.executor.submit_assemble(task)] = ("assemble", vid, task)

        def on_probe(vid: int, result: Any) -> None:
            video = by_id[vid]
            if isinstance(result, stages.Failure):
                fail(vid, result.error)
                return
            infos[vid] = result
            chunking = self.config.chunk
            chunk_frames = chunking.frames_for(result.width, result.height)
            if not (video.chunks and video.frames == result.frame_count
                    and video.chunk_frames == chunk_frames
                    and video.overlap == chunking.overlap):
                from nhance_batch.media import plan_chunks

                video.frames = result.frame_count
                video.chunk_frames, video.overlap = chunk_frames, chunking.overlap
                video.chunks = [ChunkRecord(c.index, c.start, c.end, c.ctx_start, c.ctx_end)
                                for c in plan_chunks(result.frame_count, chunk_frames,
                                                     chunking.overlap)]
            video.status = RUNNING
            video_started[vid] = time.monotonic()
            self.reporter.add_total(video.frames)
            enqueue_chunks(vid)

        def on_chunk(vid: int, task: stages.ChunkTask, result: Any) -> None:
            video = by_id[vid]
            chunk = video.chunks[task.chunk.index]
            chunk.attempts += 1
            if isinstance(result, stages.Failure):
                result = stages.ChunkResult(vid, task.chunk.index, task.attempt, error=result)
            if video.status == FAILED:
                return
            if not result.ok:
                tries = run_attempts[(vid, chunk.index)] = run_attempts.get(
                    (vid, chunk.index), 0) + 1
                chunk.error = storage.redact(result.error.error, self.options)
                if result.error.retriable and tries <= self.config.cluster.max_retries:
                    chunk_queue.appendleft(stages.ChunkTask(
                        vid, task.source, task.info, task.chunk, task.part,
                        task.temporal_radius, task.encode, attempt=chunk.attempts + 1))
                    return
                chunk.status = FAILED
                fail(vid, f"chunk {chunk.index} ({result.error.stage}): {result.error.error}")
                return
            chunk.status, chunk.run, chunk.error = DONE, run.run, None
            chunk.part, chunk.part_bytes, chunk.part_sha256 = (result.part, result.part_bytes,
                                                               result.part_sha256)
            chunk.decode_s = result.seconds.get("decode")
            chunk.enhance_s = result.seconds.get("enhance")
            chunk.encode_s = result.seconds.get("encode")
            chunk.gains_before = result.gains_before.ravel().tolist()
            chunk.gains_after = result.gains_after.ravel().tolist()
            self._computed += 1
            done = (self._progress[-1][1] if self._progress else 0) + result.frames
            self._progress.append((round(time.monotonic() - started, 3), done))
            for stage_name, frames in (("decode", result.decoded_frames),
                                       ("enhance", result.decoded_frames),
                                       ("encode", result.frames)):
                self.totals.frames[stage_name] += frames
                self.totals.seconds[stage_name] += result.seconds.get(stage_name, 0.0)
            self.reporter.advance(result.frames)
            self._save(manifest)
            maybe_assemble(vid)

        def on_assemble(vid: int, task: stages.AssembleTask, result: Any) -> None:
            video = by_id[vid]
            if isinstance(result, stages.Failure):
                result = stages.AssembleResult(vid, error=result)
            if not result.ok:
                fail(vid, f"assemble: {result.error.error}")
                return
            video.status, video.error, video.run = DONE, None, run.run
            video.output, video.output_bytes = result.dest, result.bytes
            video.seconds = time.monotonic() - video_started.get(vid, started)
            video.added_flicker = _flicker(video.chunks, "gains_after")
            video.model_flicker = _flicker(video.chunks, "gains_before")
            done_in_run.add(vid)
            if not self.keep_parts:
                for part in task.parts:
                    storage.remove(part, self.options, missing_ok=True)
                if storage.is_local_url(task.parts[0]):
                    part_dir = os.path.dirname(storage.local_path(task.parts[0]))
                    if os.path.isdir(part_dir) and not os.listdir(part_dir):
                        os.rmdir(part_dir)
            self.reporter.video_finished(ok=True)
            self._save(manifest, now=True)

        interrupted = True
        try:
            while probe_queue or chunk_queue or in_flight:
                # bounded work in flight, following the pool as it grows or shrinks
                max_chunks = 2 * max(1, self.executor.workers()) + 1
                max_probes = max(2, self.executor.workers())
                if lease.lost:
                    raise RuntimeError("another driver took over this job (--force); stopping")
                n_chunks = sum(kind == "chunk" for kind, _, _ in in_flight.values())
                n_probes = sum(kind == "probe" for kind, _, _ in in_flight.values())
                while chunk_queue and n_chunks < max_chunks:
                    task = chunk_queue.popleft()
                    in_flight[self.executor.submit_chunk(task)] = ("chunk", task.video, task)
                    n_chunks += 1
                while probe_queue and n_probes < max_probes and len(chunk_queue) < max_chunks:
                    vid = probe_queue.popleft()
                    in_flight[self.executor.submit_probe(source(by_id[vid]))] = ("probe", vid,
                                                                                 None)
                    n_probes += 1
                for handle, result in self.executor.wait(list(in_flight), timeout=0.5):
                    kind, vid, task = in_flight.pop(handle)
                    if kind == "probe":
                        on_probe(vid, result)
                    elif kind == "chunk":
                        on_chunk(vid, task, result)
                    else:
                        on_assemble(vid, task, result)
                self.reporter.refresh()
            interrupted = False
        finally:
            run.finished = _now()
            run.status = "interrupted" if interrupted else (
                FAILED if any(v.status == FAILED for v in by_id.values()) else DONE)
            for video in by_id.values():
                if video.status == RUNNING:
                    video.status = PENDING
            self._save(manifest, now=True)
            self.reporter.stop()

        summaries = []
        for video in by_id.values():
            frames = video.frames or 0
            seconds = video.seconds or 0.0
            summaries.append(VideoSummary(
                video.input, video.output, video.status, frames, seconds,
                stages.rate(frames, seconds) if video.status == DONE else 0.0,
                video.added_flicker, video.model_flicker, video.error, video.note))
        return JobSummary(run.run, summaries, self.totals.fps(), time.monotonic() - started,
                          sum(v.frames for v in summaries if v.status == DONE),
                          self._computed, self._skipped, self._progress)

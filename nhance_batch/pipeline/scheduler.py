"""The scheduler: one run's state, and the steps that move each video through the stages.

:class:`Scheduler` owns a run's scheduling state as named attributes and moves each video
through probe -> chunks -> assembly with named methods; the executor only runs the stages.
Work in flight is bounded (a few chunks per enhancer actor, a few probes), so memory stays flat
however long or many the videos are. A video whose probe, decode, enhance, encode, naming or
assembly fails is recorded with its error and the others go on.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from nhance_batch import storage
from nhance_batch.config import RunConfig
from nhance_batch.pipeline import stages
from nhance_batch.pipeline.executor import Executor
from nhance_batch.pipeline.pace import Pace
from nhance_batch.pipeline.outputs import OutputNames
from nhance_batch.pipeline.progress import Reporter
from nhance_batch.pipeline.summary import (JobSummary, StageTotals, VideoSummary, merge_enhancer,
                                           rate, size_ratio)
from nhance_batch.state.jobstate import JobState, LiveRecord
from nhance_batch.state.lease import HeldLease, LeaseLost
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.manifest import (DONE, FAILED, PENDING, RUNNING, ChunkRecord, Gains,
                                         RunRecord, VideoRecord)

CANCELLED = "cancelled"


#: Chunks per actor (the one it computes, the one queued) plus one being decoded.
BASE_PER_ACTOR = 2


def in_flight_target(workers: int, seconds: dict[str, float], cpus: int) -> int:
    """Chunks to keep in flight (from decode to encoded) so that no enhancer actor waits.

    Each actor holds the chunk it computes and one queued; meanwhile the next ones decode and
    the finished ones encode: with the run's summed stage ``seconds`` so far, that takes
    ``(decode + encode) / enhance`` more chunks per actor (many for a GPU, which enhances a
    720p chunk in a second, one for a CPU actor). Before any chunk is done: the base alone.
    More decode/encode tasks than the cluster's ``cpus`` would only queue.
    """
    workers = max(1, workers)
    base = BASE_PER_ACTOR * workers + 1
    enhance = seconds.get("enhance", 0.0)
    if enhance <= 0:
        return base
    ratio = (seconds.get("decode", 0.0) + seconds.get("encode", 0.0)) / enhance
    return base + min(math.ceil(ratio * workers), max(1, cpus))


def _flicker(chunks: list[ChunkRecord], attr: str) -> float | None:
    from nhance_batch.temporal import added_flicker

    parts = [getattr(c, attr) for c in sorted(chunks, key=lambda c: c.index)]
    if not parts or any(p is None for p in parts):
        return None
    gains = np.concatenate([np.asarray(p, np.float64) for p in parts])
    return float(added_flicker(gains.reshape(-1, 3)))


@dataclass
class _InFlight:
    kind: str  # "probe", "chunk" or "assemble"
    video: int
    task: Any = None


class Scheduler:
    """One run's scheduling state and the steps that move it on.

    Videos are numbered by their position in the manifest (``vid``). Each is probed, named
    and planned (:meth:`on_probe`), its unfinished chunks queued (:meth:`queue_chunks`) and
    submitted with bounded work in flight (:meth:`submit_ready`); finished chunks are
    committed (:meth:`on_chunk`), failed ones retried within the run's budget, and a video
    whose chunks are all done is assembled (:meth:`assemble`, :meth:`on_assemble`).
    """

    def __init__(self, config: RunConfig, layout: JobLayout, executor: Executor,
                 state: JobState, run: RunRecord, videos: dict[int, VideoRecord],
                 names: OutputNames, *, reporter: Reporter, lease: HeldLease,
                 keep_parts: bool = False, cancel: threading.Event | None = None) -> None:
        self.config = config
        self.layout = layout
        self.executor = executor
        self.state = state
        self.run = run
        self.videos = videos
        self.names = names
        self.reporter = reporter
        self.lease = lease
        self.keep_parts = keep_parts
        self.cancel = cancel
        self.started = time.monotonic()
        self.infos: dict[int, Any] = {}
        self.encodes: dict[int, Any] = {}  # each video's encoder (its codec, resolved)
        self.notes: dict[str, None] = {}  # about the run as a whole, in order, once each
        self.video_started: dict[int, float] = {}
        self.run_attempts: dict[tuple[int, int], int] = {}
        self.probe_queue: deque[int] = deque(
            vid for vid, video in videos.items() if video.status != FAILED)
        self.chunk_queue: deque[stages.ChunkTask] = deque()
        self.in_flight: dict[Any, _InFlight] = {}
        self.running = {"probe": 0, "chunk": 0, "assemble": 0}
        self.totals = StageTotals()
        self.computed = 0
        self.skipped = 0
        self.frames_committed = 0
        self.progress: list[tuple[float, int]] = []
        self.known_rates: dict[Any, Any] = {}  # KnownRate per GPU kind and frame size
        self.frames_reused = 0  # own frames of chunks committed by earlier runs
        self.frames_total = 0  # frames of the videos probed
        self.planned_seconds = 0.0  # their enhancer seconds at the known rates
        self.pace = Pace()
        self._changed: dict[int, bool] = {}  # videos changed, not yet recorded: with chunks?
        self._committed: list[tuple[int, ChunkRecord]] = []  # chunks committed, not recorded
        self._live: LiveRecord | None = None  # the progress so far, for the job's state
        executor.listen(self.after_step)

    # -- helpers -----------------------------------------------------------------------
    def source(self, video: VideoRecord) -> stages.Source:
        return stages.Source(video.input, self.layout.input_options, video.fingerprint,
                             video.size)

    def redact(self, text: Any) -> str:
        return self.layout.redact(text)

    def _submit(self, handle: Any, kind: str, vid: int, task: Any = None) -> None:
        self.in_flight[handle] = _InFlight(kind, vid, task)
        self.running[kind] += 1

    # -- the job's state -----------------------------------------------------------------
    def changed(self, vid: int, *, chunks: bool = True) -> None:
        """``vid``'s record changed (``chunks=False``: its chunks did not change since they
        were recorded); :meth:`record_changes` hands it to the job's state."""
        self._changed[vid] = self._changed.get(vid, False) or chunks

    def record_changes(self) -> None:
        """Hand the job's state what changed since the last call: the chunks committed, then
        every video changed, once each, and the progress; the state writes them when its
        intervals say."""
        for vid, chunk in self._committed:
            self.state.chunk_committed(self.videos[vid], chunk)
        for vid, chunks in self._changed.items():
            self.state.video_changed(self.videos[vid], chunks=chunks)
        if self._live is not None:
            self.state.note_live(self._live)
        self._committed.clear()
        self._changed.clear()
        self.state.maybe_flush()

    def settle(self) -> None:
        """The run ends: videos still running go back to pending, and every change is
        recorded."""
        for vid, video in self.videos.items():
            if video.status == RUNNING:
                video.status = PENDING
                self.changed(vid)
        self.record_changes()

    # -- failure -----------------------------------------------------------------------
    def fail(self, vid: int, error: str) -> None:
        """Record ``vid`` as failed with ``error`` and drop its queued chunks."""
        video = self.videos[vid]
        video.status, video.error = FAILED, self.redact(error)
        self.infos.pop(vid, None)  # a probe result holds every frame's timestamp
        if any(t.video == vid for t in self.chunk_queue):
            self.chunk_queue = deque(t for t in self.chunk_queue if t.video != vid)
        self.reporter.video_finished(ok=False)
        self.changed(vid)

    # -- probe and plan ----------------------------------------------------------------
    def on_probe(self, vid: int, info: Any) -> None:
        """Name and plan a probed video, then queue its chunks."""
        if isinstance(info, stages.Failure):
            self.fail(vid, info.error)
            return
        video = self.videos[vid]
        plan = self.plan_output(vid, info)
        if plan is None:
            return
        name, why = self.names.name(video.relative, plan.format)
        if video.output_name != name:
            video.output_name = name
            video.note = why
        elif why and not video.note:
            video.note = why
        for note in (*plan.notes, info.lost_note):
            if note and note not in (video.note or ""):
                video.note = "; ".join(filter(None, (video.note, note)))
        self.infos[vid] = info
        self.cut_chunks(video, info)
        video.status = RUNNING
        self.video_started[vid] = time.monotonic()
        self.reporter.add_total(video.frames)
        self.frames_total += video.frames
        rate = self.worker_rate(info.width, info.height) * max(1, self.executor.workers())
        self.planned_seconds += video.frames * info.width * info.height / (rate * 1e6)
        self.changed(vid)
        self.queue_chunks(vid)

    def plan_output(self, vid: int, info: Any) -> Any:
        """What the video's output will be (container, encoder, streams kept), decided before
        any chunk is computed; None when the video fails here (no container fits, or a
        damaged recording under ``strict``)."""
        from nhance_batch.media import plan_output

        video = self.videos[vid]
        try:
            plan = plan_output(video.relative, info, self.config.encode)
        except Exception as exc:  # noqa: BLE001 - the video's own problem
            self.fail(vid, f"{video.input}: no output container fits "
                           f"({type(exc).__name__}: {exc})")
            return None
        if info.lost is not None and self.config.strict:
            self.fail(vid, f"{video.input}: {info.lost_note} (strict: a damaged recording "
                           "fails)")
            return None
        self.encodes[vid], video.output_codec = plan.encode, plan.codec
        if plan.codec_note:
            self.notes.setdefault(plan.codec_note)
        return plan

    def cut_chunks(self, video: VideoRecord, info: Any) -> None:
        """Cut ``video`` into chunks. A recorded plan for the same frames and overlap is kept
        when chunks are sized by time (the rate measured now may differ from the one that
        cut them; re-cutting would throw their committed work away), or when its size is the
        one forced by ``--chunk-frames``."""
        chunking = self.config.chunk
        if (video.chunks and video.frames == info.frame_count
                and video.overlap == chunking.overlap
                and (not chunking.chunk_frames or video.chunk_frames == chunking.chunk_frames)):
            return
        from nhance_batch.media import plan_chunks

        chunk_frames = chunking.frames_for(info.width, info.height,
                                           self.worker_rate(info.width, info.height))
        video.frames = info.frame_count
        video.chunk_frames, video.overlap = chunk_frames, chunking.overlap
        video.chunks = [ChunkRecord(c.index, c.start, c.end, c.ctx_start, c.ctx_end)
                        for c in plan_chunks(info.frame_count, chunk_frames, chunking.overlap)]

    def worker_rate(self, width: int, height: int) -> float:
        """One enhancer worker's megapixels per second, as known before any chunk ran
        (:func:`~nhance_batch.rates.known_enhancer_rate`)."""
        from nhance_batch.rates import known_enhancer_rate

        kind = self.executor.gpu_kind()
        key = (kind, width, height) if kind else None
        if key not in self.known_rates:
            self.known_rates[key] = known_enhancer_rate(
                self.config.model, cpu_workers=max(1, self.executor.workers()), gpu_kind=kind,
                width=width, height=height)
        return self.known_rates[key].mpx_s

    def chunk_task(self, vid: int, chunk: ChunkRecord) -> stages.ChunkTask:
        """The task of one chunk: its own slice of the timestamps, where its part goes."""
        from nhance_batch.media import chunk_info

        video, info = self.videos[vid], self.infos[vid]
        window = stages.Chunk(chunk.index, chunk.start, chunk.end, chunk.ctx_start,
                              chunk.ctx_end)
        return stages.ChunkTask(
            vid, self.source(video), chunk_info(info, window), window,
            self.layout.part(video.relative, chunk.index), self.config.temporal_radius,
            self.encodes[vid], attempt=chunk.attempts + 1,
            output_options=self.layout.output_options)

    def queue_chunks(self, vid: int) -> None:
        video = self.videos[vid]
        for chunk in video.chunks:
            if chunk.status == DONE:
                self.skipped += 1
                self.frames_reused += chunk.end - chunk.start
                self.reporter.advance(chunk.end - chunk.start)
                continue
            self.chunk_queue.append(self.chunk_task(vid, chunk))
        self.assemble(vid)

    # -- chunks ------------------------------------------------------------------------
    def on_chunk(self, vid: int, task: stages.ChunkTask, result: Any) -> None:
        video = self.videos[vid]
        chunk = video.chunks[task.chunk.index]
        chunk.attempts += 1
        if isinstance(result, stages.Failure):
            result = stages.ChunkResult(vid, task.chunk.index, task.attempt, error=result)
        if video.status == FAILED:
            return
        if not result.ok:
            self.retry_or_fail(vid, task, chunk, result.error)
            return
        self.commit_chunk(chunk, result)
        self.assemble(vid)

    def retry_or_fail(self, vid: int, task: stages.ChunkTask, chunk: ChunkRecord,
                      error: stages.Failure) -> None:
        key = (vid, chunk.index)
        tries = self.run_attempts[key] = self.run_attempts.get(key, 0) + 1
        chunk.error = self.redact(error.error)
        if error.retriable and tries <= self.config.cluster.max_retries:
            from dataclasses import replace

            self.chunk_queue.appendleft(replace(task, attempt=chunk.attempts + 1))
            return
        chunk.status = FAILED
        self.fail(vid, f"chunk {chunk.index} ({error.stage}): {error.error}")

    def commit_chunk(self, chunk: ChunkRecord, result: stages.ChunkResult) -> None:
        chunk.status, chunk.run, chunk.error = DONE, self.run.run, None
        chunk.part, chunk.part_bytes, chunk.part_sha256 = (result.part, result.part_bytes,
                                                           result.part_sha256)
        chunk.decode_s = result.seconds.get("decode")
        chunk.enhance_s = result.seconds.get("enhance")
        chunk.encode_s = result.seconds.get("encode")
        chunk.gains_before = Gains(result.gains_before)
        chunk.gains_after = Gains(result.gains_after)
        self.computed += 1
        self.frames_committed += result.frames
        self.progress.append((round(time.monotonic() - self.started, 3),
                              self.frames_committed))
        self.totals.add("decode", result.decoded_frames, result.seconds.get("decode", 0.0))
        self.totals.add("enhance", result.decoded_frames, result.seconds.get("enhance", 0.0))
        self.totals.add("encode", result.frames, result.seconds.get("encode", 0.0))
        self.reporter.advance(result.frames)
        self._committed.append((result.video, chunk))
        self.run.enhancer = merge_enhancer(self.run.enhancer, result.enhancer)

    # -- assembly ----------------------------------------------------------------------
    def assemble(self, vid: int) -> None:
        """Submit the assembly of ``vid`` once every chunk is done."""
        video = self.videos[vid]
        if video.status == FAILED or any(c.status != DONE for c in video.chunks):
            return
        info = self.infos[vid]
        dest = self.layout.output_url(video.output_name)
        parts = tuple(c.part for c in sorted(video.chunks, key=lambda c: c.index))
        task = stages.AssembleTask(
            vid, self.source(video), info, parts,
            self.layout.scratch(video.relative, os.path.splitext(dest)[1]), dest,
            self.encodes[vid], output_options=self.layout.output_options,
            preview=self.layout.preview(video.output_name) if self.config.previews else None)
        self._submit(self.executor.submit_assemble(task), "assemble", vid, task)

    def on_assemble(self, vid: int, task: stages.AssembleTask, result: Any) -> None:
        video = self.videos[vid]
        if isinstance(result, stages.Failure):
            result = stages.AssembleResult(vid, error=result)
        if not result.ok:
            self.fail(vid, f"assemble: {result.error.error}")
            return
        video.status, video.error, video.run = DONE, None, self.run.run
        self.infos.pop(vid, None)
        video.output, video.output_bytes = result.dest, result.bytes
        video.seconds = time.monotonic() - self.video_started.get(vid, self.started)
        video.added_flicker = _flicker(video.chunks, "gains_after")
        video.model_flicker = _flicker(video.chunks, "gains_before")
        if result.preview is not None:
            video.preview = result.preview
        if result.metrics is not None:  # with the flicker numbers, so metrics tell it all
            video.metrics = {**result.metrics, "added_flicker": video.added_flicker,
                             "model_flicker": video.model_flicker}
        if result.note:
            video.note = "; ".join(filter(None, (video.note, result.note)))
        if not self.keep_parts:
            self.remove_parts(video, task.parts)
        self.reporter.video_finished(ok=True)
        self.changed(vid, chunks=False)  # each chunk was recorded on commit

    def remove_parts(self, video: VideoRecord, parts: tuple[str, ...]) -> None:
        """Delete a committed video's parts; a store that refuses notes the video."""
        options = self.layout.output_options
        try:
            for part in parts:
                storage.remove(part, options, missing_ok=True)
            if parts and storage.is_local_url(parts[0]):
                folder = os.path.dirname(storage.local_path(parts[0]))
                if os.path.isdir(folder) and not os.listdir(folder):
                    os.rmdir(folder)
        except (OSError, storage.StorageError) as exc:
            video.note = "; ".join(filter(None, (
                video.note, self.redact(f"parts kept: deleting them failed ({exc})"))))

    # -- the loop ----------------------------------------------------------------------
    def submit_ready(self) -> None:
        """Submit queued chunks and probes up to the bounds of work in flight."""
        workers = max(1, self.executor.workers())
        max_chunks = in_flight_target(workers, self.totals.seconds, self.executor.cpus())
        max_probes = max(2, workers)
        while self.chunk_queue and self.running["chunk"] < max_chunks:
            task = self.chunk_queue.popleft()
            self._submit(self.executor.submit_chunk(task), "chunk", task.video, task)
        while (self.probe_queue and self.running["probe"] < max_probes
               and len(self.chunk_queue) < max_chunks):
            vid = self.probe_queue.popleft()
            task = stages.ProbeTask(self.source(self.videos[vid]), self.config.limits.max_pixels,
                                    self.config.limits.max_frames)
            self._submit(self.executor.submit_probe(task), "probe", vid)

    def handle(self, handle: Any, result: Any) -> None:
        job = self.in_flight.pop(handle)
        self.running[job.kind] -= 1
        if job.kind == "probe":
            self.on_probe(job.video, result)
        elif job.kind == "chunk":
            self.on_chunk(job.video, job.task, result)
        else:
            self.on_assemble(job.video, job.task, result)

    def busy(self) -> bool:
        return bool(self.probe_queue or self.chunk_queue or self.in_flight)

    def execute(self) -> str:
        """Run until every video is done or failed; returns how the run ended."""
        self.reporter.start(videos=len(self.videos))
        for video in self.videos.values():
            if video.status == FAILED:
                self.reporter.video_finished(ok=False)
        try:
            while self.busy():
                if self.lease.lost:
                    why = self.lease.lost_reason or "another driver took over"
                    raise LeaseLost(f"this driver lost the job's lease ({why}); stopped "
                                    "without writing over the state of the driver that holds it")
                if self.cancel is not None and self.cancel.is_set():
                    return CANCELLED
                self.submit_ready()
                for handle, result in self.executor.wait(list(self.in_flight), timeout=0.5):
                    self.handle(handle, result)
                self.after_step()
        finally:
            self.settle()
        return FAILED if any(v.status == FAILED for v in self.videos.values()) else DONE

    def note_busy(self) -> None:
        """Record the enhancer's busy share in the run (status shows it) and the live line."""
        self.run.enhancer_busy = self.executor.busy()
        self.reporter.enhancer_busy(self.run.enhancer_busy.get("overall"))

    def after_step(self) -> None:
        """After each step of the loop, and each forward pass of an executor that enhances in
        this thread: the busy share and the progress noted, the changes handed to the job's
        state, the live line redrawn."""
        self.note_busy()
        self.note_progress()
        self.record_changes()
        self.reporter.refresh()

    def note_progress(self) -> None:
        """Frames enhanced so far, committed or not, and the ETA: to the live line, and to the
        progress record that :meth:`record_changes` hands to the job's state."""
        enhancing = []
        for (vid, index), (frames, _) in self.executor.enhancing().items():
            video = self.videos.get(vid)
            if video is not None and index < len(video.chunks) \
                    and video.chunks[index].status != DONE and frames > 0:
                enhancing.append({"video": video.relative, "chunk": index, "frames": frames})
        this_run = self.frames_committed + sum(e["frames"] for e in enhancing)
        self.pace.note(this_run)
        enhanced = self.frames_reused + this_run
        planned = self.frames_total / self.planned_seconds if self.planned_seconds else None
        fps, eta = self.pace.eta(self.frames_total - enhanced, planned)
        self.reporter.enhanced(enhanced)
        self.reporter.pace(fps, eta)
        self._live = LiveRecord(
            self.run.run, self.state.now(), enhanced,
            self.frames_reused + self.frames_committed, self.frames_total,
            None if fps is None else round(fps, 4),
            None if eta is None else round(eta, 1), enhancing)

    def summary(self, status: str) -> JobSummary:
        out = []
        for video in self.videos.values():
            frames = video.frames or 0
            seconds = video.seconds or 0.0
            out.append(VideoSummary(
                video.input, video.output, video.status, frames, seconds,
                rate(frames, seconds) if video.status == DONE else 0.0,
                video.added_flicker, video.model_flicker, video.error, video.note,
                output_codec=video.output_codec,
                size_ratio=size_ratio(video.output_bytes, video.size)))
        return JobSummary(self.run.run, out, self.totals.fps(),
                          time.monotonic() - self.started,
                          sum(v.frames for v in out if v.status == DONE),
                          self.computed, self.skipped, self.progress, status,
                          enhancer=self.run.enhancer, enhancer_busy=self.run.enhancer_busy,
                          first_frame_seconds=self.pace.first_frame_seconds(),
                          notes=list(self.notes))

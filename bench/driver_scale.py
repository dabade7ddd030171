"""Is the driver ever what limits a big cluster? The real scheduler and job state over 10,000
made-up videos x 20 chunks, with an executor whose stages return at once.

A 1,000-GPU cluster enhancing 720p at 230 fps per GPU, in chunks of 110 frames, commits
1000 * 230 / 110 = 2,091 chunks a second: the driver must schedule and commit at least that
fast. Here nothing is decoded or enhanced: the inputs are empty files (listed and fingerprinted
like real ones), the probe results are made up (1280x720, 2,200 frames: 20 chunks of 110), and
each chunk "finishes" as soon as the driver waits for it, with real-sized results (3 gains per
frame). So what is timed is the driver alone: listing, reconciling, planning, scheduling,
committing (journal records) and compacting the manifest.

It prints chunks scheduled and committed per second, the driver's peak memory, and the cost of
one chunk commit with the journal against the whole-manifest rewrite it replaced (the old
driver rewrote the manifest after every video's commit and at most every 2 s for chunks).

    python bench/driver_scale.py                 # 10,000 videos x 20 chunks
    python bench/driver_scale.py --videos 1000   # quicker
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nhance_batch.config import ChunkConfig, ClusterConfig, EncodeConfig, RunConfig  # noqa: E402
from nhance_batch.media.probe import ColorInfo, VideoInfo  # noqa: E402
from nhance_batch.pipeline import stages  # noqa: E402
from nhance_batch.pipeline.busy import BusyMeter  # noqa: E402
from nhance_batch.pipeline.driver import Driver  # noqa: E402


class InstantExecutor:
    """Stages that return at once with made-up, real-sized results."""

    def __init__(self, workers: int, frames: int) -> None:
        self._workers = workers
        self._frames = frames
        self._ids = itertools.count()
        self._ready: dict[int, object] = {}
        self.submitted = 0
        self.first_submit: float | None = None
        self.last_submit = 0.0
        self._busy = BusyMeter()  # no actor ever computes: an empty record

    def start(self) -> None: ...
    def shutdown(self) -> None: ...

    def workers(self) -> int:
        return self._workers

    def cpus(self) -> int:
        return os.cpu_count() or 1

    def busy(self) -> dict:
        return self._busy.snapshot()

    def _put(self, result) -> int:
        handle = next(self._ids)
        self._ready[handle] = result
        return handle

    def submit_probe(self, task: stages.ProbeTask) -> int:
        pts = tuple(range(0, self._frames * 512, 512))
        return self._put(VideoInfo(
            path=task.source.url, container="mov,mp4,m4a,3gp,3g2,mj2", codec="h264",
            width=1280, height=720, pix_fmt="yuv420p", bit_depth=8,
            time_base=Fraction(1, 12800), stream_index=0, pts=pts, frame_count=len(pts),
            rotation=0, color=ColorInfo(None, None, None, None), average_rate=Fraction(25),
            other_streams=()))

    def submit_chunk(self, task: stages.ChunkTask) -> int:
        now = time.perf_counter()
        self.first_submit = self.first_submit or now
        self.last_submit = now
        self.submitted += 1
        n = task.chunk.size
        gains = np.zeros((n, 3))
        return self._put(stages.ChunkResult(
            task.video, task.chunk.index, task.attempt, part=task.part, part_bytes=1000,
            part_sha256="0" * 64, frames=n, decoded_frames=n, gains_before=gains,
            gains_after=gains, seconds={"decode": 0.1, "enhance": 0.5, "encode": 0.2}))

    def submit_assemble(self, task: stages.AssembleTask) -> int:
        return self._put(stages.AssembleResult(task.video, dest=task.dest, bytes=10_000))

    def wait(self, handles, timeout):
        wanted = [h for h in handles if h in self._ready]
        return [(h, self._ready.pop(h)) for h in wanted]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-frames", type=int, default=110)
    parser.add_argument("--workers", type=int, default=1000,
                        help="enhancer actors the executor reports (bounds work in flight)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="nhance-driver-scale-"))
    try:
        videos = root / "in"
        for i in range(args.videos):
            folder = videos / f"{i // 1000:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"clip{i:05d}.mp4").write_bytes(b"")
        config = RunConfig(input=str(videos), output=str(root / "out"),
                           chunk=ChunkConfig(chunk_frames=args.chunk_frames, overlap=3),
                           encode=EncodeConfig(lossless=True),
                           cluster=ClusterConfig(workers=args.workers))
        executor = InstantExecutor(args.workers, args.chunks * args.chunk_frames)
        rss_before = peak_rss_mib()
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = Driver.for_config(config).run(executor)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        rss_run = peak_rss_mib()  # before the comparison below reads the manifest back
        commits = summary.chunks_computed
        assert commits == args.videos * args.chunks, commits
        assert all(v.status == "done" for v in summary.videos)
        commit_span = summary.progress[-1][0] - summary.progress[0][0]
        schedule_span = executor.last_submit - executor.first_submit

        # the cost the journal replaced: one rewrite of the whole manifest
        from nhance_batch.state.jobstate import read_manifest
        from nhance_batch.state.manifest import save_manifest

        manifest = read_manifest(str(root / "out" / "_nhance" / "manifest.parquet"))
        t0 = time.perf_counter()
        save_manifest(manifest, str(root / "rewrite.parquet"))
        rewrite_s = time.perf_counter() - t0
        # the old driver: a whole rewrite after each of the videos' commits (sizes growing
        # from empty to full: about half the full cost on average) and every 2 s for chunks
        old_per_commit = (args.videos * rewrite_s / 2) / commits
        new_per_commit = seconds / commits

        print(f"videos {args.videos}, chunks {commits}, workers {args.workers}")
        print(f"whole run (list, reconcile, plan, schedule, commit, compact): {seconds:.1f} s")
        print(f"chunks scheduled: {executor.submitted / schedule_span:,.0f}/s")
        print(f"chunks committed: {commits / commit_span:,.0f}/s "
              f"(goal >= 2,091/s: {commits / commit_span / 2091:.2f}x)")
        print(f"driver CPU time {cpu:.1f} s: {commits / cpu:,.0f} chunk commits per CPU-second "
              "(wall-clock rates fall when other processes share the cores)")
        print(f"driver peak memory (RSS): {rss_run:,.0f} MiB "
              f"({rss_before:,.0f} MiB before the run)")
        print(f"one whole-manifest rewrite at the end: {rewrite_s:.2f} s "
              f"({os.path.getsize(root / 'rewrite.parquet') / 2**20:.0f} MiB)")
        print(f"cost per chunk commit: journal {new_per_commit * 1e6:,.0f} us (all driver work "
              f"included) against about {old_per_commit * 1e6:,.0f} us of manifest rewrites "
              f"alone before: {old_per_commit / new_per_commit:.1f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

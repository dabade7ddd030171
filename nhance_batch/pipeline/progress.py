"""Live progress (rich) and the end-of-run summary table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nhance_batch.pipeline.summary import JobSummary


class Reporter(Protocol):
    """What the driver tells about its progress."""

    def start(self, videos: int) -> None: ...
    def add_total(self, frames: int) -> None: ...
    def advance(self, frames: int) -> None: ...
    def video_finished(self, ok: bool) -> None: ...
    def enhancer_busy(self, share: float | None) -> None: ...
    def refresh(self) -> None: ...
    def stop(self) -> None: ...


class NullReporter:
    """Counts, shows nothing (tests, library use)."""

    def __init__(self) -> None:
        self.videos = self.total = self.done = self.videos_done = self.videos_failed = 0

    def start(self, videos: int) -> None:
        self.videos = videos

    def add_total(self, frames: int) -> None:
        self.total += frames

    def advance(self, frames: int) -> None:
        self.done += frames

    def video_finished(self, ok: bool) -> None:
        if ok:
            self.videos_done += 1
        else:
            self.videos_failed += 1

    def enhancer_busy(self, share: float | None) -> None:
        pass

    def refresh(self) -> None:
        pass

    def stop(self) -> None:
        pass


class RichReporter(NullReporter):
    """A live bar on stderr: frames done/total, frames/s, ETA, videos done/failed."""

    def __init__(self, console=None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]frames"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.2f} fps"), TextColumn("ETA"), TimeRemainingColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[videos]}"),
            TextColumn("{task.fields[busy]}"),
            console=self.console, transient=False)
        self._busy = ""
        self._task = None
        self._t0 = time.monotonic()

    def _videos(self) -> str:
        return f"videos {self.videos_done}/{self.videos} done, {self.videos_failed} failed"

    def start(self, videos: int) -> None:
        super().start(videos)
        self._t0 = time.monotonic()
        self._progress.start()
        self._task = self._progress.add_task("frames", total=None, fps=0.0,
                                             videos=self._videos(), busy=self._busy)

    def refresh(self) -> None:
        if self._task is None:
            return
        elapsed = time.monotonic() - self._t0
        self._progress.update(self._task, completed=self.done, total=self.total or None,
                              fps=self.done / elapsed if elapsed > 0 else 0.0,
                              videos=self._videos(), busy=self._busy)

    def enhancer_busy(self, share: float | None) -> None:
        """The enhancer's busy share so far (shown after the video counts)."""
        self._busy = "" if share is None else f"enhancer busy {share:.0%}"

    def stop(self) -> None:
        self.refresh()
        self._progress.stop()


def print_summary(summary: "JobSummary", console=None) -> None:
    """Per video: frames, time, fps, added flicker, status, error; then per-stage throughput."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    table = Table(title=f"run {summary.run}: {len(summary.videos) - summary.failed} done, "
                        f"{summary.failed} failed")
    for column in ("video", "status", "frames", "time s", "fps", "added flicker", "error / note"):
        table.add_column(column, overflow="fold")
    for video in summary.videos:
        flicker = "" if video.added_flicker is None else (
            f"{video.added_flicker:.4f}" + ("" if video.model_flicker is None
                                            else f" (model {video.model_flicker:.4f})"))
        table.add_row(video.input, video.status, str(video.frames), f"{video.seconds:.1f}",
                      f"{video.fps:.2f}", flicker, video.error or video.note or "")
    console.print(table)
    fps = summary.stage_fps
    console.print(f"stages: decode {fps['decode']:.1f} fps, enhance {fps['enhance']:.2f} fps, "
                  f"encode {fps['encode']:.1f} fps; chunks computed {summary.chunks_computed}, "
                  f"reused {summary.chunks_skipped}; {summary.seconds:.1f} s")
    line = enhancer_line(summary.enhancer)
    if line:
        console.print(line)
    line = busy_line(summary.enhancer_busy)
    if line:
        console.print(line)
    for note in summary.notes:
        console.print(f"note: {note}")


def busy_line(busy: dict | None) -> str:
    """The enhancer's busy share: overall, and per actor when there are several."""
    if not busy or busy.get("overall") is None:
        return ""
    line = (f"enhancer busy {busy['overall']:.0%} of its wall time ({busy['busy_s']:.1f} of "
            f"{busy['wall_s']:.1f} actor-seconds computing)")
    actors = busy.get("actors") or []
    if len(actors) > 1:
        line += "; per actor " + ", ".join(
            f"{a['actor']} {a['share']:.0%}" for a in actors if a.get("share") is not None)
    return line


def enhancer_line(enhancer: dict | None) -> str:
    """One line on how the enhancer ran, and what native 16-bit math the machine offers."""
    if not enhancer:
        return ""
    shapes = ", ".join(f"{size} {p.get('path')} batch {p.get('batch_size')} ({p.get('source')}"
                       + (", mixed" if p.get("mixed") else "") + ")"
                       for size, p in (enhancer.get("shapes") or {}).items())
    line = (f"enhancer: {enhancer.get('precision')}, {shapes}; {enhancer.get('backend')} on "
            f"{enhancer.get('device')}")
    native = [k for k in enhancer.get("native_16bit") or [] if k != enhancer.get("precision")]
    speedups = enhancer.get("speedup_vs_this") or {}
    if native and enhancer.get("precision") == "float32":
        line += f"; this CPU has native {' and '.join(native)} math: --precision {native[0]} "
        if native[0] in speedups:
            line += (f"ran {speedups[native[0]]:.2f}x as fast here (autotune's timing, "
                     f"same frame size)")
        else:
            line += (f"runs the convolutions in 16 bits (`nhance-batch bench --size WxH "
                     f"--precision {native[0]}` measures the gain here)")
    return line

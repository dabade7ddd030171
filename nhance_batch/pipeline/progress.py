"""Live progress (rich) and the end-of-run summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nhance_batch.pipeline.summary import JobSummary


class Reporter(Protocol):
    """What the driver tells about its progress: frames to do (``add_total``), frames
    committed (``advance``: reused or encoded chunks), frames enhanced so far, committed or
    not (``enhanced``), the rate and ETA (``pace``), and lines to show (``note``)."""

    def start(self, videos: int) -> None: ...
    def add_total(self, frames: int) -> None: ...
    def advance(self, frames: int) -> None: ...
    def enhanced(self, frames: int) -> None: ...
    def pace(self, fps: float | None, eta_s: float | None) -> None: ...
    def video_finished(self, ok: bool) -> None: ...
    def enhancer_busy(self, share: float | None) -> None: ...
    def note(self, text: str) -> None: ...
    def refresh(self) -> None: ...
    def stop(self) -> None: ...


class NullReporter:
    """Counts, shows nothing (tests, library use)."""

    def __init__(self) -> None:
        self.videos = self.total = self.done = self.videos_done = self.videos_failed = 0
        self.frames_enhanced = 0
        self.fps: float | None = None
        self.eta_s: float | None = None
        self.notes: list[str] = []

    def start(self, videos: int) -> None:
        self.videos = videos

    def add_total(self, frames: int) -> None:
        self.total += frames

    def advance(self, frames: int) -> None:
        self.done += frames

    def enhanced(self, frames: int) -> None:
        self.frames_enhanced = frames

    def pace(self, fps: float | None, eta_s: float | None) -> None:
        self.fps, self.eta_s = fps, eta_s

    def video_finished(self, ok: bool) -> None:
        if ok:
            self.videos_done += 1
        else:
            self.videos_failed += 1

    def enhancer_busy(self, share: float | None) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)

    def refresh(self) -> None:
        pass

    def stop(self) -> None:
        pass


def clock_text(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour); ``?`` when unknown."""
    if seconds is None:
        return "?"
    whole = int(round(max(0.0, seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RichReporter(NullReporter):
    """A live bar on stderr: frames enhanced (the bar) and committed, of the total; frames/s;
    ETA; elapsed time; videos done/failed; the enhancer's busy share."""

    def __init__(self, console=None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]frames"), BarColumn(),
            TextColumn("enhanced {task.completed:.0f}/{task.fields[frames_total]}, committed "
                       "{task.fields[committed]}"),
            TextColumn("{task.fields[fps]} fps"), TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[videos]}"),
            TextColumn("{task.fields[busy]}"),
            console=self.console, transient=False)
        self._busy = ""
        self._task = None

    def _videos(self) -> str:
        return f"videos {self.videos_done}/{self.videos} done, {self.videos_failed} failed"

    def _fields(self) -> dict:
        return {"frames_total": self.total or "?", "committed": self.done,
                "fps": "?" if self.fps is None else f"{self.fps:.2f}",
                "eta": clock_text(self.eta_s), "videos": self._videos(), "busy": self._busy}

    def start(self, videos: int) -> None:
        super().start(videos)
        self._progress.start()
        self._task = self._progress.add_task("frames", total=None, **self._fields())

    def refresh(self) -> None:
        if self._task is None:
            return
        self._progress.update(self._task, completed=max(self.frames_enhanced, self.done),
                              total=self.total or None, **self._fields())

    def enhancer_busy(self, share: float | None) -> None:
        """The enhancer's busy share so far (shown after the video counts)."""
        self._busy = "" if share is None else f"enhancer busy {share:.0%}"

    def note(self, text: str) -> None:
        super().note(text)
        self.console.print(text, markup=False, highlight=False)

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

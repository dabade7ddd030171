"""What a run reports when it ends: per video, per stage, and the job's throughput curve."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from nhance_batch.state.manifest import FAILED


def rate(frames: int, seconds: float) -> float:
    """Frames per second, 0 when nothing was timed."""
    return frames / seconds if seconds > 0 else 0.0


def size_ratio(output_bytes: int | None, input_bytes: int | None) -> float | None:
    """The output's size over the input's (None until both are known), to 3 decimals."""
    if not output_bytes or not input_bytes:
        return None
    return round(output_bytes / input_bytes, 3)


@dataclass
class StageTotals:
    """Frames and seconds per stage, summed over the chunks a run computed."""

    frames: dict[str, int] = field(default_factory=lambda: {"decode": 0, "enhance": 0,
                                                            "encode": 0})
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "enhance": 0.0,
                                                               "encode": 0.0})

    def add(self, stage: str, frames: int, seconds: float) -> None:
        self.frames[stage] += frames
        self.seconds[stage] += seconds

    def fps(self) -> dict[str, float]:
        return {k: rate(self.frames[k], self.seconds[k]) for k in self.frames}


@dataclass
class VideoSummary:
    """One video's outcome. ``note`` tells what is worth knowing about a video that did not
    fail (streams or tags left out, a damaged end, a renamed output); ``output_codec`` is the
    encoder its video was made with and ``size_ratio`` its output bytes over its input's."""

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
    output_codec: str | None = None
    size_ratio: float | None = None


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
    #: how the run ended: ``done``, ``failed`` (some videos failed) or ``cancelled``
    status: str = "done"
    #: how the enhancer ran (:func:`merge_enhancer`): precision, backend, device, native
    #: 16-bit math, and per frame size the path, batch and where the choice came from
    enhancer: dict | None = None
    #: the enhancer's busy share (``BusyMeter.snapshot``): ``overall``, ``busy_s``, ``wall_s``
    #: and per actor ``actor``, ``busy_s``, ``wall_s``, ``share``, ``chunks``
    enhancer_busy: dict | None = None
    #: notes about the run as a whole (e.g. why ``--codec auto`` found no hardware encoder)
    notes: list[str] = field(default_factory=list)
    #: the job was finished and unchanged: nothing was started (``run`` is the last run's
    #: number; like every untouched video's, its chunks count neither as computed nor as
    #: skipped)
    already_done: bool = False

    @property
    def failed(self) -> int:
        return sum(v.status == FAILED for v in self.videos)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return {**asdict(self), "failed": self.failed}


def merge_enhancer(recorded: dict | None, chunk: dict | None) -> dict | None:
    """The run's enhancer record with one more chunk's path (``Enhancer.path_info``): the
    common fields once, ``shapes`` per frame size; a size whose chunks ran different paths
    (actors that decided separately) is marked ``mixed``."""
    if not chunk:
        return recorded
    out = dict(recorded or {})
    for key in ("precision", "jit", "backend", "device", "native_16bit", "speedup_vs_this"):
        if key in chunk:
            out.setdefault(key, chunk[key])
    shapes = dict(out.get("shapes") or {})
    size = chunk.get("size", "?")
    path = {k: chunk[k] for k in ("path", "batch_size", "source") if k in chunk}
    seen = shapes.get(size)
    if seen is None:
        shapes[size] = path
    elif (seen.get("path"), seen.get("batch_size")) != (path.get("path"),
                                                        path.get("batch_size")):
        shapes[size] = {**seen, "mixed": True}
    out["shapes"] = shapes
    return out

"""The pipeline's stages: probe, decode, enhance (+ temporal), encode, assemble.

Each stage takes plain, picklable data and returns plain data; a failure is returned as a
:class:`Failure` value (never raised across processes), and a stage handed a Failure passes it
on. Nothing here imports Ray: the Ray executor and the sequential executor run these same
functions.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from nhance_batch.checksum import file_sha256
from nhance_batch.config import EncodeConfig, ModelConfig
from nhance_batch.media import Chunk, VideoInfo


@dataclass(frozen=True)
class Failure:
    """A stage's failure: which stage, the error text, and whether a retry may help."""

    stage: str
    error: str
    retriable: bool = False


def failure(stage: str, exc: BaseException) -> Failure:
    """A Failure from an exception: media errors are final, anything else may be transient."""
    from nhance_batch.media import MediaError

    if isinstance(exc, MediaError):
        return Failure(stage, str(exc), retriable=False)
    text = f"{type(exc).__name__}: {exc}"
    tail = traceback.format_exception(exc)[-2:-1]
    if tail:
        text += f" ({tail[0].strip().splitlines()[0]})"
    return Failure(stage, text, retriable=True)


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of one video: what to decode, how to process it, where its part goes."""

    video: int
    source: str
    info: VideoInfo
    chunk: Chunk
    part: str
    temporal_radius: int
    encode: EncodeConfig
    attempt: int = 1


@dataclass(frozen=True)
class Decoded:
    frames: np.ndarray  # [ctx frames, H, W, 3] uint8/uint16
    pts: np.ndarray
    seconds: float


@dataclass(frozen=True)
class Enhanced:
    frames: np.ndarray  # the chunk's own frames, enhanced and stabilised, source bit depth
    pts: np.ndarray
    gains_before: np.ndarray  # [own frames, 3]
    gains_after: np.ndarray
    decoded_frames: int
    decode_seconds: float
    enhance_seconds: float


@dataclass(frozen=True)
class ChunkResult:
    """The outcome of one chunk (``error`` is None on success)."""

    video: int
    index: int
    attempt: int
    error: Failure | None = None
    part: str | None = None
    part_bytes: int = 0
    part_sha256: str | None = None
    frames: int = 0
    decoded_frames: int = 0
    gains_before: np.ndarray | None = None
    gains_after: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AssembleTask:
    video: int
    source: str
    info: VideoInfo
    parts: tuple[str, ...]
    scratch: str  # assembled here first
    dest: str     # then moved here: the output appears only when complete
    encode: EncodeConfig
    container: str | None = None


@dataclass(frozen=True)
class AssembleResult:
    video: int
    error: Failure | None = None
    dest: str | None = None
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def probe_stage(source: str) -> VideoInfo | Failure:
    """Probe ``source``; a file that is not a readable, safe video becomes a Failure."""
    from nhance_batch.media import probe

    try:
        info = probe(source)
    except Exception as exc:  # noqa: BLE001 - failures are data
        return failure("probe", exc)
    if info.frame_count == 0:
        return Failure("probe", f"{source}: the video stream has no frames")
    return info


def decode_stage(task: ChunkTask) -> Decoded | Failure:
    """Decode the chunk's frames with their context."""
    from nhance_batch.media import decode_chunk

    start = time.perf_counter()
    try:
        frames = decode_chunk(task.source, task.info, task.chunk)
    except Exception as exc:  # noqa: BLE001
        return failure("decode", exc)
    return Decoded(frames.frames, frames.pts, time.perf_counter() - start)


class EnhanceStage:
    """DPED plus temporal stabilisation on a decoded chunk.

    Lifecycle: the constructor is cheap (it runs on the driver); :meth:`setup` loads the model
    inside the worker process; :meth:`process` runs once per chunk.
    """

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self._enhancer = None

    def setup(self) -> None:
        from nhance_batch.enhancer import Enhancer

        self._enhancer = Enhancer(self.model)
        self._enhancer.setup()

    def process(self, task: ChunkTask, decoded: Decoded | Failure) -> Enhanced | Failure:
        if isinstance(decoded, Failure):
            return decoded
        from nhance_batch.temporal import process_chunk

        if self._enhancer is None:
            self.setup()
        start = time.perf_counter()
        try:
            y = self._enhancer(decoded.frames, as_float=True)
            lead = task.chunk.lead
            own = slice(lead, lead + task.chunk.size)
            result = process_chunk(decoded.frames, y, own, task.temporal_radius,
                                   dtype=decoded.frames.dtype)
        except Exception as exc:  # noqa: BLE001
            return failure("enhance", exc)
        return Enhanced(result.frames, decoded.pts[own], result.gains_before, result.gains_after,
                        len(decoded.frames), decoded.seconds, time.perf_counter() - start)


def encode_stage(task: ChunkTask, enhanced: Enhanced | Failure) -> ChunkResult:
    """Encode the chunk's own frames into its part file (written whole, then renamed)."""
    base = ChunkResult(task.video, task.chunk.index, task.attempt)
    if isinstance(enhanced, Failure):
        return ChunkResult(task.video, task.chunk.index, task.attempt, error=enhanced)
    from nhance_batch.media import encode_part

    start = time.perf_counter()
    tmp = f"{task.part}.tmp{os.getpid()}{os.path.splitext(task.part)[1]}"
    try:
        os.makedirs(os.path.dirname(task.part) or ".", exist_ok=True)
        encode_part(enhanced.frames, enhanced.pts, task.info, tmp, task.encode)
        os.replace(tmp, task.part)
        size = os.path.getsize(task.part)
        digest = file_sha256(task.part)
    except Exception as exc:  # noqa: BLE001
        if os.path.exists(tmp):
            os.unlink(tmp)
        return ChunkResult(base.video, base.index, base.attempt, error=failure("encode", exc))
    return ChunkResult(
        task.video, task.chunk.index, task.attempt, part=task.part, part_bytes=size,
        part_sha256=digest, frames=len(enhanced.frames), decoded_frames=enhanced.decoded_frames,
        gains_before=enhanced.gains_before, gains_after=enhanced.gains_after,
        seconds={"decode": enhanced.decode_seconds, "enhance": enhanced.enhance_seconds,
                 "encode": time.perf_counter() - start})


def assemble_stage(task: AssembleTask) -> AssembleResult:
    """Assemble the parts with the source's other streams, then move the result into place."""
    from nhance_batch.media import assemble

    start = time.perf_counter()
    try:
        os.makedirs(os.path.dirname(task.scratch) or ".", exist_ok=True)
        assemble(task.source, task.info, task.parts, task.scratch, task.encode,
                 container=task.container)
        os.makedirs(os.path.dirname(task.dest) or ".", exist_ok=True)
        os.replace(task.scratch, task.dest)
        size = os.path.getsize(task.dest)
    except Exception as exc:  # noqa: BLE001
        if os.path.exists(task.scratch):
            os.unlink(task.scratch)
        return AssembleResult(task.video, error=failure("assemble", exc))
    return AssembleResult(task.video, dest=task.dest, bytes=size,
                          seconds=time.perf_counter() - start)


def rate(frames: int, seconds: float) -> float:
    """Frames per second, 0 when nothing was timed."""
    return frames / seconds if seconds > 0 else 0.0


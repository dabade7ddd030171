"""The pipeline's stages: probe, decode, enhance (+ temporal), encode, assemble.

Each stage takes plain, picklable data and returns plain data; a failure is returned as a
:class:`Failure` value (never raised across processes), and a stage handed a Failure passes it
on. Nothing here imports Ray: the Ray executor and the sequential executor run these same
functions.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from contextlib import ExitStack
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


def failure(stage: str, exc: BaseException, storage_options: dict | None = None) -> Failure:
    """A Failure from an exception: media errors and permanent store errors are final, anything
    else may be transient. Secrets of ``storage_options`` never reach the text."""
    from nhance_batch.media import MediaError
    from nhance_batch.storage import StorageError, redact

    if isinstance(exc, MediaError) or (isinstance(exc, StorageError) and not exc.transient):
        return Failure(stage, redact(str(exc), storage_options), retriable=False)
    text = f"{type(exc).__name__}: {exc}"
    tail = traceback.format_exception(exc)[-2:-1]
    if tail:
        text += f" ({tail[0].strip().splitlines()[0]})"
    return Failure(stage, redact(text, storage_options), retriable=True)


@dataclass(frozen=True)
class Source:
    """Where a video is read from: a local path or a store URL, with what identifies it."""

    url: str
    storage_options: dict = field(default_factory=dict, repr=False)
    fingerprint: str | None = None
    size: int | None = None

    def local(self):
        """A context manager yielding a local path to decode from (a cached copy for stores)."""
        from nhance_batch.storage import local_input

        return local_input(self.url, self.storage_options, known_fingerprint=self.fingerprint,
                           known_size=self.size)




def warm_up() -> bool:
    """Import what the CPU stages use, so that a fresh worker process does it before the first
    chunk instead of on it. Never fails (a missing module shows on the real work)."""
    try:
        import av  # noqa: F401

        import nhance_batch.media.assemble  # noqa: F401
        import nhance_batch.media.decode  # noqa: F401
        import nhance_batch.media.encode  # noqa: F401
        import nhance_batch.media.probe  # noqa: F401
        import nhance_batch.storage  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


@dataclass(frozen=True)
class ProbeTask:
    """A video to probe, and what the job accepts (larger frames or more frames fail)."""

    source: Source
    max_pixels: int
    max_frames: int
    #: False: decode nothing (``plan``); counts and timestamps are the same
    decode_first_frame: bool = True


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of one video: what to decode, how to process it, where its part goes.

    ``info`` carries the timestamps of the chunk's own window only (and a few seek points
    before it, :func:`nhance_batch.media.chunk_info`), so a task's size does not grow with
    the video's length. ``output_options`` are the options of the part's store.
    """

    video: int
    source: Source
    info: VideoInfo
    chunk: Chunk
    part: str  # local path or store URL of the encoded part
    temporal_radius: int
    encode: EncodeConfig
    attempt: int = 1
    output_options: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Decoded:
    frames: np.ndarray  # [ctx frames, H, W, 3] uint8/uint16
    pts: np.ndarray
    seconds: float


@dataclass(frozen=True)
class Enhanced:
    frames: np.ndarray  # the chunk's own frames, ready to encode (grade.output_dtype)
    pts: np.ndarray
    gains_before: np.ndarray  # [own frames, 3]
    gains_after: np.ndarray
    decoded_frames: int
    decode_seconds: float
    enhance_seconds: float
    enhancer: dict | None = None  # the path that enhanced it (Enhancer.path_info)


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
    enhancer: dict | None = None  # the path that enhanced it (Enhancer.path_info)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AssembleTask:
    video: int
    source: Source
    info: VideoInfo
    parts: tuple[str, ...]
    scratch: str | None  # assembled here first (None: a temporary file of the worker)
    dest: str            # then moved or uploaded here: it appears only when complete
    encode: EncodeConfig
    container: str | None = None
    output_options: dict = field(default_factory=dict, repr=False)  # dest's and parts' store
    preview: str | None = None  # where a browser-playable preview goes (run --previews)


@dataclass(frozen=True)
class AssembleResult:
    video: int
    error: Failure | None = None
    dest: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    preview: str | None = None
    metrics: dict | None = None
    note: str | None = None  # something to tell about a committed video (not a failure)

    @property
    def ok(self) -> bool:
        return self.error is None


def probe_stage(task: ProbeTask) -> VideoInfo | Failure:
    """Probe a video; a file that is not a readable, safe video, or one larger than the job's
    limits, becomes a Failure."""
    from nhance_batch.media import MediaError, probe

    source = task.source
    try:
        with source.local() as path:
            try:
                info = probe(path, max_pixels=task.max_pixels, max_frames=task.max_frames,
                             decode_first_frame=task.decode_first_frame)
            except MediaError as exc:
                raise MediaError(source.url, exc.reason) from None
    except Exception as exc:  # noqa: BLE001 - failures are data
        return failure("probe", exc, source.storage_options)
    if info.frame_count == 0:
        return Failure("probe", f"{source.url}: the video stream has no frames")
    return info


def decode_stage(task: ChunkTask) -> Decoded | Failure:
    """Decode the chunk's frames with their context."""
    from nhance_batch.media import decode_chunk

    from nhance_batch.media import MediaError

    start = time.perf_counter()
    try:
        with task.source.local() as path:
            try:
                frames = decode_chunk(path, task.info, task.chunk)
            except MediaError as exc:
                raise MediaError(task.source.url, exc.reason) from None
    except Exception as exc:  # noqa: BLE001
        return failure("decode", exc, task.source.storage_options)
    return Decoded(frames.frames, frames.pts, time.perf_counter() - start)


class EnhanceStage:
    """DPED plus temporal stabilisation on a decoded chunk, with the strength blend, and HDR
    sources through the model's SDR domain (:mod:`nhance_batch.pipeline.grade`).

    Lifecycle: the constructor is cheap (it runs on the driver); :meth:`setup` loads the model
    inside the worker process; :meth:`process` runs once per chunk.
    """

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self._enhancer = None

    def setup(self) -> None:
        from nhance_batch.model.enhancer import Enhancer

        self._enhancer = Enhancer(self.model)
        self._enhancer.setup()

    def process(self, task: ChunkTask, decoded: Decoded | Failure) -> Enhanced | Failure:
        if isinstance(decoded, Failure):
            return decoded
        from nhance_batch.pipeline.grade import enhance_chunk

        if self._enhancer is None:
            self.setup()
        start = time.perf_counter()
        own = slice(task.chunk.lead, task.chunk.lead + task.chunk.size)
        try:
            result = enhance_chunk(self._enhancer, decoded.frames, own, task.temporal_radius,
                                   transfer=task.info.color.transfer, hdr=task.encode.hdr,
                                   strength=self.model.strength)
        except Exception as exc:  # noqa: BLE001
            return failure("enhance", exc)
        finally:
            release_free_memory()
        return Enhanced(result.frames, decoded.pts[own], result.gains_before, result.gains_after,
                        len(decoded.frames), decoded.seconds, time.perf_counter() - start,
                        enhancer=self._enhancer.path_info(decoded.frames))


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``); False where
    there is no glibc.

    The enhance stage allocates and frees a chunk's intermediate arrays from many threads
    (the math backend's and Ray's), each with its own malloc arena; freed memory stays in
    those arenas, so the actor's resident memory drifts up and down by 10% from chunk to
    chunk (676-737 MiB at 64x48, over 20 chunks of 272 frames). Trimmed after every chunk it
    stays at 640-644 MiB.
    """
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes

        try:  # the process's own symbols: the C library it runs on
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


_malloc_trim = None


def _scratch_file(dest: str, suffix: str) -> str:
    """A temporary file to write ``dest`` from: beside it when local (so a rename commits it),
    else in the worker's temporary folder (then uploaded whole)."""
    from nhance_batch.storage import is_local_url, local_path, temp_name

    if is_local_url(dest):
        final = local_path(dest)
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        return temp_name(final) + suffix
    handle, path = tempfile.mkstemp(prefix="nhance-", suffix=suffix)
    os.close(handle)
    return path


def encode_stage(task: ChunkTask, enhanced: Enhanced | Failure) -> ChunkResult:
    """Encode the chunk's own frames into its part (written whole, then renamed or uploaded)."""
    if isinstance(enhanced, Failure):
        return ChunkResult(task.video, task.chunk.index, task.attempt, error=enhanced)
    from nhance_batch.media import encode_part
    from nhance_batch.media.hdrmeta import output_info
    from nhance_batch.storage import upload

    options = task.output_options
    start = time.perf_counter()
    tmp = _scratch_file(task.part, os.path.splitext(task.part)[1])
    try:
        encode_part(enhanced.frames, enhanced.pts, output_info(task.info, task.encode.hdr),
                    tmp, task.encode)
        digest = file_sha256(tmp)
        size = upload(tmp, task.part, options)
    except Exception as exc:  # noqa: BLE001
        return ChunkResult(task.video, task.chunk.index, task.attempt,
                           error=failure("encode", exc, options))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ChunkResult(
        task.video, task.chunk.index, task.attempt, part=task.part, part_bytes=size,
        part_sha256=digest, frames=len(enhanced.frames), decoded_frames=enhanced.decoded_frames,
        gains_before=enhanced.gains_before, gains_after=enhanced.gains_after,
        seconds={"decode": enhanced.decode_seconds, "enhance": enhanced.enhance_seconds,
                 "encode": time.perf_counter() - start}, enhancer=enhanced.enhancer)


def assemble_stage(task: AssembleTask) -> AssembleResult:
    """Assemble the parts with the source's other streams, then commit the result: a rename
    for local outputs, one whole-object upload for stores."""
    from nhance_batch.media import MediaError, assemble
    from nhance_batch.media.hdrmeta import hdr_note
    from nhance_batch.storage import download, is_local_url, local_path, upload

    options = task.output_options
    start = time.perf_counter()
    suffix = os.path.splitext(task.dest)[1]
    scratch = task.scratch or _scratch_file(task.dest, suffix)
    try:
        with ExitStack() as stack:
            source = stack.enter_context(task.source.local())
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nhance-parts-"))
            parts = []
            for i, part in enumerate(task.parts):
                if is_local_url(part):
                    parts.append(local_path(part))
                else:
                    local = os.path.join(workdir, f"{i:05d}.mp4")
                    download(part, local, options)
                    parts.append(local)
            os.makedirs(os.path.dirname(os.path.abspath(scratch)), exist_ok=True)
            try:
                assemble(source, task.info, parts, scratch, task.encode,
                         container=task.container)
            except MediaError as exc:
                raise MediaError(task.source.url, exc.reason) from None
            # metrics and the preview, here where source and output are local; never fatal
            from nhance_batch.analysis.extras import video_extras

            extras = video_extras(source, scratch, preview_dest=task.preview,
                                  storage_options=options)
        size = upload(scratch, task.dest, options)
    except Exception as exc:  # noqa: BLE001
        return AssembleResult(task.video, error=failure("assemble", exc, options))
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return AssembleResult(task.video, dest=task.dest, bytes=size,
                          seconds=time.perf_counter() - start, preview=extras.preview,
                          metrics=extras.metrics, note=_notes(
                              hdr_note(task.info, task.encode.hdr), extras.note))


def _notes(*notes: str | None) -> str | None:
    """The notes that are there, as one (None when there is none)."""
    return "; ".join(n for n in notes if n) or None



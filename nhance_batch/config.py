"""Typed, validated configuration, one frozen model per concern, built once at the edge (the
command line, a job spec, the web form) by :func:`run_config`.

The models are pydantic models: every value is checked when the object is built (a bad one
raises :class:`ValueError` naming the field), the objects are immutable, and
``RunConfig.model_json_schema()`` describes the settings for a form.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

# Frames each side over which the temporal stage smooths the colour gain: measured on real and
# synthetic footage (docs/running.md, "Temporal stabilisation"); chunks carry at least this much
# context.
DEFAULT_TEMPORAL_RADIUS = 3
# The probe refuses frames larger than this many pixels, and videos of more frames.
DEFAULT_MAX_PIXELS = 8192 * 8192
DEFAULT_MAX_FRAMES = 10_000_000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Frozen):
    """Which DPED generator to run and how.

    Attributes:
        name: registry name (``iphone``, ``blackberry``, ``sony``, or a user model).
        path: explicit checkpoint prefix (``.../iphone_orig``); overrides the registry lookup.
        precision: ``float32``, ``bfloat16`` or ``float16`` compute (norm statistics stay float32).
        jit: ``on`` compiles the forward pass with XLA, ``off`` runs it as a TensorFlow graph
            without XLA, ``auto`` takes the faster one measured on this machine
            (:mod:`nhance_batch.model.autotune`; bools mean on/off).
        threads: math threads for the backend (0: the backend's default).
        batch_size: frames per forward pass; every pass has this batch shape (a short last
            batch is padded), so results never depend on how frames were grouped; 0: the
            fastest of 1, 2, 4 and 8 measured on this machine (autotune).
        strength: how much of the enhancement is kept, 0 to 1: the output is the input
            blended with the enhanced frame in the model's domain, ``S + strength * (y - S)``
            (after temporal stabilisation); 0 gives back the input's picture.
    """

    name: str = "iphone"
    path: Path | None = None
    precision: Literal["float32", "bfloat16", "float16"] = "float32"
    jit: Literal["auto", "on", "off"] = "auto"
    threads: int = Field(0, ge=0)
    batch_size: int = Field(0, ge=0)
    strength: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("jit", mode="before")
    @classmethod
    def _jit_words(cls, value: Any) -> Any:
        if value is True or value is False or value is None:
            return {True: "on", False: "off", None: "auto"}[value]
        return value.strip().lower() if isinstance(value, str) else value


class EncodeConfig(_Frozen):
    """How enhanced frames are encoded into parts.

    Attributes:
        codec: ``match`` (the source's codec family: H.264, HEVC at its bit depth, AV1, VP9;
            H.264 or HEVC Main 10 for other codecs), ``auto`` (the hardware encoder of that
            family where one works), or an FFmpeg encoder name (``libx264``, ``libx265``...).
        crf: constant rate factor for encoders that take one; None: the encoder's default,
            each about the quality of x264 at CRF 18
            (:data:`nhance_batch.media.encode.DEFAULT_CRF`).
        preset: encoder speed preset (x264/x265 names).
        lossless: encode so that decoding returns the enhancer's output exactly (overrides codec).
        hdr: what an HDR (PQ or HLG) source becomes: ``keep`` keeps HDR (its transfer,
            primaries and bit depth, and its HDR10 metadata); ``sdr`` writes the SDR BT.709
            8-bit rendition the model works in. SDR sources are unaffected.
    """

    codec: str = "match"
    crf: int | None = Field(None, ge=0, le=63)
    preset: str = "medium"
    lossless: bool = False
    hdr: Literal["keep", "sdr"] = "keep"


# Enhancer working memory per pixel of a chunk frame: the uint8 input, the float32 output
# kept for the chunk's own frames, the quantised result, and decoding's copies.
CHUNK_BYTES_PER_PIXEL = 20
#: Seconds of enhancer work a chunk holds by default (``--chunk-seconds``).
DEFAULT_CHUNK_SECONDS = 20.0
#: Most context frames (2 x overlap per chunk) per enhanced frame of a chunk: a chunk is at
#: least ``2 * overlap / MAX_CONTEXT_SHARE`` frames long (40 for the default overlap of 3),
#: unless the memory cap forbids it.
MAX_CONTEXT_SHARE = 0.15
#: Enhancer megapixels per second assumed for one worker when nothing measured is known
#: (:func:`nhance_batch.rates.known_enhancer_rate`): DPED costs 0.8 MFLOP per
#: pixel, and 25 GFLOP/s is a slow CPU worker (two cores here run about 90), so chunks err
#: on the short side.
FALLBACK_MPX_S = 25e9 / 799_488 / 1e6


def memory_chunk_frames(width: int, height: int, overlap: int) -> int:
    """As many frames as fit the chunk memory budget (``NHANCE_CHUNK_MEMORY`` bytes, 2 GiB by
    default) with their context, at least 1: frames so large that few fit (4K, 8K) get
    chunks of as few as one frame, so memory stays in the budget."""
    budget = int(os.environ.get("NHANCE_CHUNK_MEMORY", 2 << 30))
    frames = budget // max(1, width * height * CHUNK_BYTES_PER_PIXEL) - 2 * overlap
    return max(1, frames)


def min_chunk_frames(overlap: int) -> int:
    """The shortest chunk whose context frames stay within :data:`MAX_CONTEXT_SHARE` of its
    own frames."""
    return max(1, math.ceil(2 * overlap / MAX_CONTEXT_SHARE - 1e-9))


def timed_chunk_frames(width: int, height: int, overlap: int, seconds: float,
                       mpx_s: float) -> int:
    """Frames per chunk so that a chunk holds about ``seconds`` of enhancer work at ``mpx_s``
    megapixels per second (the rate of the worker that runs it), its own frames and context
    together; at least :func:`min_chunk_frames` (the context share bound wins over the time),
    at most :func:`memory_chunk_frames` (the memory bound wins over both)."""
    work = seconds * mpx_s * 1e6 / max(1, width * height)
    timed = int(work) - 2 * overlap
    return min(memory_chunk_frames(width, height, overlap),
               max(min_chunk_frames(overlap), timed))


class ChunkConfig(_Frozen):
    """How a video is split into chunks.

    Attributes:
        chunk_frames: output frames per chunk; 0 sizes chunks by time
            (:func:`timed_chunk_frames`).
        chunk_seconds: with ``chunk_frames`` 0, the enhancer seconds a chunk holds on the
            worker that runs it.
        overlap: context frames decoded on each side of a chunk (clamped at the ends).
    """

    chunk_frames: int = Field(0, ge=0)
    chunk_seconds: float = Field(DEFAULT_CHUNK_SECONDS, gt=0)
    overlap: int = Field(DEFAULT_TEMPORAL_RADIUS, ge=0)

    def frames_for(self, width: int, height: int, mpx_s: float | None = None) -> int:
        """The chunk size for frames of ``width`` x ``height`` on a worker enhancing ``mpx_s``
        megapixels per second (None: :data:`FALLBACK_MPX_S`)."""
        if self.chunk_frames:
            return self.chunk_frames
        return timed_chunk_frames(width, height, self.overlap, self.chunk_seconds,
                                  mpx_s or FALLBACK_MPX_S)


class LimitsConfig(_Frozen):
    """What the probe accepts: larger frames or longer videos fail with a clear error.

    Attributes:
        max_pixels: most pixels per frame (width x height).
        max_frames: most frames per video.
        task_seconds: a decode or encode task running longer than this is ended and retried
            like any other failure (0: no limit).
    """

    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_frames: int = Field(DEFAULT_MAX_FRAMES, ge=1)
    task_seconds: float = Field(900.0, ge=0)


class ClusterConfig(_Frozen):
    """Where the work runs.

    Attributes:
        address: Ray cluster address to join; None starts an embedded local Ray.
        workers: enhancer actors; 0 means one per GPU, or one on a machine without GPUs.
        gpus_per_worker: GPUs each enhancer actor reserves (fractions share a GPU).
        max_retries: times a failed chunk is retried within a run.
    """

    address: str | None = None
    workers: int = Field(0, ge=0)
    gpus_per_worker: float = Field(1.0, gt=0)
    max_retries: int = Field(2, ge=0)
    #: start the embedded Ray's dashboard (``run --dashboard``); off by default: it costs
    #: start-up time and memory that a batch job does not need
    dashboard: bool = False


class RunConfig(_Frozen):
    """One batch job: what to read, where to write, and how to process it.

    Attributes:
        input: a video file, a folder (searched recursively by video extension) or a glob;
            a local path or any fsspec URL (``s3://``, ``gs://``, ``az://``...).
        output: the folder or prefix that receives ``<path relative to input>`` per video.
        temporal_radius: frames each side over which the per-frame gain is smoothed (0: off);
            ``chunk.overlap`` must be at least this.
        previews: also write a browser-playable H.264 preview of each output under
            ``OUTPUT/_nhance/preview/``.
        strict: a damaged recording (frames at its end that do not decode) fails; by
            default the frames that decode are kept and the video is noted.
        storage_options: fsspec options (credentials, endpoints), flat or keyed by protocol;
            never printed, logged or recorded.
    """

    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    model: ModelConfig = ModelConfig()
    chunk: ChunkConfig = ChunkConfig()
    encode: EncodeConfig = EncodeConfig()
    cluster: ClusterConfig = ClusterConfig()
    limits: LimitsConfig = LimitsConfig()
    temporal_radius: int = Field(DEFAULT_TEMPORAL_RADIUS, ge=0)
    previews: bool = False
    strict: bool = False
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)

    @model_validator(mode="after")
    def _overlap_covers_radius(self) -> RunConfig:
        if self.chunk.overlap < self.temporal_radius:
            raise ValueError(f"overlap ({self.chunk.overlap}) must be at least the temporal "
                             f"radius ({self.temporal_radius}) so chunks see every frame the "
                             "smoothing uses")
        return self


class ConfigError(ValueError):
    """Settings that do not make a valid job (the message says which and why)."""


def parse_max_pixels(value: str | int | None) -> int | None:
    """``--max-pixels``: a pixel count (``67108864``) or a frame size (``8192x8192``)."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).lower().replace(" ", "")
    try:
        if "x" in text:
            width, height = text.split("x", 1)
            return int(width) * int(height)
        return int(text)
    except ValueError:
        raise ConfigError(f"max pixels must be a count or WxH, not {value!r}") from None


def error_text(exc: ValidationError) -> str:
    """A pydantic validation error as one line per problem, naming the setting."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        message = err.get("msg", "invalid").removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def run_config(input: str, output: str, *, model: str = "iphone",
               model_path: str | Path | None = None, precision: str | None = None,
               jit: bool | str | None = None, chunk_frames: int = 0,
               chunk_seconds: float | None = None, overlap: int | None = None,
               temporal_radius: int | None = None, lossless: bool = False,
               codec: str | None = None, crf: int | None = None, preset: str | None = None,
               address: str | None = None, workers: int = 0, max_retries: int = 2,
               gpus_per_worker: float | None = None, threads: int = 0,
               max_pixels: str | int | None = None, max_frames: int | None = None,
               task_timeout: float | None = None, previews: bool = False,
               dashboard: bool = False, strict: bool = False, hdr: str | None = None,
               strength: float | None = None,
               storage_options: dict[str, Any] | None = None) -> RunConfig:
    """The :class:`RunConfig` of a job from flat settings: the ``run`` options, the keys of a
    job spec, the fields of the web form. ``None`` takes the default.

    Raises:
        ConfigError: a setting is invalid or settings contradict each other (the message
            names them).
    """
    if lossless and (codec or crf is not None or preset):
        raise ConfigError("--lossless cannot be combined with --codec, --crf or --preset")
    radius = DEFAULT_TEMPORAL_RADIUS if temporal_radius is None else temporal_radius
    if overlap is None:
        overlap = radius
    elif overlap < radius:
        raise ConfigError(f"--overlap {overlap} is smaller than the temporal radius "
                          f"{radius}: chunks must carry at least R context frames")
    model_values: dict[str, Any] = {"name": model, "path": model_path, "threads": threads}
    if precision is not None:
        model_values["precision"] = precision
    if jit is not None:
        model_values["jit"] = jit
    if strength is not None:
        model_values["strength"] = strength
    encode = {k: v for k, v in (("codec", codec), ("crf", crf), ("preset", preset))
              if v is not None}
    if hdr is not None:
        encode["hdr"] = hdr
    cluster: dict[str, Any] = {"address": address, "workers": workers,
                               "max_retries": max_retries, "dashboard": dashboard}
    if gpus_per_worker is not None:
        cluster["gpus_per_worker"] = float(gpus_per_worker)
    limits: dict[str, Any] = {}
    if max_pixels is not None:
        limits["max_pixels"] = parse_max_pixels(max_pixels)
    if max_frames is not None:
        limits["max_frames"] = max_frames
    if task_timeout is not None:
        limits["task_seconds"] = task_timeout
    try:
        return RunConfig(
            input=input, output=output, model=ModelConfig(**model_values),
            chunk=ChunkConfig(chunk_frames=chunk_frames, overlap=overlap,
                              chunk_seconds=(DEFAULT_CHUNK_SECONDS if chunk_seconds is None
                                             else chunk_seconds)),
            encode=EncodeConfig(**encode, lossless=lossless),
            cluster=ClusterConfig(**cluster), limits=LimitsConfig(**limits),
            temporal_radius=radius, previews=previews, strict=strict,
            storage_options=storage_options or {})
    except ValidationError as exc:
        raise ConfigError(error_text(exc)) from None

"""Frozen, typed configuration objects, one per concern, built once at the CLI edge."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Frames each side over which the temporal stage smooths the colour gain: measured on real and
# synthetic footage (README, "Temporal stabilisation"); chunks carry at least this much context.
DEFAULT_TEMPORAL_RADIUS = 3


@dataclass(frozen=True)
class ModelConfig:
    """Which DPED generator to run and how.

    Attributes:
        name: registry name (``iphone``, ``blackberry``, ``sony``).
        path: explicit checkpoint prefix (``.../iphone_orig``); overrides the registry lookup.
        precision: ``float32``, ``bfloat16`` or ``float16`` compute (norm statistics stay float32).
        jit: compile the forward pass with XLA.
        threads: math threads for the backend (0: the backend's default).
        batch_size: frames per forward pass; every pass has this batch shape (a short last
            batch is padded), so results never depend on how frames were grouped.
    """

    name: str = "iphone"
    path: Path | None = None
    precision: str = "float32"
    jit: bool = True
    threads: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.precision not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"precision must be float32, bfloat16 or float16, not {self.precision!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@dataclass(frozen=True)
class EncodeConfig:
    """How enhanced frames are encoded into parts.

    Attributes:
        codec: FFmpeg encoder name for lossy output (``libx264``, ``libx265``, ``libaom-av1``...).
        crf: constant rate factor for encoders that take one.
        preset: encoder speed preset (x264/x265 names).
        lossless: encode so that decoding returns the enhancer's output exactly (overrides codec).
    """

    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    lossless: bool = False


@dataclass(frozen=True)
class ChunkConfig:
    """How a video is split into chunks.

    Attributes:
        chunk_frames: output frames per chunk; 0 sizes chunks to each video's frame size
            (:func:`auto_chunk_frames`).
        overlap: context frames decoded on each side of a chunk (clamped at the ends).
    """

    chunk_frames: int = 0
    overlap: int = DEFAULT_TEMPORAL_RADIUS

    def __post_init__(self) -> None:
        if self.chunk_frames < 0:
            raise ValueError("chunk_frames must be >= 0 (0: sized to the frames)")
        if self.overlap < 0:
            raise ValueError("overlap must be >= 0")

    def frames_for(self, width: int, height: int) -> int:
        """The chunk size for frames of ``width`` x ``height``."""
        return self.chunk_frames or auto_chunk_frames(width, height, self.overlap)


# Enhancer working memory per pixel of a chunk frame: the uint8 input, the float32 output
# kept for the chunk's own frames, the quantised result, and decoding's copies.
CHUNK_BYTES_PER_PIXEL = 20
AUTO_CHUNK_LIMITS = (16, 256)


def auto_chunk_frames(width: int, height: int, overlap: int) -> int:
    """As many frames as fit the chunk memory budget (``NHANCE_CHUNK_MEMORY`` bytes, 2 GiB by
    default) with their context, between 16 and 256: large chunks keep the share of redundant
    context frames (2 x overlap per chunk) small, small frames allow them."""
    budget = int(os.environ.get("NHANCE_CHUNK_MEMORY", 2 << 30))
    frames = budget // max(1, width * height * CHUNK_BYTES_PER_PIXEL) - 2 * overlap
    low, high = AUTO_CHUNK_LIMITS
    return max(low, min(high, frames))


@dataclass(frozen=True)
class ClusterConfig:
    """Where the work runs.

    Attributes:
        address: Ray cluster address to join; None starts an embedded local Ray.
        workers: enhancer actors; 0 means one per GPU, or one on a machine without GPUs.
        gpus_per_worker: GPUs each enhancer actor reserves (fractions share a GPU).
        max_retries: times a failed chunk is retried within a run.
    """

    address: str | None = None
    workers: int = 0
    gpus_per_worker: float = 1.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("workers must be >= 0")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """One batch job: what to read, where to write, and how to process it.

    Attributes:
        input: a video file, a folder (searched recursively by video extension) or a glob;
            a local path or any fsspec URL (``s3://``, ``gs://``, ``az://``...).
        output: the folder or prefix that receives ``<path relative to input>`` per video.
        temporal_radius: frames each side over which the per-frame gain is smoothed (0: off);
            ``chunk.overlap`` must be at least this.
        storage_options: fsspec options (credentials, endpoints), flat or keyed by protocol;
            never printed, logged or recorded.
    """

    input: str
    output: str
    model: ModelConfig = ModelConfig()
    chunk: ChunkConfig = ChunkConfig()
    encode: EncodeConfig = EncodeConfig()
    cluster: ClusterConfig = ClusterConfig()
    temporal_radius: int = DEFAULT_TEMPORAL_RADIUS
    storage_options: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.temporal_radius < 0:
            raise ValueError("temporal_radius must be >= 0")
        if self.chunk.overlap < self.temporal_radius:
            raise ValueError(f"overlap ({self.chunk.overlap}) must be at least the temporal "
                             f"radius ({self.temporal_radius}) so chunks see every frame the "
                             "smoothing uses")

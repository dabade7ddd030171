"""Frozen, typed configuration objects, one per concern, built once at the CLI edge."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
        chunk_frames: output frames per chunk.
        overlap: context frames decoded on each side of a chunk (clamped at the ends).
    """

    chunk_frames: int = 64
    overlap: int = 4

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        if self.overlap < 0:
            raise ValueError("overlap must be >= 0")

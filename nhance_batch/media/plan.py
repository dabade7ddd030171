"""Split a video's frames into frame-exact chunks with decoding context."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """One chunk of frames, by frame index (presentation order).

    Attributes:
        index: position of the chunk in the plan (0, 1, ...).
        start, end: the chunk's own frames are ``[start, end)``; concatenating
            every chunk's own frames gives every frame exactly once.
        ctx_start, ctx_end: the frames decoded for it, ``[ctx_start, ctx_end)``:
            the chunk plus up to ``overlap`` context frames on each side.
    """

    index: int
    start: int
    end: int
    ctx_start: int
    ctx_end: int

    @property
    def size(self) -> int:
        """Number of the chunk's own frames."""
        return self.end - self.start

    @property
    def lead(self) -> int:
        """Context frames before the chunk's own frames."""
        return self.start - self.ctx_start

    @property
    def trail(self) -> int:
        """Context frames after the chunk's own frames."""
        return self.ctx_end - self.end


def plan_chunks(frame_count: int, chunk_frames: int, overlap: int) -> tuple[Chunk, ...]:
    """Chunks of ``chunk_frames`` frames with ``overlap`` context frames each side.

    The last chunk may be shorter; context is clamped to ``[0, frame_count)``.
    ``frame_count == 0`` gives no chunks.

    Raises:
        ValueError: negative ``frame_count`` or ``overlap``, or ``chunk_frames < 1``.
    """
    if frame_count < 0:
        raise ValueError(f"frame_count must be >= 0, not {frame_count}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, not {chunk_frames}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, not {overlap}")
    chunks = []
    for index, start in enumerate(range(0, frame_count, chunk_frames)):
        end = min(start + chunk_frames, frame_count)
        chunks.append(
            Chunk(
                index=index,
                start=start,
                end=end,
                ctx_start=max(0, start - overlap),
                ctx_end=min(frame_count, end + overlap),
            )
        )
    return tuple(chunks)

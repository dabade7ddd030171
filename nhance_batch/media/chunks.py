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


class PtsWindow:
    """A video's frame timestamps as one chunk needs them: the chunk's decoding window in
    full, plus the few earlier points its decoder may seek to (1, 2, 4, ... frames before
    the window, and frame 0) and the last frame's. Indexing is by the video's frame number,
    like the full tuple it stands for (``len`` is the video's frame count), so a chunk task
    carries O(chunk + log(video)) timestamps instead of the whole video's.
    """

    __slots__ = ("length", "offset", "window", "points")

    def __init__(self, pts: tuple[int, ...] | list[int], lo: int, hi: int) -> None:
        self.length = len(pts)
        self.offset = lo
        self.window = tuple(pts[lo:hi])
        points = {0: pts[0], self.length - 1: pts[-1]} if self.length else {}
        back = 1
        while lo - back > 0:
            points[lo - back] = pts[lo - back]
            back *= 2
        self.points = points

    def __getstate__(self):
        return (self.length, self.offset, self.window, self.points)

    def __setstate__(self, state):
        self.length, self.offset, self.window, self.points = state

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.length)
            if step != 1 or start < self.offset or stop > self.offset + len(self.window):
                raise IndexError(f"frames [{start}, {stop}) are outside this chunk's window "
                                 f"[{self.offset}, {self.offset + len(self.window)})")
            return self.window[start - self.offset:stop - self.offset]
        index = key + self.length if key < 0 else key
        if self.offset <= index < self.offset + len(self.window):
            return self.window[index - self.offset]
        try:
            return self.points[index]
        except KeyError:
            raise IndexError(f"frame {key} is not among this chunk's timestamps") from None


def chunk_info(info, chunk: Chunk):
    """``info`` (a :class:`~nhance_batch.media.probe.VideoInfo`) with only the timestamps
    that decoding and encoding ``chunk`` use (:class:`PtsWindow`)."""
    import dataclasses

    return dataclasses.replace(info, pts=PtsWindow(info.pts, chunk.ctx_start, chunk.ctx_end))

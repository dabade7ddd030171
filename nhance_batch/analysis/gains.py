"""A video's per-frame colour gains, before and after temporal stabilisation, as series for
plots: from the manifest's chunk records, which hold them frame-major (R, G, B per frame).

* :func:`rgb_gains`: the whole video's gains per channel, for the report's plot; only when
  every chunk recorded both series, so the plot never has holes.
* :func:`mean_gains`: the mean of R, G and B per frame, for the web page's flicker plot; the
  chunks that recorded nothing are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _by_index(video: Any) -> list[Any]:
    return sorted(video.chunks, key=lambda c: c.index)


def rgb_gains(video: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(before, after)``, each float64 ``[frames, 3]``, of a manifest's video record; None
    when a chunk lacks either series or the two do not hold whole, equal frames."""
    chunks = _by_index(video)
    if not chunks or any(c.gains_before is None or c.gains_after is None for c in chunks):
        return None
    before = np.concatenate([np.asarray(c.gains_before, dtype=float) for c in chunks])
    after = np.concatenate([np.asarray(c.gains_after, dtype=float) for c in chunks])
    if before.size % 3 or before.size != after.size:
        return None
    return before.reshape(-1, 3), after.reshape(-1, 3)


def _frame_means(values: Any) -> list[float]:
    """The mean of each whole (R, G, B) triple of ``values``; a trailing partial one is
    dropped."""
    flat = np.asarray([] if values is None else values, dtype=float).ravel()
    whole = flat[: flat.size - flat.size % 3].reshape(-1, 3)
    return (whole.sum(axis=1) / 3).tolist()


def mean_gains(video: Any) -> dict[str, list[float]] | None:
    """``{"before": [...], "after": [...]}``, the per-frame mean gain of a manifest's video
    record in chunk order; None when no chunk recorded gains before stabilisation."""
    before: list[float] = []
    after: list[float] = []
    for chunk in _by_index(video):
        before.extend(_frame_means(chunk.gains_before))
        after.extend(_frame_means(chunk.gains_after))
    if not before:
        return None
    return {"before": before, "after": after}

"""Comparison videos of a video before and after enhancement.

Modes:

* ``split``: columns left of ``position * W`` come from BEFORE, the rest from AFTER, with a
  2-pixel divider.
* ``swipe``: the divider goes from the left edge to the right edge and back every ``period``
  seconds (left edge at t=0, right edge at t=period/2).
* ``side-by-side``: BEFORE and AFTER next to each other at full size (2W x H).

Both inputs are turned upright first (their display matrices applied to the pixels), frames
are paired by index, and the comparison carries AFTER's timestamps (variable frame rates
kept) and BEFORE's audio packets, copied. Output: H.264 yuv420p MP4 with faststart and even
dimensions (:mod:`nhance_batch.analysis.browser`), playable in any browser.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from nhance_batch.analysis.browser import BrowserEncoding

log = logging.getLogger(__name__)

#: The comparison modes.
MODES = ("split", "swipe", "side-by-side")


class CompareError(ValueError):
    """BEFORE and AFTER cannot be compared (frame counts or sizes differ, bad options)."""


def swipe_position(t: float, period: float) -> float:
    """Where the swipe divider is at ``t`` seconds: 0 (left edge) at t=0, 1 (right edge) at
    t=period/2, back at 0 at t=period; linear in between."""
    phase = (t / period) % 1.0
    return 1.0 - abs(2.0 * phase - 1.0)


def compose(before: np.ndarray, after: np.ndarray, mode: str, position: float,
            labels: bool) -> np.ndarray:
    """One comparison frame from an upright BEFORE and AFTER frame of the same size."""
    from nhance_batch.analysis import overlay

    h, w = after.shape[:2]
    margin = overlay.label_margin(h)
    if mode == "side-by-side":
        frame = np.concatenate([before, after], axis=1)
        if labels:
            overlay.draw_label(frame, "before", x=margin, y=margin)
            overlay.draw_label(frame, "after", x=w + margin, y=margin)
        return frame
    frame = after.copy()
    cut = int(round(position * w))
    frame[:, :cut] = before[:, :cut]
    if labels:
        overlay.draw_label(frame, "before", x=margin, y=margin)
        overlay.draw_label(frame, "after", x=w - margin, y=margin, align="right")
    overlay.draw_divider(frame, position)
    return frame


def _check_options(mode: str, position: float, period: float) -> None:
    if mode not in MODES:
        raise CompareError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if not 0.0 <= position <= 1.0:
        raise CompareError(f"position must be between 0 and 1, got {position}")
    if not period > 0:
        raise CompareError(f"period must be positive, got {period}")


def check_pair(before: Any, after: Any) -> None:
    """Raise :class:`CompareError` unless the two probe results have the same frame count and
    the same upright size."""
    from nhance_batch.analysis.frames import display_size

    if before.frame_count != after.frame_count:
        raise CompareError(f"frame counts differ: before {before.path} has {before.frame_count} "
                           f"frames, after {after.path} has {after.frame_count}")
    bsize, asize = display_size(before), display_size(after)
    if bsize != asize:
        raise CompareError(f"sizes differ: before {before.path} is {bsize[0]}x{bsize[1]}, "
                           f"after {after.path} is {asize[0]}x{asize[1]} (as displayed)")


def render_compare(
    before: str,
    after: str,
    out: str,
    *,
    mode: str = "split",
    position: float = 0.5,
    period: float = 4.0,
    labels: bool = True,
    encoding: BrowserEncoding | None = None,
) -> None:
    """Write the comparison video of local files ``before`` and ``after`` to ``out``.

    Raises:
        CompareError: frame counts or sizes differ, or the options are out of range.
        MediaError: a file cannot be read or written.
    """
    from nhance_batch.analysis.browser import nominal_rate, open_browser_video
    from nhance_batch.analysis.frames import display_size, iter_frames
    from nhance_batch.media.probe import probe

    _check_options(mode, position, period)
    binfo, ainfo = probe(before), probe(after)
    check_pair(binfo, ainfo)
    # both halves with the source's pixel shape: the output is the same picture (and an
    # output written without its sample aspect ratio still lines up)
    shape = binfo.sample_aspect_ratio
    width, height = display_size(ainfo, shape)
    if mode == "side-by-side":
        width *= 2
    tb = ainfo.time_base
    first = ainfo.pts[0]
    with open_browser_video(out, width=width, height=height, time_base=tb,
                            rate=nominal_rate(ainfo.average_rate, ainfo.pts, tb),
                            audio_from=before, color=ainfo.color, encoding=encoding) as video:
        for (_, _, bframe), (_, pts, aframe) in zip(
                iter_frames(before, binfo, pixel_shape=shape),
                iter_frames(after, ainfo, pixel_shape=shape), strict=True):
            where = position
            if mode == "swipe":
                where = swipe_position(float((pts - first) * tb), period)
            video.write(compose(bframe, aframe, mode, where, labels), pts)


def compare_job(
    output: str,
    *,
    mode: str = "split",
    storage_options: dict | None = None,
    position: float = 0.5,
    period: float = 4.0,
    labels: bool = True,
    manifest: str | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Render the comparison of every done video of the job in ``output`` into
    ``OUTPUT/_nhance/compare/<relative>.<mode>.mp4``; return the paths (URLs) written.

    A video that cannot be compared is skipped: ``on_error(input, reason)`` is called (a
    warning is logged when it is None) and the others go on.

    Raises:
        CompareError: bad options.
        ManifestError: ``output`` holds no readable job manifest.
    """
    from nhance_batch.analysis.jobfiles import job_manifest, local_copy, publish
    from nhance_batch.state.manifest import DONE

    _check_options(mode, position, period)
    layout, recorded = job_manifest(output, storage_options, manifest=manifest)
    written: list[str] = []
    for video in recorded.videos:
        if video.status != DONE or not video.output:
            continue
        dest = layout.compare(video.relative, mode)
        try:
            with local_copy(video.input, layout.input_options) as before, \
                    local_copy(video.output, layout.output_options) as after, \
                    tempfile.TemporaryDirectory(prefix="nhance-compare-") as work:
                local = os.path.join(work, "compare.mp4")
                render_compare(before, after, local, mode=mode, position=position,
                               period=period, labels=labels)
                publish(local, dest, layout.output_options)
        except Exception as exc:  # noqa: BLE001 - one video's failure stays that video's
            reason = layout.redact(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError)
                                   else str(exc))
            if on_error is not None:
                on_error(video.input, reason)
            else:
                log.warning("%s: no comparison: %s", video.input, reason)
            continue
        written.append(dest)
    return written

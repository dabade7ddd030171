"""Picture-quality numbers of a video before and after enhancement, on sampled frames.

Frames are sampled every ``every_s`` seconds (the first frame at or after each multiple),
at most ``max_frames`` of them (spread evenly over the candidates when there are more), the
same frame indices in both videos. They are decoded as a stream and only the sampled ones
converted, so memory stays one frame per video however long it is.

Every number is measured on 8-bit RGB scaled to 0..1, upright, per sampled frame, then
averaged over the samples. Luma ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` (BT.709 weights on the
gamma-encoded values):

* ``luminance``: mean of Y.
* ``contrast``: RMS contrast, the standard deviation of Y.
* ``colourfulness``: Hasler and Süsstrunk (2003), ``sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 *
  sqrt(mean(rg)^2 + mean(yb)^2)`` with ``rg = R - G`` and ``yb = (R + G) / 2 - B`` on the
  paper's 0..255 scale (so its bands apply: about 15 "slightly", 33 "moderately", 59
  "quite", 82 "highly" colourful).
* ``noise``: the noise standard deviation of Y, by Immerkær's fast estimator (1996): a
  high-pass filter that cancels smooth picture structure (the difference of two Laplacians,
  ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``), then the mean absolute response times
  ``sqrt(pi / 2) / 6``. For white Gaussian noise of sigma s this is s; texture and edges add
  to it. (A median-based wavelet estimate snaps to steps of half an 8-bit level on quantised
  frames, too coarse for the low noise of clean footage; the mean does not.)
* ``sharpness``: variance of the 4-neighbour Laplacian of Y.
* ``clipped_highlights`` / ``crushed_shadows``: share of pixels with Y >= 0.98 / Y <= 0.02.

A video is *low light* when its input's mean luminance is below :data:`LOW_LIGHT`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: Mean input luminance below which a video is tagged low light.
LOW_LIGHT = 0.25
#: Name of the noise estimator, recorded with the metrics.
NOISE_ESTIMATOR = "immerkaer-highpass-mean-abs"
#: Bins of the luminance histograms over 0..1.
HISTOGRAM_BINS = 32
HIGHLIGHT, SHADOW = 0.98, 0.02
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
_IMMERKAER = float(np.sqrt(np.pi / 2) / 6.0)
#: The per-frame metrics, in the order tables show them.
NAMES = ("luminance", "contrast", "colourfulness", "noise", "sharpness", "clipped_highlights",
         "crushed_shadows")
# name -> how the change is expressed: a ratio after/before, or a difference after - before
_CHANGE = {"luminance": "ratio", "contrast": "ratio", "colourfulness": "ratio",
           "noise": "ratio", "sharpness": "ratio", "clipped_highlights": "difference",
           "crushed_shadows": "difference"}


def to_unit(frame: np.ndarray) -> np.ndarray:
    """An RGB frame (``uint8``, ``uint16`` or float in 0..1) as float32 in 0..1."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) / 65535.0
    return frame.astype(np.float32, copy=False)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luma ``[H, W]`` of an RGB frame (float 0..1)."""
    return to_unit(rgb) @ _LUMA


def noise_sigma(y: np.ndarray) -> float:
    """Immerkær's estimate of the noise standard deviation of the image ``y`` (2-D float):
    the mean absolute response to ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`` over the interior,
    times ``sqrt(pi / 2) / 6``."""
    if y.shape[0] < 3 or y.shape[1] < 3:
        return 0.0
    y = y.astype(np.float32, copy=False)
    rows = y[:-2] - 2.0 * y[1:-1] + y[2:]  # vertical second difference
    response = rows[:, :-2] - 2.0 * rows[:, 1:-1] + rows[:, 2:]  # then horizontal
    return float(np.abs(response).mean() * _IMMERKAER)


def laplacian_variance(y: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of ``y`` (interior pixels)."""
    if y.shape[0] < 3 or y.shape[1] < 3:
        return 0.0
    lap = (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]) - 4.0 * y[1:-1, 1:-1]
    return float(lap.var())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Süsstrunk's colourfulness of an RGB frame, on the 0..255 scale."""
    x = to_unit(rgb) * 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def frame_metrics(rgb: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`NAMES` for one RGB frame."""
    y = luma(rgb)
    return {
        "luminance": float(y.mean()),
        "contrast": float(y.std()),
        "colourfulness": colourfulness(rgb),
        "noise": noise_sigma(y),
        "sharpness": laplacian_variance(y),
        "clipped_highlights": float((y >= HIGHLIGHT).mean()),
        "crushed_shadows": float((y <= SHADOW).mean()),
    }


def luma_histogram(rgb: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Pixel counts of luma in ``bins`` equal bins over 0..1."""
    counts, _ = np.histogram(luma(rgb), bins=bins, range=(0.0, 1.0))
    return counts


def sample_indices(times: np.ndarray, every_s: float, max_frames: int) -> list[int]:
    """Frame indices to sample: the first frame at or after each multiple of ``every_s``
    seconds, thinned evenly to at most ``max_frames``."""
    if len(times) == 0 or max_frames < 1:
        return []
    if every_s <= 0:
        raise ValueError(f"every_s must be positive, got {every_s}")
    marks = np.arange(0.0, float(times[-1]) + 1e-9, every_s)
    picked = np.unique(np.searchsorted(times, marks - 1e-9, side="left"))
    picked = picked[picked < len(times)]
    if len(picked) > max_frames:
        picked = picked[np.unique(np.round(np.linspace(0, len(picked) - 1, max_frames)).astype(int))]
    return [int(i) for i in picked]


class _Accumulator:
    """Running sums of the per-frame metrics and the luma histogram of one video."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(NAMES, 0.0)
        self.histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.count = 0

    def add(self, rgb: np.ndarray) -> None:
        for name, value in frame_metrics(rgb).items():
            self.sums[name] += value
        self.histogram += luma_histogram(rgb)
        self.count += 1

    def means(self) -> dict[str, float]:
        return {name: (self.sums[name] / self.count if self.count else None) for name in NAMES}

    def shares(self) -> list[float]:
        total = int(self.histogram.sum())
        return [round(float(c) / total, 6) if total else 0.0 for c in self.histogram]


def changes(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, Any]:
    """How each metric changed: ``<name>_gain`` (after / before; ``noise_amplification`` for
    the noise) or ``<name>_change`` (after - before, for the clipping shares)."""
    out: dict[str, Any] = {}
    for name, kind in _CHANGE.items():
        b, a = before.get(name), after.get(name)
        if kind == "ratio":
            key = "noise_amplification" if name == "noise" else f"{name}_gain"
            out[key] = (a / b) if a is not None and b else None
        else:
            out[f"{name}_change"] = (a - b) if a is not None and b is not None else None
    return out


def video_metrics(before: str | os.PathLike[str], after: str | os.PathLike[str], *,
                  every_s: float = 1.0, max_frames: int = 64) -> dict[str, Any]:
    """The metrics of the local videos ``before`` and ``after`` (same frame count), JSON-able.

    Returns a dict with ``before`` and ``after`` (the means of :data:`NAMES`), ``change``
    (see :func:`changes`), ``low_light`` (the input's mean luminance below
    :data:`LOW_LIGHT`), ``histogram`` (``bins`` and each video's luma shares per bin),
    ``samples`` (frames measured), ``sample_times`` (their times in seconds), ``every_s``
    and ``noise_estimator``.

    Raises:
        ValueError: the videos have different frame counts, or bad sampling arguments.
        MediaError: a video cannot be read.
    """
    from nhance_batch.analysis.frames import iter_frames, seconds
    from nhance_batch.media.probe import probe

    binfo, ainfo = probe(before), probe(after)
    if binfo.frame_count != ainfo.frame_count:
        raise ValueError(f"frame counts differ: {binfo.path} has {binfo.frame_count} frames, "
                         f"{ainfo.path} has {ainfo.frame_count}")
    times = seconds(ainfo)
    indices = sample_indices(times, every_s, max_frames)
    sums = {"before": _Accumulator(), "after": _Accumulator()}
    for (_, _, bframe), (_, _, aframe) in zip(iter_frames(before, binfo, indices),
                                              iter_frames(after, ainfo, indices), strict=True):
        sums["before"].add(bframe)
        sums["after"].add(aframe)
    b, a = sums["before"].means(), sums["after"].means()
    return {
        "samples": len(indices),
        "sample_times": [round(float(times[i]), 4) for i in indices],
        "every_s": every_s,
        "noise_estimator": NOISE_ESTIMATOR,
        "before": b,
        "after": a,
        "change": changes(b, a),
        "low_light": bool(b["luminance"] is not None and b["luminance"] < LOW_LIGHT),
        "histogram": {"bins": HISTOGRAM_BINS, "before": sums["before"].shares(),
                      "after": sums["after"].shares()},
    }

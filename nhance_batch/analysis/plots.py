"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Figures are made with :class:`matplotlib.figure.Figure` and rendered by the Agg backend
directly (no pyplot, no global state, no display needed), so they are safe in worker threads
and on headless machines.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

_BEFORE, _AFTER = "#d9822b", "#1f5fa8"
_SIZE = (6.4, 2.6)
_DPI = 110


def _figure(size: tuple[float, float] = _SIZE):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _style(ax) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def gain_plot(times: Sequence[float], before: np.ndarray, after: np.ndarray, *,
              xlabel: str = "time (s)") -> bytes:
    """Per-frame gain (``log(mean out / mean in)``, mean of R, G, B) over time, before and after
    temporal stabilisation. ``before`` and ``after`` are ``[frames, 3]``."""
    fig, ax = _figure()
    t = np.asarray(times, dtype=float)
    b = np.asarray(before, dtype=float).reshape(len(t), -1).mean(axis=1)
    a = np.asarray(after, dtype=float).reshape(len(t), -1).mean(axis=1)
    ax.plot(t, b, color=_BEFORE, linewidth=1.0, label="before stabilisation (model)")
    ax.plot(t, a, color=_AFTER, linewidth=1.8, label="after stabilisation (output)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("gain, log(out / in)")
    ax.set_title("Per-frame gain", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False, loc="best")
    _style(ax)
    return _png(fig)


def histogram_plot(before: Sequence[float], after: Sequence[float]) -> bytes:
    """Luma histograms (shares per bin over 0..1) of the sampled frames, before and after."""
    fig, ax = _figure()
    bins = len(before)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    width = 1.0 / bins
    ax.bar(centres, np.asarray(before) * 100, width=width, color=_BEFORE, alpha=0.55,
           label="before")
    ax.bar(centres, np.asarray(after) * 100, width=width, color=_AFTER, alpha=0.55, label="after")
    ax.set_xlim(0, 1)
    ax.set_xlabel("luminance")
    ax.set_ylabel("pixels (%)")
    ax.set_title("Luminance histogram (sampled frames)", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    return _png(fig)


def throughput_plot(progress: Sequence[Sequence[float]]) -> bytes:
    """Output frames committed over the run's time (the job's throughput curve)."""
    fig, ax = _figure()
    points = np.asarray(progress, dtype=float).reshape(-1, 2)
    t = np.concatenate([[0.0], points[:, 0]])
    frames = np.concatenate([[0.0], points[:, 1]])
    ax.step(t, frames, where="post", color=_AFTER, linewidth=1.6)
    ax.plot(t[1:], frames[1:], "o", color=_AFTER, markersize=3)
    if len(points) and points[-1, 0] > 0:
        ax.set_title(f"Throughput: {points[-1, 1]:.0f} frames in {points[-1, 0]:.1f} s "
                     f"({points[-1, 1] / points[-1, 0]:.2f} fps overall)", fontsize=10,
                     loc="left")
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("frames committed")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    _style(ax)
    return _png(fig)


def stage_fps_plot(stage_fps: Mapping[str, float]) -> bytes:
    """Frames per second of each stage (per worker-second of that stage)."""
    fig, ax = _figure((6.4, 1.9))
    names = list(stage_fps)
    values = [float(stage_fps[n] or 0.0) for n in names]
    bars = ax.barh(names, values, color=_AFTER, height=0.55)
    ax.invert_yaxis()
    top = max(values, default=0.0) or 1.0
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:  # enhance is often 100x slower
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 2, top * 3)
        for bar, value in zip(bars, values, strict=True):
            bar.set_x(min(positive) / 2)
            bar.set_width(max(value, min(positive) / 2) - min(positive) / 2 or 1e-9)
    else:
        ax.set_xlim(0, top * 1.15)
    ax.set_xlabel("frames per second of stage time" + (" (log scale)" if ax.get_xscale() == "log"
                                                       else ""))
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() * (1.05 if ax.get_xscale() == "log" else 1.0)
                + (0 if ax.get_xscale() == "log" else top * 0.01),
                bar.get_y() + bar.get_height() / 2, f"{value:.3g}", va="center", fontsize=8)
    ax.set_title("Stage speed", fontsize=10, loc="left")
    _style(ax)
    return _png(fig)


def group_change_plot(groups: Mapping[str, Mapping[str, float | None]],
                      metrics: Sequence[str]) -> bytes:
    """Mean metric changes (ratios after / before) per group of videos, side by side; a
    dashed line marks 1 (no change)."""
    fig, ax = _figure((6.4, 2.8))
    names = list(groups)
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(names))
    colours = ["#3b3b98", "#c0392b", "#16a085", "#8e44ad"]
    for k, name in enumerate(names):
        values = [groups[name].get(m) for m in metrics]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (k - (len(names) - 1) / 2) * width, heights, width=width,
                      color=colours[k % len(colours)], label=name)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
                    "n/a" if v is None else f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, [m.replace("_", " ") for m in metrics], fontsize=8)
    ax.set_ylabel("after / before")
    ax.set_title("Mean change by group", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    return _png(fig)

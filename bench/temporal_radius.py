"""Choose the temporal smoothing radius: added flicker and side effects for several radii.

Runs the real DPED (iphone, from NHANCE_MODELS) once per clip, caches its float output as
.npy under the cache folder, then evaluates every radius on the cached output:

* carphone.mp4, all 120 frames (176x144);
* the first ``--bikes-frames`` frames of bikes.mp4 (640x272);
* ``sine-flicker``: carphone frames 0-59 whose brightness is multiplied per frame by
  ``1 + 0.15 sin(2 pi t / 6.4) + 0.1 noise`` (clipped to 0.7..1.3);
* ``random-flicker``: carphone frames 60-119, brightness times uniform 0.7..1.3 per frame;
* ``step``: carphone frames at 55 % brightness, then at full brightness from the middle
  frame on (a light turning on);
* ``black``: carphone frames 0-19 with frame 10 black.

Columns: added flicker (mean |g(t+1) - g(t)|) before and after, its reduction, the change
of the mean gain, mean and max |g_after - g_before| over frames that are not black (how far
frames are moved; for ``black``, how much the black frame flashes its neighbours), and for the
step clip the fraction of the output's log-brightness step kept at the step frame itself
and after ``R + 1`` frames. Overlap overhead is ``2R / chunk_frames`` per chunk.

Usage: ``NHANCE_MODELS=... python bench/temporal_radius.py [--bikes-frames 60]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nhance_batch.temporal import added_flicker, process_chunk

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
RADII = (0, 1, 2, 3, 4, 6, 8, 12)
STEP_DIM = 0.55


def decode(path: Path, limit: int | None = None) -> np.ndarray:
    """The first ``limit`` frames (all by default) of ``path`` as uint8 RGB ``[n, H, W, 3]``."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if limit is not None and len(frames) >= limit:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def sine_flicker_clip(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """``frames`` with a sine-plus-noise brightness factor in [0.7, 1.3] per frame (period
    6.4 frames, which no window of 2R + 1 frames averages out exactly)."""
    rng = np.random.default_rng(seed)
    t = np.arange(len(frames))
    factor = np.clip(1 + 0.15 * np.sin(2 * np.pi * t / 6.4) + 0.1 * rng.standard_normal(len(t)),
                     0.7, 1.3)
    return scale_brightness(frames, factor)


def random_flicker_clip(frames: np.ndarray, seed: int = 1) -> np.ndarray:
    """``frames`` with an independent uniform brightness factor in [0.7, 1.3] per frame."""
    factor = np.random.default_rng(seed).uniform(0.7, 1.3, len(frames))
    return scale_brightness(frames, factor)


def black_clip(frames: np.ndarray) -> np.ndarray:
    """``frames`` with the middle one black."""
    factor = np.where(np.arange(len(frames)) == len(frames) // 2, 0.0, 1.0)
    return scale_brightness(frames, factor)


def step_clip(frames: np.ndarray) -> np.ndarray:
    """``frames`` at ``STEP_DIM`` brightness before the middle frame, full from it on."""
    factor = np.where(np.arange(len(frames)) < len(frames) // 2, STEP_DIM, 1.0)
    return scale_brightness(frames, factor)


def scale_brightness(frames: np.ndarray, factor: np.ndarray) -> np.ndarray:
    scaled = frames.astype(np.float32) * factor.astype(np.float32)[:, None, None, None]
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def enhance_cached(name: str, frames: np.ndarray, cache: Path) -> np.ndarray:
    """DPED float output for ``frames``, from ``cache/name.npy`` when its shape matches."""
    path = cache / f"{name}_{len(frames)}x{frames.shape[2]}x{frames.shape[1]}.npy"
    if path.is_file():
        return np.load(path)
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.enhancer import Enhancer

    enhancer = Enhancer(ModelConfig(name="iphone", batch_size=4))
    y = enhancer(frames, as_float=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, y)
    return y


@dataclass(frozen=True)
class Row:
    clip: str
    radius: int
    flicker_before: float
    flicker_after: float
    mean_gain_change: float
    mean_move: float
    max_move: float
    step_kept_at: float | None
    step_kept_after: float | None


def log_brightness(frames: np.ndarray) -> np.ndarray:
    """Log of each frame's mean over pixels and channels (frames in any scale)."""
    return np.log(frames.reshape(len(frames), -1).mean(axis=1, dtype=np.float64) + 1e-6)


def evaluate(clip: str, inputs: np.ndarray, y: np.ndarray, radius: int) -> Row:
    result = process_chunk(inputs, y, slice(0, len(inputs)), radius)
    before, after = result.gains_before, result.gains_after
    kept_at = kept_after = None
    if clip == "step":
        s = len(inputs) // 2
        plain = log_brightness(np.clip(y, 0, 1))
        fixed = log_brightness(result.frames.astype(np.float64) / 255)
        jump = plain[s] - plain[s - 1]
        kept_at = float((fixed[s] - fixed[s - 1]) / jump)
        far = min(s + radius + 1, len(inputs) - 1)
        lo = max(s - radius - 2, 0)
        kept_after = float((fixed[far] - fixed[lo]) / (plain[far] - plain[lo]))
    lit = inputs.reshape(len(inputs), -1).mean(axis=1) > 5  # frames that are not black
    move = np.abs(after - before)[lit]
    return Row(clip, radius, added_flicker(before), added_flicker(after),
               float(after.mean() - before.mean()), float(move.mean()), float(move.max()),
               kept_at, kept_after)


def markdown(rows: list[Row], chunk_frames: int) -> str:
    head = ("| clip | R | flicker before | flicker after | reduction | mean gain change "
            "| mean \\|Δg\\| | max \\|Δg\\| | step kept at t_s | step kept at t_s+R+1 "
            f"| overlap cost (N={chunk_frames}) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        red = 1 - r.flicker_after / r.flicker_before if r.flicker_before else 0.0
        step = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {r.clip} | {r.radius} | {r.flicker_before:.4f} | {r.flicker_after:.4f} "
            f"| {red:.0%} | {r.mean_gain_change:+.4f} | {r.mean_move:.4f} | {r.max_move:.4f} "
            f"| {step(r.step_kept_at)} | {step(r.step_kept_after)} "
            f"| {2 * r.radius / chunk_frames:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bikes-frames", type=int, default=60)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nhance_temporal")
    parser.add_argument("--chunk-frames", type=int, default=64)
    parser.add_argument("--radii", type=int, nargs="+", default=list(RADII))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    carphone = decode(VIDEOS / "carphone.mp4")
    clips = {
        "carphone": carphone,
        "bikes": decode(VIDEOS / "bikes.mp4", args.bikes_frames),
        "sine-flicker": sine_flicker_clip(carphone[:60]),
        "random-flicker": random_flicker_clip(carphone[60:120]),
        "step": step_clip(carphone[30:70]),
        "black": black_clip(carphone[:20]),
    }
    rows = []
    for name, frames in clips.items():
        y = enhance_cached(name, frames, args.cache)
        rows += [evaluate(name, frames, y, r) for r in args.radii]
    print(markdown(rows, args.chunk_frames))


if __name__ == "__main__":
    main()

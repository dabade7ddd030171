"""Temporal stabilisation of DPED's per-frame colour/brightness response (pure numpy).

DPED normalises every frame on its own (instance norm), so how strongly it brightens or
tints a frame depends on that frame alone, and the enhancement can jitter from frame to
frame. We measure that response as a *gain* per frame and channel,

    g[t, c] = log(mean(clip(y[t, ..., c], 0, 1)) / mean(x[t, ..., c])),

smooth it over ``±radius`` frames (weighted by how far each gain can be trusted: black
frames not at all), and multiply each output frame by ``exp(smoothed - g)`` per channel.
The model's own jitter goes; real changes in the input (a light turning on, a cut) stay,
because the gain is a ratio to the input. What is smoothed is the model's *response*: where
it changes for real (at a cut, or a step the model answers with a different gain) the
change is spread over ``±radius`` frames, moving the frames next to it by up to half of it
(about 10 % in brightness for a 0.55x -> 1x light step on carphone.mp4).

Chunking: every step is per frame except :func:`smooth_gains`, whose window for frame ``t``
only reaches ``[t - radius, t + radius]`` (clamped at the array ends) and is summed in a
fixed order. A chunk that carries ``K >= radius`` context frames on each side (clamped at
the video ends) therefore produces, for its own frames, exactly the bits of a single-chunk
run over the whole video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nhance_batch.config import DEFAULT_TEMPORAL_RADIUS as DEFAULT_RADIUS  # noqa: F401

# Default smoothing radius in frames (chunks need ``overlap >= radius`` context frames).
#
# Chosen with ``bench/temporal_radius.py`` (real iphone DPED): on synthetic per-frame
# brightness flicker R=3 removes 85-88 % of the model's added flicker, where the reduction
# levels off (R=2: 74-82 %, R=4: 86-89 %, R=12: 88-91 %); on carphone.mp4 / bikes.mp4 it
# removes 72 % / 58 %. A brightness step stays whole outside ``±R`` frames. The default chunk
# overlap equals the radius (3), at a cost of ``2 * 3 / chunk_frames`` redundant frames per
# chunk.


GAIN_EPS: float = 1.0 / 255.0
"""Added to both channel means (in [0, 1] units) before the log ratio in :func:`frame_gains`.

It keeps black or nearly black frames finite (a black input gives ``log((m + eps) / eps)``
instead of ``log(m / 0)``) and damps the gain of very dark channels, whose ratio is
dominated by noise; it is one 8-bit code value, negligible for ordinary exposures.
"""

DARK_LEVEL: float = 0.05
"""Channel mean (in [0, 1] units, about 13 of 255) below which a frame's gain is trusted
less and less (:func:`gain_weights`). DPED turns a black frame into a mid-grey one (gain
near 4 on carphone-sized frames); unweighted, such a frame would brighten its ``±radius``
neighbours by ``exp(4 / (2 radius + 1))``.
"""


def _check_frames(frames: np.ndarray, name: str) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected {name} [n, H, W, 3], got shape {frames.shape}")


def _channel_means(frames: np.ndarray, clip: bool = False) -> np.ndarray:
    """Per-frame, per-channel means in [0, 1] units as float64 ``[n, 3]``, each frame reduced
    on its own: integer frames exactly (an integer sum over the dtype's max times the pixel
    count), float frames (clipped to [0, 1] when ``clip``) summed in float64.

    Reducing frame by frame keeps a frame's mean independent of how many frames come with
    it, so chunked and whole-video runs agree bit for bit. Each frame is summed over its rows
    first (contiguous rows of ``W * 3`` values, then the 3 channels of each column): the same
    order for every frame of a shape, and about ten times faster than reducing ``[H * W, 3]``
    over its long axis.
    """
    frames = np.asarray(frames)
    means = np.empty((len(frames), 3), np.float64)
    if len(frames) == 0:
        return means
    height, pixels = frames.shape[1], frames.shape[1] * frames.shape[2]
    if np.issubdtype(frames.dtype, np.integer):
        scale = float(np.iinfo(frames.dtype).max) * pixels
        for i, frame in enumerate(frames):
            sums = frame.reshape(height, -1).sum(axis=0, dtype=np.int64)
            means[i] = sums.reshape(-1, 3).sum(axis=0) / scale
        return means
    for i, frame in enumerate(frames):
        if clip:
            frame = np.clip(frame, 0.0, 1.0)
        sums = frame.reshape(height, -1).sum(axis=0, dtype=np.float64)
        means[i] = sums.reshape(-1, 3).sum(axis=0) / pixels
    return means


def frame_gains(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The model's response per frame and channel: ``log(mean(clip(out, 0, 1)) / mean(in))``.

    Args:
        inputs: the frames given to the model, ``[n, H, W, 3]``: uint8/uint16 (scaled by
            their dtype's max) or float in [0, 1].
        outputs: the model's float output ``y`` for them (unclipped; clipped here, as the
            quantised frames will be), ``[n, H, W, 3]``.

    Returns:
        float64 ``[n, 3]``. :data:`GAIN_EPS` is added to both means, so black frames give
        finite gains.
    """
    inputs, outputs = np.asarray(inputs), np.asarray(outputs)
    _check_frames(inputs, "inputs")
    _check_frames(outputs, "outputs")
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input frames but {len(outputs)} output frames")
    return _gains(_channel_means(inputs), outputs)


def _gains(mean_in: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """:func:`frame_gains` from the inputs' channel means."""
    mean_out = _channel_means(outputs, clip=True)
    return np.log((mean_out + GAIN_EPS) / (mean_in + GAIN_EPS))


def gain_weights(inputs: np.ndarray) -> np.ndarray:
    """How far each frame's gain can be trusted, per channel: float64 ``[n, 3]`` in [0, 1].

    ``clip(mean(in) / DARK_LEVEL, 0, 1)``: 1 for ordinary exposures, falling to 0 for black
    channels, whose gain is a ratio of noise to (nearly) nothing. See :func:`smooth_gains`.
    """
    inputs = np.asarray(inputs)
    _check_frames(inputs, "inputs")
    return _weights(_channel_means(inputs))


def _weights(mean_in: np.ndarray) -> np.ndarray:
    """:func:`gain_weights` from the inputs' channel means."""
    return np.clip(mean_in / DARK_LEVEL, 0.0, 1.0)


def smooth_gains(gains: np.ndarray, radius: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Centred moving average of ``gains`` ``[n, 3]`` over ``±radius`` frames.

    The window is clamped at the array ends (frame 0 averages frames ``0..radius``). Each
    window is summed in the same order (offset ``-radius`` to ``+radius``) wherever it
    lies, so a frame whose whole window is present gives the same bits in any slice of
    the sequence. ``radius == 0`` returns an identical copy.

    Args:
        gains: per-frame, per-channel gains (:func:`frame_gains`).
        radius: half-width of the window in frames.
        weights: optional confidences ``[n, 3]`` in [0, 1] (:func:`gain_weights`). The
            average is then weighted by them, and each frame moves from its own gain
            towards it only by its own weight: ``g + w * (avg_w - g)``. A black frame
            (weight 0) is neither corrected nor pulls its neighbours towards its
            meaningless gain; where the whole window weighs 0, gains are kept. With all
            weights 1 this is the plain moving average, bit for bit.
    """
    if radius < 0:
        raise ValueError("radius must be >= 0")
    gains = np.asarray(gains, np.float64)
    if radius == 0:
        return gains.copy()
    if weights is None:
        weights = np.ones_like(gains)
    weights = np.asarray(weights, np.float64)
    if weights.shape != gains.shape:
        raise ValueError(f"weights {weights.shape} must match gains {gains.shape}")
    n = len(gains)
    total = np.zeros_like(gains)
    count = np.zeros_like(gains)
    weighted = weights * gains
    for offset in range(-radius, radius + 1):
        lo, hi = max(0, -offset), min(n, n - offset)  # frames t with 0 <= t + offset < n
        if lo >= hi:
            continue
        total[lo:hi] += weighted[lo + offset:hi + offset]
        count[lo:hi] += weights[lo + offset:hi + offset]
    trusted = count > 0.0
    average = np.divide(total, count, out=gains.copy(), where=trusted)
    partial = weights < 1.0
    average[partial] = gains[partial] + weights[partial] * (average[partial] - gains[partial])
    return average


def stabilise(outputs: np.ndarray, gains: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """Correct each output frame's gain to the smoothed one: ``outputs * exp(smoothed - gains)``.

    A per-channel factor in linear output space, computed in float64 and applied in
    float32. Frames whose factors are all exactly 1 (``smoothed == gains``, e.g. radius 0)
    are copied unchanged, bit for bit.

    Returns:
        float32 ``[n, H, W, 3]``, unclipped.
    """
    outputs = np.asarray(outputs, np.float32)
    _check_frames(outputs, "outputs")
    gains, smoothed = np.asarray(gains, np.float64), np.asarray(smoothed, np.float64)
    if gains.shape != (len(outputs), 3) or smoothed.shape != gains.shape:
        raise ValueError(
            f"gains {gains.shape} and smoothed {smoothed.shape} must be [{len(outputs)}, 3]")
    result = outputs.copy()
    delta = smoothed - gains
    moved = np.any(delta != 0.0, axis=1)
    if moved.any():
        factor = np.exp(delta[moved]).astype(np.float32)
        result[moved] *= factor[:, None, None, :]
    return result


def quantize(y: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """``round(clip(y, 0, 1) * max)`` in float32 as ``dtype`` (uint8 or uint16).

    The same operations, in the same precision, as the Enhancer's in-graph uint8 output
    (round half to even, like ``keras.ops.round``).
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, not {dtype}")
    scale = np.float32(np.iinfo(dtype).max)
    y = np.clip(np.asarray(y, np.float32), np.float32(0.0), np.float32(1.0))
    return np.round(y * scale).astype(dtype)


def added_flicker(gains: np.ndarray) -> float:
    """Mean over frames and channels of ``|g[t + 1] - g[t]|``; 0.0 for fewer than 2 frames."""
    gains = np.asarray(gains, np.float64)
    if len(gains) < 2:
        return 0.0
    return float(np.mean(np.abs(np.diff(gains, axis=0))))


@dataclass(frozen=True)
class TemporalResult:
    """A chunk's own frames after stabilisation.

    Attributes:
        frames: quantised frames ``[m, H, W, 3]`` (uint8 or uint16).
        gains_before: the model's gains for them, float64 ``[m, 3]``.
        gains_after: the gains of the corrected (clipped) output, float64 ``[m, 3]``.
    """

    frames: np.ndarray
    gains_before: np.ndarray
    gains_after: np.ndarray


class ChunkStabiliser:
    """Stabilise one chunk while the model's output arrives batch by batch.

    Only what the result needs is kept: the per-frame gains and weights of every frame
    (context included) and the float output of the chunk's own frames; the output of context
    frames is dropped as soon as its gain is measured, and own frames are corrected and
    quantised one at a time. Working memory is about 3 + 12 + 3 bytes per own sub-pixel.

    Args:
        inputs: the chunk's input frames, context included, ``[n, H, W, 3]``.
        own: which of the ``n`` frames are the chunk's own; the context must reach
            ``radius`` frames beyond them on each side (or the video's end) for the result
            to equal a whole-video run.
        radius: smoothing radius in frames (0: no stabilisation).
        dtype: output frame type, uint8 or uint16.
    """

    def __init__(self, inputs: np.ndarray, own: slice, radius: int,
                 dtype: type = np.uint8) -> None:
        self.inputs = np.asarray(inputs)
        _check_frames(self.inputs, "inputs")
        self.own = slice(*own.indices(len(self.inputs))[:2])
        self.radius, self.dtype = radius, dtype
        n, size = len(self.inputs), self.own.stop - self.own.start
        self.gains = np.full((n, 3), np.nan)
        self.weights = np.empty((n, 3))
        self.means = np.empty((n, 3))  # the inputs' channel means, measured once per frame
        self.own_outputs = np.empty((size, *self.inputs.shape[1:]), np.float32)

    def add(self, start: int, outputs: np.ndarray, inputs: np.ndarray | None = None) -> None:
        """The model's float output for ``inputs[start:start + len(outputs)]``.

        ``inputs``: what the model was given for these frames when that is not the frames
        themselves (an HDR source's float SDR rendition); gains are measured against it.
        """
        stop = start + len(outputs)
        outputs = np.asarray(outputs)
        _check_frames(outputs, "outputs")
        if stop > len(self.inputs):
            raise ValueError(f"outputs for frames {start}..{stop - 1} of {len(self.inputs)}")
        means = _channel_means(self.inputs[start:stop] if inputs is None else inputs)
        self.means[start:stop] = means
        self.gains[start:stop] = _gains(means, outputs)
        self.weights[start:stop] = _weights(means)
        lo, hi = max(start, self.own.start), min(stop, self.own.stop)
        if lo < hi:
            self.own_outputs[lo - self.own.start:hi - self.own.start] = outputs[lo - start:
                                                                                hi - start]

    def result(self, finish=None) -> TemporalResult:
        """The own frames, corrected and quantised, with their gains before and after.

        ``finish(t, corrected)``: makes frame ``t`` (an index into ``inputs``) of
        ``self.dtype`` from its corrected float output ``[1, H, W, 3]`` (a strength blend, the
        way back to HDR); by default it is :func:`quantize`.
        """
        if np.isnan(self.gains).any():
            raise ValueError("the output of some frames was never added")
        smoothed = smooth_gains(self.gains, self.radius, self.weights)
        start = self.own.start
        frames = np.empty(self.own_outputs.shape, self.dtype)
        after = np.empty((len(frames), 3))
        for i in range(len(frames)):
            t = slice(start + i, start + i + 1)
            corrected = stabilise(self.own_outputs[i:i + 1], self.gains[t], smoothed[t])
            if finish is None:
                frames[i] = quantize(corrected, self.dtype)[0]
            else:
                frames[i] = finish(start + i, corrected)[0]
            after[i] = _gains(self.means[t], corrected)[0]
        return TemporalResult(frames, self.gains[self.own].copy(), after)


def process_chunk(inputs: np.ndarray, outputs_float: np.ndarray, own: slice, radius: int,
                  dtype: type = np.uint8) -> TemporalResult:
    """Stabilise a chunk and return its own frames (all outputs at once; see
    :class:`ChunkStabiliser`, which this uses, for the streaming form).

    Args:
        inputs: the chunk's input frames, context included, ``[n, H, W, 3]``.
        outputs_float: the enhancer's float output for them (``as_float=True``).
        own: which of the ``n`` frames are the chunk's own (the rest is context); the
            context must reach ``radius`` frames beyond them on each side, or the video's
            end, for the result to equal a whole-video run.
        radius: smoothing radius in frames (0: no stabilisation).
        dtype: output frame type, uint8 or uint16.
    """
    stabiliser = ChunkStabiliser(inputs, own, radius, dtype)
    stabiliser.add(0, np.asarray(outputs_float))
    return stabiliser.result()

"""Temporal stabilisation: chunk-exactness, the radius-0 identity, and its effect on the real
DPED's frame-to-frame gain jitter (synthetic flicker, a brightness step, a black frame)."""

from __future__ import annotations

import numpy as np
import pytest

from nhance_batch.temporal import (
    DEFAULT_RADIUS,
    TemporalResult,
    DARK_LEVEL,
    added_flicker,
    frame_gains,
    gain_weights,
    process_chunk,
    quantize,
    smooth_gains,
    stabilise,
)

H, W = 72, 96  # synthetic clips for the real model
FLICKER_FRAMES, STEP_FRAMES = 24, 16


def random_clip(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 inputs and float32 outputs whose gain jitters per frame and channel,
    with values outside [0, 1] so that clipping matters, and some dark frames (gain
    weights between 0 and 1, one black frame)."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 256, (n, 6, 8, 3), dtype=np.uint8)
    inputs[1::4] //= rng.integers(10, 60, (len(inputs[1::4]), 1, 1, 3)).astype(np.uint8)
    inputs[n // 2] = 0
    jitter = np.exp(rng.normal(0, 0.2, (n, 1, 1, 3)))
    outputs = (inputs / 255 * jitter + rng.normal(0, 0.05, inputs.shape)).astype(np.float32)
    return inputs, outputs


def chunked(inputs: np.ndarray, outputs: np.ndarray, size: int, overlap: int,
            radius: int) -> TemporalResult:
    """``process_chunk`` over chunks of ``size`` own frames with ``overlap`` context frames
    on each side (clamped at the ends), concatenated."""
    parts = []
    for start in range(0, len(inputs), size):
        end = min(start + size, len(inputs))
        lo, hi = max(0, start - overlap), min(len(inputs), end + overlap)
        own = slice(start - lo, end - lo)
        parts.append(process_chunk(inputs[lo:hi], outputs[lo:hi], own, radius))
    return TemporalResult(
        frames=np.concatenate([p.frames for p in parts]),
        gains_before=np.concatenate([p.gains_before for p in parts]),
        gains_after=np.concatenate([p.gains_after for p in parts]),
    )


@pytest.mark.parametrize("n,size,overlap,radius", [
    (30, 7, 3, 3), (30, 5, 4, 2), (30, 1, 2, 2), (30, 10, 0, 0), (31, 4, 6, 6), (9, 4, 8, 1),
    (30, 8, 4, DEFAULT_RADIUS),
])
def test_chunked_equals_whole(n, size, overlap, radius):
    inputs, outputs = random_clip(n, seed=n + size)
    whole = process_chunk(inputs, outputs, slice(0, n), radius)
    parts = chunked(inputs, outputs, size, overlap, radius)
    assert parts.frames.dtype == np.uint8 and parts.frames.shape == inputs.shape
    np.testing.assert_array_equal(parts.frames, whole.frames)
    np.testing.assert_array_equal(parts.gains_before, whole.gains_before)
    np.testing.assert_array_equal(parts.gains_after, whole.gains_after)


def test_too_little_context_differs():
    """With K < R the chunk edges see a truncated window: the check above has teeth."""
    inputs, outputs = random_clip(30, seed=1)
    whole = process_chunk(inputs, outputs, slice(0, 30), 3)
    parts = chunked(inputs, outputs, 7, 2, 3)
    assert not np.array_equal(parts.gains_after, whole.gains_after)


def test_radius_zero_is_identity():
    inputs, outputs = random_clip(12, seed=2)
    result = process_chunk(inputs, outputs, slice(2, 9), 0)
    np.testing.assert_array_equal(result.frames, quantize(outputs[2:9]))
    np.testing.assert_array_equal(result.gains_after, result.gains_before)
    gains = frame_gains(inputs, outputs)
    same = stabilise(outputs, gains, smooth_gains(gains, 0))
    assert same.dtype == np.float32
    assert same.tobytes() == outputs.tobytes()


def test_smooth_gains_clamped_window():
    gains = np.repeat(np.array([0.0, 3, 6, 9, 12, 15])[:, None], 3, axis=1)
    got = smooth_gains(gains, 2)[:, 0]
    np.testing.assert_allclose(got, [3, 4.5, 6, 9, 10.5, 12])
    assert smooth_gains(gains, 0) is not gains
    np.testing.assert_array_equal(smooth_gains(gains[:1], 4), gains[:1])
    with pytest.raises(ValueError):
        smooth_gains(gains, -1)


def test_frame_gains_scales_by_dtype():
    rng = np.random.default_rng(3)
    x8 = rng.integers(1, 256, (3, 5, 4, 3), dtype=np.uint8)
    x16 = x8.astype(np.uint16) * 257  # the same values in 16 bits
    y = (x8 / 255 * 1.3).astype(np.float32)  # 30 % brighter, partly clipped
    g8 = frame_gains(x8, y)
    assert g8.shape == (3, 3) and g8.dtype == np.float64
    np.testing.assert_allclose(frame_gains(x16, y), g8, rtol=0, atol=1e-12)
    np.testing.assert_allclose(frame_gains(x8 / 255, y), g8, rtol=0, atol=1e-12)
    unclipped = frame_gains(x8 // 2, (x8 // 2 / 255 * 1.3).astype(np.float32))
    np.testing.assert_allclose(unclipped, np.log(1.3), atol=0.02)  # eps damps it a little


def test_quantize_rounding_and_dtypes():
    y = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(quantize(y), [0, 0, 0, 2, 128, 255, 255])  # half to even
    q16 = quantize(y, np.uint16)
    assert q16.dtype == np.uint16 and q16[-1] == 65535 and q16[4] == 32768
    with pytest.raises(ValueError):
        quantize(y, np.int32)


def test_added_flicker():
    assert added_flicker(np.zeros((1, 3))) == 0.0
    assert added_flicker(np.zeros((0, 3))) == 0.0
    g = np.array([[0.0, 0, 0], [0.3, 0, -0.3], [0.3, 0, 0]])
    assert added_flicker(g) == pytest.approx((0.3 + 0.3 + 0.3) / 6)


def test_black_frames_stay_finite():
    inputs = np.zeros((5, 4, 4, 3), np.uint8)
    inputs[2] = 128
    outputs = np.zeros((5, 4, 4, 3), np.float32)
    outputs[1] = 0.2  # the model lifting a black frame
    outputs[2] = 0.6
    result = process_chunk(inputs, outputs, slice(0, 5), 2)
    for gains in (result.gains_before, result.gains_after):
        assert np.isfinite(gains).all()
    assert result.gains_before[0, 0] == 0.0  # black in, black out: no gain


def test_black_frame_neither_corrected_nor_pulling():
    gains = np.array([[0.3] * 3, [0.2] * 3, [4.0] * 3, [0.4] * 3, [0.3] * 3])
    weights = np.ones_like(gains)
    weights[2] = 0.0
    smoothed = smooth_gains(gains, 1, weights)
    np.testing.assert_allclose(smoothed[:, 0], [0.25, 0.25, 4.0, 0.35, 0.35])
    half = weights.copy()
    half[2] = 0.5  # a dark frame: pulls half as much, moves half way
    smoothed = smooth_gains(gains, 1, half)
    np.testing.assert_allclose(smoothed[1, 0], (0.3 + 0.2 + 2.0) / 2.5)
    np.testing.assert_allclose(smoothed[2, 0], 4.0 + 0.5 * ((0.2 + 2.0 + 0.4) / 2.5 - 4.0))
    np.testing.assert_array_equal(smooth_gains(gains, 2, np.zeros_like(gains)), gains)
    np.testing.assert_array_equal(smooth_gains(gains, 2, np.ones_like(gains)),
                                  smooth_gains(gains, 2))


def test_gain_weights():
    frames = np.zeros((3, 2, 2, 3), np.uint8)
    frames[1] = 255
    frames[2, ..., 0] = round(DARK_LEVEL * 255 / 2)
    weights = gain_weights(frames)
    np.testing.assert_array_equal(weights[:2], [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(weights[2], [0.5, 0, 0], atol=0.04)


# ---- the real DPED --------------------------------------------------------------------

def textured_scene(n: int, seed: int) -> np.ndarray:
    """A slowly panning coloured texture (gratings, gradient, blobs, fine noise) in [0, 1],
    float64 ``[n, H, W, 3]``, mean brightness about 0.45."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = np.empty((n, H, W, 3))
    waves = [(rng.uniform(0.05, 0.6, 2) * rng.choice([-1, 1], 2), rng.uniform(0, 6.3, 3),
              rng.uniform(0.03, 0.1, 3)) for _ in range(6)]
    blobs = [(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(4, 14),
              rng.uniform(-0.2, 0.25, 3)) for _ in range(5)]
    noise = rng.normal(0, 0.03, (H, W + n, 3))
    for t in range(n):
        x = xx + 0.7 * t  # pan right
        img = 0.25 + 0.3 * (yy / H)[..., None] * np.array([0.8, 1.0, 1.2])
        for (fx, fy), phase, amp in waves:
            img = img + amp * np.sin((fx * x + fy * yy)[..., None] + phase)
        for bx, by, r, colour in blobs:
            img = img + colour * np.exp(-((x - bx) ** 2 + (yy - by) ** 2) / (2 * r * r))[..., None]
        frames[t] = img + noise[:, t:t + W]
    return np.clip(frames, 0, 1)


def to_uint8(frames: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return np.clip(np.round(frames * factor[:, None, None, None] * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dped_clips(models_dir):
    """The flicker clip, the step clip and a clip with a black frame, with the real iphone
    DPED's float output for each (one forward pass over all of them)."""
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.enhancer import Enhancer

    rng = np.random.default_rng(7)
    t = np.arange(FLICKER_FRAMES)
    flicker = np.clip(1 + 0.15 * np.sin(2 * np.pi * t / 5.3) + 0.08 * rng.standard_normal(len(t)),
                      0.7, 1.3)
    step = np.where(np.arange(STEP_FRAMES) < STEP_FRAMES // 2, 0.55, 1.0)
    clips = {
        "flicker": to_uint8(textured_scene(FLICKER_FRAMES, seed=1), flicker),
        "step": to_uint8(textured_scene(STEP_FRAMES, seed=2), step),
        "black": to_uint8(textured_scene(8, seed=3), np.where(np.arange(8) == 4, 0.0, 1.0)),
    }
    enhancer = Enhancer(ModelConfig(name="iphone", batch_size=4))
    everything = np.concatenate(list(clips.values()))
    y = enhancer(everything, as_float=True)
    out, start = {}, 0
    for name, frames in clips.items():
        out[name] = (frames, y[start:start + len(frames)])
        start += len(frames)
    out["uint8"] = enhancer(everything[:4])
    out["float"] = y[:4]
    return out


def test_quantize_matches_enhancer(dped_clips):
    np.testing.assert_array_equal(quantize(dped_clips["float"]), dped_clips["uint8"])


def test_flicker_reduced_by_default_radius(dped_clips):
    inputs, y = dped_clips["flicker"]
    result = process_chunk(inputs, y, slice(0, len(inputs)), DEFAULT_RADIUS)
    before = added_flicker(result.gains_before)
    after = added_flicker(result.gains_after)
    assert before > 0.01, "DPED should jitter on this clip, or the test measures nothing"
    assert after <= 0.5 * before
    assert abs(result.gains_after.mean() - result.gains_before.mean()) < 0.01


def test_brightness_step_is_kept(dped_clips):
    inputs, y = dped_clips["step"]
    s, r = STEP_FRAMES // 2, DEFAULT_RADIUS
    result = process_chunk(inputs, y, slice(0, len(inputs)), r)
    level = result.frames.reshape(len(inputs), -1).mean(axis=1)
    plain = quantize(y).reshape(len(inputs), -1).mean(axis=1)
    jump_plain = plain[s:].mean() - plain[:s].mean()
    assert jump_plain > 20  # the model passes the light turning on
    # far from the step the output is untouched in level, and it still steps up
    assert level[s + r:].mean() - level[:s - r].mean() >= 0.9 * (
        plain[s + r:].mean() - plain[:s - r].mean())
    # and the step is still sharp: at its frame, and by far the biggest frame-to-frame change
    assert level[s] - level[s - 1] > 0.5 * (plain[s] - plain[s - 1])
    changes = np.abs(np.diff(level))
    assert np.argmax(changes) == s - 1 and np.sort(changes)[-2] < 0.2 * changes[s - 1]


def test_black_frame_with_real_model(dped_clips):
    inputs, y = dped_clips["black"]
    result = process_chunk(inputs, y, slice(0, len(inputs)), DEFAULT_RADIUS)
    assert np.isfinite(result.gains_before).all() and np.isfinite(result.gains_after).all()
    assert result.frames.dtype == np.uint8 and result.frames.shape == inputs.shape
    # the black frame does not flash its neighbours: they move by less than 10 %
    moved = np.abs(result.gains_after - result.gains_before)
    assert moved[[3, 5]].max() < np.log(1.1)


def test_streaming_stabiliser_equals_process_chunk_in_any_batching():
    """The enhance stage feeds the model's output batch by batch; the result must not depend
    on the batching, and must equal process_chunk over the whole output."""
    from nhance_batch.temporal import ChunkStabiliser, process_chunk

    rng = np.random.default_rng(7)
    inputs = rng.integers(0, 256, (11, 6, 5, 3), dtype=np.uint8)
    outputs = rng.uniform(-0.1, 1.1, inputs.shape).astype(np.float32)
    own = slice(3, 8)
    whole = process_chunk(inputs, outputs, own, 3)
    for batch in (1, 2, 4, 11):
        stabiliser = ChunkStabiliser(inputs, own, 3)
        for start in range(0, len(inputs), batch):
            stabiliser.add(start, outputs[start:start + batch])
        result = stabiliser.result()
        np.testing.assert_array_equal(result.frames, whole.frames)
        np.testing.assert_array_equal(result.gains_after, whole.gains_after)
    incomplete = ChunkStabiliser(inputs, own, 3)
    incomplete.add(0, outputs[:5])
    with pytest.raises(ValueError, match="never added"):
        incomplete.result()


def test_stabiliser_measures_against_given_model_inputs_and_finishes_as_asked():
    """``add(..., inputs=)``: gains are measured against what the model was given (an HDR
    frame's float rendition), not the frames; ``result(finish)`` makes each own frame."""
    from nhance_batch.temporal import ChunkStabiliser, frame_gains, process_chunk

    rng = np.random.default_rng(8)
    inputs = rng.integers(0, 65536, (6, 4, 5, 3), dtype=np.uint16)
    given = rng.uniform(0.0, 1.0, inputs.shape).astype(np.float32)
    outputs = rng.uniform(-0.1, 1.1, inputs.shape).astype(np.float32)
    stabiliser = ChunkStabiliser(inputs, slice(1, 5), 2, dtype=np.uint16)
    stabiliser.add(0, outputs[:3], inputs=given[:3])
    stabiliser.add(3, outputs[3:], inputs=given[3:])
    seen = []
    result = stabiliser.result(lambda t, y: (seen.append(t), np.full((1, 4, 5, 3), t,
                                                                     np.uint16))[1])
    np.testing.assert_array_equal(result.gains_before, frame_gains(given, outputs)[1:5])
    assert seen == [1, 2, 3, 4] and [int(f[0, 0, 0]) for f in result.frames] == seen
    reference = process_chunk(given, outputs, slice(1, 5), 2, dtype=np.uint16)
    np.testing.assert_array_equal(stabiliser.result().frames, reference.frames)


def test_auto_chunk_frames_follow_the_frame_size(monkeypatch):
    from nhance_batch.config import ChunkConfig, auto_chunk_frames

    monkeypatch.delenv("NHANCE_CHUNK_MEMORY", raising=False)
    assert auto_chunk_frames(64, 48, 3) == 256            # tiny frames: the upper limit
    assert auto_chunk_frames(1280, 720, 3) == 110         # 2 GiB / (921,600 px * 20 B) - 6
    assert auto_chunk_frames(3840, 2160, 3) == 6          # 4K: 2 GiB / (8.3 Mpx * 20 B) - 6
    assert auto_chunk_frames(7680, 4320, 3) == 1          # 8K: the lower limit, one frame
    monkeypatch.setenv("NHANCE_CHUNK_MEMORY", str(1 << 30))
    assert auto_chunk_frames(1280, 720, 3) == 52
    assert ChunkConfig(chunk_frames=0, overlap=3).frames_for(1280, 720) == 52
    assert ChunkConfig(chunk_frames=7, overlap=3).frames_for(1280, 720) == 7


def test_integer_channel_means_are_exact():
    """Integer frames are averaged exactly (an integer sum per channel over max x pixels),
    each frame on its own, whatever comes with it."""
    from nhance_batch.temporal import _channel_means

    rng = np.random.default_rng(7)
    for dtype in (np.uint8, np.uint16):
        top = np.iinfo(dtype).max
        frames = rng.integers(0, top + 1, (3, 17, 29, 3), dtype=dtype)
        means = _channel_means(frames)
        for i in range(3):
            for c in range(3):
                exact = int(frames[i, ..., c].astype(np.int64).sum()) / (17 * 29 * top)
                assert means[i, c] == exact
        np.testing.assert_array_equal(_channel_means(frames[1:2]), means[1:2])

"""The enhancer against an independent reference forward pass (plain tf.nn, weights read by
TensorFlow's own checkpoint reader, straight from SOURCE.md's description)."""

import numpy as np
import pytest

from nhance_batch.config import ModelConfig
from nhance_batch.model.dped import DPEDWeights
from nhance_batch.model.enhancer import Enhancer
from tests.conftest import MODEL_NAMES

SIZES = [(48, 64), (143, 175), (7, 5), (1, 1), (2, 9)]  # (H, W): even, odd, tiny


def reference(x: np.ndarray, prefix: str) -> np.ndarray:
    """DPED as published: tf.nn.conv2d SAME, tf.nn.moments instance norm, eps 1e-3."""
    import tensorflow as tf

    r = tf.train.load_checkpoint(prefix)
    g = lambda n: tf.constant(r.get_tensor(f"generator/{n}"))  # noqa: E731
    norm_index = {i: 2 * (i - 2) for i in range(2, 10)}

    def conv(t, i):
        return tf.nn.conv2d(t, g(f"W{i}"), strides=[1, 1, 1, 1], padding="SAME") + g(f"b{i}")

    def inorm(t, i):
        k = norm_index[i]
        shift = g("Variable" if k == 0 else f"Variable_{k}")
        scale = g(f"Variable_{k + 1}")
        mu, var = tf.nn.moments(t, [1, 2], keepdims=True)
        return scale * (t - mu) / (var + 1e-3) ** 0.5 + shift

    x = tf.constant(x, tf.float32)
    prev = tf.nn.relu(conv(x, 1))
    for i in (2, 4, 6, 8):
        a = tf.nn.relu(inorm(conv(prev, i), i))
        prev = tf.nn.relu(inorm(conv(a, i + 1), i + 1)) + prev
    c11 = tf.nn.relu(conv(tf.nn.relu(conv(prev, 10)), 11))
    return (tf.nn.tanh(conv(c11, 12)) * 0.58 + 0.5).numpy()


@pytest.fixture(scope="module", params=MODEL_NAMES)
def model(request, models_dir):
    prefix = str(models_dir / f"{request.param}_orig")
    enhancer = Enhancer(ModelConfig(name=request.param, batch_size=2))
    enhancer.setup()
    return enhancer, prefix


def _check(enhancer, prefix, frames):
    expected = reference(frames.astype(np.float32) / np.iinfo(frames.dtype).max, prefix)
    got = enhancer(frames, as_float=True)
    assert got.shape == frames.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5
    quantised = enhancer(frames)
    assert quantised.dtype == np.uint8
    want = np.round(np.clip(expected, 0, 1) * 255)
    assert np.abs(quantised.astype(int) - want).max() <= 1


@pytest.mark.parametrize("size", SIZES)
def test_random_frames_match_reference(model, size):
    enhancer, prefix = model
    frames = np.random.default_rng(sum(size)).integers(0, 256, (3, *size, 3), dtype=np.uint8)
    _check(enhancer, prefix, frames)


def test_real_frames_match_reference(model, real_frame):
    enhancer, prefix = model
    _check(enhancer, prefix, real_frame[None])
    _check(enhancer, prefix, real_frame[None, 11:108, 5:170])  # odd crop 97x165


def test_uint16_frames(model, real_frame):
    enhancer, prefix = model
    frames16 = real_frame[None].astype(np.uint16) * 257  # 8-bit values at full 16-bit scale
    _check(enhancer, prefix, frames16)
    diff = enhancer(frames16).astype(int) - enhancer(real_frame[None])
    assert np.abs(diff).max() <= 1  # same values, reached through a different float rounding


def test_result_does_not_depend_on_batching(models_dir):
    frames = np.random.default_rng(1).integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    enhancer = Enhancer(ModelConfig(batch_size=4))
    whole = enhancer(frames)
    one_by_one = np.concatenate([enhancer(frames[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(whole, one_by_one)
    assert enhancer(frames[0]).shape == frames[0].shape  # a single [H, W, 3] frame


def test_rejects_bad_input():
    enhancer = Enhancer(weights=DPEDWeights.random())
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        enhancer(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        enhancer(np.zeros((1, 8, 8, 3), np.float32))


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_close_to_float32(models_dir, real_frame, precision):
    frames = real_frame[None, :64, :96]
    full = Enhancer(ModelConfig(batch_size=1))(frames, as_float=True)
    mixed = Enhancer(ModelConfig(batch_size=1, precision=precision))(frames, as_float=True)
    psnr = 10 * np.log10(1 / np.mean((np.clip(full, 0, 1) - np.clip(mixed, 0, 1)) ** 2))
    assert psnr > 30, psnr
    assert np.abs(full - mixed).max() > 0  # it really ran in lower precision


def test_fused_instance_norm_equals_the_plain_one():
    """TensorFlow's fused batch norm of one image at a time (the enhancer's path on that
    backend) is the instance norm of the plain ops, for one image and for a batch."""
    import tensorflow as tf

    from nhance_batch.model.dped import forward

    weights = DPEDWeights.random(3)
    x = np.random.default_rng(4).random((3, 21, 34, 3)).astype(np.float32)
    for batch in (x[:1], x):
        plain = tf.function(lambda t: forward(t, weights))(batch).numpy()
        fused = tf.function(lambda t: forward(t, weights, fused_norm=True))(batch).numpy()
        assert np.abs(fused - plain).max() <= 1e-5
    graph = tf.function(lambda t: forward(t, weights, fused_norm=True)).get_concrete_function(
        tf.TensorSpec(x.shape, tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in ops and "Mean" not in ops

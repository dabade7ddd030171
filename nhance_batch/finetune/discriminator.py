"""DPED's texture discriminator, as Keras 3 ops over a flat list of arrays.

On grayscale patches: conv 48@11x11 stride 4 (no norm), 128@5x5/2, 192@3x3, 192@3x3,
128@3x3/2, each LeakyReLU 0.2 and then (all but the first) instance norm; FC 1024 with
LeakyReLU; a 2-way softmax (class 0: "target", class 1: "enhanced"). No weights were published,
so it starts from DPED's initialisation: truncated normal (std 0.01) kernels, biases 0.01.
"""

from __future__ import annotations

import numpy as np

# (filters, kernel, stride, instance norm)
CONVS = ((48, 11, 4, False), (128, 5, 2, True), (192, 3, 1, True), (192, 3, 1, True),
         (128, 3, 2, True))
FC = 1024
INORM_EPS = 1e-3
GRAY = np.array([0.2989, 0.587, 0.114], np.float32)


def feature_side(patch: int) -> int:
    """The side of the last feature map for ``patch`` x ``patch`` inputs (SAME padding)."""
    side = patch
    for _, _, stride, _ in CONVS:
        side = -(-side // stride)
    return side


def _truncated_normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * std).astype(np.float32)


def init(patch: int, seed: int) -> list[np.ndarray]:
    """Fresh discriminator weights for ``patch``-sized inputs, in :func:`forward`'s order."""
    rng = np.random.default_rng([seed, 0xD15C])
    params: list[np.ndarray] = []
    channels = 1
    for filters, k, _, norm in CONVS:
        params.append(_truncated_normal(rng, (k, k, channels, filters), 0.01))
        params.append(np.full(filters, 0.01, np.float32))
        if norm:
            params.append(np.zeros(filters, np.float32))  # shift
            params.append(np.ones(filters, np.float32))   # scale
        channels = filters
    flat = feature_side(patch) ** 2 * channels
    params += [_truncated_normal(rng, (flat, FC), 0.01), np.full(FC, 0.01, np.float32),
               _truncated_normal(rng, (FC, 2), 0.01), np.full(2, 0.01, np.float32)]
    return params


def grayscale(rgb):
    from keras import ops

    return ops.sum(rgb * GRAY, axis=-1, keepdims=True)


def forward(gray, params):
    """Class probabilities [N, 2] for grayscale patches [N, P, P, 1]."""
    from keras import ops

    def leaky(t):
        return ops.maximum(0.2 * t, t)

    t, i = gray, 0
    for _, _, stride, norm in CONVS:
        t = leaky(ops.conv(t, params[i], strides=stride, padding="same") + params[i + 1])
        i += 2
        if norm:
            mean = ops.mean(t, axis=(1, 2), keepdims=True)
            var = ops.mean(ops.square(t - mean), axis=(1, 2), keepdims=True)
            t = params[i + 1] * (t - mean) / ops.sqrt(var + INORM_EPS) + params[i]
            i += 2
    t = ops.reshape(t, (ops.shape(t)[0], -1))
    t = leaky(ops.matmul(t, params[i]) + params[i + 1])
    return ops.softmax(ops.matmul(t, params[i + 2]) + params[i + 3], axis=-1)

"""The DPED generator (Ignatov et al., ICCV 2017) as Keras 3 ops: weights and forward pass.

The network is written with ``keras.ops`` so that it runs unchanged on the TensorFlow backend
(CPU actors, XLA) and on JAX (GPU machines without TensorFlow). Architecture, exactly as the
published generator: SAME zero padding, stride 1, instance norm per image and channel with
eps 1e-3, output ``tanh(.) * 0.58 + 0.5``.

Cost: 399,744 multiply-adds per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MACS_PER_PIXEL = 399_744
FLOPS_PER_PIXEL = 2 * MACS_PER_PIXEL
INORM_EPS = 1e-3
NORMED_CONVS = tuple(range(2, 10))  # conv layers W2..W9 are followed by an instance norm
NORM_VARIABLES = ("Variable",) + tuple(f"Variable_{i}" for i in range(1, 16))


@dataclass(frozen=True)
class DPEDWeights:
    """Numpy weights of one generator: kernels HWIO, biases, and (shift, scale) per norm.

    ``kernels[i]``/``biases[i]`` are layer ``i + 1`` (W1..W12); ``norms[j]`` is the norm after
    layer ``NORMED_CONVS[j]``.
    """

    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    norms: tuple[tuple[np.ndarray, np.ndarray], ...]

    @classmethod
    def from_variables(cls, variables: dict[str, np.ndarray]) -> "DPEDWeights":
        """Build from checkpoint variables named ``generator/W1``, ``generator/Variable_3``...

        Each norm created its shift (zeros-initialised) before its scale, so the norm after
        W2 is (shift=Variable, scale=Variable_1), after W3 (Variable_2, Variable_3), and so on.
        """

        def var(name: str) -> np.ndarray:
            key = f"generator/{name}"
            if key not in variables:
                raise KeyError(f"checkpoint has no variable {key!r}: not a DPED generator")
            return np.asarray(variables[key], dtype=np.float32)

        kernels = tuple(var(f"W{i}") for i in range(1, 13))
        biases = tuple(var(f"b{i}") for i in range(1, 13))
        names = NORM_VARIABLES
        norms = tuple((var(names[2 * j]), var(names[2 * j + 1])) for j in range(len(NORMED_CONVS)))
        expected = [(9, 9, 3, 64)] + [(3, 3, 64, 64)] * 10 + [(9, 9, 64, 3)]
        for i, (kernel, shape) in enumerate(zip(kernels, expected), start=1):
            if kernel.shape != shape:
                raise ValueError(f"W{i} has shape {kernel.shape}, expected {shape}")
        return cls(kernels, biases, norms)

    def to_variables(self) -> dict[str, np.ndarray]:
        """The inverse of :meth:`from_variables`: the 40 checkpoint variables by name."""
        out = {f"generator/W{i}": np.asarray(k) for i, k in enumerate(self.kernels, start=1)}
        out.update({f"generator/b{i}": np.asarray(b) for i, b in enumerate(self.biases, start=1)})
        for j, (shift, scale) in enumerate(self.norms):
            out[f"generator/{NORM_VARIABLES[2 * j]}"] = np.asarray(shift)
            out[f"generator/{NORM_VARIABLES[2 * j + 1]}"] = np.asarray(scale)
        return out

    def arrays(self) -> list:
        """Every weight in a fixed order (kernels, biases, then shift/scale per norm)."""
        return [*self.kernels, *self.biases, *(t for norm in self.norms for t in norm)]

    @classmethod
    def from_arrays(cls, arrays) -> "DPEDWeights":
        """The inverse of :meth:`arrays`; the items may be numpy arrays or backend tensors."""
        arrays = list(arrays)
        norms = tuple((arrays[24 + 2 * j], arrays[25 + 2 * j]) for j in range(len(NORMED_CONVS)))
        return cls(tuple(arrays[:12]), tuple(arrays[12:24]), norms)

    @classmethod
    def load(cls, prefix: str | Path) -> "DPEDWeights":
        """Read the TF1 checkpoint at ``prefix`` (no TensorFlow needed)."""
        from nhance_batch.model.checkpoint import read_checkpoint

        return cls.from_variables(read_checkpoint(prefix))

    @classmethod
    def random(cls, seed: int = 0) -> "DPEDWeights":
        """Random weights of the right shapes (benchmarks and tests of speed, never of quality)."""
        rng = np.random.default_rng(seed)
        shapes = [(9, 9, 3, 64)] + [(3, 3, 64, 64)] * 10 + [(9, 9, 64, 3)]
        kernels = tuple((rng.standard_normal(s) / np.sqrt(np.prod(s[:3]))).astype(np.float32)
                        for s in shapes)
        biases = tuple((0.01 * rng.standard_normal(s[-1])).astype(np.float32) for s in shapes)
        norms = tuple(((0.1 * rng.standard_normal(64)).astype(np.float32),
                       (1 + 0.1 * rng.standard_normal(64)).astype(np.float32))
                      for _ in NORMED_CONVS)
        return cls(kernels, biases, norms)


def forward(x, weights: DPEDWeights, compute_dtype: str = "float32", *,
            fused_norm: bool = False):
    """The generator on a batch ``x`` of RGB in [0, 1], shape [N, H, W, 3]; returns float32 RGB.

    With ``compute_dtype`` bfloat16/float16, convolutions run in that type while the instance-norm
    statistics and the output stay float32. ``fused_norm`` (TensorFlow backend) computes each
    instance norm as TensorFlow's fused batch norm of one image at a time where the batch size
    is known when the graph is built (else the plain ops).
    """
    from keras import ops

    def conv(t, i):
        kernel = ops.cast(weights.kernels[i - 1], compute_dtype)
        bias = ops.cast(weights.biases[i - 1], compute_dtype)
        return ops.conv(ops.cast(t, compute_dtype), kernel, strides=1, padding="same") + bias

    def conv_last(t):
        # The 9x9 64->3 convolution, as one 3x3 convolution 64->27 over the zero-padded input
        # plus nine shifted sums: the same products, but a GEMM 27 wide instead of 3, which
        # runs ~3x faster on CPUs (and no slower on GPUs).
        kernel, bias = weights.kernels[11], weights.biases[11]
        # ops.concatenate, not numpy: the weights may be backend tensors (training).
        blocks = ops.cast(ops.concatenate([kernel[3 * a:3 * a + 3, 3 * b:3 * b + 3]
                                           for a in range(3) for b in range(3)], axis=-1),
                          compute_dtype)
        height, width = ops.shape(t)[1], ops.shape(t)[2]
        padded = ops.pad(ops.cast(t, compute_dtype), [[0, 0], [4, 4], [4, 4], [0, 0]])
        z = ops.cast(ops.conv(padded, blocks, strides=1, padding="valid"), "float32")
        out = bias
        for a in range(3):
            for b in range(3):
                c = 3 * (3 * a + b)
                out = out + z[:, 3 * a:3 * a + height, 3 * b:3 * b + width, c:c + 3]
        return out

    def inorm(t, i):
        shift, scale = weights.norms[NORMED_CONVS.index(i)]
        t = ops.cast(t, "float32")
        if fused_norm and t.shape[0] is not None:
            return _fused_instance_norm(t, shift, scale)
        mean = ops.mean(t, axis=(1, 2), keepdims=True)
        var = ops.mean(ops.square(t - mean), axis=(1, 2), keepdims=True)
        return scale * (t - mean) / ops.sqrt(var + INORM_EPS) + shift

    prev = ops.relu(conv(x, 1))
    for i in (2, 4, 6, 8):
        a = ops.relu(inorm(conv(prev, i), i))
        prev = ops.relu(inorm(conv(a, i + 1), i + 1)) + ops.cast(prev, "float32")
    c10 = ops.relu(conv(prev, 10))
    c11 = ops.relu(conv(c10, 11))
    return ops.tanh(conv_last(c11)) * 0.58 + 0.5


def _fused_instance_norm(t, shift, scale):
    """Instance norm on TensorFlow: the batch norm of a one-image batch (training mode: its own
    statistics, biased variance) is that image's instance norm, and TensorFlow runs it as one
    fused kernel (oneDNN's on CPUs) in three passes over the activations where the plain ops
    take about eight: a quarter of a CPU forward pass at 320x180 was spent there."""
    import tensorflow as tf

    scale, shift = tf.cast(scale, tf.float32), tf.cast(shift, tf.float32)

    def one(image):
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(image, scale, shift, epsilon=INORM_EPS,
                                                   is_training=True)
        return y

    count = t.shape[0]
    if count == 1:
        return one(t)
    return tf.concat([one(t[k:k + 1]) for k in range(count)], axis=0)

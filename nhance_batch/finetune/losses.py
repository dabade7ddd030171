"""DPED's generator losses (``train_model.py`` of the paper's code), as Keras 3 ops.

* colour: squared difference after a 21x21 Gaussian blur (nsig 3) per channel, summed, / (2 B),
  times (100 / P)^2 for P x P patches: the sum grows with the patch area while the other terms
  do not, so the recipe's weights (set for DPED's 100x100 patches) keep their balance at any
  patch size (a factor of exactly 1 at 100x100);
* content: mean squared difference of content-network features (VGG-19 ``relu5_4`` in the
  paper; EfficientNet-Lite0's stage 5 by default here, see :mod:`nhance_batch.finetune.content`);
* texture: ``sum(log p_D(enhanced | G(x)))`` over the batch (the discriminator's cross-entropy,
  negated);
* total variation: (mean squared x differences + mean squared y differences) per image / B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BLUR_SIZE, BLUR_NSIG = 21, 3.0
RECIPE_PATCH = 100


@dataclass(frozen=True)
class LossWeights:
    content: float = 10.0
    color: float = 0.5
    texture: float = 1.0
    tv: float = 2000.0

    def __post_init__(self) -> None:
        for name in ("content", "color", "texture", "tv"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0")


def gaussian_kernel(size: int = BLUR_SIZE, nsig: float = BLUR_NSIG) -> np.ndarray:
    """The blur kernel [size, size, 3, 1] (depthwise): a normal density integrated over each of
    ``size`` cells spanning +-nsig (plus half a cell), as a 2-D kernel normalised to sum 1."""
    step = (2 * nsig + 1.0) / size
    edges = np.linspace(-nsig - step / 2, nsig + step / 2, size + 1)
    cdf = np.array([0.5 * (1 + math.erf(e / math.sqrt(2))) for e in edges])
    cells = np.diff(cdf)
    kernel = np.sqrt(np.outer(cells, cells))
    kernel /= kernel.sum()
    return np.repeat(kernel[:, :, None, None], 3, axis=2).astype(np.float32)


_KERNEL = gaussian_kernel()


def blur(rgb):
    from keras import ops

    return ops.depthwise_conv(rgb, _KERNEL, strides=1, padding="same")


def color_loss(enhanced, target):
    from keras import ops

    batch = ops.cast(ops.shape(enhanced)[0], "float32")
    area = ops.cast(ops.shape(enhanced)[1] * ops.shape(enhanced)[2], "float32")
    scale = RECIPE_PATCH * RECIPE_PATCH / area
    return scale * ops.sum(ops.square(blur(target) - blur(enhanced))) / (2.0 * batch)


def tv_loss(enhanced):
    from keras import ops

    dy = enhanced[:, 1:, :, :] - enhanced[:, :-1, :, :]
    dx = enhanced[:, :, 1:, :] - enhanced[:, :, :-1, :]
    batch = ops.cast(ops.shape(enhanced)[0], "float32")
    per_image_y = ops.cast(ops.size(dy), "float32") / batch
    per_image_x = ops.cast(ops.size(dx), "float32") / batch
    return (ops.sum(ops.square(dx)) / per_image_x + ops.sum(ops.square(dy)) / per_image_y) / batch


def content_loss(enhanced_features, target_features):
    from keras import ops

    return ops.mean(ops.square(enhanced_features - target_features))


def texture_loss(probabilities_of_enhanced):
    """The generator's adversarial term, from D's probabilities [N, 2] on enhanced patches."""
    from keras import ops

    return ops.sum(ops.log(ops.clip(probabilities_of_enhanced[:, 1], 1e-10, 1.0)))


def discriminator_loss(probabilities, swaps):
    """D's cross-entropy; ``swaps`` [N] is 1 where D was shown the target, 0 for enhanced."""
    from keras import ops

    target = ops.stack([swaps, 1.0 - swaps], axis=1)
    return -ops.sum(target * ops.log(ops.clip(probabilities, 1e-10, 1.0)))


def discriminator_accuracy(probabilities, swaps):
    from keras import ops

    predicted_target = ops.cast(probabilities[:, 0] > probabilities[:, 1], "float32")
    return ops.mean(ops.cast(ops.equal(predicted_target, swaps), "float32"))

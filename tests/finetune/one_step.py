"""Run one training iteration on the backend named by KERAS_BACKEND and save the result:
``python -m tests.finetune.one_step OUT.npz`` (used by test_backends.py)."""

from __future__ import annotations

import sys

import numpy as np


def main(out: str) -> None:
    import keras
    from keras import ops

    from nhance_batch.finetune import backend as B
    from nhance_batch.finetune import discriminator as D
    from nhance_batch.finetune.content import load_content
    from nhance_batch.finetune.losses import LossWeights
    from nhance_batch.finetune.train import make_step
    from nhance_batch.model.dped import DPEDWeights
    from nhance_batch.model.registry import resolve

    g0 = DPEDWeights.load(resolve("iphone").prefix).arrays()
    d0 = D.init(24, seed=0)
    rng = np.random.default_rng(7)
    target = rng.random((2, 24, 24, 3)).astype(np.float32)
    phone = np.clip(target ** 1.3 * 0.9, 0, 1).astype(np.float32)
    swaps = np.array([0.0, 1.0], np.float32)
    # XLA on JAX (how it runs there); graph mode on TensorFlow, which compiles faster
    step = make_step(LossWeights(), load_content("efficientnet-lite0").features,
                     jit=keras.backend.backend() == "jax", lr=1e-4)
    g, d, _, _, parts = step([ops.convert_to_tensor(a) for a in g0],
                             [ops.convert_to_tensor(a) for a in d0],
                             B.adam_init(g0), B.adam_init(d0), phone, target, swaps)
    arrays = {f"g{i}": np.asarray(a) for i, a in enumerate(g)}
    arrays.update({f"d{i}": np.asarray(a) for i, a in enumerate(d)})
    arrays.update({f"loss_{k}": np.asarray(v) for k, v in parts.items()})
    arrays["backend"] = np.array(keras.backend.backend())
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])

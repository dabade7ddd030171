"""The same training iteration on TensorFlow and on JAX gives the same losses and weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _one_step(backend: str, out: Path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-m", "tests.finetune.one_step", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_training_step_is_the_same_on_tensorflow_and_jax(tmp_path):
    pytest.importorskip("jax")
    tf_result = _one_step("tensorflow", tmp_path / "tf.npz")
    jax_result = _one_step("jax", tmp_path / "jax.npz")
    assert str(tf_result["backend"]) == "tensorflow" and str(jax_result["backend"]) == "jax"
    for key in ("loss_loss", "loss_color", "loss_content", "loss_texture", "loss_tv",
                "loss_d_loss"):
        np.testing.assert_allclose(tf_result[key], jax_result[key], rtol=2e-3, err_msg=key)
    # Adam's first step moves every weight by about lr * sign(gradient): where a gradient is
    # ~0 the two backends' round-off may pick different signs, so a few weights may differ by
    # up to 2 lr; all others agree closely.
    names = [f"g{i}" for i in range(40)] + sorted(
        k for k in tf_result if k.startswith("d") and k[1:].isdigit())
    close = total = 0
    for name in names:
        a, b = tf_result[name], jax_result[name]
        np.testing.assert_allclose(a, b, atol=2.05e-4, rtol=0, err_msg=name)
        close += np.count_nonzero(np.abs(a - b) <= 1e-5 + 1e-4 * np.abs(a))
        total += a.size
    assert close / total > 0.999, close / total
    # and the step did change the weights (Adam's first step moves each by about lr)
    from nhance_batch.model.dped import DPEDWeights
    from nhance_batch.model.registry import resolve

    base = DPEDWeights.load(resolve("iphone").prefix).arrays()
    moved = sum(not np.array_equal(base[i], tf_result[f"g{i}"]) for i in range(40))
    assert moved == 40

"""The whole pipeline on the JAX backend (CPU): ``nhance-batch run`` in a process where
TensorFlow cannot be imported (as on a GPU image with only the ``jax`` extra) gives the
TensorFlow backend's output within 1 LSB, on at most 0.1% of the pixels. Lossless output makes
the comparison exact: decoded output frames are the enhancer's output bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.media.makemedia import make_video

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI with TensorFlow made unimportable, then says which backend Keras used.
_RUNNER = """
import sys
sys.modules["tensorflow"] = None  # import tensorflow -> ImportError, find_spec -> None
from nhance_batch.cli import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
    code = 0
except SystemExit as exc:
    code = exc.code or 0
import keras
print("BACKEND=" + keras.backend.backend(), file=sys.stderr)
sys.exit(code)
"""


def _run(args: list[str], env_backend: str | None, block_tf: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    if env_backend:
        env["KERAS_BACKEND"] = env_backend
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    command = ([sys.executable, "-c", _RUNNER] if block_tf
               else [sys.executable, "-m", "nhance_batch"])
    return subprocess.run(command + args, env=env, capture_output=True, text=True,
                          timeout=900, cwd=REPO)


def _frames(path: Path) -> np.ndarray:
    from nhance_batch.media import decode_all, probe

    return decode_all(path, probe(path)).frames


@pytest.mark.slow
def test_jax_pipeline_equals_tensorflow(tmp_path):
    src = tmp_path / "in"
    make_video(src / "a.mp4", width=64, height=48, frames=14, audio_tracks=1)
    make_video(src / "b.mp4", width=48, height=32, frames=7)
    common = ["--executor", "sequential", "--lossless", "--chunk-frames", "5"]

    jax_run = _run(["run", str(src), str(tmp_path / "jax"), *common,
                    "--summary-json", str(tmp_path / "jax.json")],
                   env_backend=None, block_tf=True)
    assert jax_run.returncode == 0, jax_run.stdout + jax_run.stderr
    assert "BACKEND=jax" in jax_run.stderr  # chosen because TensorFlow is absent
    tf_run = _run(["run", str(src), str(tmp_path / "tf"), *common],
                  env_backend="tensorflow", block_tf=False)
    assert tf_run.returncode == 0, tf_run.stdout + tf_run.stderr

    summary = json.loads((tmp_path / "jax.json").read_text())
    assert summary["frames"] == 21 and not summary["failed"]
    total = differing = 0
    for name in ("a.mp4", "b.mp4"):
        a, b = _frames(tmp_path / "jax" / name), _frames(tmp_path / "tf" / name)
        assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert diff.max() <= 1, f"{name}: {diff.max()} LSB"
        total += diff.size
        differing += int((diff > 0).sum())
    assert differing <= 0.001 * total, f"{differing} of {total} values differ by 1 LSB"
    # --precision works on JAX too: bfloat16 convolutions, close to float32
    bf16 = _run(["run", str(src / "a.mp4"), str(tmp_path / "bf16"), *common,
                 "--precision", "bfloat16"], env_backend="jax", block_tf=True)
    assert bf16.returncode == 0, bf16.stdout + bf16.stderr
    a32 = _frames(tmp_path / "jax" / "a.mp4").astype(np.float64)
    a16 = _frames(tmp_path / "bf16" / "a.mp4").astype(np.float64)
    mse = np.mean((a32 - a16) ** 2)
    assert 0 < mse and 10 * np.log10(255.0 ** 2 / mse) > 40
    # not vacuous: the enhancer changed the pictures
    original = _frames(src / "a.mp4")
    assert np.abs(original.astype(np.int16) - _frames(tmp_path / "jax" / "a.mp4")).mean() > 2


def test_backend_selection_without_tensorflow(tmp_path):
    """With TensorFlow unimportable and nothing asked for, JAX is selected; asking for
    TensorFlow then fails with a message naming the extra."""
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from nhance_batch.model.backend import ensure_backend, BackendError\n"
            "print(ensure_backend())\n")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "jax", out.stderr
    env["KERAS_BACKEND"] = "tensorflow"
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from nhance_batch.model.backend import ensure_backend, BackendError\n"
            "try:\n    ensure_backend()\nexcept BackendError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert "nhance-batch[tf]" in out.stdout, out.stdout + out.stderr

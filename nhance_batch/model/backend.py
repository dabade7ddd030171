"""Which Keras backend runs the enhancer: TensorFlow or JAX, whichever is installed.

Keras 3 picks its backend from ``KERAS_BACKEND`` (or ``~/.keras/keras.json``) when it is first
imported, and defaults to TensorFlow. An install with only the ``jax`` extra (a GPU image needs
only one of the two) has no TensorFlow, so :func:`ensure_backend` selects JAX there when nothing
was asked for (Keras writes ``"backend": "tensorflow"`` into ``~/.keras/keras.json`` on its
first import, so that file's value counts only when its backend is installed); with both
installed, TensorFlow stays the default and ``KERAS_BACKEND=jax`` chooses JAX. Call it before anything imports Keras in the process (the enhancer's ``setup``
does).
"""

from __future__ import annotations

import json
import os
import sys
from importlib.util import find_spec
from pathlib import Path

#: The backends the enhancer runs on, and the extra that installs each.
EXTRAS = {"tensorflow": "tf", "jax": "jax"}


class BackendError(RuntimeError):
    """No usable Keras backend is installed (the message names the extra to install)."""


def _configured() -> str | None:
    """The backend asked for: ``KERAS_BACKEND``, else ``~/.keras/keras.json``'s, else None."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as handle:
            value = json.load(handle).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def installed_backends() -> list[str]:
    """Backends whose package is importable here (without importing them)."""
    return [name for name in EXTRAS if find_spec(name) is not None]


def ensure_backend() -> str:
    """Select the backend (see the module docstring), import Keras, return its backend name.

    Raises:
        BackendError: the backend asked for, or every backend, is not installed.
    """
    if "keras" not in sys.modules:
        wanted = os.environ.get("KERAS_BACKEND") or None
        present = installed_backends()
        if wanted is None and _configured() in present:
            pass  # ~/.keras/keras.json names an installed backend: Keras uses it
        elif wanted is None:  # nothing asked, or keras.json's default names a missing one
            if not present:
                raise BackendError(
                    "no Keras backend is installed: pip install 'nhance-batch[tf]' "
                    "(TensorFlow) or 'nhance-batch[jax]' (JAX; '[jax-gpu]' for NVIDIA GPUs)")
            os.environ["KERAS_BACKEND"] = "tensorflow" if "tensorflow" in present else present[0]
        elif wanted in EXTRAS and wanted not in present:
            raise BackendError(
                f"KERAS_BACKEND={wanted} but {wanted} is not installed: pip install "
                f"'nhance-batch[{EXTRAS[wanted]}]', or unset KERAS_BACKEND"
                + (f" to use {present[0]}" if present else ""))
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return _load_keras()


def _load_keras() -> str:
    """Import Keras and start its backend's devices, with the native start-up lines that
    are noise hidden (:mod:`nhance_batch.logs`)."""
    from nhance_batch import logs

    with logs.native_noise_hidden():
        import keras

        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            # CUDA's start-up (cuInit) runs here, inside the filter, not at the first frame;
            # math threads can still be set afterwards
            tf.config.list_physical_devices()
    return backend

"""Shared fixtures: the model folder (NHANCE_MODELS, ../shared/models/dped by default), and a
world of the suite's own: every per-user folder the tool reads or writes (input and model cache,
user models, calibration, autotune) points into one temporary folder for the whole session, so
the suite passes the same on a developer's machine that has used the tool as in CI."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault("NHANCE_MODELS", str(SHARED / "models" / "dped"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Set at import, before any test (or subprocess it starts) resolves a folder: the platform's
# user folders are moved too, for code that falls back to them.
USER_WORLD = Path(tempfile.mkdtemp(prefix="nhance-tests-"))
atexit.register(shutil.rmtree, USER_WORLD, ignore_errors=True)
for variable, folder in (("NHANCE_CACHE", "cache"), ("NHANCE_USER_MODELS", "user-models"),
                         ("NHANCE_AUTOTUNE_CACHE", "cache/autotune.json"),
                         ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_DATA_HOME", "xdg-data"),
                         ("XDG_CONFIG_HOME", "xdg-config")):
    os.environ[variable] = str(USER_WORLD / folder)
(USER_WORLD / "cache").mkdir()
MODELS_DIR = Path(os.environ["NHANCE_MODELS"]).resolve()
MODEL_NAMES = ("iphone", "blackberry", "sony")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS_DIR / "iphone_orig.index").is_file():
        pytest.fail(f"NHANCE_MODELS={MODELS_DIR} does not hold the DPED checkpoints")
    return MODELS_DIR


@pytest.fixture(scope="session")
def real_frame() -> "object":
    """A real 176x144 frame (carphone.mp4 from ../shared/videos), uint8 RGB."""
    import av

    path = SHARED / "videos" / "carphone.mp4"
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("carphone.mp4 has fewer than 31 frames")

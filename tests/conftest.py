"""Shared fixtures: the model folder (NHANCE_MODELS, ../shared/models/dped by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault("NHANCE_MODELS", str(SHARED / "models" / "dped"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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

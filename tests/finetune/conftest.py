"""Fixtures of the fine-tuning tests: synthetic pairs and a private user model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.finetune.synth import make_pairs


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory) -> Path:
    """28 pairs of 96x96 tiles (7 images x 4 tiles) of a synthetic phone."""
    root = tmp_path_factory.mktemp("pairs")
    make_pairs(root, side=96, tiles=2)
    return root


@pytest.fixture()
def user_models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv("NHANCE_USER_MODELS", str(folder))
    return folder

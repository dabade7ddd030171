"""The suite owns its world: every per-user folder the tool resolves lies in the session's
temporary folder (tests/conftest.py), never in the developer's own."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import USER_WORLD


def _inside(path: Path) -> bool:
    return Path(path).resolve().is_relative_to(USER_WORLD.resolve())


def test_every_per_user_folder_is_the_suites_own():
    from nhance_batch.rates import calibration_path as calibration_cache
    from nhance_batch.model import autotune, registry
    from nhance_batch.storage import default_cache_dir

    folders = {"user models": registry.user_models_dir(), "model cache": registry.cache_dir(),
               "autotune": autotune.cache_path(),
               "calibration": calibration_cache(),
               "input cache": default_cache_dir()}
    assert {name: str(p) for name, p in folders.items() if not _inside(p)} == {}

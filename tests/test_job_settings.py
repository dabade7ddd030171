"""A job's settings both ways: ``job_settings`` records a RunConfig's settings in the
manifest, ``run_config_from_settings`` (what ``resume`` runs) builds the RunConfig back."""

from __future__ import annotations

import pytest

from nhance_batch import storage
from nhance_batch.config import ConfigError, run_config
from nhance_batch.state.jobstate import (JobState, job_extras, job_settings, read_manifest,
                                         run_config_from_settings)
from nhance_batch.state.layout import JobLayout

#: what a resume may change, and sets anew on every run
OVERRIDES = {"address": "127.0.0.1:6379", "workers": 3, "max_retries": 5, "threads": 2,
             "gpus_per_worker": 0.5, "max_frames": 99, "storage_options": {}}

RECORDED = [
    {},
    {"lossless": True, "temporal_radius": 0, "chunk_frames": 16},
    {"codec": "libx265", "crf": 23, "preset": "fast", "overlap": 5, "temporal_radius": 2},
    {"model_path": "/models/user/iphone_orig", "precision": "bfloat16"},
    {"model": "sony", "precision": "float16", "previews": True, "crf": 30},
    {"chunk_seconds": 5.0},
]


def recorded_job(config, tmp_path):
    """The job record as ``resume`` reads it: written by the driver's JobState and compacted
    into a real manifest, then read back."""
    layout = JobLayout.create(config.input, config.output)
    storage.makedirs_for(layout.manifest)
    state = JobState.open(layout, job_settings(config), extras=job_extras(config))
    state.flush(compact=True)
    return read_manifest(layout.manifest).job


@pytest.mark.parametrize("settings", RECORDED)
def test_settings_survive_the_manifest_both_ways(tmp_path, settings):
    output = str(tmp_path / "out")
    config = run_config(str(tmp_path / "in"), output, **settings, **OVERRIDES)
    job = recorded_job(config, tmp_path)
    back = run_config_from_settings(job, output=output, overrides=OVERRIDES)
    assert job_settings(back) == job_settings(config)
    assert back == config  # input, previews and the overrides too


def test_a_record_without_model_path_or_precision_takes_the_defaults(tmp_path):
    config = run_config("/in", "/out", crf=21)
    job = {**job_settings(config), "input": "/in"}
    del job["model_path"], job["precision"]
    assert run_config_from_settings(job, output="/out") == config


def test_overrides_never_change_a_recorded_setting():
    job = {**job_settings(run_config("/in", "/out", chunk_frames=8)), "input": "/in"}
    with pytest.raises(TypeError):
        run_config_from_settings(job, output="/out", overrides={"chunk_frames": 4})
    lossless = {**job_settings(run_config("/in", "/out", lossless=True)), "input": "/in"}
    with pytest.raises(ConfigError, match="lossless"):
        run_config_from_settings(lossless, output="/out", overrides={"crf": 20})

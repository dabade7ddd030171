"""The new encode settings reach the job's config from every edge: ``run_config``, a job spec
and the web form."""

from __future__ import annotations

import pytest

from nhance_batch.config import ConfigError, run_config
from nhance_batch.jobspec import JobSpec
from nhance_batch.web.settings import JobSettings, ServerConfig


def test_codec_defaults_to_match_and_strict_to_off() -> None:
    config = run_config("in", "out")
    assert (config.encode.codec, config.encode.crf, config.strict) == ("match", None, False)
    config = run_config("in", "out", codec="auto", crf=22, strict=True)
    assert (config.encode.codec, config.encode.crf, config.strict) == ("auto", 22, True)
    with pytest.raises(ConfigError):
        run_config("in", "out", codec="match", lossless=True)


def test_a_job_spec_carries_codec_and_strict() -> None:
    spec = JobSpec(input="/in", output="/out", codec="libx265", strict=True)
    config = spec.to_run_config()
    assert (config.encode.codec, config.strict) == ("libx265", True)
    assert JobSpec(input="/in", output="/out").to_run_config().encode.codec == "match"


def test_the_web_form_carries_codec_and_strict(tmp_path) -> None:
    settings = JobSettings.from_form({"codec": "auto", "strict": "on"})
    config = settings.run_config("/in", "/out", ServerConfig(data=tmp_path, token="t" * 32))
    assert (config.encode.codec, config.strict) == ("auto", True)
    assert JobSettings.from_form({}).run_config(
        "/in", "/out", ServerConfig(data=tmp_path, token="t" * 32)).encode.codec == "match"
    with pytest.raises(ValueError):
        JobSettings(codec="lib x264; rm")
    with pytest.raises(ValueError):
        JobSettings(codec="libx265", lossless=True)

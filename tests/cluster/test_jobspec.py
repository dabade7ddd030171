"""Job specs: parsing, validation, and the same RunConfig as the `run` command's options."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.jobspec import JobSpec, SpecError, load_spec, parse_spec


@pytest.fixture
def captured(monkeypatch):
    """Run the `run` command up to the job: the RunConfig it would execute."""
    import sys

    run_module = sys.modules["nhance_batch.cli.run"]  # the package exports the command `run`

    seen = {}

    def fake_execute(config, **kwargs):
        seen["config"], seen["kwargs"] = config, kwargs

    monkeypatch.setattr(run_module, "execute", fake_execute)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen


def cli_config(captured, args):
    result = CliRunner().invoke(cli, ["run", *args])
    assert result.exit_code == 0, result.output
    return captured.pop("config")


def write(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


CASES = [
    ("""input = "/in"\noutput = "/out"\n""", ["/in", "/out"]),
    ("""input = "/in/*.mp4"\noutput = "/out"\nmodel = "sony"\nchunk_frames = 16\noverlap = 5
temporal_radius = 2\ncodec = "libx265"\ncrf = 23\npreset = "fast"\nworkers = 3
max_retries = 4\n[resources]\ngpus_per_worker = 0.5\n""",
     ["/in/*.mp4", "/out", "--model", "sony", "--chunk-frames", "16", "--overlap", "5",
      "--temporal-radius", "2", "--codec", "libx265", "--crf", "23", "--preset", "fast",
      "--workers", "3", "--max-retries", "4", "--gpus-per-worker", "0.5"]),
    ("""input = "/in"\noutput = "/out"\nlossless = true\ntemporal_radius = 0\n""",
     ["/in", "/out", "--lossless", "--temporal-radius", "0"]),
]


@pytest.mark.parametrize("text,args", CASES)
def test_spec_gives_the_same_config_as_the_command_line(tmp_path, captured, text, args):
    spec_path = write(tmp_path, text)
    from_cli = cli_config(captured, args)
    assert load_spec(spec_path).to_run_config() == from_cli
    assert cli_config(captured, ["--spec", str(spec_path)]) == from_cli


def test_command_line_options_override_the_spec(tmp_path, captured):
    spec_path = write(tmp_path, 'input = "/in"\noutput = "/out"\nchunk_frames = 16\n'
                                'workers = 2\n')
    config = cli_config(captured, ["--spec", str(spec_path), "--chunk-frames", "8",
                                   "--address", "127.0.0.1:1234"])
    assert config.chunk.chunk_frames == 8 and config.cluster.workers == 2
    assert config.cluster.address == "127.0.0.1:1234"
    config = cli_config(captured, ["/elsewhere", "/other", "--spec", str(spec_path)])
    assert (config.input, config.output) == ("/elsewhere", "/other")


def test_relative_paths_are_relative_to_the_spec(tmp_path):
    (tmp_path / "sub").mkdir()
    spec = load_spec(write(tmp_path / "sub", 'input = "../videos"\noutput = "out"\n'
                                             'model_path = "w/iphone_orig"\n'))
    config = spec.to_run_config()
    assert config.input == str(tmp_path / "videos")
    assert config.output == str(tmp_path / "sub" / "out")
    assert config.model.path == tmp_path / "sub" / "w" / "iphone_orig"
    assert spec.relative_paths() == ["input", "output", "model_path"]
    url = parse_spec({"input": "s3://bucket/in/", "output": "/abs/out"}, base_dir="/x")
    assert url.to_run_config().input == "s3://bucket/in/" and url.relative_paths() == []


def test_storage_options_are_carried(tmp_path):
    spec = load_spec(write(tmp_path, 'input = "s3://b/in"\noutput = "s3://b/out"\n'
                                     '[storage_options]\nanon = false\n'
                                     'client_kwargs = { region_name = "eu-west-1" }\n'))
    assert spec.storage_options == {"anon": False,
                                    "client_kwargs": {"region_name": "eu-west-1"}}
    config = spec.to_run_config()
    if hasattr(config, "storage_options"):  # the storage layer's RunConfig field
        assert config.storage_options == spec.storage_options


@pytest.mark.parametrize("text,expected", [
    ('input = "/i"\noutput = "/o"\nchunk_frame = 8\n', "unknown key 'chunk_frame' (did you "
                                                       "mean 'chunk_frames'?)"),
    ('input = "/i"\noutput = "/o"\n[resources]\ngpus = 1\n', "unknown key 'resources.gpus'"),
    ('input = "/i"\noutput = "/o"\nchunk_frames = "64"\n', "chunk_frames must be an integer"),
    ('input = "/i"\noutput = "/o"\nlossless = 1\n', "lossless must be true or false"),
    ('input = "/i"\noutput = "/o"\nworkers = true\n', "workers must be an integer"),
    ('input = "/i"\noutput = "/o"\n[resources]\ngpus_per_worker = "1"\n',
     "resources.gpus_per_worker must be a number"),
    ('input = "/i"\noutput = "/o"\n[resources]\ngpus_per_worker = 0\n',
     "gpus_per_worker must be > 0"),
    ('input = "/i"\noutput = "/o"\ncrf = 99\n', "crf must be between 0 and 63"),
    ('input = "/i"\noutput = "/o"\nstorage_options = "x"\n', "storage_options must be a table"),
    ('output = "/o"\n', "'input' is required"),
    ('input = "/i"\noutput = \n', "not valid TOML"),
])
def test_bad_specs_are_named(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_inconsistent_options_are_spec_errors(tmp_path):
    spec = load_spec(write(tmp_path, 'input = "/i"\noutput = "/o"\nlossless = true\n'
                                     'crf = 10\n'))
    with pytest.raises(SpecError, match="--lossless cannot be combined"):
        spec.to_run_config()
    spec = load_spec(write(tmp_path, 'input = "/i"\noutput = "/o"\noverlap = 1\n'
                                     'temporal_radius = 3\n'))
    with pytest.raises(SpecError, match="smaller than the temporal radius"):
        spec.to_run_config()


def test_spec_is_frozen():
    from pydantic import ValidationError

    spec = JobSpec(input="/i", output="/o")
    with pytest.raises(ValidationError, match="frozen"):
        spec.chunk_frames = 3  # type: ignore[misc]


def test_run_usage_errors(tmp_path, captured):
    runner = CliRunner()
    result = runner.invoke(cli, ["run"])
    assert result.exit_code == 2 and "--spec" in result.output
    result = runner.invoke(cli, ["run", "--spec", str(write(tmp_path, "input = 3\n"))])
    assert result.exit_code == 2 and "input must be a string" in result.output
    result = runner.invoke(cli, ["run", "--spec", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "not found" in result.output
    assert "config" not in captured


def test_submit_refuses_what_a_cluster_cannot_run(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    runner = CliRunner()
    relative = write(tmp_path, 'input = "videos"\noutput = "/out"\n')
    result = runner.invoke(cli, ["submit", str(relative), "--address", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "input must be absolute" in result.output
    bad = write(tmp_path, 'input = "/i"\noutput = "/o"\ncodec = 5\n', "bad.toml")
    result = runner.invoke(cli, ["submit", str(bad), "--address", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "codec must be a string" in result.output
    good = write(tmp_path, 'input = "/i"\noutput = "/o"\n', "good.toml")
    result = runner.invoke(cli, ["submit", str(good)])
    assert result.exit_code == 2 and "--address" in result.output

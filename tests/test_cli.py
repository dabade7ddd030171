"""The command line: help for every command, models, enhance-image, bench, exit codes."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nhance_batch.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def test_every_command_has_help(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 20, name
        sub = runner.invoke(cli, [name, "--help"])
        assert sub.exit_code == 0 and "Usage:" in sub.output, name


def test_models_lists_where_each_resolved(runner, models_dir):
    result = runner.invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {"iphone", "blackberry", "sony"}
    assert rows["iphone"]["default"] and rows["iphone"]["source"] == "env"
    assert Path(rows["sony"]["path"]).resolve() == (models_dir / "sony_orig").resolve()


def test_enhance_image_png_jpeg_and_side_by_side(runner, tmp_path, real_frame):
    src = tmp_path / "in.png"
    Image.fromarray(real_frame[:45, :63]).save(src)
    out = tmp_path / "out.png"
    result = runner.invoke(cli, ["enhance-image", str(src), str(out), "--model", "sony"])
    assert result.exit_code == 0, result.output
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.enhancer import Enhancer

    expected = Enhancer(ModelConfig(name="sony", batch_size=1))(real_frame[:45, :63])
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    both = tmp_path / "both.jpg"
    result = runner.invoke(cli, ["enhance-image", str(src), str(both), "--side-by-side"])
    assert result.exit_code == 0, result.output
    assert Image.open(both).size == (126, 45) and Image.open(both).format == "JPEG"


def test_enhance_image_strength(runner, tmp_path, real_frame):
    """--strength 0 gives back the input; 0.5 lies halfway to the full result."""
    src = tmp_path / "in.png"
    Image.fromarray(real_frame[:45, :63]).save(src)
    outputs = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"out{strength}.png"
        result = runner.invoke(cli, ["enhance-image", str(src), str(out), "--strength",
                                     strength])
        assert result.exit_code == 0, result.output
        outputs[strength] = np.asarray(Image.open(out)).astype(np.int32)
    np.testing.assert_array_equal(outputs["0"], real_frame[:45, :63])
    assert np.abs(outputs["0.5"] - (outputs["0"] + outputs["1"]) / 2).max() <= 1.0
    assert np.abs(outputs["1"] - outputs["0"]).max() > 20
    result = runner.invoke(cli, ["enhance-image", str(src), str(tmp_path / "o.png"),
                                 "--strength", "1.5"])
    assert result.exit_code == 2


def test_enhance_image_errors_exit_2(runner, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = runner.invoke(cli, ["enhance-image", str(text), str(tmp_path / "o.png")])
    assert result.exit_code == 2 and "not an image" in result.output
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    result = runner.invoke(cli, ["enhance-image", str(src), str(tmp_path / "o.gif")])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["enhance-image", str(src), str(tmp_path / "o.png"),
                                 "--model", "pixel"])
    assert result.exit_code == 2 and "unknown model 'pixel'" in result.output


def test_bench_json(runner):
    result = runner.invoke(cli, ["bench", "--size", "40x24", "--batch", "2", "--rounds", "1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model_gflops"] > 0 and report["matmul_gflops"] > 0
    assert report["ratio"] == pytest.approx(report["model_gflops"] / report["matmul_gflops"])
    assert runner.invoke(cli, ["bench", "--size", "big"]).exit_code == 2


def _option_rows(name):
    import click

    return {p.name: (tuple(p.opts), repr(p.default), p.type.name, p.envvar, p.is_flag, p.help)
            for p in cli.commands[name].params if isinstance(p, click.Option)}


def test_run_resume_and_plan_share_each_option():
    run, resume, plan = (_option_rows(n) for n in ("run", "resume", "plan"))
    job_control = {"executor", "manifest", "force", "keep_parts", "summary_json"}
    assert set(resume) == {"address", "workers", "max_retries", "threads", "gpus_per_worker",
                           "storage_options"} | job_control
    assert set(plan) - set(run) == {"gpus", "gpu_kind", "as_json", "no_calibrate",
                                    "recalibrate"}
    assert set(run) - set(plan) == {"spec_path", "dry_run", "address", "workers",
                                    "max_retries", "gpus_per_worker", "dashboard", "previews",
                                    "task_timeout", "strength", "strict"} | job_control
    for other in (resume, plan):
        for name in set(other) & set(run):
            assert other[name] == run[name], name  # names, defaults, types, help: one option


def test_every_job_setting_is_a_run_option():
    """The job settings are run_config's keywords; run offers each, and its other options
    (the job control) are no setting."""
    import inspect

    from nhance_batch.cli.options import job_values
    from nhance_batch.config import run_config

    run = _option_rows("run")
    keywords = set(inspect.signature(run_config).parameters) - {"input", "output"}
    assert set(job_values(dict.fromkeys(run))) == keywords
    assert {n for n in run if n not in keywords} == {
        "model_name", "spec_path", "dry_run", "executor", "manifest", "force", "keep_parts",
        "summary_json"}


def test_phone_footage_options_reach_the_config():
    from nhance_batch.cli.options import config_from_options

    default = config_from_options("in", "out", {})
    assert (default.encode.codec, default.encode.crf, default.encode.hdr) == ("match", None,
                                                                               "keep")
    assert (default.model.strength, default.strict) == (1.0, False)
    chosen = config_from_options("in", "out", {"codec": "auto", "hdr": "sdr", "strength": 0.25,
                                               "strict": True})
    assert (chosen.encode.codec, chosen.encode.hdr) == ("auto", "sdr")
    assert (chosen.model.strength, chosen.strict) == (0.25, True)


def test_the_options_module_lists_its_groups_truly():
    import re

    from nhance_batch.cli import options

    listed = dict(re.findall(r"^- ``(\w+)``: (.*)$", options.__doc__, re.M))
    assert listed
    for name, flags in listed.items():
        group = getattr(options, name)
        assert flags.split() == [o.decls[0] for o in group.options], name


def test_plan_reports_its_exit_code_instead_of_raising(tmp_path):
    from nhance_batch.cli.plan import report_plan
    from nhance_batch.config import run_config

    config = run_config(str(tmp_path / "no such folder"), str(tmp_path / "out"))
    assert report_plan(config, calibrate=False) == 2


def test_resume_without_a_readable_job_exits_2(runner, tmp_path):
    result = runner.invoke(cli, ["resume", str(tmp_path)])
    assert result.exit_code == 2 and "no job manifest" in result.output
    (tmp_path / "_nhance").mkdir()
    (tmp_path / "_nhance" / "manifest.parquet").write_bytes(b"not parquet at all")
    result = runner.invoke(cli, ["resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a readable Parquet manifest" in result.output

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

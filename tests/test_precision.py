"""16-bit compute against float32 on real footage, and --precision / --jit in enhance-image."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from nhance_batch.config import ModelConfig
from tests.conftest import SHARED


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _bikes_frames(indices=(0, 120)) -> np.ndarray:
    import av

    path = SHARED / "videos" / "bikes.mp4"
    wanted, out = set(indices), []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= max(indices):
                break
    assert len(out) == len(indices), f"{path} is shorter than {max(indices) + 1} frames"
    return np.stack(out)


@pytest.mark.slow
def test_bfloat16_is_within_45_db_of_float32_on_real_footage(models_dir):
    from nhance_batch.model.enhancer import Enhancer

    frames = _bikes_frames()  # 640x272 real footage
    outputs = {}
    for precision in ("float32", "bfloat16"):
        enhancer = Enhancer(ModelConfig(precision=precision, jit="off", batch_size=1))
        outputs[precision] = enhancer(frames)
    psnr = _psnr(outputs["float32"], outputs["bfloat16"])
    assert psnr >= 45.0, f"bfloat16 is {psnr:.1f} dB from float32"
    assert not np.array_equal(outputs["float32"], outputs["bfloat16"])  # it did run in 16 bits


@pytest.mark.parametrize("precision, jit", [("bfloat16", "off"), ("float32", "on")])
def test_enhance_image_precision_and_jit(tmp_path, models_dir, real_frame, precision, jit):
    from PIL import Image

    from nhance_batch.cli import cli
    from nhance_batch.model.enhancer import Enhancer

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(real_frame[:48, :64]).save(src)
    result = CliRunner().invoke(cli, ["enhance-image", str(src), str(dst), "--precision",
                                      precision, "--jit", jit])
    assert result.exit_code == 0, result.output
    path = "xla" if jit == "on" else "graph"
    assert f"{precision}, {path}" in result.output
    written = np.asarray(Image.open(dst).convert("RGB"))
    expected = Enhancer(ModelConfig(precision=precision, jit=jit, batch_size=1))(
        real_frame[:48, :64])
    np.testing.assert_array_equal(written, expected)


def test_enhance_image_refuses_an_unknown_precision(tmp_path, real_frame):
    from PIL import Image

    from nhance_batch.cli import cli

    src = tmp_path / "in.png"
    Image.fromarray(real_frame[:48, :64]).save(src)
    result = CliRunner().invoke(cli, ["enhance-image", str(src), str(tmp_path / "o.png"),
                                      "--precision", "int8"])
    assert result.exit_code == 2 and "int8" in result.output


# -- run and the job spec ------------------------------------------------------------------
def _clip(path):
    from tests.media.makemedia import make_video

    return make_video(path, width=64, height=48, frames=6)


def _run(args):
    from nhance_batch.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.mark.parametrize("precision, jit, path", [("bfloat16", "off", "graph"),
                                                  ("float32", "on", "xla")])
def test_run_precision_and_jit_reach_the_enhancer_and_are_recorded(tmp_path, models_dir,
                                                                   precision, jit, path):
    import json

    from nhance_batch.state.jobstate import read_manifest

    _clip(tmp_path / "in" / "a.mp4")
    summary = tmp_path / "summary.json"
    result = _run(["run", str(tmp_path / "in"), str(tmp_path / "out"), "--executor",
                   "sequential", "--precision", precision, "--jit", jit, "--lossless",
                   "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output
    enhancer = json.loads(summary.read_text())["enhancer"]
    assert enhancer["precision"] == precision and enhancer["jit"] == jit
    assert enhancer["shapes"]["64x48"]["path"] == path
    assert "enhancer:" in result.output and path in result.output
    manifest = read_manifest(str(tmp_path / "out" / "_nhance" / "manifest.parquet"))
    assert manifest.job["precision"] == precision
    assert manifest.runs[-1].enhancer["shapes"]["64x48"]["path"] == path
    assert manifest.runs[-1].enhancer["precision"] == precision


def test_run_with_bfloat16_differs_from_float32(tmp_path, models_dir):
    """The precision really changes the computation (lossless outputs differ slightly)."""
    import av

    _clip(tmp_path / "in" / "a.mp4")
    outs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        result = _run(["run", str(tmp_path / "in"), str(out), "--executor", "sequential",
                       "--precision", precision, "--jit", "off", "--lossless"])
        assert result.exit_code == 0, result.output
        with av.open(str(next(out.glob("a.*")))) as container:
            outs[precision] = np.stack([f.to_ndarray(format="rgb24")
                                        for f in container.decode(video=0)])
    assert not np.array_equal(outs["float32"], outs["bfloat16"])
    assert _psnr(outs["float32"], outs["bfloat16"]) > 40


def test_run_refuses_an_unknown_jit(tmp_path):
    result = _run(["run", str(tmp_path), str(tmp_path / "out"), "--jit", "maybe"])
    assert result.exit_code == 2 and "maybe" in result.output


def test_spec_precision_and_jit(tmp_path, models_dir):
    import json

    from nhance_batch.jobspec import SpecError, load_spec

    _clip(tmp_path / "in" / "a.mp4")
    spec = tmp_path / "job.toml"
    spec.write_text('input = "in"\noutput = "out"\nprecision = "bfloat16"\njit = "off"\n')
    config = load_spec(spec).to_run_config()
    assert (config.model.precision, config.model.jit) == ("bfloat16", "off")
    summary = tmp_path / "summary.json"
    result = _run(["run", "--spec", str(spec), "--executor", "sequential", "--summary-json",
                   str(summary)])
    assert result.exit_code == 0, result.output
    enhancer = json.loads(summary.read_text())["enhancer"]
    assert enhancer["precision"] == "bfloat16"
    assert enhancer["shapes"]["64x48"]["path"] == "graph"
    # the command line overrides the spec
    overridden = load_spec(spec).to_run_config(jit="on", precision="float32")
    assert (overridden.model.precision, overridden.model.jit) == ("float32", "on")
    bad = tmp_path / "bad.toml"
    bad.write_text('input = "in"\noutput = "out"\njit = "sometimes"\n')
    with pytest.raises(SpecError):
        load_spec(bad)

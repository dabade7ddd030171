"""A fine-tuned model in use (``models``, ``enhance-image``, ``run --model NAME``), a training
killed with SIGKILL and resumed, and training as a Ray actor (``--address``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--patch", "24", "--batch", "2", "--content", "none", "--val-fraction", "0.1"]


@pytest.fixture()
def tuned(pairs_dir, user_models) -> str:
    """A model fine-tuned for 3 steps into the user model folder."""
    from nhance_batch.cli import cli

    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(pairs_dir), "--name", "myphone",
                                      "--steps", "3", *SMALL])
    assert result.exit_code == 0, result.output
    assert "use it with --model myphone" in result.output
    return "myphone"


def test_user_model_is_listed_used_and_runs_a_video(tuned, user_models, models_dir, tmp_path):
    from nhance_batch.cli import cli
    from nhance_batch.model.checkpoint import read_checkpoint
    from tests.media.makemedia import make_video

    rows = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)
    mine = [r for r in rows if r["name"] == tuned]
    assert len(mine) == 1 and mine[0]["kind"] == "user" and mine[0]["source"] == "user"
    assert mine[0]["steps"] == 3 and mine[0]["base"] == "iphone"
    assert set(mine[0]["metrics"]) >= {"identity", "base", "finetuned"}
    text = CliRunner().invoke(cli, ["models"]).output
    assert tuned in text and "fine-tuned" in text

    # three steps changed the weights (so the outputs below are the fine-tuned model's)
    base = read_checkpoint(models_dir / "iphone_orig")
    mine_vars = read_checkpoint(user_models / tuned / tuned)
    assert any(not np.array_equal(base[k], mine_vars[k]) for k in base)

    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(src)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(cli, ["enhance-image", str(src), str(out), "--model", tuned])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out)).shape == (48, 64, 3)

    clip = make_video(tmp_path / "videos" / "clip.mp4", width=64, height=48, frames=6)
    env = {**os.environ, "NHANCE_USER_MODELS": str(user_models)}
    done = subprocess.run([sys.executable, "-m", "nhance_batch", "run", str(clip.parent),
                           str(tmp_path / "enhanced"), "--model", tuned, "--executor",
                           "sequential", "--summary-json", str(tmp_path / "s.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["videos"][0]["status"] == "done" and summary["videos"][0]["frames"] == 6
    assert (tmp_path / "enhanced" / "clip.mp4").is_file()


def _state_step(path: Path) -> int | None:
    from nhance_batch.finetune.state import TrainState

    try:
        return TrainState.from_bytes(path.read_bytes()).step
    except (OSError, ValueError):
        return None


def test_sigkill_then_resume_continues_from_the_saved_step(pairs_dir, user_models, tmp_path):
    from nhance_batch.finetune.losses import LossWeights
    from nhance_batch.finetune.train import FinetuneConfig, finetune
    from nhance_batch.model.checkpoint import read_checkpoint

    steps = ["--steps", "16", "--checkpoint-every", "4"]
    cmd = [sys.executable, "-m", "nhance_batch", "finetune", "--pairs", str(pairs_dir),
           "--name", "killed", *steps, *SMALL]
    env = {**os.environ, "NHANCE_USER_MODELS": str(user_models)}
    state = user_models / "killed" / "_train" / "state.npz"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not state.exists():
            time.sleep(0.05)
        assert state.exists(), f"no state was saved (rc {proc.poll()})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    saved = _state_step(state)
    assert saved is not None and 4 <= saved < 16 and saved % 4 == 0
    assert not (user_models / "killed" / "model.json").exists()

    # without --resume the unfinished run is not silently restarted
    refused = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    info = json.loads((user_models / "killed" / "model.json").read_text())
    assert info["steps"] == 16 and info["run_starts"] == [0, saved]
    assert not state.exists() and not state.parent.exists()

    # the resumed model is the one an uninterrupted run makes (same batches, same state)
    whole = finetune(FinetuneConfig(pairs=str(pairs_dir), name="whole", steps=16, batch=2,
                                    patch=24, content="none", val_fraction=0.1,
                                    weights=LossWeights(), out=str(tmp_path / "whole")))
    assert whole["steps"] == 16
    a = read_checkpoint(user_models / "killed" / "killed")
    b = read_checkpoint(tmp_path / "whole" / "whole")
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_address_trains_in_a_ray_actor_reading_and_writing_urls(pairs_dir, user_models,
                                                                tmp_path):
    out = tmp_path / "remote-out"
    env = {**os.environ, "NHANCE_USER_MODELS": str(user_models), "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "nhance_batch", "finetune", "--pairs", f"file://{pairs_dir}",
         "--name", "remote", "--steps", "2", *SMALL, "--out", f"file://{out}",
         "--address", "local", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads((out / "model.json").read_text())
    assert info["steps"] == 2 and info["data"]["pairs"] == f"file://{pairs_dir}"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("_")) == [
        "model.json", "remote.data-00000-of-00001", "remote.index"]
    printed = json.loads(done.stdout[done.stdout.index("{\n"):])
    assert printed["files"] == info["files"]
    assert printed["ray_actor"]["pid"] not in (os.getpid(), None)


def test_stop_saves_the_state_and_resume_finishes(pairs_dir, tmp_path):
    """What Ctrl-C does (the CLI's SIGINT handler sets ``stop``): save, stop, resume later."""
    from nhance_batch.finetune.state import load_state
    from nhance_batch.finetune.train import FinetuneConfig, FinetuneError, finetune

    config = FinetuneConfig(pairs=str(pairs_dir), name="stopped", steps=8, batch=2, patch=24,
                            content="none", checkpoint_every=100, out=str(tmp_path / "m"))
    seen = []
    stopped = finetune(config, seen.append, stop=lambda: len(seen) >= 2)
    assert stopped == {"stopped_at": 3} and seen[-1].checkpointed
    assert load_state(str(tmp_path / "m")).step == 3
    with pytest.raises(FinetuneError, match="--resume"):
        finetune(config)
    import dataclasses

    info = finetune(dataclasses.replace(config, resume=True))
    assert info["steps"] == 8 and info["run_starts"] == [0, 3]
    with pytest.raises(FinetuneError, match="nothing to resume"):
        finetune(dataclasses.replace(config, resume=True))

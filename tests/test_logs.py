"""Quiet by default, loud on request: the backend's and Ray's noise is hidden, our warnings
show once each, and ``-v`` shows everything again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nhance_batch import logs

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796590779.138352    7095 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results.",
    "I0000 00:00:1796590779.151518    7095 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796590788.388003    7095 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
]
KEPT = [
    "E0000 00:00:1796590788.388003    7095 bfc_allocator.cc:485] Allocator ran out of memory",
    "warning: clip.mp4: dropping data stream #2: no muxer support",
    "Traceback (most recent call last):",
]


@pytest.mark.parametrize("line", NOISE)
def test_backend_banners_are_noise(line):
    assert logs.is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_our_warnings_are_not(line):
    assert not logs.is_noise(line)


# a process that writes the backend's banners at the OS level, as TensorFlow's native code
# does, and two warnings of ours (one twice) and Ray's token notice through Python logging
SCRIPT = r"""
import logging, os, sys
from nhance_batch import logs
logs.configure()
with logs.native_noise_hidden():
    os.write(2, ({noise!r} + "\n").encode())
    os.write(2, b"native line that stays\n")
    print("python line that stays", file=sys.stderr)
log = logging.getLogger("nhance_batch.media.assemble")
log.warning("clip.mp4: dropping data stream #2")
log.warning("clip.mp4: dropping data stream #2")
log.warning("other.mp4: damaged packet at 3.2 s")
logging.getLogger("nhance_batch.model.autotune").info("autotune: graph/b1")
logging.getLogger("ray._private.authentication.authentication_token_setup").warning(
    "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled")
os.write(2, b"after the block\n")
"""


def _run(verbose: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("NHANCE_VERBOSE",
                                                            "TF_CPP_MIN_LOG_LEVEL")}
    if verbose:
        env["NHANCE_VERBOSE"] = "1"
    code = SCRIPT.format(noise="\n".join(NOISE))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stderr


def test_quiet_hides_noise_and_shows_each_warning_once():
    err = _run(verbose=False)
    for line in NOISE:
        assert line not in err
    assert "native line that stays" in err and "python line that stays" in err
    assert "after the block" in err  # stderr is back to normal afterwards
    assert err.count("warning: clip.mp4: dropping data stream #2") == 1
    assert "warning: other.mp4: damaged packet at 3.2 s" in err
    assert "Token authentication" not in err and "autotune: graph/b1" not in err


def test_verbose_shows_everything():
    err = _run(verbose=True)
    for line in NOISE:
        assert line in err
    assert "Token authentication is enabled" in err
    assert "info: nhance_batch.model.autotune: autotune: graph/b1" in err
    assert err.count("dropping data stream #2") == 2


def test_worker_env_carries_the_choice(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv(logs.VERBOSE_ENV, "0")
    assert logs.worker_env() == {logs.VERBOSE_ENV: "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    monkeypatch.setenv(logs.VERBOSE_ENV, "1")
    assert logs.worker_env() == {logs.VERBOSE_ENV: "1"}
    assert logs.ray_init_options()["logging_level"] < logs.logging.WARNING
    monkeypatch.setenv(logs.VERBOSE_ENV, "0")
    assert logs.ray_init_options()["logging_level"] == logs.logging.WARNING
    # the dashboard's address is in Ray's INFO line
    assert logs.ray_init_options(dashboard=True)["logging_level"] < logs.logging.WARNING


def test_the_cli_flag_sets_verbose(monkeypatch):
    from click.testing import CliRunner

    from nhance_batch.cli import cli

    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    try:
        assert CliRunner().invoke(cli, ["-v", "models", "--json"]).exit_code == 0
        assert logs.verbose()  # and its workers inherit it through the environment
        monkeypatch.setenv(logs.VERBOSE_ENV, "0")
        assert CliRunner().invoke(cli, ["models", "--json"]).exit_code == 0
        assert not logs.verbose()
    finally:
        logs.configure(False)


def test_a_ray_run_prints_no_backend_or_ray_noise(tmp_path):
    """End to end through the enhancer actor: its TensorFlow start-up happens in another
    process, whose output Ray forwards to the driver."""
    from tests.media.makemedia import make_video

    make_video(tmp_path / "in" / "a.mp4", width=32, height=24, frames=3)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "NHANCE_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    env["NHANCE_AUTOTUNE_S"] = "1"
    proc = subprocess.run([sys.executable, "-m", "nhance_batch", "run", str(tmp_path / "in"),
                           str(tmp_path / "out"), "--workers", "1"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 done, 0 failed" in proc.stderr  # the summary is there
    for noise in ("absl::InitializeLog", "oneDNN", "cuda drivers", "cuInit", "cpu_feature_guard",
                  "Started a local Ray instance", "Token authentication is enabled",
                  "retracing"):
        assert noise not in proc.stderr, noise

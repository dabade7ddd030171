"""Jobs whose input and output live in different stores: every URL is used with its own
store's options (protocol-keyed --storage-options), and a key that would escape OUTPUT fails
its video without writing outside it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from nhance_batch import storage
from nhance_batch.cli import cli
from nhance_batch.media import probe
from tests.media.makemedia import make_video
from tests.storage.conftest import gcs_options, s3_options

ARGS = ["--executor", "sequential", "--lossless", "--chunk-frames", "4", "--temporal-radius",
        "0"]


def bucket(scheme: str, options: dict) -> str:
    name = f"nhance-{uuid.uuid4().hex[:12]}"
    fs = storage.resolve(f"{scheme}://{name}", options)[0]
    fs.mkdir(name)
    fs.invalidate_cache()
    return f"{scheme}://{name}"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("cross") / "clip.mp4", width=64, height=48,
                      frames=7, gop=3, audio_tracks=1)


def run(inp: str, out: str, options: dict):
    result = CliRunner().invoke(cli, ["run", inp, out, *ARGS,
                                      "--storage-options", json.dumps(options)])
    return result


def fetch(url: str, options: dict, dest: Path) -> Path:
    storage.download(url, str(dest), options)
    return dest


def test_local_input_to_s3_output_with_a_custom_endpoint(s3_server, clip, tmp_path):
    s3 = s3_options(s3_server.proxy.url)
    out = bucket("s3", s3) + "/enhanced"
    options = {"s3": s3}
    result = run(str(clip), out, options)
    assert result.exit_code == 0, result.output
    got = fetch(f"{out}/clip.mp4", s3, tmp_path / "got.mp4")
    assert probe(got).frame_count == 7
    assert storage.exists(f"{out}/_nhance/manifest.parquet", s3)
    status = CliRunner().invoke(cli, ["status", out, "--json", "--storage-options",
                                      json.dumps(options)])
    assert json.loads(status.output)["videos"][0]["status"] == "done"


def test_s3_input_to_local_output(s3_server, clip, tmp_path):
    s3 = s3_options(s3_server.proxy.url)
    inp = bucket("s3", s3) + "/in"
    storage.write_bytes(f"{inp}/trip/clip.mp4", clip.read_bytes(), s3)
    result = run(inp, str(tmp_path / "out"), {"s3": s3})
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "out" / "trip" / "clip.mp4").frame_count == 7


def test_gcs_input_to_s3_output(s3_server, gcs_server, clip, tmp_path):
    s3 = s3_options(s3_server.proxy.url)
    gs = gcs_options(gcs_server.proxy.url)
    inp = bucket("gs", gs) + "/in"
    out = bucket("s3", s3) + "/out"
    storage.write_bytes(f"{inp}/clip.mp4", clip.read_bytes(), gs)
    result = run(inp, out, {"gs": gs, "s3": s3})
    assert result.exit_code == 0, result.output
    assert probe(fetch(f"{out}/clip.mp4", s3, tmp_path / "got.mp4")).frame_count == 7


def test_a_key_with_dotdot_fails_its_video_and_writes_nothing_outside(s3_server, clip,
                                                                      tmp_path):
    s3 = s3_options(s3_server.proxy.url)
    inp = bucket("s3", s3) + "/in"
    storage.write_bytes(f"{inp}/good.mp4", clip.read_bytes(), s3)
    fs, root = storage.resolve(inp, s3)
    fs.pipe_file(f"{root}/a/../../escape.mp4", clip.read_bytes())  # a literal key
    fs.invalidate_cache()
    listed = [v.relative for v in storage.list_videos(inp, s3)]
    assert any(".." in r for r in listed), listed  # the store really lists such a key
    sandbox = tmp_path / "sandbox"
    out = sandbox / "deep" / "out"
    out.mkdir(parents=True)
    result = run(inp, str(out), {"s3": s3})
    assert result.exit_code == 1, result.output
    status = json.loads(CliRunner().invoke(cli, ["status", str(out), "--json"]).output)
    by_status = {v["status"]: v for v in status["videos"]}
    assert by_status["done"]["output"].endswith("good.mp4")
    assert "'..'" in by_status["failed"]["error"] and "inside OUTPUT" in by_status["failed"]["error"]
    outside = [p for p in sandbox.rglob("*") if p.is_file() and out not in p.parents]
    assert outside == []

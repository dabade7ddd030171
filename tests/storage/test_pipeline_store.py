"""Whole jobs over S3, GCS and Azure emulators: inputs, parts, outputs and the manifest all in
the store; a SIGKILLed run resumes from the manifest in the store; a store that fails requests
mid-run still ends with verified outputs and no partial final objects; credentials never show
up in logs, the manifest or status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nhance_batch import storage
from nhance_batch.state.manifest import DONE
from nhance_batch.state.jobstate import read_manifest
from tests.media.makemedia import make_video
from tests.pipeline.conftest import assert_plays_like

# A secret for another store, passed along in the same options: it must never be shown.
DECOY_SECRET = "decoy-secret-Zq8Xw2"


def _all_options(store) -> dict:
    scheme = {"s3": "s3", "gcs": "gs", "azure": "az"}[store.name]
    other = "gs" if scheme == "s3" else "s3"
    return {scheme: store.storage_options, other: {"key": "decoy-id", "secret": DECOY_SECRET}}


def _secrets(store) -> list[str]:
    found = storage.secret_values(store.storage_options) + [DECOY_SECRET]
    return [s for s in found if len(s) >= 6]


@pytest.fixture(scope="module")
def local_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store_clips")
    return {
        "trip/audio.mp4": make_video(folder / "audio.mp4", width=64, height=48, frames=24,
                                     gop=6, audio_tracks=1),
        "plain.mov": make_video(folder / "plain.mov", width=64, height=48, frames=8, gop=4),
    }


def test_job_in_a_store_resumes_after_sigkill_and_survives_a_flaky_store(store, local_clips,
                                                                          tmp_path):
    for relative, path in local_clips.items():
        store.put(f"in/{relative}", path.read_bytes())
    store.put("in/broken/notes.mp4", b"not a video at all\n")
    store.put("in/readme.txt", b"ignored: not a video name")
    options = _all_options(store)
    inp, out = store.key("in"), store.key("out")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(NHANCE_MANIFEST_SAVE_S="0", NHANCE_JOURNAL_FLUSH_S="0",
               NHANCE_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "nhance_batch", "run", inp, out, "--lossless",
               "--chunk-frames", "4", "--overlap", "1", "--temporal-radius", "1",
               "--workers", "1", "--storage-options", json.dumps(options)]
    manifest_url = f"{out}/_nhance/manifest.parquet"

    # run 1: killed once a chunk is committed in the store's manifest
    log1 = open(tmp_path / "run1.log", "w")
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=log1, stderr=log1)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                manifest = read_manifest(manifest_url, store.storage_options)
            except Exception:  # noqa: BLE001 - mid-upload or not yet there
                manifest = None
            done = sum(c.status == DONE for v in (manifest.videos if manifest else [])
                       for c in v.chunks)
            if done >= 1:  # at once: an idle machine finishes a small video within a poll
                break
            assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
            time.sleep(0.1)
        else:
            pytest.fail("no chunk committed within 300 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log1.close()
    first = read_manifest(manifest_url, store.storage_options)
    committed = {(v.relative, c.index) for v in first.videos for c in v.chunks
                 if c.status == DONE}
    assert committed

    # run 2 (at once: the killed driver is provably dead): the store fails requests for a
    # while in the middle of the run
    failed_before = store.proxy.requests_failed

    def flaky():  # once run 2 has opened the job, the store answers 503 for a while
        # (not later, at its first commit: on an idle machine the few chunks left can all be
        # done before a poll sees that commit, and the store would never fail a request)
        end = time.monotonic() + 240
        while time.monotonic() < end:
            try:
                manifest = read_manifest(manifest_url, store.storage_options)
                if any(r.run == 2 for r in manifest.runs):
                    break
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.2)
        store.proxy.fail(503, count=5)
        while store.proxy.requests_failed < failed_before + 5 and time.monotonic() < end:
            time.sleep(0.1)
        store.proxy.heal()

    threading.Thread(target=flaky, daemon=True).start()
    summary_path = tmp_path / "summary.json"
    rerun = subprocess.run(command + ["--summary-json", str(summary_path)], env=env,
                           capture_output=True, text=True, timeout=600)
    (tmp_path / "run2.log").write_text(rerun.stdout + rerun.stderr)
    assert rerun.returncode == 1, rerun.stderr[-3000:]  # the broken file fails, the rest works
    summary = json.loads(summary_path.read_text())
    assert summary["run"] == 2
    assert store.proxy.requests_failed >= failed_before + 1  # the store did fail requests
    statuses = {Path(v["input"]).name: v["status"] for v in summary["videos"]}
    finished_in_run_1 = {Path(v.input).name for v in first.videos if v.status == DONE}
    expected = {"audio.mp4": "done", "plain.mov": "done", "notes.mp4": "failed"}
    assert statuses == {k: v for k, v in expected.items() if k not in finished_in_run_1}
    assert "audio.mp4" in statuses  # the killed run had not finished it
    total = sum(len(v.chunks) for v in first.videos)
    # chunks committed by the killed run are skipped (those of videos it finished are untouched)
    done_in_run_1 = {v.relative for v in first.videos if v.status == DONE}
    assert summary["chunks_skipped"] == len({(r, i) for r, i in committed
                                             if r not in done_in_run_1})

    status = subprocess.run([sys.executable, "-m", "nhance_batch", "status", out, "--json",
                             "--storage-options", json.dumps(options)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    runs = {(Path(v["input"]).name, c["index"]): c["run"] for v in report["videos"]
            for c in v["chunks"]}
    assert {k for k, r in runs.items() if r == 1} == {(Path(rel).name, i)
                                                      for rel, i in committed}

    # verified outputs, mirrored keys, no partial or stray final objects
    fs = store.fs()
    fs.invalidate_cache()
    keys = sorted(k.split("/out/", 1)[1] for k in fs.find(f"{store.bucket}/out"))
    finals = [k for k in keys if not k.startswith("_nhance/")]
    assert finals == ["plain.mkv", "trip/audio.mp4"], keys  # FFV1 cannot go in MOV: Matroska
    assert not [k for k in keys if k.startswith("_nhance/parts/")], keys
    for relative, local in local_clips.items():
        name = relative if relative.endswith(".mp4") else relative.replace(".mov", ".mkv")
        copy = tmp_path / "check" / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(fs.cat_file(f"{store.bucket}/out/{name}"))
        assert_plays_like(local, copy)
    assert total >= 7

    # no credential anywhere: logs, manifest, status
    manifest_bytes = fs.cat_file(f"{store.bucket}/out/_nhance/manifest.parquet")
    texts = [(tmp_path / "run1.log").read_text(), (tmp_path / "run2.log").read_text(),
             status.stdout + status.stderr, summary_path.read_text()]
    for secret in _secrets(store):
        assert secret.encode() not in manifest_bytes
        for text in texts:
            assert secret not in text

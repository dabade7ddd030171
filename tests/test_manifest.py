"""The Parquet manifest: round trip, plain-Parquet readability, atomic saves, status summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from nhance_batch.state import manifest as mf
from nhance_batch.state.manifest import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SCHEMA,
    SCHEMA_VERSION,
    ChunkRecord,
    Manifest,
    ManifestError,
    RunRecord,
    VideoRecord,
    load_manifest,
    save_manifest,
)
from nhance_batch.state.status import summarize

REPO = Path(__file__).resolve().parents[1]
JOB = {
    "model": "iphone",
    "chunk_frames": 64,
    "overlap": 4,
    "encoding": {"codec": "libx264", "crf": 18},
    "temporal_radius": 2,
}


def sample_manifest() -> Manifest:
    """Three videos: one failed before planning, one part done, one pending; two runs."""
    m = Manifest(job=JOB, videos=[], runs=[])
    m.videos.append(
        VideoRecord(
            input="/in/broken.mp4", relative="broken.mp4", status=FAILED,
            error="no video stream", size=12,
        )
    )
    m.videos.append(
        VideoRecord(
            input="/in/a/clip.mkv",
            relative="a/clip.mkv",
            output="/out/a/clip.mkv",
            fingerprint="sha256:abc",
            size=123_456_789_012,
            status=RUNNING,
            note="rotated 90",
            frames=20,
            chunk_frames=10,
            overlap=2,
            chunks=[
                ChunkRecord(
                    index=0, start=0, end=10, ctx_start=0, ctx_end=12,
                    status=DONE, run=1, attempts=1,
                    part="_nhance/parts/a/clip.mkv/0000.mkv", part_bytes=4096, part_sha256="f" * 64,
                    decode_s=0.5, enhance_s=3.25, encode_s=0.125,
                    gains_before=[1.0, 0.5, 2.0] * 10, gains_after=[1.0] * 30,
                ),
                ChunkRecord(
                    index=1, start=10, end=20, ctx_start=8, ctx_end=20, attempts=2, error="OOM"
                ),
            ],
        )
    )
    m.videos.append(VideoRecord(input="/in/b.mp4", relative="b.mp4", frames=7))
    m.runs.append(
        RunRecord(
            run=1, started="2026-01-01T00:00:00+00:00", finished="2026-01-01T00:01:00+00:00",
            host="h", pid=1, status=FAILED,
        )
    )
    m.runs.append(RunRecord(run=2, started="2026-01-01T01:00:00+00:00", host="h", pid=2))
    return m


def big_manifest(tag: str, videos: int = 150) -> Manifest:
    """A manifest large enough that a save takes a while; deterministic per ``tag``."""
    seed = sum(map(ord, tag))
    first = RunRecord(run=1, started="2026-01-01T00:00:00+00:00")
    m = Manifest(job={**JOB, "tag": tag}, videos=[], runs=[first])
    for v in range(videos):
        chunks = [
            ChunkRecord(
                index=c, start=c * 30, end=c * 30 + 30,
                ctx_start=max(0, c * 30 - 2), ctx_end=c * 30 + 32,
                status=DONE if (v + c + seed) % 3 else PENDING, run=1, attempts=1,
                gains_before=[
                    ((seed * 7919 + v * 104729 + c * 31 + k) % 1000003) / 1000.0 for k in range(90)
                ],
            )
            for c in range(10)
        ]
        m.videos.append(
            VideoRecord(input=f"/in/{tag}/{v}.mp4", relative=f"{v}.mp4", frames=300, chunks=chunks)
        )
    return m


def test_round_trip(tmp_path: Path) -> None:
    m = sample_manifest()
    path = str(tmp_path / "_nhance" / "manifest.parquet")
    save_manifest(m, path)
    back = load_manifest(path)
    assert back == m
    assert back is not None and back.videos[0].chunks == []
    pending = back.videos[1].chunks[1]
    assert pending.decode_s is None and pending.gains_before is None
    assert back.videos[1].chunks[0].gains_before == [1.0, 0.5, 2.0] * 10
    assert back.video("a/clip.mkv") is back.videos[1]
    assert back.video("nope.mp4") is None
    # JSON round trip of the job: tuples come back as lists
    m.job = {"size": (1, 2)}
    save_manifest(m, path)
    assert load_manifest(path).job == {"size": [1, 2]}  # type: ignore[union-attr]


def test_video_lookup_follows_list_changes() -> None:
    m = sample_manifest()
    assert m.video("b.mp4") is m.videos[2]
    m.videos.insert(0, VideoRecord(input="/in/c.mp4", relative="c.mp4"))
    assert m.video("b.mp4") is m.videos[3]
    assert m.video("c.mp4") is m.videos[0]
    m.videos.insert(1, VideoRecord(input="/in/d.mp4", relative="d.mp4"))
    assert m.video("d.mp4") is m.videos[1]  # a miss after an insert rebuilds the index
    del m.videos[0]
    assert m.video("c.mp4") is None and m.video("d.mp4") is m.videos[0]
    m.videos = list(reversed(m.videos))
    assert [m.video(v.relative) for v in m.videos] == m.videos
    # The driver's pattern: look up, append on a miss; stays linear for many videos
    m = Manifest(job={}, videos=[], runs=[])
    for k in range(20_000):
        assert m.video(f"{k}.mp4") is None
        m.videos.append(VideoRecord(input=f"/in/{k}.mp4", relative=f"{k}.mp4"))
    assert m.video("123.mp4") is m.videos[123] and m.video("19999.mp4") is m.videos[-1]


def test_plain_parquet_readable(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    save_manifest(sample_manifest(), str(path))
    table = pq.read_table(path)
    assert table.num_rows == 3
    assert table.column_names == [
        "input", "relative", "output", "fingerprint", "size", "status", "error", "note",
        "frames", "chunk_frames", "overlap", "run", "seconds", "added_flicker", "model_flicker",
        "output_bytes", "output_name", "preview", "metrics", "output_codec", "chunks",
    ]
    assert table.schema.remove_metadata().equals(SCHEMA)
    assert str(table.schema.field("size").type) == "int64"
    chunk_type = table.schema.field("chunks").type.value_type
    assert str(chunk_type.field("gains_before").type) == "list<element: double>"
    assert str(chunk_type.field("enhance_s").type) == "double"
    meta = table.schema.metadata
    assert json.loads(meta[b"nhance.job"]) == JOB
    assert [r["run"] for r in json.loads(meta[b"nhance.runs"])] == [1, 2]
    assert int(meta[b"nhance.schema_version"]) == SCHEMA_VERSION
    rows = table.to_pylist()
    assert rows[1]["chunks"][0]["enhance_s"] == 3.25 and rows[0]["chunks"] == []
    info = pq.ParquetFile(path).metadata.row_group(0).column(0)
    assert info.compression in ("ZSTD", "SNAPPY")


def test_fsspec_memory_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    path = "/nhance-test-out/_nhance/manifest.parquet"
    try:
        assert load_manifest(path, fs) is None
        save_manifest(sample_manifest(), path, fs)
        assert load_manifest(path, fs) == sample_manifest()
        assert fs.ls("/nhance-test-out/_nhance", detail=False) == [path]  # no temp objects
    finally:
        fs.rm("/nhance-test-out", recursive=True)


def test_absent_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    assert load_manifest(str(path)) is None
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(ManifestError, match=str(path)):
        load_manifest(str(path))
    # Valid Parquet that is not an nhance manifest
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(ManifestError, match="not an nhance manifest"):
        load_manifest(str(path))
    # A newer schema version is refused rather than misread
    table = sample_manifest().to_table()
    meta = dict(table.schema.metadata)
    meta[b"nhance.schema_version"] = str(SCHEMA_VERSION + 1).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(ManifestError, match="newer"):
        load_manifest(str(path))


def test_new_run_numbering() -> None:
    m = Manifest(job={}, videos=[], runs=[])
    r1 = m.new_run("host-a", 11)
    r2 = m.new_run("host-b", 22)
    assert (r1.run, r2.run) == (1, 2)
    assert m.runs == [r1, r2] and r2.host == "host-b" and r2.pid == 22 and r2.status == RUNNING
    started = datetime.fromisoformat(r1.started)
    assert started.utcoffset() == timedelta(0)
    assert abs((datetime.now(timezone.utc) - started).total_seconds()) < 5
    m.runs.append(RunRecord(run=7, started=r1.started))
    assert m.new_run("h", 1).run == 8


def test_failed_write_keeps_old_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifest.parquet"
    old = sample_manifest()
    save_manifest(old, str(path))
    new = big_manifest("new")
    real = mf._to_parquet

    def half_then_crash(manifest: Manifest, sink: object) -> None:
        import io

        buf = io.BytesIO()
        real(manifest, buf)
        sink.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(mf, "_to_parquet", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_manifest(new, str(path))
    assert load_manifest(str(path)) == old
    assert os.listdir(tmp_path) == ["manifest.parquet"]  # the temp file was removed

    monkeypatch.setattr(mf, "_to_parquet", real)

    def no_rename(src: str, dst: str) -> None:
        raise OSError("crash before rename")

    monkeypatch.setattr(mf.os, "replace", no_rename)
    with pytest.raises(OSError, match="before rename"):
        save_manifest(new, str(path))
    assert load_manifest(str(path)) == old
    assert os.listdir(tmp_path) == ["manifest.parquet"]


def test_temp_litter_is_ignored_and_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    old = sample_manifest()
    save_manifest(old, str(path))
    # What a SIGKILL mid-save leaves: a half-written temp beside the manifest
    stale = tmp_path / "manifest.parquet.tmp-deadbeef"
    stale.write_bytes(path.read_bytes()[:100])
    fresh = tmp_path / "manifest.parquet.tmp-cafe"
    fresh.write_bytes(b"in flight")
    assert load_manifest(str(path)) == old
    long_ago = time.time() - 3600
    os.utime(stale, (long_ago, long_ago))
    save_manifest(old, str(path))
    assert sorted(os.listdir(tmp_path)) == ["manifest.parquet", "manifest.parquet.tmp-cafe"]


_CHILD = """
import sys
sys.path.insert(0, {repo!r})
from nhance_batch.state.manifest import load_manifest, save_manifest
path, a_path, b_path = sys.argv[1:]
a, b = load_manifest(a_path), load_manifest(b_path)
save_manifest(a, path)
print("ready", flush=True)
while True:
    save_manifest(b, path)
    save_manifest(a, path)
"""


def test_sigkill_mid_save_leaves_old_or_new(tmp_path: Path) -> None:
    """A child saves two big manifests in turn until SIGKILLed; the file is always one of them."""
    out, src = tmp_path / "out", tmp_path / "src"
    out.mkdir()
    src.mkdir()
    path = out / "manifest.parquet"
    expected = {"a": big_manifest("a"), "b": big_manifest("b")}
    for tag, m in expected.items():
        save_manifest(m, str(src / f"{tag}.parquet"))
    script = _CHILD.format(repo=str(REPO))
    for delay in (0.05, 0.17):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(path), *(str(src / f"{t}.parquet") for t in "ab")],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
            time.sleep(delay)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        loaded = load_manifest(str(path))  # litter beside it (if any) is never mistaken for it
        assert loaded is not None
        assert loaded == expected[loaded.job["tag"]]
    assert all(n == "manifest.parquet" or ".tmp-" in n for n in os.listdir(out))


def test_summarize_for_status() -> None:
    m = sample_manifest()
    t0 = datetime(2026, 1, 1, 1, 0, 0, tzinfo=timezone.utc)
    # Run 2 has done nothing yet: no rate measured
    s = summarize(m, now=t0 + timedelta(seconds=10))
    assert s["eta_seconds"] is None
    assert s["progress"] == {
        "videos_total": 3, "videos_done": 0, "videos_failed": 1, "frames_total": 27,
        "frames_done": 10, "chunks_total": 2, "chunks_done": 1,
    }
    v = s["videos"][1]
    assert {key: value for key, value in v.items() if key != "chunks"} == {
        "input": "/in/a/clip.mkv", "output": "/out/a/clip.mkv", "status": RUNNING,
        "error": None, "frames": 20, "note": "rotated 90", "chunks_done": 1, "chunks_total": 2,
        "added_flicker": None,
        "metrics": None,
        "preview": None,
        "output_codec": None,
        "size_ratio": None,
    }
    assert v["chunks"] == [
        {"index": 0, "status": DONE, "run": 1, "attempts": 1, "error": None},
        {"index": 1, "status": PENDING, "run": None, "attempts": 2, "error": "OOM"},
    ]
    assert s["videos"][0]["chunks"] == [] and s["videos"][0]["error"] == "no video stream"
    assert s["runs"] == [
        {
            "run": 1, "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:01:00+00:00", "status": FAILED, "enhancer_busy": None,
        },
        {"run": 2, "started": "2026-01-01T01:00:00+00:00", "finished": None, "status": RUNNING,
         "enhancer_busy": None},
    ]
    json.dumps(s)

    # Run 2 commits chunk 1 (10 frames) in 20 s: 0.5 frame/s; 7 frames of b.mp4 remain
    m.videos[1].chunks[1].status, m.videos[1].chunks[1].run = DONE, 2
    s = summarize(m, now=t0 + timedelta(seconds=20))
    assert s["progress"]["frames_done"] == 20 and s["progress"]["chunks_done"] == 2
    assert s["eta_seconds"] == pytest.approx(14.0)
    # A finished run is measured to its finish, not to now
    m.runs[1].finished = (t0 + timedelta(seconds=10)).isoformat()
    s = summarize(m, now=t0 + timedelta(hours=5))
    assert s["eta_seconds"] == pytest.approx(7.0)
    # Nothing left to do
    m.videos[1].status = DONE
    m.videos[2].status = DONE
    s = summarize(m)
    assert s["eta_seconds"] == 0.0 and s["progress"]["videos_done"] == 2


def test_status_gives_each_videos_codec_and_size_ratio() -> None:
    m = sample_manifest()
    m.videos[0].output_codec, m.videos[0].size, m.videos[0].output_bytes = "libx265", 400, 100
    entry = summarize(m)["videos"][0]
    assert (entry["output_codec"], entry["size_ratio"]) == ("libx265", 0.25)

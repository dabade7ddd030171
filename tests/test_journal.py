"""The job state's journal: chunk commits are records, not manifest rewrites; readers see them;
compaction folds them in exactly once; a torn last line is ignored."""

from __future__ import annotations

import os

import numpy as np

from nhance_batch.state.jobstate import JobState, read_manifest
from nhance_batch.state.journal import Journal, replay
from nhance_batch.state.layout import JobLayout
from nhance_batch.state.manifest import DONE, ChunkRecord, Gains, VideoRecord, load_manifest

SETTINGS = {"model": "iphone", "chunk_frames": 2}


def planned(relative: str, chunks: int = 3) -> VideoRecord:
    return VideoRecord(input=f"/in/{relative}", relative=relative, frames=2 * chunks,
                       chunks=[ChunkRecord(i, 2 * i, 2 * i + 2, 2 * i, 2 * i + 2)
                               for i in range(chunks)])


def commit(state: JobState, video: VideoRecord, index: int) -> None:
    chunk = video.chunks[index]
    chunk.status, chunk.run = DONE, 1
    chunk.gains_before = Gains(np.linspace(0, 1, 6) + index)
    chunk.gains_after = Gains(np.full(6, 0.1 * index))
    state.chunk_committed(video, chunk)


def test_commits_reach_readers_without_rewriting_the_manifest(tmp_path):
    layout = JobLayout.create("/in", str(tmp_path / "out"))
    state = JobState.open(layout, SETTINGS)
    video = planned("a.mp4")
    state.manifest.videos.append(video)
    state.video_changed(video)
    state.flush(compact=True)
    manifest_file = tmp_path / "out" / "_nhance" / "manifest.parquet"
    stamp = os.stat(manifest_file).st_mtime_ns
    for i in range(3):
        commit(state, video, i)
    state.flush()
    assert os.stat(manifest_file).st_mtime_ns == stamp  # no rewrite
    assert [c.status for c in load_manifest(str(manifest_file)).videos[0].chunks] == \
        ["pending"] * 3  # the Parquet file alone is behind ...
    seen = read_manifest(layout.manifest)  # ... the journal brings readers up to date
    assert [c.status for c in seen.videos[0].chunks] == [DONE] * 3
    assert seen.videos[0].chunks[2].gains_before == (np.linspace(0, 1, 6) + 2).tolist()
    assert seen == state.manifest


def test_compaction_folds_once_and_prunes(tmp_path):
    layout = JobLayout.create("/in", str(tmp_path / "out"))
    state = JobState.open(layout, SETTINGS)
    video = planned("a.mp4")
    state.manifest.videos.append(video)
    state.video_changed(video)
    commit(state, video, 0)
    state.flush(compact=True)
    journal = tmp_path / "out" / "_nhance" / "journal"
    assert list(journal.iterdir()) == []  # folded and removed
    back = read_manifest(layout.manifest)
    assert back.journal_segment >= 1 and back.videos[0].chunks[0].status == DONE
    # a segment folded into the manifest but left behind (a crash before pruning) is skipped
    stale = Journal(layout.journal_dir, {}, start_segment=1)
    stale.segment = back.journal_segment
    video.chunks[0].status = "failed"
    stale.chunk("a.mp4", video.chunks[0])
    stale.flush()
    assert read_manifest(layout.manifest).videos[0].chunks[0].status == DONE


def test_a_killed_writer_leaves_readable_records(tmp_path):
    layout = JobLayout.create("/in", str(tmp_path / "out"))
    state = JobState.open(layout, SETTINGS)
    video = planned("b.mp4")
    state.manifest.videos.append(video)
    state.video_changed(video)
    state.flush(compact=True)
    commit(state, video, 1)
    state.flush()
    segment = next((tmp_path / "out" / "_nhance" / "journal").iterdir())
    with open(segment, "ab") as f:
        f.write(b'{"t": "c", "rel": "b.mp4", "chunk": {"index": 2, "sta')  # torn last line
    back = read_manifest(layout.manifest)
    assert [c.status for c in back.videos[0].chunks] == ["pending", DONE, "pending"]
    # a new driver starts its own segment past the killed one's, then folds both in
    again = JobState.open(layout, SETTINGS)
    assert again.journal.segment > int(segment.name[4:12])
    again.flush(compact=True)
    assert [c.status for c in load_manifest(layout.manifest).videos[0].chunks] == \
        ["pending", DONE, "pending"]


def test_replay_of_a_video_record_without_chunks_keeps_them(tmp_path):
    layout = JobLayout.create("/in", str(tmp_path / "out"))
    state = JobState.open(layout, SETTINGS)
    video = planned("c.mp4", chunks=2)
    state.manifest.videos.append(video)
    state.video_changed(video)
    state.flush(compact=True)
    commit(state, video, 0)
    commit(state, video, 1)
    video.status, video.output = DONE, "/out/c.mp4"
    state.video_changed(video, chunks=False)
    state.flush()
    back = load_manifest(layout.manifest)
    assert replay(back, layout.journal_dir) == 3
    assert back.videos[0].status == DONE and back.videos[0].output == "/out/c.mp4"
    assert [c.status for c in back.videos[0].chunks] == [DONE, DONE]

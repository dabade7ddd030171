"""A kill -9 of the server mid-job, then a restart: the job completes from its manifest and
only the chunks that were not committed are computed again."""

from __future__ import annotations

import pytest

from tests.web.conftest import done_chunks, upload, wait_chunks, wait_state

pytestmark = pytest.mark.slow


def test_kill_9_mid_job_then_restart_resumes(serve, web_clips, tmp_path):
    data = tmp_path / "data"
    first = serve(data=data)
    with first.client() as client:
        job_id = upload(client, web_clips["long"], chunk_frames=4).json()["id"]
        queued = upload(client, web_clips["short"], chunk_frames=12).json()["id"]
        doc = wait_chunks(client, job_id, 2)
        first.kill()
    committed = {c["index"] for c in doc["status"]["videos"][0]["chunks"]
                 if c["status"] == "done"}
    total = len(doc["status"]["videos"][0]["chunks"])
    assert doc["state"] == "running" and 2 <= len(committed) < total

    second = serve(data=data)
    with second.client() as client:
        doc = wait_state(client, job_id, ("done", "failed", "cancelled"))
        assert doc["state"] == "done", doc
        chunks = doc["status"]["videos"][0]["chunks"]
        assert len(chunks) == total and all(c["status"] == "done" for c in chunks)
        runs = {c["index"]: c["run"] for c in chunks}
        # everything committed before the kill stayed from run 1; the rest is run 2's work
        assert {i for i, run in runs.items() if run == 1} >= committed
        assert {run for run in runs.values()} == {1, 2}
        assert [r["run"] for r in doc["status"]["runs"]] == [1, 2]
        # the job that was still queued ran after it
        other = wait_state(client, queued, ("done", "failed"))
        assert other["state"] == "done" and done_chunks(other) == 2
        assert other["status"]["runs"][0]["run"] == 1

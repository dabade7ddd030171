"""The web API over HTTP, against ``nhance-batch serve`` running for real on loopback."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.web.conftest import TOKEN, read_events, upload, wait_chunks, wait_state

pytestmark = pytest.mark.slow


def _decode(path: Path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    return [p for p, _ in frames], np.stack([f for _, f in frames])


def test_upload_runs_to_done_and_downloads(serve, web_clips, tmp_path):
    """Upload a good clip beside a broken one: the events stream delivers ``done``, the good
    video's output downloads with every frame and timestamp, the broken one fails with its
    error while the other finishes."""
    server = serve()
    with server.client() as client:
        response = upload(client, web_clips["short"], web_clips["broken"], chunk_frames=8,
                          temporal_radius=2, crf=20)
        assert response.status_code == 201, response.text
        doc = response.json()
        assert set(doc) == {"id", "state", "created", "settings", "error", "status"}
        assert doc["state"] in ("queued", "running")
        assert doc["settings"]["chunk_frames"] == 8 and doc["settings"]["crf"] == 20
        job_id = doc["id"]

        events = read_events(client, job_id,
                             until=lambda d: d["state"] in ("done", "failed", "cancelled"))
        final = events[-1][1]
        assert final["state"] == "done", final
        ids = [int(i) for i, _ in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {d["state"] for _, d in events} >= {"running", "done"}

        videos = final["status"]["videos"]
        by_name = {Path(v["input"]).name: (i, v) for i, v in enumerate(videos)}
        assert set(by_name) == {"short.mp4", "broken.mp4"}
        bi, broken = by_name["broken.mp4"]
        assert broken["status"] == "failed" and broken["error"]
        assert "1 of 2 videos failed" in final["error"]
        gi, good = by_name["short.mp4"]
        assert good["status"] == "done" and good["chunks_done"] == good["chunks_total"] == 3

        # the CLI sees the same job folder
        assert (server.data / "jobs" / job_id / "output" / "_nhance").is_dir()
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == final["status"]

        got = client.get(f"/api/jobs/{job_id}/videos/{gi}/output?download=true")
        assert got.status_code == 200
        assert got.headers["content-disposition"].startswith("attachment")
        downloaded = tmp_path / "downloaded.mp4"
        downloaded.write_bytes(got.content)
        assert got.content == Path(good["output"]).read_bytes()
        src_pts, src = _decode(web_clips["short"])
        out_pts, out = _decode(downloaded)
        assert out_pts == src_pts and out.shape == src.shape
        # enhanced, not a copy: the frames differ from the source but show the same picture
        diff = np.abs(out.astype(int) - src.astype(int)).mean()
        assert diff > 2.0
        # every output frame is the enhanced version of the source frame at its index
        flat_out = out.reshape(len(out), -1).astype(float)
        flat_src = src.reshape(len(src), -1).astype(float)
        corr = np.corrcoef(np.concatenate([flat_out, flat_src]))[:len(out), len(out):]
        assert list(corr.argmax(axis=1)) == list(range(len(src)))

        assert client.get(f"/api/jobs/{job_id}/videos/{bi}/output").status_code == 409
        assert client.get(f"/api/jobs/{job_id}/videos/9/output").status_code == 404
        listed = client.get("/api/jobs")
        assert [d["id"] for d in listed.json()] == [job_id]
        again = client.get("/api/jobs", headers={"If-None-Match": listed.headers["etag"]})
        assert again.status_code == 304


def test_media_kinds_and_ranges(serve, web_clips):
    """Every media kind answers; Range requests get 206 with exactly the asked bytes; compare
    is rendered once and cached; stills are PNGs of the frame at t."""
    server = serve()
    with server.client() as client:
        job_id = upload(client, web_clips["short"], chunk_frames=12).json()["id"]
        wait_state(client, job_id, ("done",))
        base = f"/api/jobs/{job_id}/videos/0"
        status = client.get(f"/api/jobs/{job_id}").json()["status"]
        output = Path(status["videos"][0]["output"]).read_bytes()

        r = client.get(f"{base}/output", headers={"Range": "bytes=100-299"})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes 100-299/{len(output)}"
        assert r.content == output[100:300]
        r = client.get(f"{base}/output", headers={"Range": "bytes=-64"})
        assert r.status_code == 206 and r.content == output[-64:]
        r = client.get(f"{base}/input", headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == web_clips["short"].read_bytes()[:10]
        assert client.get(f"{base}/output").headers["accept-ranges"] == "bytes"

        for mode in ("split", "swipe", "side-by-side"):
            r = client.get(f"{base}/compare", params={"mode": mode})
            assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
            cached = list((server.data / "jobs" / job_id / "output" / "_nhance" / "compare")
                          .glob(f"*.{mode}.mp4"))
            assert len(cached) == 1 and cached[0].read_bytes() == r.content
            ranged = client.get(f"{base}/compare", params={"mode": mode},
                                headers={"Range": "bytes=0-99"})
            assert ranged.status_code == 206 and ranged.content == r.content[:100]
        assert client.get(f"{base}/compare", params={"mode": "diagonal"}).status_code == 422
        r = client.get(f"{base}/compare", params={"mode": "swipe", "download": "true"})
        assert r.headers["content-disposition"].startswith("attachment")
        assert 'filename="short.compare.swipe.mp4"' in r.headers["content-disposition"]

        # the comparison page carries the flicker plot's series: one mean gain per frame
        page = client.get(f"/jobs/{job_id}/videos/0")
        assert page.status_code == 200
        gains = json.loads(re.search(r"data-gains='([^']*)'", page.text).group(1))
        assert len(gains["before"]) == len(gains["after"]) == 24
        assert all(g > 0 for g in gains["before"] + gains["after"])

        preview = client.get(f"{base}/preview")
        assert preview.status_code == 200 and preview.content[4:8] == b"ftyp"

        from PIL import Image
        import io

        for side in ("before", "after"):
            r = client.get(f"{base}/still", params={"t": 1.0, "side": side})
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(r.content)).size == (64, 48)
        before = np.asarray(Image.open(io.BytesIO(
            client.get(f"{base}/still", params={"t": 1.0, "side": "before"}).content)))
        src_pts, src = _decode(web_clips["short"])
        assert np.abs(before.astype(int) - src[12].astype(int)).mean() < 3  # frame 12 at 1.0 s
        assert client.get(f"{base}/thumbnail").status_code == 404


def test_every_route_needs_the_token(serve, web_clips):
    server = serve()
    with server.client() as client:
        job_id = upload(client, web_clips["short"], chunk_frames=12).json()["id"]
        wait_state(client, job_id, ("done",))
    routes = [("GET", "/"), ("GET", "/api/jobs"), ("POST", "/api/jobs"),
              ("GET", f"/api/jobs/{job_id}"), ("GET", f"/api/jobs/{job_id}/events"),
              ("GET", f"/api/jobs/{job_id}/videos/0/input"),
              ("GET", f"/api/jobs/{job_id}/videos/0/output"),
              ("GET", f"/api/jobs/{job_id}/videos/0/still?t=0"),
              ("POST", f"/api/jobs/{job_id}/cancel"), ("POST", f"/api/jobs/{job_id}/resume"),
              ("DELETE", f"/api/jobs/{job_id}"), ("GET", f"/jobs/{job_id}"),
              ("GET", f"/jobs/{job_id}/videos/0"), ("GET", "/static/app.css"),
              ("GET", "/no/such/route")]
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
             {"Cookie": "nhance_token=nope"}, {"Authorization": f"Bearer {TOKEN}x"}]
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for method, route in routes:
            for headers in wrong:
                r = anonymous.request(method, route, headers=headers)
                assert r.status_code == 401, (method, route, headers, r.status_code)
        assert anonymous.get("/?token=nope", follow_redirects=False).status_code == 401
        # the job is still there: nothing ran without the token
        r = anonymous.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["state"] == "done"

        r = anonymous.get(f"/?token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert TOKEN not in r.headers["location"]
        with httpx.Client(base_url=server.url, timeout=30,
                          cookies={"nhance_token": TOKEN}) as browser:
            assert browser.get("/").status_code == 200
            assert browser.get(f"/api/jobs/{job_id}/videos/0/output").status_code == 200


def test_upload_over_the_limit_is_413_and_leaves_nothing(serve, web_clips, tmp_path):
    server = serve("--max-upload-bytes", "4096")
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(64 << 10))
    with server.client() as client:
        r = upload(client, big)
        assert r.status_code == 413, r.text
        # a streamed body without Content-Length is cut off at the limit too
        boundary = "----nhanceboundary"

        def body():
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                   f"filename=\"streamed.mp4\"\r\n\r\n").encode()
            for _ in range(64):
                yield b"x" * 1024
            yield f"\r\n--{boundary}--\r\n".encode()

        r = client.post("/api/jobs", content=body(),
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413, r.text
        assert client.get("/api/jobs").json() == []
    jobs = server.data / "jobs"
    assert [p for p in jobs.iterdir()] == []


def test_file_names_are_sanitised_and_no_route_leaves_the_data_folder(serve, web_clips,
                                                                    tmp_path):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"outside the data folder")
    server = serve()
    with server.client() as client:
        r = upload(client, web_clips["short"], web_clips["short"], web_clips["short"],
                   names=["../../x.mp4", "..\\..\\..\\y.mp4", "/etc/z.mp4"], chunk_frames=12)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        inputs = server.data / "jobs" / job_id / "input"
        assert sorted(p.name for p in inputs.iterdir()) == ["x.mp4", "y.mp4", "z.mp4"]
        assert not (tmp_path / "x.mp4").exists() and not (server.data / "x.mp4").exists()
        assert not Path("/etc/z.mp4").exists()
        doc = wait_state(client, job_id, ("done",))
        assert [Path(v["input"]).parent for v in doc["status"]["videos"]] == [inputs] * 3

        for route in [f"/api/jobs/%2e%2e/videos/0/input",
                      f"/api/jobs/{job_id}/videos/0/..%2F..%2Fjob.json",
                      f"/api/jobs/{job_id}/videos/%2e%2e/input",
                      f"/api/jobs/..%2F..%2F{job_id}/videos/0/input",
                      "/static/%2e%2e/app.py", "/static/..%2Fapp.py", "/static/../app.py",
                      f"/jobs/%2e%2e%2f{job_id}"]:
            r = client.get(route)
            assert r.status_code in (404, 422), (route, r.status_code)
            assert b"outside the data folder" not in r.content and b"import" not in r.content

        # a symlink inside the job folder pointing outside is never followed out
        out = Path(doc["status"]["videos"][0]["output"])
        out.unlink()
        out.symlink_to(secret)
        source = Path(doc["status"]["videos"][1]["input"])
        source.unlink()
        source.symlink_to(secret)
        for route in [f"/api/jobs/{job_id}/videos/0/output", f"/api/jobs/{job_id}/videos/1/input",
                      f"/api/jobs/{job_id}/videos/1/still?t=0&side=before"]:
            r = client.get(route)
            assert r.status_code == 404, (route, r.status_code)
            assert b"outside the data folder" not in r.content


def test_cancel_resume_delete(serve, web_clips):
    server = serve()
    with server.client() as client:
        job_id = upload(client, web_clips["long"], chunk_frames=4).json()["id"]
        second = upload(client, web_clips["short"], chunk_frames=12).json()["id"]
        wait_chunks(client, job_id, 1)
        # a queued job is cancelled at once; the running one after its current chunk
        r = client.post(f"/api/jobs/{second}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
        doc = wait_state(client, job_id, ("cancelled", "done"))
        assert doc["state"] == "cancelled"
        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 409
        chunks = doc["status"]["videos"][0]["chunks"]
        done_before = {c["index"] for c in chunks if c["status"] == "done"}
        assert 0 < len(done_before) < len(chunks)

        assert client.post(f"/api/jobs/{job_id}/resume").json()["state"] == "queued"
        assert client.post(f"/api/jobs/{job_id}/resume").status_code == 409
        doc = wait_state(client, job_id, ("done", "failed"))
        assert doc["state"] == "done"
        chunks = doc["status"]["videos"][0]["chunks"]
        assert all(c["status"] == "done" for c in chunks)
        assert {c["index"] for c in chunks if c["run"] == 1} == done_before

        assert client.delete(f"/api/jobs/{second}").status_code == 204
        assert client.delete(f"/api/jobs/{job_id}").status_code == 204
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert client.delete(f"/api/jobs/{job_id}").status_code == 404
        assert client.get("/api/jobs").json() == []
        assert list((server.data / "jobs").iterdir()) == []


def test_events_resume_where_the_client_left_off(serve, web_clips):
    server = serve()
    with server.client() as client:
        job_id = upload(client, web_clips["short"], chunk_frames=12).json()["id"]
        events = read_events(client, job_id, until=lambda d: d["state"] == "done")
        last_id = events[-1][0]
        assert last_id and last_id.isdigit()
        # reconnecting with the last id sends nothing new until something changes
        seen: list[str] = []
        with pytest.raises(httpx.ReadTimeout):
            with client.stream("GET", f"/api/jobs/{job_id}/events",
                               headers={"Last-Event-ID": last_id},
                               timeout=httpx.Timeout(10, read=1.5)) as response:
                for line in response.iter_lines():
                    if line.startswith(("id:", "data:")):
                        seen.append(line)
        assert seen == []
        # an older id gets the current document at once
        again = read_events(client, job_id, until=lambda d: True,
                            headers={"Last-Event-ID": str(int(last_id) - 1)})
        assert again[0][0] == last_id and again[0][1]["state"] == "done"
        assert client.get("/api/jobs/0123456789abcdef/events").status_code == 404


def test_server_side_inputs_need_an_allowed_prefix(serve, web_clips, tmp_path):
    allowed = tmp_path / "library"
    allowed.mkdir()
    (allowed / "clip.mp4").write_bytes(web_clips["short"].read_bytes())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "clip.mp4").write_bytes(web_clips["short"].read_bytes())
    (allowed / "link").symlink_to(outside, target_is_directory=True)

    plain = serve(data=tmp_path / "plain")
    with plain.client() as client:
        r = client.post("/api/jobs", json={"input": str(allowed)})
        assert r.status_code == 403
    plain.stop()

    server = serve("--allow-input", str(allowed), data=tmp_path / "data")
    with server.client() as client:
        for refused in [str(outside), f"{allowed}/../elsewhere", str(allowed / "link"),
                        f"{allowed}x", "s3://bucket/videos"]:
            r = client.post("/api/jobs", json={"input": refused})
            assert r.status_code == 403, (refused, r.status_code)
        r = client.post("/api/jobs", json={"input": str(allowed), "model": "nope"})
        assert r.status_code == 422
        r = client.post("/api/jobs", json={"input": str(allowed), "lossless": True, "crf": 3})
        assert r.status_code == 422
        assert client.get("/api/jobs").json() == []
        r = client.post("/api/jobs", json={"input": str(allowed), "chunk_frames": 12})
        assert r.status_code == 201, r.text
        assert r.json()["settings"]["input"] == str(allowed)
        doc = wait_state(client, r.json()["id"], ("done", "failed"))
        assert doc["state"] == "done", doc
        video = doc["status"]["videos"][0]
        assert Path(video["input"]) == allowed / "clip.mp4"
        assert Path(video["output"]).is_relative_to(server.data)
        # the allowed source is served (seekable) for the comparison's "before" side
        r = client.get(f"/api/jobs/{doc['id']}/videos/0/input", headers={"Range": "bytes=0-3"})
        assert r.status_code == 206


def test_without_a_token_one_is_generated_and_printed(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.web.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "NHANCE_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "nhance_batch", "serve", "--port", "0",
                             "--data", str(tmp_path / "data")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        url = ""
        for line in iter(proc.stdout.readline, b""):
            if line.startswith(b"open http://"):
                url = line.decode().split()[1]
                break
        assert "?token=" in url
        base, token = url.split("/?token=")
        assert len(token) >= 24
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{base}/api/jobs", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == []
        assert httpx.get(f"{base}/api/jobs").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc.stdout.close()


def test_lossless_output_is_shown_through_a_preview(serve, web_clips):
    """FFV1 does not play in browsers: the comparison page plays the preview, rendered on
    first request as H.264 yuv420p MP4 with every frame."""
    import av

    server = serve()
    with server.client() as client:
        job_id = upload(client, web_clips["short"], chunk_frames=12, lossless=True).json()["id"]
        doc = wait_state(client, job_id, ("done",))
        assert doc["settings"]["lossless"] is True
        page = client.get(f"/jobs/{job_id}/videos/0")
        assert page.status_code == 200
        base = f"/api/jobs/{job_id}/videos/0"
        assert f'src="{base}/preview"' in page.text and f'src="{base}/input"' in page.text
        r = client.get(f"{base}/preview", headers={"Range": "bytes=0-"})
        assert r.status_code == 206
        preview = server.data / "jobs" / job_id / "preview.mp4"
        preview.write_bytes(r.content)
        with av.open(str(preview)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.format.name == "yuv420p"
            assert sum(1 for _ in container.decode(stream)) == 24
        with av.open(str(Path(doc["status"]["videos"][0]["output"]))) as container:
            assert container.streams.video[0].codec_context.name == "ffv1"

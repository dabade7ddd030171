"""Fixtures for the web tests: the server as a real process on loopback, tiny clips, an HTTP
client with the token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import httpx
import pytest

from tests.media.makemedia import make_video

REPO = Path(__file__).resolve().parents[2]
TOKEN = "web-test-token-0123456789"
START_TIMEOUT_S = 60.0


class Server:
    """``nhance-batch serve`` in a subprocess on a free loopback port."""

    def __init__(self, data: Path, *args: str, token: str = TOKEN,
                 executor: str = "sequential") -> None:
        self.data = Path(data)
        self.token = token
        self.args = list(args)
        self.executor = executor
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = self.data.parent / f"{self.data.name}-server.log"

    def start(self) -> "Server":
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        env.pop("RAY_ADDRESS", None)
        command = [sys.executable, "-m", "nhance_batch", "serve", "--host", "127.0.0.1",
                   "--port", "0", "--data", str(self.data), "--token", self.token,
                   "--executor", self.executor, *self.args]
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=self._log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if line.startswith("open http://"):
                self.url = line.split()[1].split("?")[0].rstrip("/")
                break
        if not self.url:
            self.stop()
            raise AssertionError(f"the server did not start; log:\n{self.log.read_text()}")
        while time.monotonic() < deadline:
            try:
                if self.client().get("/api/jobs").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not answer; log:\n{self.log.read_text()}")

    def client(self, *, token: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, like a crash or a power cut."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture
def serve(tmp_path, models_dir):
    """``serve(*args, executor=..., data=...)`` starts a server; all are stopped at the end."""
    started: list[Server] = []

    def start(*args: str, executor: str = "sequential", data: Path | None = None,
              token: str = TOKEN) -> Server:
        server = Server(data or tmp_path / "data", *args, token=token, executor=executor)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def web_clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("web_clips")
    clips = {
        "short": make_video(folder / "short.mp4", width=64, height=48, frames=24,
                            rate=Fraction(12), gop=6),
        "long": make_video(folder / "long.mp4", width=64, height=48, frames=96,
                           rate=Fraction(12), gop=4),
        "browser": make_video(folder / "browser.mp4", width=64, height=48, frames=48,
                              rate=Fraction(12), gop=6, audio_tracks=1),
    }
    broken = folder / "broken.mp4"
    broken.write_bytes(b"this is not a video, only some text saved as .mp4\n" * 20)
    clips["broken"] = broken
    return clips


def upload(client: httpx.Client, *paths: Path, names: list[str] | None = None,
           **fields) -> httpx.Response:
    files = [("file", ((names[i] if names else p.name), p.read_bytes(), "video/mp4"))
             for i, p in enumerate(paths)]
    data = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in fields.items()}
    return client.post("/api/jobs", files=files, data=data)


def wait_state(client: httpx.Client, job_id: str, states: tuple[str, ...],
               timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    doc = {}
    while time.monotonic() < deadline:
        doc = client.get(f"/api/jobs/{job_id}").json()
        if doc["state"] in states:
            return doc
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {json.dumps(doc)[:2000]}")


def done_chunks(doc: dict) -> int:
    status = doc.get("status") or {}
    return sum(c["status"] == "done" for v in status.get("videos") or [] for c in v["chunks"])


def wait_chunks(client: httpx.Client, job_id: str, at_least: int = 1,
                timeout: float = 300.0) -> dict:
    """Poll until the job's status shows ``at_least`` committed chunks."""
    deadline = time.monotonic() + timeout
    doc = {}
    while time.monotonic() < deadline:
        doc = client.get(f"/api/jobs/{job_id}").json()
        if done_chunks(doc) >= at_least:
            return doc
        if doc["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never had {at_least} chunks done: {json.dumps(doc)[:2000]}")


def read_events(client: httpx.Client, job_id: str, *, until, timeout: float = 300.0,
                headers: dict | None = None) -> list[tuple[str | None, dict]]:
    """(id, document) of each event of the job's stream, until ``until(doc)`` is true."""
    events: list[tuple[str | None, dict]] = []
    event_id, data = None, []
    with client.stream("GET", f"/api/jobs/{job_id}/events", headers=headers or {},
                       timeout=httpx.Timeout(timeout, read=timeout)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                doc = json.loads("\n".join(data))
                events.append((event_id, doc))
                event_id, data = None, []
                if until(doc):
                    return events
    raise AssertionError(f"stream ended before the condition: {events[-1:]}")

"""The web service under load: ``GET /api/jobs/{id}`` latency with 1,000 jobs on the server, and
the server's peak memory during a 1 GiB streamed upload.

    python bench/web.py [--jobs 1000] [--upload-gib 1] [--requests 2000]

1. One real job (a 64x48 clip, sequential executor) is run by a server; its job folder is then
   copied to make N done jobs (each with the real manifest), and a fresh server starts over
   the data folder. Latency of ``GET /api/jobs/{id}`` over random ids is measured with 1 job
   and with N jobs (cold: the first request of each job, which reads its manifest; warm: the
   rest), and the time of ``GET /api/jobs`` (every document).
2. A multipart body is generated on the fly and streamed to ``POST /api/jobs``, while the
   server's resident memory (RSS, psutil) is sampled every 20 ms: baseline before, peak
   during; for 1/16 of the size and the full size (each on a fresh server), and the ratio of
   their peaks (flat memory: about 1, whatever the size).

Prints a table and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TOKEN = "bench-token"


class Server:
    def __init__(self, data: Path, *args: str) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nhance_batch", "serve", "--port", "0", "--data", str(data),
             "--token", TOKEN, "--executor", "sequential", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for line in iter(self.proc.stdout.readline, b""):
            text = line.decode()
            if text.startswith("open http://"):
                self.url = text.split()[1].split("?")[0].rstrip("/")
                break
        else:
            raise SystemExit("the server did not start")
        self.client = httpx.Client(base_url=self.url, timeout=600,
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        while True:
            try:
                if self.client.get("/api/jobs").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _clip(folder: Path) -> Path:
    from tests.media.makemedia import make_video

    return make_video(folder / "clip.mp4", width=64, height=48, frames=24, rate=Fraction(12))


def _one_done_job(data: Path, clip: Path) -> str:
    server = Server(data)
    try:
        r = server.client.post("/api/jobs", files=[("file", ("clip.mp4", clip.read_bytes()))],
                               data={"chunk_frames": "8"})
        job_id = r.json()["id"]
        while server.client.get(f"/api/jobs/{job_id}").json()["state"] not in ("done",
                                                                               "failed"):
            time.sleep(0.2)
        return job_id
    finally:
        server.stop()


def _replicate(data: Path, job_id: str, n: int) -> list[str]:
    jobs = data / "jobs"
    source = jobs / job_id
    record = json.loads((source / "job.json").read_text())
    ids = [job_id]
    for _ in range(n - 1):
        new = secrets.token_hex(8)
        shutil.copytree(source, jobs / new, symlinks=True)
        record.update(id=new)
        (jobs / new / "job.json").write_text(json.dumps(record))
        ids.append(new)
    return ids


def _latency(server: Server, ids: list[str], requests: int) -> dict[str, float]:
    rng = random.Random(7)
    cold, warm = [], []
    seen: set[str] = set()
    for _ in range(requests):
        job_id = rng.choice(ids)
        start = time.perf_counter()
        r = server.client.get(f"/api/jobs/{job_id}")
        took = time.perf_counter() - start
        assert r.status_code == 200
        (warm if job_id in seen else cold).append(took)
        seen.add(job_id)
    start = time.perf_counter()
    listed = server.client.get("/api/jobs").json()
    list_s = time.perf_counter() - start
    assert len(listed) == len(ids)
    q = statistics.quantiles(warm, n=20) if len(warm) >= 20 else [float("nan")] * 19
    return {"cold_ms": 1000 * statistics.median(cold), "warm_ms": 1000 * statistics.median(warm),
            "warm_p95_ms": 1000 * q[18], "list_s": list_s}


def _upload_memory(data: Path, gib: float) -> dict[str, float]:
    server = Server(data, "--max-upload-bytes", str(int(gib * (1 << 30)) + (1 << 20)))
    proc = psutil.Process(server.proc.pid)
    time.sleep(1.0)
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.02)

    size = int(gib * (1 << 30))
    block = os.urandom(1 << 20)
    boundary = "benchboundary" + secrets.token_hex(4)

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sent += len(piece)
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    r = server.client.post("/api/jobs", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    stored = (data / "jobs" / job_id / "input" / "big.mp4").stat().st_size
    server.client.post(f"/api/jobs/{job_id}/cancel")
    server.client.delete(f"/api/jobs/{job_id}")
    server.stop()
    assert stored == size
    return {"baseline_mib": baseline / 2**20, "peak_mib": peak / 2**20,
            "ratio": peak / baseline, "mib_s": size / 2**20 / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--upload-gib", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("NHANCE_MODELS", str(REPO.parent / "shared" / "models" / "dped"))
    with tempfile.TemporaryDirectory(prefix="nhance-bench-web-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        job_id = _one_done_job(data, _clip(tmp))
        server = Server(data)
        one = _latency(server, [job_id], min(args.requests, 500))
        server.stop()
        ids = _replicate(data, job_id, args.jobs)
        server = Server(data)
        many = _latency(server, ids, args.requests)
        server.stop()
        shutil.rmtree(data)
        small = _upload_memory(tmp / "upload-small", args.upload_gib / 16)
        memory = _upload_memory(tmp / "upload", args.upload_gib)

    print(f"GET /api/jobs/{{id}} (median over {args.requests} requests; cold: first request "
          "of a job, which reads its manifest)")
    print(f"{'jobs':>6} {'cold ms':>9} {'warm ms':>9} {'warm p95 ms':>12} {'GET /api/jobs s':>16}")
    for n, m in ((1, one), (args.jobs, many)):
        print(f"{n:>6} {m['cold_ms']:9.2f} {m['warm_ms']:9.2f} {m['warm_p95_ms']:12.2f} "
              f"{m['list_s']:16.3f}")
    print(f"ratio warm latency {args.jobs} jobs / 1 job: {many['warm_ms'] / one['warm_ms']:.2f}")
    print("\nstreamed upload: server RSS before and peak during (MiB)")
    for gib, m in ((args.upload_gib / 16, small), (args.upload_gib, memory)):
        print(f"{gib:8.4g} GiB: before {m['baseline_mib']:.0f}, peak {m['peak_mib']:.0f}, "
              f"ratio peak/before {m['ratio']:.3f}, {m['mib_s']:.0f} MiB/s")
    print(f"ratio peak RSS {args.upload_gib:g} GiB / {args.upload_gib / 16:g} GiB upload: "
          f"{memory['peak_mib'] / small['peak_mib']:.3f} (16x the bytes)")


if __name__ == "__main__":
    main()

"""How a run looks while it runs, and what a kill -9 costs (issue 23).

Runs ``nhance-batch run VIDEO OUT`` with the default settings under a pseudo-terminal (so the
live bar draws as for a user), and meanwhile reads ``status --json``'s document every 0.25 s.
Reports: seconds from the start to the first enhanced frame (bar and status), the largest gap
between two changes of the bar's "enhanced" count and of status's ``progress.frames_done``
while frames were being enhanced, and how often the ETA was unknown. With ``--kill-at F`` it
sends SIGKILL to the driver once status counts F of the frames done, waits for the embedded
Ray's processes to end, reruns, and reports the frames enhanced but not committed at the kill
(the work lost), the rerun's chunks reused and computed, and the seconds to the leftovers'
end.

    python bench/progress_kill.py ../shared/videos/carphone.mp4 /tmp/out --kill-at 0.4
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BAR = re.compile(r"enhanced (\d+)/(\S+), committed (\d+).*?ETA (\S+)")


class Watch:
    """The bar's changes (from the terminal) and status's changes, timestamped."""

    def __init__(self, out: str) -> None:
        self.out, self.t0 = out, time.monotonic()
        self.bar: list[tuple[float, int, int, str]] = []
        self.status: list[tuple[float, int, int, float | None]] = []
        self.said: list[str] = []

    def read_terminal(self, fd: int) -> None:
        tail = ""
        while True:
            try:
                data = os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:
                return
            if not data:
                return
            tail = (tail + data)[-4000:]
            said = re.search(r"(took over[^\r\n]*|resuming after[^\r\n]*)", tail)
            if said and said.group(1) not in self.said:
                self.said.append(said.group(1))
            found = BAR.findall(tail)
            if found:
                enhanced, _, committed, eta = found[-1]
                state = (int(enhanced), int(committed), eta)
                if not self.bar or self.bar[-1][1:] != state:
                    self.bar.append((time.monotonic() - self.t0, *state))

    def poll_status(self, stop: threading.Event) -> None:
        from nhance_batch.state.status import status_document

        while not stop.is_set():
            try:
                doc = status_document(self.out)
            except Exception:  # noqa: BLE001 - the job may not exist yet
                doc = None
            if doc:
                p = doc["progress"]
                state = (p["frames_done"], p["frames_committed"], doc.get("eta_seconds"))
                if not self.status or self.status[-1][1:3] != state[:2]:
                    self.status.append((time.monotonic() - self.t0, *state))
            stop.wait(0.25)


def gaps(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))


def run_once(video: str, out: str, kill_at: float | None, total: int) -> dict:
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "nhance_batch", "run", video, out],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    watch = Watch(out)
    reader = threading.Thread(target=watch.read_terminal, args=(master,), daemon=True)
    reader.start()
    stop = threading.Event()
    poller = threading.Thread(target=watch.poll_status, args=(stop,), daemon=True)
    poller.start()
    killed = None
    while proc.poll() is None:
        if kill_at is not None and watch.status and watch.status[-1][1] >= kill_at * total:
            killed = {"t": watch.status[-1][0], "enhanced": watch.status[-1][1],
                      "committed": watch.status[-1][2]}
            session = ray_session_of(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed["leftovers_gone_s"] = leftovers_end(session)
            break
        time.sleep(0.05)
    stop.set()
    poller.join()
    reader.join(timeout=2)
    return report(watch, proc, killed, time.monotonic() - watch.t0)


def report(watch: Watch, proc, killed, seconds: float) -> dict:
    # from the first frame this run enhanced (a rerun starts with the reused frames counted)
    bar = [b for b in watch.bar if watch.bar and b[1] > watch.bar[0][1]]
    status = [s for s in watch.status if watch.status and s[1] > watch.status[0][1]]
    enhancing_bar = [t for t, enhanced, committed, _ in bar]
    return {
        "seconds": round(seconds, 1), "exit": proc.returncode,
        "first_enhanced_bar_s": round(bar[0][0], 1) if bar else None,
        "first_enhanced_status_s": round(status[0][0], 1) if status else None,
        "bar_changes": len(bar), "bar_max_gap_s": round(gaps(enhancing_bar), 1),
        "status_changes": len(status),
        "status_max_gap_s": round(gaps([s[0] for s in status]), 1),
        "eta_unknown_in_bar": sum(b[3] == "?" for b in watch.bar),
        "bar_samples": len(watch.bar), "killed": killed, "said": watch.said,
    }


def ray_session_of(pid: int) -> str | None:
    from nhance_batch.pipeline.ray_reaper import MARKER

    for marker in Path("/tmp/ray").glob(f"session_*/{MARKER}"):
        if not marker.parent.is_symlink() and json.loads(marker.read_text()).get("pid") == pid:
            return str(marker.parent)
    return None


def leftovers_end(session: str | None) -> float | None:
    """Seconds until no process uses the dead driver's Ray session any more."""
    from nhance_batch.pipeline.ray_reaper import session_processes

    if session is None:
        return None
    start = time.monotonic()
    while session_processes(session):
        if time.monotonic() - start > 300:
            return None
        time.sleep(0.2)
    return round(time.monotonic() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--kill-at", type=float, default=None)
    args = parser.parse_args()
    from nhance_batch.media import probe

    total = probe(args.video).frame_count
    shutil.rmtree(args.out, ignore_errors=True)
    first = run_once(args.video, args.out, args.kill_at, total)
    print(json.dumps({"first": first}), flush=True)
    if args.kill_at is None:
        return
    summary = Path(args.out) / "_nhance" / "summary.json"
    second = run_once(args.video, args.out, None, total)
    done = json.loads(summary.read_text()) if summary.exists() else {}
    second["chunks_skipped"] = done.get("chunks_skipped")
    second["chunks_computed"] = done.get("chunks_computed")
    print(json.dumps({"rerun": second}), flush=True)


if __name__ == "__main__":
    main()

"""No process of an embedded Ray outlives the driver that started it.

Ray ends most of an embedded instance's processes with its driver (the GCS and the raylet
share its fate, workers follow the raylet within seconds), but the raylet's agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``, 200 MB together) stayed about three
minutes after a ``kill -9`` of the driver. So:

* :func:`watch` (called by :func:`~nhance_batch.pipeline.ray_session.connect` after it
  started the instance) writes a marker, :data:`MARKER`, into the instance's session folder
  naming the driver, and starts a small watcher process (this module run as a script, in its
  own session so that a signal to the driver's process group spares it) that waits for the
  driver to end and then ends every process still using the session folder;
* :func:`reap_dead_sessions` (called before an embedded instance starts) does the same for
  every session folder whose marker names a driver that is gone: what a dead driver left when
  its watcher could not run (killed with it, or the machine rebooted mid-way).

A process belongs to a session when its command line or one of its open files lies in the
session folder (the agents rename themselves, but keep their logs there open). Only sessions
with our marker are touched, and only processes of this user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: The marker file in a Ray session folder: ``{"pid", "started"}`` of the driver.
MARKER = "nhance-driver.json"
#: Seconds between the watcher's checks that the driver is alive.
POLL_S = 0.5
#: Seconds between SIGTERM and SIGKILL for a process that is still there.
TERM_GRACE_S = 1.0


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _alive(pid: int, started: float | None) -> bool:
    """``pid`` is still the process that started at ``started`` (not a reused pid)."""
    now = _start_time(pid)
    if now is None:
        return False
    if started is None:
        return True
    import psutil

    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return abs(now - started) < 1.0


def session_processes(session_dir: str) -> list[int]:
    """Pids of this user's processes whose command line or open files lie in
    ``session_dir``."""
    import psutil

    prefix = os.path.join(os.path.realpath(session_dir), "")
    me, uid = os.getpid(), os.getuid()
    found = []
    for process in psutil.process_iter(["pid", "uids", "cmdline"]):
        info = process.info
        if info["pid"] == me or not info.get("uids") or info["uids"].real != uid:
            continue
        try:
            if any(prefix in arg or arg.rstrip("/") == prefix.rstrip("/")
                   for arg in info.get("cmdline") or []) \
                    or any(f.path.startswith(prefix) for f in process.open_files()):
                found.append(info["pid"])
        except (psutil.Error, OSError):
            continue
    return found


def end_processes(pids: list[int]) -> int:
    """SIGTERM ``pids``, then SIGKILL those still there after :data:`TERM_GRACE_S`; the
    number ended."""
    import psutil

    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.send_signal(signal.SIGTERM)
            processes.append(process)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(processes, timeout=TERM_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    return len(processes)


def reap_session(session_dir: str) -> int:
    """End what is left of the Ray session in ``session_dir``, and drop its marker; the
    number of processes ended."""
    ended = end_processes(session_processes(session_dir))
    try:
        os.unlink(os.path.join(session_dir, MARKER))
    except OSError:
        pass
    return ended


def reap_dead_sessions(temp_dir: str | None = None) -> int:
    """Reap every session under Ray's temporary folder (``temp_dir``, else ``RAY_TMPDIR``
    or the system's temporary folder, with ``ray/``) whose marker names a driver that is
    gone; the number of processes ended."""
    import tempfile

    root = Path(temp_dir) if temp_dir else Path(
        os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    ended = 0
    for marker in root.glob(f"session_*/{MARKER}"):
        if marker.parent.is_symlink():  # session_latest: the same session again
            continue
        try:
            driver = json.loads(marker.read_text())
            pid, started = int(driver["pid"]), driver.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid, started):
            ended += reap_session(str(marker.parent))
    return ended


def watch(session_dir: str, pid: int | None = None) -> subprocess.Popen | None:
    """Mark ``session_dir`` as the session of driver ``pid`` (this process) and start its
    watcher; None (nothing marked) when the folder cannot be written."""
    pid = pid or os.getpid()
    marker = {"pid": pid, "started": _start_time(pid)}
    try:
        Path(session_dir, MARKER).write_text(json.dumps(marker))
    except OSError:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "nhance_batch.pipeline.ray_reaper", str(pid),
         str(marker["started"]), session_dir],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)


def unwatch(watcher: subprocess.Popen) -> None:
    """The instance ended with its driver's consent: end its watcher and drop the marker."""
    watcher.kill()
    watcher.wait()
    try:
        os.unlink(os.path.join(watcher.args[-1], MARKER))
    except OSError:
        pass


def _main(argv: list[str]) -> int:
    """The watcher: wait for the driver ``argv[0]`` (started at ``argv[1]``) to end, then
    reap its session ``argv[2]``."""
    pid, started, session_dir = int(argv[0]), argv[1], argv[2]
    start = None if started == "None" else float(started)
    while _alive(pid, start):
        time.sleep(POLL_S)
    if os.path.isdir(session_dir):
        reap_session(session_dir)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

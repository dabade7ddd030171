"""No process of an embedded Ray outlives its driver (issue 23): the watcher and the reaping
of sessions left by dead drivers, on stand-in processes (no Ray needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from nhance_batch.pipeline import ray_reaper

HOLD = "import os, time; f = open(os.environ['HELD'], 'a'); time.sleep(120)"


def holder(path) -> subprocess.Popen:
    """A process that keeps a file in a session folder open, as Ray's agents keep their logs
    (the path is in its environment, not its command line: only the open file ties it
    there)."""
    import os

    proc = subprocess.Popen([sys.executable, "-c", HOLD], env={**os.environ, "HELD": str(path)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.pid not in ray_reaper.session_processes(
            str(path.parent.parent)):
        time.sleep(0.1)
    return proc


def gone(proc: subprocess.Popen, within: float = 30.0) -> bool:
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True


def session(tmp_path, name: str, pid: int, started) -> "object":
    folder = tmp_path / "ray" / name
    (folder / "logs").mkdir(parents=True)
    (folder / ray_reaper.MARKER).write_text(json.dumps({"pid": pid, "started": started}))
    return folder


def test_sessions_of_dead_drivers_are_reaped_and_live_ones_kept(tmp_path):
    import os

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = session(tmp_path, "session_dead", dead.pid, 1.0)
    mine = session(tmp_path, "session_live", os.getpid(),
                   ray_reaper._start_time(os.getpid()))
    orphan = holder(left / "logs" / "agent.log")
    kept = holder(mine / "logs" / "agent.log")
    try:
        assert ray_reaper.reap_dead_sessions(str(tmp_path / "ray")) == 1
        assert gone(orphan)
        assert kept.poll() is None
        assert not (left / ray_reaper.MARKER).exists() and (mine / ray_reaper.MARKER).exists()
    finally:
        kept.kill()
        kept.wait()


def test_the_watcher_ends_the_session_when_its_driver_is_killed(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    folder = tmp_path / "ray" / "session_x"
    (folder / "logs").mkdir(parents=True)
    watcher = ray_reaper.watch(str(folder), pid=driver.pid)
    agent = holder(folder / "logs" / "agent.log")
    try:
        time.sleep(1.0)
        assert agent.poll() is None  # nothing happens while the driver lives
        driver.kill()
        driver.wait()
        assert gone(agent)
        assert watcher.wait(timeout=30) == 0
    finally:
        for proc in (driver, agent, watcher):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_clean_end_stops_the_watcher_and_drops_the_marker(tmp_path):
    folder = tmp_path / "ray" / "session_y"
    folder.mkdir(parents=True)
    watcher = ray_reaper.watch(str(folder))
    assert (folder / ray_reaper.MARKER).exists() and watcher.poll() is None
    ray_reaper.unwatch(watcher)
    assert watcher.poll() is not None and not (folder / ray_reaper.MARKER).exists()

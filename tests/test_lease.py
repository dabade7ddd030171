"""The output lease: one live driver at a time, expiry of dead holders, forced take-over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nhance_batch.state.lease import Lease, LeaseError

REPO = Path(__file__).resolve().parents[1]
TTL = 0.5
LIVE_TTL = 1.0  # for holders that must stay alive through a busy machine's scheduling hiccups


def _lease_path(tmp_path: Path) -> str:
    return str(tmp_path / "_nhance" / "lease.json")


def _wait_for(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_live_holder_refuses_others(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    first = Lease(path, ttl=LIVE_TTL, owner="first")
    first.acquire()
    first.start_heartbeat()
    try:
        record = json.loads(Path(path).read_text())
        assert set(record) == {"owner", "host", "pid", "acquired", "heartbeat", "ttl"}
        assert record["owner"] == "first" and record["pid"] == os.getpid()
        assert record["ttl"] == LIVE_TTL
        time.sleep(1.4 * LIVE_TTL)  # well past the ttl: only the heartbeat keeps it alive
        assert json.loads(Path(path).read_text())["heartbeat"] > record["heartbeat"]
        with pytest.raises(LeaseError) as info:
            Lease(path, ttl=TTL, owner="second").acquire()
        message = str(info.value)
        assert "first" in message and socket.gethostname() in message
        assert f"pid {os.getpid()}" in message
        assert "--force" in message and "heartbeat" in message and "since" in message
        assert info.value.holder is not None and info.value.holder["owner"] == "first"
        assert not first.lost
    finally:
        first.release()
    assert not os.path.exists(path)


def test_dead_holder_expires(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    os.makedirs(os.path.dirname(path))
    now = time.time()
    dead = {
        "owner": "dead", "host": "elsewhere", "pid": 1,
        "acquired": now - 100, "heartbeat": now - 10, "ttl": 5.0,
    }
    Path(path).write_text(json.dumps(dead))
    lease = Lease(path, ttl=TTL, owner="new")
    lease.acquire()
    assert json.loads(Path(path).read_text())["owner"] == "new"
    lease.release()


_CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
from nhance_batch.state.lease import Lease
lease = Lease(sys.argv[1], ttl={ttl}, owner="child")
lease.acquire()
lease.start_heartbeat()
print("ready", flush=True)
time.sleep(60)
"""


def test_sigkilled_driver_lease_expires(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), ttl=LIVE_TTL), path], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        with pytest.raises(LeaseError, match=f"pid {child.pid}"):
            Lease(path, ttl=TTL, owner="parent").acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    parent = Lease(path, ttl=TTL, owner="parent")
    assert _wait_for(lambda: _try_acquire(parent), timeout=4 * LIVE_TTL)
    assert json.loads(Path(path).read_text())["owner"] == "parent"
    parent.release()


def _try_acquire(lease: Lease) -> bool:
    try:
        lease.acquire()
    except LeaseError:
        return False
    return True


def test_force_takes_over_and_old_holder_notices(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    old = Lease(path, ttl=0.3, owner="old")
    old.acquire()
    old.start_heartbeat()
    new = Lease(path, ttl=TTL, owner="new")
    new.acquire(force=True)
    assert _wait_for(lambda: old.lost, timeout=2.0)
    with pytest.raises(LeaseError, match="taken over"):
        old.check()
    time.sleep(0.25)  # the old heartbeat has stopped: it never writes over the new owner
    assert json.loads(Path(path).read_text())["owner"] == "new"
    old.release()  # not ours any more: the file stays
    assert json.loads(Path(path).read_text())["owner"] == "new"
    new.check()
    new.release()
    assert not os.path.exists(path)


def test_context_manager_and_reacquire(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    with Lease(path, ttl=TTL, owner="me") as lease:
        acquired = json.loads(Path(path).read_text())["acquired"]
        lease.acquire()  # re-acquiring one's own lease just refreshes it
        assert json.loads(Path(path).read_text())["acquired"] == acquired
    assert not os.path.exists(path)
    assert [n for n in os.listdir(os.path.dirname(path))] == []  # no temp litter


def test_ttl_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NHANCE_LEASE_TTL", "7.5")
    assert Lease(_lease_path(tmp_path)).ttl == 7.5
    assert Lease(_lease_path(tmp_path), ttl=2.0).ttl == 2.0
    monkeypatch.delenv("NHANCE_LEASE_TTL")
    assert Lease(_lease_path(tmp_path)).ttl == 30.0


@pytest.mark.parametrize("existing", ["absent", "expired"])
def test_racing_acquirers_one_wins(tmp_path: Path, existing: str) -> None:
    path = _lease_path(tmp_path)
    if existing == "expired":
        os.makedirs(os.path.dirname(path))
        Path(path).write_text(json.dumps({"owner": "dead", "heartbeat": 0.0, "ttl": 1.0}))
    leases = [Lease(path, ttl=5.0, owner=f"racer-{i}") for i in range(6)]
    barrier = threading.Barrier(len(leases))
    winners: list[str] = []

    def race(lease: Lease) -> None:
        barrier.wait()
        if _try_acquire(lease):
            winners.append(lease.owner)

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert json.loads(Path(path).read_text())["owner"] == winners[0]

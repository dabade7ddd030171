"""The output lease (local lease file): one live driver at a time, dead holders taken over at
once, expiry of holders that may be alive elsewhere, forced take-over, heartbeat failures."""

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

import psutil
import pytest

from nhance_batch.state import lease as lease_module
from nhance_batch.state.lease import Lease, LeaseError, lease_for, live_holder

REPO = Path(__file__).resolve().parents[1]
TTL = 0.5
LIVE_TTL = 1.0  # for holders that must stay alive through a busy machine's scheduling hiccups
LONG_TTL = 60.0  # a heartbeat that stays fresh for the whole test: only proof of death frees it


def _lease_path(tmp_path: Path) -> str:
    return str(tmp_path / "_nhance" / "lease.json")


def _wait_for(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _try_acquire(lease: Lease) -> bool:
    try:
        lease.acquire()
    except LeaseError:
        return False
    return True


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _write_holder(path: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    """A fresh lease record as another driver would have written it."""
    now = time.time()
    record = {"owner": "other", "host": socket.gethostname(), "pid": os.getpid(),
              "started": psutil.Process().create_time(), "boot": _boot_id(),
              "pidns": os.stat("/proc/self/ns/pid").st_ino, "lock": False,
              "acquired": now - 5, "heartbeat": now, "ttl": LONG_TTL}
    record.update(fields)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(json.dumps(record))
    return record


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_holder_refuses_others(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    first = Lease(path, ttl=LIVE_TTL, owner="first")
    first.acquire()
    first.start_heartbeat()
    try:
        record = json.loads(Path(path).read_text())
        assert set(record) == {"owner", "host", "pid", "started", "boot", "pidns", "lock",
                               "acquired", "heartbeat", "ttl"}
        assert record["owner"] == "first" and record["pid"] == os.getpid()
        assert record["started"] == pytest.approx(psutil.Process().create_time())
        assert record["boot"] == _boot_id() and record["lock"] is True
        assert record["ttl"] == LIVE_TTL
        assert os.path.exists(path + ".lock")
        time.sleep(1.4 * LIVE_TTL)  # well past the ttl: only the heartbeat keeps it alive
        assert json.loads(Path(path).read_text())["heartbeat"] > record["heartbeat"]
        with pytest.raises(LeaseError) as info:
            Lease(path, ttl=TTL, owner="second").acquire()
        message = str(info.value)
        assert "first" in message and socket.gethostname() in message
        assert f"pid {os.getpid()}" in message
        assert "--force" in message and "heartbeat" in message and "since" in message
        assert info.value.holder is not None and info.value.holder["owner"] == "first"
        assert os.path.exists(path + ".lock")  # the refused attempt leaves the holder's lock
        assert live_holder(path)["owner"] == "first"
        assert not first.lost
    finally:
        first.release()
    assert not os.path.exists(path) and not os.path.exists(path + ".lock")
    assert live_holder(path) is None


def test_holder_on_another_machine_waits_for_its_ttl(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    # another host: its pid means nothing here, so only the heartbeat's age counts
    _write_holder(path, host="elsewhere", pid=_dead_pid(), ttl=LONG_TTL)
    with pytest.raises(LeaseError, match="possibly alive on another machine"):
        Lease(path, ttl=TTL, owner="new").acquire()
    _write_holder(path, host="elsewhere", heartbeat=time.time() - 10, ttl=5.0)
    lease = Lease(path, ttl=TTL, owner="new")
    lease.acquire()
    assert json.loads(Path(path).read_text())["owner"] == "new"
    lease.release()


def test_same_host_dead_pid_is_taken_over_at_once(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    _write_holder(path, pid=_dead_pid())  # fresh heartbeat, but its process is gone
    assert live_holder(path) is None
    lease = Lease(path, ttl=TTL, owner="new")
    lease.acquire()
    assert json.loads(Path(path).read_text())["owner"] == "new"
    lease.release()


def test_reused_pid_is_recognised_by_its_start_time(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    # our own (running) pid, but recorded with the start time of an earlier process
    _write_holder(path, started=psutil.Process().create_time() - 3600)
    lease = Lease(path, ttl=TTL, owner="new")
    lease.acquire()
    lease.release()
    # the same pid with its true start time is a live process: refused
    _write_holder(path)
    with pytest.raises(LeaseError, match="a live process on this machine"):
        Lease(path, ttl=TTL, owner="new").acquire()


def test_other_boot_or_pid_namespace_proves_nothing_by_pid(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    for fields in ({"boot": "another-boot-of-a-machine-with-this-name"}, {"pidns": 1}):
        _write_holder(path, pid=_dead_pid(), **fields)
        with pytest.raises(LeaseError):
            Lease(path, ttl=TTL, owner="new").acquire()


def test_free_lifetime_lock_proves_the_holder_dead(tmp_path: Path) -> None:
    """A holder that held the sibling lock file: a free lock means it is gone, even when its
    pid cannot be judged (another pid namespace: a container on this machine)."""
    path = _lease_path(tmp_path)
    _write_holder(path, pidns=1, lock=True)
    # no lock file: it was removed by hand, say; proves nothing, and the pid cannot be judged
    with pytest.raises(LeaseError):
        Lease(path, ttl=TTL, owner="new").acquire()
    assert not os.path.exists(path + ".lock")  # the refused attempt left no litter
    Path(path + ".lock").touch()  # what a SIGKILLed holder leaves behind
    lease = Lease(path, ttl=TTL, owner="new")
    lease.acquire()
    assert json.loads(Path(path).read_text())["lock"] is True
    lease.release()
    # the same record while a process of this machine holds the lock: refused
    holder = Lease(path, ttl=LONG_TTL, owner="holder")
    holder.acquire()
    try:
        record = json.loads(Path(path).read_text())
        _write_holder(path, **{**record, "pidns": 1})
        with pytest.raises(LeaseError):
            Lease(path, ttl=TTL, owner="new").acquire()
    finally:
        holder.release()


_CHILD = """
import sys, time
sys.path.insert(0, {repo!r})
from nhance_batch.state.lease import Lease
lease = Lease(sys.argv[1], ttl={ttl}, owner="child")
lease.acquire()
lease.start_heartbeat()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_sigkilled_holder_is_taken_over_at_once(tmp_path: Path, reaped: bool) -> None:
    path = _lease_path(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), ttl=LONG_TTL), path],
        stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        with pytest.raises(LeaseError, match=f"pid {child.pid}"):
            Lease(path, ttl=TTL, owner="parent").acquire()
        os.kill(child.pid, signal.SIGKILL)
        if reaped:
            child.wait()
        else:  # killed but not yet reaped: a zombie with the same pid
            assert _wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
        record = json.loads(Path(path).read_text())
        assert record["owner"] == "child" and time.time() - record["heartbeat"] < LONG_TTL
        parent = Lease(path, ttl=TTL, owner="parent")
        parent.acquire()  # no --force, no waiting: the holder is provably dead
        assert json.loads(Path(path).read_text())["owner"] == "parent"
        parent.release()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_force_takes_over_and_old_holder_notices(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    old = Lease(path, ttl=0.3, owner="old")
    old.acquire()
    old.start_heartbeat()
    new = Lease(path, ttl=TTL, owner="new")
    new.acquire(force=True)
    assert _wait_for(lambda: old.lost, timeout=2.0)
    assert "taken over by new" in (old.lost_reason or "")
    with pytest.raises(LeaseError, match="no longer this driver's"):
        old.check()
    time.sleep(0.25)  # the old heartbeat has stopped: it never writes over the new owner
    assert json.loads(Path(path).read_text())["owner"] == "new"
    old.release()  # not ours any more: the file stays
    assert json.loads(Path(path).read_text())["owner"] == "new"
    new.check()
    new.release()
    assert not os.path.exists(path)


def test_heartbeat_exception_marks_the_lease_lost(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = _lease_path(tmp_path)
    lease = Lease(path, ttl=0.3, owner="me")
    lease.acquire()

    def broken(record, version):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(lease.backend, "replace", broken)
    assert not lease.lost
    lease.start_heartbeat()
    assert _wait_for(lambda: lease._thread is not None and not lease._thread.is_alive())
    assert lease.lost and "RuntimeError: disk on fire" in (lease.lost_reason or "")
    with pytest.raises(LeaseError, match="disk on fire"):
        lease.check()
    monkeypatch.undo()
    lease.release()
    assert not os.path.exists(path)


def test_transient_heartbeat_errors_are_retried_within_the_ttl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _lease_path(tmp_path)
    lease = Lease(path, ttl=1.2, owner="me")
    lease.acquire()
    real = lease.backend.replace
    failures = []

    def flaky(record, version):  # type: ignore[no-untyped-def]
        if len(failures) < 1:
            failures.append(record)
            raise TimeoutError("store timed out")
        return real(record, version)

    monkeypatch.setattr(lease.backend, "replace", flaky)
    lease.start_heartbeat()
    try:
        first = json.loads(Path(path).read_text())["heartbeat"]
        assert _wait_for(lambda: json.loads(Path(path).read_text())["heartbeat"] > first, 5)
        assert failures and not lease.lost  # one timeout, retried in time: still ours

        def always(record, version):  # type: ignore[no-untyped-def]
            raise TimeoutError("store gone")

        monkeypatch.setattr(lease.backend, "replace", always)
        assert _wait_for(lambda: lease.lost, timeout=5)  # no renewal for a whole ttl
        assert "TimeoutError" in (lease.lost_reason or "") or "ttl" in (lease.lost_reason or "")
    finally:
        monkeypatch.undo()
        lease.release()


def test_silence_longer_than_the_ttl_marks_the_lease_lost(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    lease = Lease(path, ttl=0.3, owner="me")
    lease.acquire()  # no heartbeat thread: nothing renews it
    assert not lease.lost
    time.sleep(0.45)
    assert lease.lost and "ttl" in (lease.lost_reason or "")
    lease.release()


def test_context_manager_and_reacquire(tmp_path: Path) -> None:
    path = _lease_path(tmp_path)
    with Lease(path, ttl=TTL, owner="me") as lease:
        acquired = json.loads(Path(path).read_text())["acquired"]
        lease.acquire()  # re-acquiring one's own lease just refreshes it
        assert json.loads(Path(path).read_text())["acquired"] == acquired
        assert json.loads(Path(path).read_text())["lock"] is True
    assert not os.path.exists(path)
    assert [n for n in os.listdir(os.path.dirname(path))] == []  # no temp or lock litter


def test_ttl_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NHANCE_LEASE_TTL", "7.5")
    assert Lease(_lease_path(tmp_path)).ttl == 7.5
    assert Lease(_lease_path(tmp_path), ttl=2.0).ttl == 2.0
    monkeypatch.delenv("NHANCE_LEASE_TTL")
    assert Lease(_lease_path(tmp_path)).ttl == 30.0


def test_lease_for_picks_the_kind(tmp_path) -> None:
    local = tmp_path / "x" / "_nhance" / "lease.json"
    assert type(lease_for(str(local))) is Lease
    assert type(lease_for(local.as_uri())) is Lease
    assert type(lease_for("s3://bucket/x/_nhance/lease.json")) is lease_module.StoreLease


def test_store_without_preconditions_falls_back_to_read_back() -> None:
    """A store the conditional layer does not know (memory://): read, write, read back."""
    import uuid

    from nhance_batch.storage.conditional import PlainObject

    import fsspec

    bucket = f"lease-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("memory").mkdir(f"/{bucket}/_nhance")
    url = f"memory://{bucket}/_nhance/lease.json"
    first = lease_for(url, None, ttl=LONG_TTL, owner="first")
    assert isinstance(first, lease_module.StoreLease)
    assert isinstance(first.backend.object, PlainObject) and not first.backend.object.atomic
    first.acquire()
    assert live_holder(url)["owner"] == "first"
    with pytest.raises(LeaseError, match="first"):
        lease_for(url, None, ttl=LONG_TTL, owner="second").acquire()
    second = lease_for(url, None, ttl=LONG_TTL, owner="second")
    second.acquire(force=True)
    assert first.heartbeat() is False and first.lost
    first.release()
    assert live_holder(url)["owner"] == "second"
    second.release()
    assert live_holder(url) is None


@pytest.mark.parametrize("existing", ["absent", "expired", "dead"])
def test_racing_acquirers_one_wins(tmp_path: Path, existing: str) -> None:
    path = _lease_path(tmp_path)
    if existing == "expired":
        os.makedirs(os.path.dirname(path))
        Path(path).write_text(json.dumps({"owner": "dead", "heartbeat": 0.0, "ttl": 1.0}))
    elif existing == "dead":
        _write_holder(path, owner="dead", pid=_dead_pid())
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
    for lease in leases:
        lease.release()


@pytest.mark.slow
def test_rerun_right_after_kill_9_is_not_refused(tmp_path: Path) -> None:
    """The user's case: `kill -9` of a running `run`, then the same command at once (default
    ttl of 30 s, no --force) resumes instead of being refused."""
    from tests.media.makemedia import make_video

    src = make_video(tmp_path / "in" / "clip.mp4", width=64, height=48, frames=30, gop=5)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "NHANCE_LEASE_TTL")}
    env["NHANCE_MANIFEST_SAVE_S"] = "0"
    command = [sys.executable, "-m", "nhance_batch", "run", str(src.parent), str(out),
               "--executor", "sequential", "--lossless", "--chunk-frames", "5",
               "--temporal-radius", "1"]
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lease_file = out / "_nhance" / "lease.json"
    try:
        assert _wait_for(lambda: lease_file.exists() or proc.poll() is not None, 300)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert json.loads(lease_file.read_text())["pid"] == proc.pid  # left behind, fresh
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "another nhance-batch driver" not in rerun.stderr
    assert not lease_file.exists()


def test_lease_file_backend_writes_only_at_the_version_it_was_given(tmp_path: Path) -> None:
    """The local backend's four operations, each conditional on the version (the content's
    hash), like the stores' conditional requests; its writer holds the lifetime lock."""
    from nhance_batch.state.lease_backends import LeaseFile

    backend = LeaseFile(_lease_path(tmp_path))
    assert backend.read() is None
    first = backend.create({"owner": "a", "lock": False})
    assert first is not None
    assert backend.create({"owner": "b", "lock": False}) is None  # exists: refused
    found = backend.read()
    assert found is not None and found.version == first
    assert found.record == {"owner": "a", "lock": True}  # the writer holds the lifetime lock
    assert not found.lock_free  # held by this backend
    second = backend.replace({"owner": "a", "n": 2}, first)
    assert second is not None and second != first
    assert backend.replace({"owner": "c"}, first) is None  # stale version: refused
    assert backend.read().record["owner"] == "a"
    assert backend.delete(first) is False and os.path.exists(backend.where)  # stale: kept
    assert not os.path.exists(backend.where + ".lock")  # a delete lets go of the lock
    found = backend.read()
    assert found is not None and found.lock_free is False  # no lock file: proves nothing
    Path(backend.where + ".lock").touch()  # left by a holder that died
    assert backend.read().lock_free is True
    assert backend.delete(second) is True and backend.read() is None

"""The lease kept as an object in S3 (moto), GCS (fake-gcs-server) and Azure Blob (Azurite):
conditional create and renewal enforced by the store, races with one winner, take-over
noticed by the old holder, dead holders taken over at once, renewal errors mark it lost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from nhance_batch.state.lease import LeaseError, StoreLease, lease_for, live_holder
from nhance_batch.storage.conditional import PlainObject, conditional_object

RACERS = 8


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _owner(store, url: str) -> str | None:
    found = conditional_object(url, store.storage_options).read()
    return None if found is None else json.loads(found[0])["owner"]


def test_conditional_primitives(store):
    url = store.key("job", "_nhance", "lease.json")
    obj = conditional_object(url, store.storage_options)
    assert not isinstance(obj, PlainObject) and obj.atomic
    assert obj.read() is None
    first = obj.create(b'{"n": 1}')
    assert first is not None
    assert obj.create(b'{"n": 2}') is None  # exists: refused by the store
    assert obj.read() == (b'{"n": 1}', first)
    second = obj.replace(b'{"n": 3}', first)
    assert second is not None and second != first
    assert obj.replace(b'{"n": 4}', first) is None  # stale version: refused
    assert obj.read() == (b'{"n": 3}', second)
    assert obj.delete(first) is False  # stale version: kept
    assert obj.read() is not None
    assert obj.delete(second) is True
    assert obj.read() is None
    assert obj.replace(b'{"n": 5}', second) is None  # gone: nothing to replace
    assert obj.read() is None


ROUNDS = 4


def _expired_record() -> bytes:
    return json.dumps({"owner": "dead", "host": "elsewhere", "pid": 1, "heartbeat": 0.0,
                       "ttl": 1.0}).encode()


@pytest.mark.parametrize("existing", ["absent", "expired"])
def test_racing_drivers_exactly_one_wins(store, existing):
    """Drivers started in the same instant: the store's precondition lets one through (a
    lease absent: conditional create; an expired one: conditional replace). Several rounds,
    each on its own lease."""
    for round_ in range(ROUNDS):
        url = store.key(f"job{round_}", "_nhance", "lease.json")
        if existing == "expired":
            store.put(f"job{round_}/_nhance/lease.json", _expired_record())
        leases = [lease_for(url, store.storage_options, ttl=30.0, owner=f"racer-{i}")
                  for i in range(RACERS)]
        assert all(isinstance(lease, StoreLease) for lease in leases)
        for lease in leases:
            lease.backend.object  # resolve the client before the start line
        barrier = threading.Barrier(len(leases))
        winners: list[str] = []
        refused: list[str] = []

        def race(lease: StoreLease) -> None:
            barrier.wait()
            try:
                lease.acquire()
            except LeaseError as exc:
                refused.append(str(exc))
            else:
                winners.append(lease.owner)

        threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(winners) == 1, (round_, winners)
        assert len(refused) == RACERS - 1
        assert all(winners[0] in message for message in refused)
        assert _owner(store, url) == winners[0]
        winner = next(lease for lease in leases if lease.owner == winners[0])
        assert winner.heartbeat() and not winner.lost
        for lease in leases:
            lease.release()
        assert _owner(store, url) is None


def test_take_over_of_a_stale_view_is_refused(store):
    """B reads an expired lease; before B writes, A takes it. B's write, conditional on the
    version B read, is refused by the store, and B reports A as the live holder instead of
    overwriting it."""
    url = store.key("job", "_nhance", "lease.json")
    store.put("job/_nhance/lease.json", _expired_record())
    a = StoreLease(url, store.storage_options, ttl=30.0, owner="driver-a")
    b = StoreLease(url, store.storage_options, ttl=30.0, owner="driver-b")
    real_read = b.backend.object.read
    calls = []

    def read_then_lose_the_race():  # type: ignore[no-untyped-def]
        found = real_read()
        if not calls:
            a.acquire()  # between B's read and B's write
        calls.append(found)
        return found

    b.backend.object.read = read_then_lose_the_race
    with pytest.raises(LeaseError, match="driver-a"):
        b.acquire()
    assert json.loads(calls[0][0])["owner"] == "dead"  # what B saw first
    assert _owner(store, url) == "driver-a"
    assert a.heartbeat() and not a.lost
    a.release()


def test_take_over_is_noticed_and_never_overwritten(store):
    url = store.key("job", "_nhance", "lease.json")
    old = StoreLease(url, store.storage_options, ttl=30.0, owner="old")
    old.acquire()
    assert old.heartbeat()
    assert live_holder(url, store.storage_options)["owner"] == "old"
    with pytest.raises(LeaseError, match="old"):
        StoreLease(url, store.storage_options, ttl=30.0, owner="new").acquire()
    new = StoreLease(url, store.storage_options, ttl=30.0, owner="new")
    new.acquire(force=True)
    assert old.heartbeat() is False  # its version is gone: the conditional renewal fails
    assert old.lost and "taken over by new" in old.lost_reason
    assert _owner(store, url) == "new"
    old.release()  # conditional delete on the old version: the new holder's lease stays
    assert _owner(store, url) == "new"
    assert new.heartbeat() and not new.lost
    new.release()
    assert _owner(store, url) is None


def test_dead_holder_on_this_machine_is_taken_over_at_once(store):
    url = store.key("job", "_nhance", "lease.json")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    now = time.time()
    record = {"owner": "killed", "host": socket.gethostname(), "pid": proc.pid,
              "started": now - 1, "boot": open("/proc/sys/kernel/random/boot_id").read().strip(),
              "pidns": os.stat("/proc/self/ns/pid").st_ino, "lock": False,
              "acquired": now - 10, "heartbeat": now, "ttl": 30.0}
    store.put("job/_nhance/lease.json", json.dumps(record).encode())
    assert live_holder(url, store.storage_options) is None
    lease = StoreLease(url, store.storage_options, ttl=30.0, owner="resumer")
    lease.acquire()  # a fresh heartbeat, but its process is gone: no --force needed
    assert _owner(store, url) == "resumer"
    lease.release()
    # the same record from a live process (this one) is refused
    record.update(pid=os.getpid(), started=psutil.Process().create_time())
    store.put("job/_nhance/lease.json", json.dumps(record).encode())
    with pytest.raises(LeaseError, match="a live process on this machine"):
        StoreLease(url, store.storage_options, ttl=30.0, owner="resumer").acquire()


def test_brief_store_outage_keeps_the_lease(store):
    url = store.key("job", "_nhance", "lease.json")
    # the lease's requests are single attempts, retried by the lease itself within the ttl
    lease = StoreLease(url, store.storage_options, ttl=10.0, owner="me")
    lease.acquire()
    lease.start_heartbeat()
    try:
        failed = store.proxy.requests_failed
        store.proxy.fail(503, count=2)  # a few requests answered "unavailable"
        assert _wait_for(lambda: store.proxy.requests_failed >= failed + 2, timeout=15)
        before = json.loads(conditional_object(url, store.storage_options).read()[0])
        assert _wait_for(lambda: json.loads(conditional_object(
            url, store.storage_options).read()[0])["heartbeat"] > before["heartbeat"], 25)
        assert not lease.lost, lease.lost_reason
    finally:
        store.proxy.heal()
        lease.release()
    assert _owner(store, url) is None


def _default_client(store) -> dict:
    """The store's options for a client of its own, with the library's default retries (the
    fixture shortens those of the shared client, which the other tests use)."""
    return dict(store.storage_options, skip_instance_cache=True)


def _heartbeat(store, url: str) -> float:
    return json.loads(conditional_object(url, store.storage_options).read()[0])["heartbeat"]


@pytest.mark.parametrize("trouble", ["four 503 answers in a row", "a request never answered"])
def test_store_trouble_within_the_ttl_keeps_the_lease_with_the_libraries_default_retries(
        store, trouble):
    """With each library's production retry policy, the lease makes one attempt per request,
    cut after a quarter of its ttl, and retries itself within its ttl. Otherwise the
    libraries' backoffs (azure-storage-blob 15 s before its first retry, gcsfs 1 + 2 + 4 s)
    or a client waiting out its read timeout (10 s to minutes) for a request the store took
    and never answered would outlast this ttl, and the lease would be lost."""
    url = store.key("job", "_nhance", "lease.json")
    lease = StoreLease(url, _default_client(store), ttl=6.0, owner="me")
    lease.acquire()
    lease.start_heartbeat()
    try:
        failed = store.proxy.requests_failed
        count = 4 if trouble.startswith("four") else 1
        if count == 4:
            store.proxy.fail(503, count=count)
        else:
            store.proxy.stall(count=count)
        assert _wait_for(lambda: store.proxy.requests_failed >= failed + count, timeout=10)
        before = _heartbeat(store, url)
        assert _wait_for(lambda: _heartbeat(store, url) > before, 10)
        time.sleep(lease.ttl)  # a whole ttl later, renewals still land
        assert not lease.lost, lease.lost_reason
        assert _wait_for(lambda: _heartbeat(store, url) > before + lease.ttl / 2, 10)
    finally:
        store.proxy.heal()
        lease.release()
    assert _owner(store, url) is None


def test_renewal_error_marks_the_lease_lost(store):
    url = store.key("job", "_nhance", "lease.json")
    lease = StoreLease(url, store.storage_options, ttl=1.5, owner="me")
    lease.acquire()
    lease.start_heartbeat()
    try:
        time.sleep(0.8)
        assert not lease.lost
        store.proxy.fail(403)  # every request refused from now on
        assert _wait_for(lambda: lease.lost, timeout=30)
        assert lease.lost_reason and ("heartbeat" in lease.lost_reason
                                      or "ttl" in lease.lost_reason)
        with pytest.raises(LeaseError):
            lease.check()
    finally:
        store.proxy.heal()
        lease.release()


def test_store_without_conditional_writes_falls_back(store, monkeypatch):
    """An S3-compatible store answering 501 to conditional requests: the lease still works,
    through read-then-write with a read-back (and says so in the log)."""
    if store.name != "s3":
        pytest.skip("the 501 answer is S3's way of saying it")
    from botocore.exceptions import ClientError

    from nhance_batch.storage import conditional

    real_put = conditional.S3Object._put
    answer = ClientError({"Error": {"Code": "NotImplemented", "Message": "If-Match"},
                          "ResponseMetadata": {"HTTPStatusCode": 501}}, "PutObject")
    with pytest.raises(conditional.PreconditionsUnsupported):
        conditional.conditional_object(store.key("x"), store.storage_options)._unsupported(answer)

    def put_without_preconditions(self, data, **condition):  # type: ignore[no-untyped-def]
        if condition:
            self._unsupported(answer)
        return real_put(self, data)

    url = store.key("job", "_nhance", "lease.json")
    lease = StoreLease(url, store.storage_options, ttl=30.0, owner="me")
    lease.acquire()  # conditional create worked: ETag versions
    monkeypatch.setattr(conditional.S3Object, "_put", put_without_preconditions)
    assert lease.heartbeat() and not lease.lost  # switched over, renewal kept
    assert isinstance(lease.backend.object, PlainObject)
    with pytest.raises(LeaseError, match="me"):
        StoreLease(url, store.storage_options, ttl=30.0, owner="other").acquire()
    lease.release()
    assert _owner(store, url) is None

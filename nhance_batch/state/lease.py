"""One driver at a time per output folder: a lease with a heartbeat, and proof of death.

The driver holds ``OUTPUT/_nhance/lease.json`` while it works and renews its heartbeat every
``ttl / 3`` seconds. The record names its holder (:mod:`nhance_batch.state.liveness`). Another
driver may take the lease over when

* its holder is **provably dead**: it ran on this machine (same host name and kernel boot) and
  its process is gone, or the pid now belongs to a process started at another time (pid
  reuse), or it is a zombie; or, for a lease file, the holder recorded that it holds the
  lifetime lock file ``lease.json.lock`` and that lock is free. Then it is taken at once;
* or its heartbeat is older than its ttl (a holder on another machine, which may be alive,
  is only ever judged this way);
* or ``force`` (the old holder notices and sets :attr:`Lease.lost`).

One loop, :class:`Lease`, does this over a backend that reads the record and writes it only
under a condition on its version (:mod:`nhance_batch.state.lease_backends`): a local file
guarded by ``flock``, or an object whose store checks the condition itself (S3, GCS, Azure
Blob). Every write is conditional on the version last seen, so of drivers starting in the
same instant exactly one proceeds, and a taken-over holder learns it at its next renewal.

Store requests are single attempts cut after ``max(1 s, ttl / 4)``; a transient error
(timeout, connection, 5xx) is tried again with short backoffs while the last renewal is
younger than the ttl, since until then no other driver may take over. Any other failed
renewal marks the lease lost (:attr:`Lease.lost`, with :attr:`Lease.lost_reason`) at once,
and so does a ttl without a renewal: on any doubt the lease is lost. Heartbeat ages compare
wall-clock times, so machines sharing an output need roughly synchronized clocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Callable, Protocol, TypeVar

from nhance_batch.state.lease_backends import Found, LeaseBackend, LeaseFile, LeaseObject
from nhance_batch.state.liveness import identity, process_gone, same_kernel

log = logging.getLogger(__name__)

DEFAULT_TTL = 30.0
TTL_ENV = "NHANCE_LEASE_TTL"
_UNREADABLE_WAIT_S = 0.05  # how long to wait for a lease file being created to get its content
_MAX_RACE_ROUNDS = 20
_MIN_ATTEMPT_S = 1.0  # a store lease's request is cut after max(this, ttl / 4) seconds
_RETRY_FIRST_S = 0.2  # first backoff of a retry after a transient error
_RETRY_MAX_S = 2.0

_WON, _RACE, _WAIT = "won", "race", "wait"  # outcomes of one attempt to take the lease
T = TypeVar("T")


class LeaseError(RuntimeError):
    """The lease is held by another live driver (or could not be taken or kept)."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


def lease_ttl(ttl: float | None = None) -> float:
    """``ttl`` if given, else ``NHANCE_LEASE_TTL`` from the environment, else 30 s.

    Raises:
        ValueError: the ttl is not a positive number.
    """
    if ttl is None:
        text = os.environ.get(TTL_ENV)
        if not text:
            return DEFAULT_TTL
        try:
            ttl = float(text)
        except ValueError as exc:
            raise ValueError(f"{TTL_ENV}={text!r} is not a number of seconds") from exc
        if ttl <= 0:
            raise ValueError(f"{TTL_ENV}={text!r} must be positive")
    if float(ttl) <= 0:
        raise ValueError(f"lease ttl must be positive, got {ttl}")
    return float(ttl)


def _iso(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return "an unknown time"


def _fresh(holder: dict[str, Any], now: float) -> bool:
    try:
        return now - float(holder["heartbeat"]) < float(holder["ttl"])
    except (KeyError, TypeError, ValueError):
        return False  # a lease without a usable heartbeat cannot prove its holder alive


def _provably_dead(found: Found) -> bool:
    """True if the record's holder cannot be running any more (see the module docstring)."""
    holder = found.record
    if not holder or not same_kernel(holder):
        return False
    if holder.get("lock") and found.lock_free:
        return True  # it held its lifetime lock all its life: a free lock means it is gone
    return process_gone(holder)


class LeaseLost(RuntimeError):
    """Another driver took the job over; this one stopped without writing its state."""


class HeldLease(Protocol):
    """What the driver and its scheduler read of the job's lease while it runs (its heartbeat sets both)."""

    @property
    def lost(self) -> bool: ...
    lost_reason: str | None


class Lease:
    """An exclusive, expiring claim on one output folder.

    ``where`` is the lease file's path, or the backend that keeps the record (see
    :class:`StoreLease` for a store). ``ttl`` is how long a heartbeat stays valid (seconds);
    None takes ``NHANCE_LEASE_TTL`` from the environment, or 30 s. ``owner`` names this
    holder (unique per process by default). Use as a context manager (acquire, heartbeat,
    release) or call the steps.
    """

    def __init__(self, where: str | os.PathLike[str] | LeaseBackend, *,
                 ttl: float | None = None, owner: str | None = None) -> None:
        self.backend: LeaseBackend = (LeaseFile(os.fspath(where))
                                      if isinstance(where, (str, os.PathLike)) else where)
        self.path = self.backend.where
        self.ttl = lease_ttl(ttl)
        me = identity()
        self.host = me["host"]
        self.pid = me["pid"]
        self.owner = owner or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.acquired: float | None = None
        #: why the lease was lost (None while it is held or was never lost)
        self.lost_reason: str | None = None
        self._lost = False
        self._version: str | None = None  # of the record this holder wrote last
        self._renewed: float | None = None  # time.monotonic() of the last confirmed write
        self._stamp = 0.0  # time.monotonic() when the last record was made
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lost: set on a failed renewal, or true by itself once the ttl passed in silence ----

    @property
    def lost(self) -> bool:
        """True once the lease is no longer certainly ours: taken over, a renewal failed, or
        none succeeded for a whole ttl (others may take it by then). Check before commits."""
        if self._lost:
            return True
        renewed = self._renewed
        if renewed is not None and time.monotonic() - renewed > self.ttl:
            self._lose(f"no heartbeat could be written for {self.ttl:g} s (the ttl)")
            return True
        return False

    @lost.setter
    def lost(self, value: bool) -> None:
        self._lost = bool(value)
        if not value:
            self.lost_reason = None

    def _lose(self, reason: str) -> None:
        if not self._lost:
            self.lost_reason = reason
            log.warning("lease %s lost: %s", self.path, reason)
        self._lost = True

    def _held(self) -> None:
        self._lost = False
        self.lost_reason = None
        self._renewed = self._stamp

    # -- the record, and the backend's operations -------------------------------------------

    def _record(self) -> dict[str, Any]:
        # the ttl others apply runs from this heartbeat's time, so ours does too
        self._stamp = time.monotonic()
        now = time.time()
        me = identity()
        return {
            "owner": self.owner,
            "host": self.host,
            "pid": self.pid,
            "started": me["started"],
            "boot": me["boot"],
            "pidns": me["pidns"],
            "lock": False,  # a lease file sets it when its writer holds the lifetime lock
            "acquired": self.acquired if self.acquired is not None else now,
            "heartbeat": now,
            "ttl": self.ttl,
        }

    def _deadline(self) -> float:
        """Until when (monotonic) a request may still be retried: while held, until the
        ttl after the last renewal runs out (then the lease is lost anyway); otherwise one
        ttl from now."""
        renewed = self._renewed
        return renewed + self.ttl if renewed is not None else time.monotonic() + self.ttl

    def _call(self, op: Callable[..., T], *args: Any) -> T:
        """``op(*args)``, tried again after transient errors (backoff 0.2 s doubling to
        2 s, with jitter) while the next try can still start before :meth:`_deadline`."""
        from nhance_batch.storage.retry import RetryPolicy, is_transient

        deadline = self._deadline()
        backoff = RetryPolicy(base=_RETRY_FIRST_S, cap=_RETRY_MAX_S)
        attempt = 0
        while True:
            try:
                return op(*args)
            except Exception as exc:  # noqa: BLE001 - judged below
                wait = backoff.delay(attempt)
                if not is_transient(exc) or time.monotonic() + wait >= deadline:
                    raise
                log.warning("lease %s: %s: %s; trying again in %.1f s", self.path,
                            type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc)
                            else "", wait)
                time.sleep(wait)
                attempt += 1

    def _read(self) -> Found | None:
        return self._call(self.backend.read)

    def _ours(self, found: Found | None) -> bool:
        return found is not None and found.record.get("owner") == self.owner

    # -- judging a holder ---------------------------------------------------------------------

    def _holder_alive(self, found: Found, now: float) -> bool:
        return _fresh(found.record, now) and not _provably_dead(found)

    def _refusal(self, holder: dict[str, Any], now: float) -> LeaseError:
        try:
            age = f"{now - float(holder.get('heartbeat', 0)):.1f} s ago"
        except (TypeError, ValueError):
            age = "at an unknown time"
        where = ("a live process on this machine" if same_kernel(holder)
                 else "possibly alive on another machine")
        message = (
            f"another nhance-batch driver holds {self.path}: owner {holder.get('owner')!s} "
            f"(host {holder.get('host')!s}, pid {holder.get('pid')!s}, {where}), since "
            f"{_iso(holder.get('acquired'))}, last heartbeat {age} (ttl {holder.get('ttl')!s} s). "
            "Wait for it to finish, or pass --force to take over (only if that driver is dead "
            "or must be stopped; it will notice and stop committing)."
        )
        return LeaseError(message, holder)

    def holder(self) -> dict[str, Any] | None:
        """The record of the driver holding this lease if it may be alive, else None."""
        found = self._read()
        if found is None or not self._holder_alive(found, time.time()):
            return None
        return found.record

    # -- taking the lease ---------------------------------------------------------------------

    def acquire(self, force: bool = False) -> None:
        """Take the lease, or raise :class:`LeaseError` naming the live holder.

        Taken if absent (created only if absent), if it is already ours, if its holder is
        provably dead, if its heartbeat is older than its ttl, or if ``force``. Every write
        is conditional on the version read, so of drivers racing for it exactly one wins and
        the others see the winner as holder.
        """
        self.acquired = time.time()
        unreadable_until = time.monotonic() + max(1.0, self.ttl)
        races = 0
        while races < _MAX_RACE_ROUNDS:
            outcome = self._attempt(force, unreadable_until)
            if outcome == _WON:
                self._held()
                return
            if outcome == _WAIT:
                time.sleep(_UNREADABLE_WAIT_S)
            else:
                races += 1  # someone else wrote in between: look again at who holds it now
        raise LeaseError(f"could not take {self.path}: it kept changing under {self.owner}")

    def _attempt(self, force: bool, unreadable_until: float) -> str:
        """One try: create the record, or judge the one there and replace it."""
        now = time.time()
        version = self._call(self.backend.create, self._record())
        if version is None:
            found = self._read()
            if found is None:
                return _RACE  # released in between: create again
            if self._creator_may_be_writing(found, force, now, unreadable_until):
                return _WAIT
            holder = found.record
            if holder.get("owner") == self.owner:
                self.acquired = holder.get("acquired", self.acquired)
            elif holder and not force and self._holder_alive(found, now):
                raise self._refusal(holder, now)
            version = self._call(self.backend.replace, self._record(), found.version)
            if version is None:
                return _RACE
        self._version = version
        # read back: a store without conditional writes may have let another writer through
        return _WON if self._ours(self._read()) else _RACE

    def _creator_may_be_writing(self, found: Found, force: bool, now: float,
                                until: float) -> bool:
        """An unreadable record younger than the ttl may be a create still being written (a
        lease file): wait for it, up to ``until``; older ones are taken over."""
        if found.record or force or found.written is None or now - found.written > self.ttl:
            return False
        if time.monotonic() > until:
            raise LeaseError(f"the lease {self.backend.kind} {self.path} is unreadable and "
                             "fresh; pass --force to take over")
        return True

    # -- keeping it ---------------------------------------------------------------------------

    def heartbeat(self) -> bool:
        """Renew the heartbeat once; False (and ``lost`` set) if the lease is no longer ours.
        Errors propagate (the heartbeat thread turns them into a lost lease)."""
        if self._version is None:
            self._lose("the lease is not held")
            return False
        version = self._call(self.backend.replace, self._record(), self._version)
        if version is None:
            found = self._read()
            if found is not None and self._ours(found):
                # our own earlier write landed though its answer was lost (a retried
                # request): only this driver writes its owner name, so renew on that
                version = self._call(self.backend.replace, self._record(), found.version)
        if version is None:
            self._lose(self._loss_reason(self._read()))
            return False
        self._version = version
        self._renewed = self._stamp
        return True

    def _loss_reason(self, found: Found | None) -> str:
        if found is None:
            return f"the lease {self.backend.kind} disappeared"
        if not found.record:
            return f"the lease {self.backend.kind} became unreadable"
        return f"the lease was taken over by {found.record.get('owner')}"

    def _beat(self) -> None:
        """Renew every ttl/3. A transient error is tried again sooner while the last
        renewal is younger than the ttl; any other exception, and a ttl without a renewal,
        marks the lease lost and ends the thread."""
        from nhance_batch.storage.retry import is_transient

        interval = self.ttl / 3.0
        wait = interval
        while not self._stop.wait(wait):
            wait = interval
            try:
                if not self.heartbeat():
                    return
            except BaseException as exc:  # noqa: BLE001 - every failure is judged here
                why = f"renewing the heartbeat failed: {type(exc).__name__}: {exc}"
                retry_in = min(interval / 2.0, 1.0)
                renewed = self._renewed
                if isinstance(exc, Exception) and is_transient(exc) and renewed is not None \
                        and time.monotonic() + retry_in - renewed < self.ttl:
                    log.warning("lease %s: %s; trying again in %.1f s", self.path, why,
                                retry_in)
                    wait = retry_in
                    continue
                self._lose(why)
                return
            if self.lost:  # a renewal that came later than the ttl
                return

    def start_heartbeat(self) -> None:
        """Start a daemon thread renewing the heartbeat every ttl/3 until release or loss."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name=f"nhance-lease-{os.path.basename(self.path)}", daemon=True
        )
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`LeaseError` if the lease is lost (call before committing)."""
        if self.lost:
            raise LeaseError(
                f"the lease {self.path} is no longer this driver's ({self.lost_reason}); "
                "another driver may have taken over: this driver must stop"
            )

    # -- letting go ---------------------------------------------------------------------------

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def release(self) -> None:
        """Stop the heartbeat and delete the record if it is still ours (a lease taken over
        is left to its new holder)."""
        self._stop_heartbeat()
        self._renewed = None
        version, self._version = self._version, None
        if version is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self._call(self.backend.delete, version):
                return
            found = self._read()  # ours at another version (a lost answer)?
            if found is not None and self._ours(found):
                self._call(self.backend.delete, found.version)

    def __enter__(self) -> Lease:
        self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class StoreLease(Lease):
    """The lease kept as an object in a store (``s3://``, ``gs://``, ``az://``...).

    Each request is one attempt of at most a quarter of the ttl (the client libraries' own
    retries are off for it), and transient errors are retried by the lease with short
    backoffs until the ttl would run out: a library's backoff (15 s and more for
    azure-storage-blob) would otherwise let a few failed requests in a row outlast the ttl
    and lose the lease.
    """

    def __init__(self, url: str, storage_options: dict | None = None, *,
                 ttl: float | None = None, owner: str | None = None) -> None:
        ttl = lease_ttl(ttl)
        backend = LeaseObject(url, storage_options,
                              attempt_timeout=max(_MIN_ATTEMPT_S, ttl / 4.0))
        super().__init__(backend, ttl=ttl, owner=owner)


def lease_for(url: str, storage_options: dict | None = None, **kwargs: Any) -> Lease:
    """The lease at ``url``: a lease file for local paths, a lease object in a store."""
    from nhance_batch.storage import is_local_url, local_path

    if is_local_url(url):
        return Lease(local_path(url), **kwargs)
    return StoreLease(url, storage_options, **kwargs)


def live_holder(path: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """The record of the driver holding the lease at ``path`` if it may be alive (fresh
    heartbeat, and not provably dead), else None."""
    try:
        return lease_for(path, storage_options).holder()
    except (ValueError, FileNotFoundError):
        return None

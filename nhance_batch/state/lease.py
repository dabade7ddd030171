"""One driver at a time per output folder: a lease with a heartbeat, and proof of death.

The driver holds ``OUTPUT/_nhance/lease.json`` while it works and renews its heartbeat every
``ttl / 3`` seconds. Another driver may take the lease over when

* its holder is **provably dead**: it ran on this machine (same host name and kernel boot) and
  its process is gone, or the pid now belongs to a process started at another time (pid
  reuse), or it is a zombie; or, for a lease file, the holder recorded that it holds the
  sibling lock file ``lease.json.lock`` (an ``flock`` kept for the holder's whole life, which
  the kernel drops when the process dies) and that lock is free. Then it is taken at once;
* or its heartbeat is older than its ttl (a holder on another machine, which may be alive,
  is only ever judged this way);
* or ``force`` (the old holder notices and sets :attr:`Lease.lost`).

Every renewal is conditional on the lease still being ours: a lease file is re-read under an
exclusive ``flock`` on its folder (the same lock serializes every read-decide-write step on
one machine); a lease object in S3, GCS or Azure Blob is created with the store's own
"only if absent" precondition and replaced or deleted only if its ETag / generation is the
one we wrote (:mod:`nhance_batch.storage.conditional`), so of drivers starting in the same
instant exactly one proceeds, and a taken-over holder learns it at its next renewal. A
failed renewal marks the lease lost (:attr:`Lease.lost`, with :attr:`Lease.lost_reason`) at
once, except a transient store error, which is tried again while the last renewal is younger
than the ttl; a ttl without a renewal marks it lost too.
Heartbeat ages compare wall-clock times, so machines sharing an output need roughly
synchronized clocks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

try:  # POSIX only; elsewhere the file protocol and the pid check guard the lease
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DEFAULT_TTL = 30.0
TTL_ENV = "NHANCE_LEASE_TTL"
_UNREADABLE_WAIT_S = 0.05  # how long to wait for a lease file being created to get its content
_START_TIME_SLACK_S = 1.0  # process start times are derived from boot time: allow its jitter
_MAX_RACE_ROUNDS = 20
_MIN_ATTEMPT_S = 1.0  # a store lease's request is cut after max(this, ttl / 4) seconds
_RETRY_FIRST_S = 0.2  # first backoff of a store lease's retry after a transient error
_RETRY_MAX_S = 2.0


class LeaseError(RuntimeError):
    """The lease is held by another live driver (or could not be taken or kept)."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


def _ttl_from_env() -> float:
    text = os.environ.get(TTL_ENV)
    if not text:
        return DEFAULT_TTL
    try:
        ttl = float(text)
    except ValueError as exc:
        raise ValueError(f"{TTL_ENV}={text!r} is not a number of seconds") from exc
    if ttl <= 0:
        raise ValueError(f"{TTL_ENV}={text!r} must be positive")
    return ttl


def _iso(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return "an unknown time"


# -- who is this process, and is that one still alive -----------------------------------------

def _boot_id() -> str | None:
    """This kernel boot's id (Linux); None elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> int | None:
    """The pid namespace's inode (Linux): pids of two containers are not comparable."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - psutil missing or the process unreadable
        return None


_IDENTITY: dict[str, Any] | None = None


def _identity() -> dict[str, Any]:
    """Host, pid, process start time, boot id and pid namespace of this process."""
    global _IDENTITY
    pid = os.getpid()
    if _IDENTITY is None or _IDENTITY["pid"] != pid:  # recomputed after a fork
        _IDENTITY = {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid),
                     "boot": _boot_id(), "pidns": _pid_namespace()}
    return dict(_IDENTITY)


def _same_kernel(holder: dict[str, Any]) -> bool:
    """True if the holder ran on this machine, in this boot."""
    me = _identity()
    if holder.get("host") != me["host"]:
        return False
    return not (holder.get("boot") and me["boot"] and holder["boot"] != me["boot"])


def _process_gone(holder: dict[str, Any]) -> bool:
    """True if the holder's process provably no longer runs (call only for this kernel)."""
    me = _identity()
    if holder.get("pidns") is not None and me["pidns"] is not None \
            and holder["pidns"] != me["pidns"]:
        return False  # another container's pid: nothing to compare here
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        started = process.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # e.g. access denied: it exists
    recorded = holder.get("started")
    if isinstance(recorded, (int, float)) and abs(started - float(recorded)) > _START_TIME_SLACK_S:
        return True  # the pid was reused by a later process
    return False


class Lease:
    """An exclusive, expiring claim on one output folder, kept in a local lease file.

    ``ttl`` is how long a heartbeat stays valid (seconds); None takes ``NHANCE_LEASE_TTL``
    from the environment, or 30 s. ``owner`` names this holder (unique per process by
    default). Use as a context manager (acquire, heartbeat, release) or call the steps.
    """

    def __init__(self, path: str, *, ttl: float | None = None, owner: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.ttl = float(ttl) if ttl is not None else _ttl_from_env()
        if self.ttl <= 0:
            raise ValueError(f"lease ttl must be positive, got {self.ttl}")
        me = _identity()
        self.host = me["host"]
        self.pid = me["pid"]
        self.owner = owner or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.acquired: float | None = None
        #: why the lease was lost (None while it is held or was never lost)
        self.lost_reason: str | None = None
        self._lost = False
        self._renewed: float | None = None  # time.monotonic() of the last confirmed write
        self._stamp = 0.0  # time.monotonic() when the last record was made
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._life_fd: int | None = None  # the held sibling lock file (local leases)
        self._life_existed = False  # it was there before we opened it (left by a holder)

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

    # -- file helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize lease read-decide-write steps on this machine (flock on the folder)."""
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        if fcntl is None:
            yield
            return
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            yield
            return
        try:
            with contextlib.suppress(OSError):  # e.g. a file system without flock: go unlocked
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    @property
    def _lock_path(self) -> str:
        return f"{self.path}.lock"

    def _take_life_lock(self) -> bool:
        """Hold the sibling lock file from now until release (call under :meth:`_locked`);
        False if another open of it holds the lock, or locks are unavailable."""
        if self._life_fd is not None:
            return True
        if fcntl is None:
            return False
        existed = True
        try:
            try:
                fd = os.open(self._lock_path, os.O_RDWR)
            except FileNotFoundError:
                fd = os.open(self._lock_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                existed = False
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._life_fd, self._life_existed = fd, existed
        return True

    def _drop_life_lock(self, unlink: bool = True) -> None:
        """Unlock (and unlink) the sibling lock file (call under :meth:`_locked`)."""
        fd, self._life_fd = self._life_fd, None
        if fd is None:
            return
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
        os.close(fd)

    def _lock_is_free(self) -> bool | None:
        """Whether the sibling lock file is there and nobody holds it (probe, under
        :meth:`_locked`); None when that cannot be told. A missing file proves nothing
        (removed by hand, or by a refused attempt elsewhere), so it is None too."""
        if fcntl is None:
            return None
        try:
            fd = os.open(self._lock_path, os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return None
        finally:
            os.close(fd)  # also drops a probe lock we just took
        return True

    def _record(self) -> dict[str, Any]:
        # the ttl others apply runs from this heartbeat's time, so ours does too
        self._stamp = time.monotonic()
        now = time.time()
        me = _identity()
        return {
            "owner": self.owner,
            "host": self.host,
            "pid": self.pid,
            "started": me["started"],
            "boot": me["boot"],
            "pidns": me["pidns"],
            "lock": self._life_fd is not None,
            "acquired": self.acquired if self.acquired is not None else now,
            "heartbeat": now,
            "ttl": self.ttl,
        }

    def _read(self) -> dict[str, Any] | None:
        """The lease file's content; None if absent. Raises ValueError if unreadable."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        record = json.loads(data)  # ValueError (JSONDecodeError) on empty/partial content
        if not isinstance(record, dict):
            raise ValueError("lease file does not hold a JSON object")
        return record

    def _write_replace(self, record: dict[str, Any]) -> None:
        """Atomically replace the lease file with ``record`` (temp file + os.replace)."""
        temp = f"{self.path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _create_exclusive(self, record: dict[str, Any]) -> bool:
        """Create the lease file if absent (O_CREAT|O_EXCL); False if it already exists."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _mtime(self) -> float:
        return os.stat(self.path).st_mtime

    def _unlink(self) -> None:
        os.unlink(self.path)

    # -- judging a holder ---------------------------------------------------------------------

    def _provably_dead(self, holder: dict[str, Any]) -> bool:
        """True if the holder cannot be running any more (see the module's docstring)."""
        if not holder or not _same_kernel(holder):
            return False
        if holder.get("lock"):
            # it held the sibling lock all its life: the file it left is free = it is dead
            if self._life_fd is not None:
                if self._life_existed:  # we could lock the file it had locked
                    return True
            elif self._lock_is_free():
                return True
        return _process_gone(holder)

    @staticmethod
    def _fresh(holder: dict[str, Any], now: float) -> bool:
        try:
            return now - float(holder["heartbeat"]) < float(holder["ttl"])
        except (KeyError, TypeError, ValueError):
            return False  # a lease without a usable heartbeat cannot prove its holder alive

    def _holder_alive(self, holder: dict[str, Any], now: float) -> bool:
        return self._fresh(holder, now) and not self._provably_dead(holder)

    def _refusal(self, holder: dict[str, Any], now: float) -> LeaseError:
        try:
            age = f"{now - float(holder.get('heartbeat', 0)):.1f} s ago"
        except (TypeError, ValueError):
            age = "at an unknown time"
        where = ("a live process on this machine" if _same_kernel(holder)
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
        with self._locked():
            try:
                record = self._read()
            except ValueError:
                return None
            if record is None or not self._holder_alive(record, time.time()):
                return None
            return record

    # -- public API ---------------------------------------------------------------------------

    def acquire(self, force: bool = False) -> None:
        """Take the lease, or raise :class:`LeaseError` naming the live holder.

        Taken if absent (exclusive create), if it is already ours, if its holder is provably
        dead, if its heartbeat is older than its ttl, or if ``force``. A take-over is written
        to a temp file and renamed over the lease under the folder's lock.
        """
        deadline = time.monotonic() + max(1.0, self.ttl)
        while True:
            with self._locked():
                now = time.time()
                had_life = self._life_fd is not None
                self._take_life_lock()
                self.acquired = now
                if self._create_exclusive(self._record()):
                    holder = None
                else:
                    try:
                        holder = self._read()
                    except ValueError:
                        holder = {}  # being written by an exclusive creator, or garbage
                    if holder is None:
                        self._keep_life_lock(had_life)
                        continue  # vanished between create and read: try the create again
                    if not holder and not force:
                        # Empty/partial: a creator is mid-write, unless the file is stale.
                        try:
                            stale = now - self._mtime() > self.ttl
                        except FileNotFoundError:
                            self._keep_life_lock(had_life)
                            continue
                        if not stale:
                            self._keep_life_lock(had_life)
                            if time.monotonic() > deadline:
                                raise LeaseError(
                                    f"the lease file {self.path} is unreadable and fresh; "
                                    "pass --force to take over"
                                )
                            time.sleep(_UNREADABLE_WAIT_S)
                            continue
                    elif holder and holder.get("owner") != self.owner and not force:
                        if self._holder_alive(holder, now):
                            self._keep_life_lock(had_life)
                            raise self._refusal(holder, now)
                    if holder and holder.get("owner") == self.owner:
                        self.acquired = holder.get("acquired", now)
                    self._write_replace(self._record())
                confirmed = self._read()
                if not confirmed or confirmed.get("owner") != self.owner:  # pragma: no cover
                    self._keep_life_lock(had_life)
                    raise LeaseError(f"lost the race for {self.path}", confirmed)
                self._held()
                return

    def _keep_life_lock(self, had: bool) -> None:
        """Not taking the lease: give back a sibling lock taken by this attempt (removing
        the file only if this attempt made it)."""
        if not had:
            self._drop_life_lock(unlink=not self._life_existed)

    def _held(self) -> None:
        self._lost = False
        self.lost_reason = None
        self._renewed = self._stamp

    def heartbeat(self) -> bool:
        """Renew the heartbeat once; False (and ``lost`` set) if the lease is no longer ours.
        Errors propagate (the heartbeat thread turns them into a lost lease)."""
        with self._locked():
            try:
                holder = self._read()
            except ValueError:
                holder = None
            if not holder or holder.get("owner") != self.owner:
                self._lose(f"the lease was taken over by {(holder or {}).get('owner')}"
                           if holder else "the lease file disappeared")
                return False
            self._write_replace(self._record())
            self._renewed = self._stamp
            return True

    def _beat(self) -> None:
        """Renew every ttl/3. A transient store error (timeout, connection, 5xx) is tried
        again sooner while the last renewal is younger than the ttl, since until then no
        other driver may take over; any other exception, and a ttl without a renewal,
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

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease file if it is still ours."""
        self._stop_heartbeat()
        self._renewed = None
        with self._locked():
            try:
                holder = self._read()
            except ValueError:
                holder = None
            if holder and holder.get("owner") == self.owner:
                with contextlib.suppress(FileNotFoundError):
                    self._unlink()
            self._drop_life_lock()

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
    """The same lease kept as an object in a store (``s3://``, ``gs://``, ``az://``...).

    S3, GCS and Azure Blob enforce the conditions themselves: the lease is created only if
    absent and replaced or deleted only if it is still the version this driver last saw or
    wrote. Other stores fall back to read-then-write with a read-back check.

    Each request is one attempt of at most a quarter of the ttl (the client libraries' own
    retries are off for it), and transient errors are retried here with short backoffs
    until the ttl would run out: a library's backoff (15 s and more for azure-storage-blob)
    would otherwise let a few failed requests in a row outlast the ttl and lose the lease.
    """

    def __init__(self, url: str, storage_options: dict | None = None, **kwargs: Any) -> None:
        super().__init__("/" + url.split("://", 1)[-1], **kwargs)
        self.path = url
        self.storage_options = storage_options or {}
        self._version: str | None = None
        self._object: Any = None

    @property
    def _store(self) -> Any:
        if self._object is None:
            from nhance_batch.storage.conditional import conditional_object

            self._object = conditional_object(self.path, self.storage_options,
                                              attempt_timeout=self._attempt_timeout)
        return self._object

    @property
    def _attempt_timeout(self) -> float:
        return max(_MIN_ATTEMPT_S, self.ttl / 4.0)

    def _deadline(self) -> float:
        """Until when (monotonic) a request may still be retried: while held, until the
        ttl after the last renewal runs out (then the lease is lost anyway); otherwise one
        ttl from now."""
        renewed = self._renewed
        return renewed + self.ttl if renewed is not None else time.monotonic() + self.ttl

    def _retrying(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, tried again after transient store errors (backoff 0.2 s doubling
        to 2 s, with jitter) while the next try can still start before :meth:`_deadline`."""
        from nhance_batch.storage.retry import RetryPolicy, is_transient

        deadline = self._deadline()
        backoff = RetryPolicy(base=_RETRY_FIRST_S, cap=_RETRY_MAX_S)
        attempt = 0
        while True:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - judged below
                wait = backoff.delay(attempt)
                if not is_transient(exc) or time.monotonic() + wait >= deadline:
                    raise
                log.warning("lease %s: %s: %s; trying again in %.1f s", self.path,
                            type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc)
                            else "", wait)
                time.sleep(wait)
                attempt += 1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        yield

    def _take_life_lock(self) -> bool:
        return False

    def _drop_life_lock(self, unlink: bool = True) -> None:
        return None

    def _lock_is_free(self) -> bool | None:
        return None

    @staticmethod
    def _encode(record: dict[str, Any]) -> bytes:
        return json.dumps(record).encode()

    def _read_versioned(self) -> tuple[dict[str, Any], str] | None:
        """``(record, version)``; an unparseable object reads as ``{}`` (objects are written
        whole, so garbage is never a write in progress)."""
        found = self._retrying(lambda: self._store.read())
        if found is None:
            return None
        data, version = found
        try:
            record = json.loads(data)
        except ValueError:
            record = {}
        return (record if isinstance(record, dict) else {}), version

    def _read(self) -> dict[str, Any] | None:
        found = self._read_versioned()
        return None if found is None else found[0]

    def _confirm(self, version: str) -> bool:
        """The lease reads back as ours (a store that ignores preconditions, or one without
        them, is caught here at least when the other writer came first)."""
        found = self._read_versioned()
        return found is not None and found[0].get("owner") == self.owner

    def _conditional(self, op: str, *args: Any) -> Any:
        """``self._store.<op>(*args)``; a store that turns out not to implement conditional
        requests is used through read-then-write from then on (with a warning)."""
        from nhance_batch.storage.conditional import PlainObject, PreconditionsUnsupported

        try:
            return self._retrying(lambda: getattr(self._store, op)(*args))
        except PreconditionsUnsupported as exc:
            log.warning("%s; the lease falls back to read-then-write, which cannot stop two "
                        "drivers started in the same instant", exc)
            self._object = PlainObject(self.path, self.storage_options)
            if op == "create":
                return self._object.create(*args)
            found = self._read_versioned()  # versions of the other kind mean nothing here
            if found is None or found[0].get("owner") != self.owner:
                return None if op == "replace" else False  # acquire looks again
            return getattr(self._object, op)(*args[:-1], found[1])

    def acquire(self, force: bool = False) -> None:
        """Take the lease (see :meth:`Lease.acquire`); each write is conditional, so of
        drivers racing for it exactly one wins and the others see the winner as holder."""
        self.acquired = time.time()
        for _ in range(_MAX_RACE_ROUNDS):
            now = time.time()
            version = self._conditional("create", self._encode(self._record()))
            if version is not None:
                if self._confirm(version):
                    self._version = version
                    self._held()
                    return
                continue
            found = self._read_versioned()
            if found is None:
                continue  # released in between: create again
            holder, current = found
            if holder.get("owner") == self.owner:
                self.acquired = holder.get("acquired", self.acquired)
            elif holder and not force and self._holder_alive(holder, now):
                raise self._refusal(holder, now)
            version = self._conditional("replace", self._encode(self._record()), current)
            if version is not None and self._confirm(version):
                self._version = version
                self._held()
                return
            # someone else wrote in between: look again at who holds it now
        raise LeaseError(f"could not take {self.path}: it kept changing under {self.owner}")

    def heartbeat(self) -> bool:
        if self._version is None:
            self._lose("the lease is not held")
            return False
        version = self._conditional("replace", self._encode(self._record()), self._version)
        if version is None:
            found = self._read_versioned()
            if found is not None and found[0].get("owner") == self.owner:
                # our own earlier write landed though its answer was lost (a retried
                # request): only this driver writes its owner name, so renew on that
                version = self._conditional("replace", self._encode(self._record()), found[1])
        if version is None:
            found = self._read_versioned()
            owner = found[0].get("owner") if found else None
            self._lose(f"the lease was taken over by {owner}" if found
                       else "the lease object disappeared")
            return False
        self._version = version
        self._renewed = self._stamp
        return True

    def release(self) -> None:
        self._stop_heartbeat()
        self._renewed = None
        version, self._version = self._version, None
        if version is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self._conditional("delete", version):
                return
            found = self._read_versioned()  # ours at another version (a lost answer)?
            if found is not None and found[0].get("owner") == self.owner:
                self._conditional("delete", found[1])
            # otherwise not ours any more: left to its new holder


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

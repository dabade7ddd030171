"""One driver at a time per output folder: a lease file with a heartbeat.

The driver holds ``OUTPUT/_nhance/lease.json`` while it works and rewrites its heartbeat every
``ttl / 3`` seconds. Another driver refuses to start while the heartbeat is younger than the
lease's ttl; once a holder dies its heartbeat ages past the ttl and the lease may be taken.
``force`` takes a live lease over; the old holder's heartbeat thread then finds the lease no
longer its own and sets :attr:`Lease.lost`, which the old driver must check before committing.

On one machine every read-decide-write step (acquire, heartbeat, release) runs under an
exclusive ``flock`` on the lease's folder, so two processes can never both win; the file
protocol itself is race-aware too (``O_CREAT | O_EXCL`` for a fresh lease; temp file +
``os.replace`` and a re-read for a take-over). Across machines on a shared file system the
lease relies on roughly synchronized clocks, since heartbeat ages compare wall-clock times.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

try:  # POSIX only; elsewhere the file protocol alone guards the lease
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_TTL = 30.0
TTL_ENV = "NHANCE_LEASE_TTL"
_UNREADABLE_WAIT_S = 0.05  # how long to wait for a lease file being created to get its content


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


class Lease:
    """An exclusive, expiring claim on one output folder.

    ``ttl`` is how long a heartbeat stays valid (seconds); None takes ``NHANCE_LEASE_TTL``
    from the environment, or 30 s. ``owner`` names this holder (unique per process by
    default). Use as a context manager (acquire, heartbeat, release) or call the steps.
    """

    def __init__(self, path: str, *, ttl: float | None = None, owner: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.ttl = float(ttl) if ttl is not None else _ttl_from_env()
        if self.ttl <= 0:
            raise ValueError(f"lease ttl must be positive, got {self.ttl}")
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = owner or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.lost = False
        self.acquired: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def _record(self) -> dict[str, Any]:
        now = time.time()
        return {
            "owner": self.owner,
            "host": self.host,
            "pid": self.pid,
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

    def _refusal(self, holder: dict[str, Any], now: float) -> LeaseError:
        try:
            age = f"{now - float(holder.get('heartbeat', 0)):.1f} s ago"
        except (TypeError, ValueError):
            age = "at an unknown time"
        message = (
            f"another nhance-batch driver holds {self.path}: owner {holder.get('owner')!s} "
            f"(host {holder.get('host')!s}, pid {holder.get('pid')!s}), since "
            f"{_iso(holder.get('acquired'))}, last heartbeat {age} (ttl {holder.get('ttl')!s} s). "
            "Wait for it to finish, or pass --force to take over (only if that driver is dead "
            "or must be stopped; it will notice and stop committing)."
        )
        return LeaseError(message, holder)

    # -- public API ---------------------------------------------------------------------------

    def acquire(self, force: bool = False) -> None:
        """Take the lease, or raise :class:`LeaseError` naming the live holder.

        Taken if absent (exclusive create), if its heartbeat is older than its ttl (the
        holder died), if it is already ours, or if ``force``. A take-over is written to a
        temp file, renamed over the lease, then re-read to confirm we own it.
        """
        deadline = time.monotonic() + max(1.0, self.ttl)
        while True:
            with self._locked():
                now = time.time()
                self.acquired = now
                if self._create_exclusive(self._record()):
                    holder = None
                else:
                    try:
                        holder = self._read()
                    except ValueError:
                        holder = {}  # being written by an exclusive creator, or garbage
                    if holder is None:
                        continue  # vanished between create and read: try the create again
                    if not holder and not force:
                        # Empty/partial: a creator is mid-write, unless the file is stale.
                        try:
                            stale = now - self._mtime() > self.ttl
                        except FileNotFoundError:
                            continue
                        if not stale:
                            if time.monotonic() > deadline:
                                raise LeaseError(
                                    f"the lease file {self.path} is unreadable and fresh; "
                                    "pass --force to take over"
                                )
                            time.sleep(_UNREADABLE_WAIT_S)
                            continue
                    elif holder and holder.get("owner") != self.owner and not force:
                        if self._alive(holder, now):
                            raise self._refusal(holder, now)
                    if holder and holder.get("owner") == self.owner:
                        self.acquired = holder.get("acquired", now)
                    self._write_replace(self._record())
                try:
                    confirmed = self._read()
                except ValueError:
                    confirmed = None
                if not confirmed or confirmed.get("owner") != self.owner:
                    raise LeaseError(
                        f"lost the race for {self.path} to "
                        f"{(confirmed or {}).get('owner', 'another driver')}",
                        confirmed,
                    )
                self.lost = False
                return

    @staticmethod
    def _alive(holder: dict[str, Any], now: float) -> bool:
        try:
            return now - float(holder["heartbeat"]) < float(holder["ttl"])
        except (KeyError, TypeError, ValueError):
            return False  # a lease without a usable heartbeat cannot prove its holder alive

    def heartbeat(self) -> bool:
        """Refresh the heartbeat once; False (and ``lost`` set) if the lease is no longer ours."""
        with self._locked():
            try:
                holder = self._read()
            except ValueError:
                holder = None
            if not holder or holder.get("owner") != self.owner:
                self.lost = True
                return False
            self._write_replace(self._record())
            return True

    def _beat(self) -> None:
        interval = self.ttl / 3.0
        while not self._stop.wait(interval):
            try:
                if not self.heartbeat():
                    return
            except OSError:
                continue  # transient I/O trouble: try again next tick

    def start_heartbeat(self) -> None:
        """Start a daemon thread refreshing the heartbeat every ttl/3 until release or loss."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name=f"nhance-lease-{os.path.basename(self.path)}", daemon=True
        )
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`LeaseError` if the lease was taken over (call before committing)."""
        if self.lost:
            raise LeaseError(
                f"the lease {self.path} was taken over by another driver (--force); "
                "this driver must stop"
            )

    def release(self) -> None:
        """Stop the heartbeat and delete the lease file if it is still ours."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._locked():
            try:
                holder = self._read()
            except ValueError:
                return
            if holder and holder.get("owner") == self.owner:
                with contextlib.suppress(FileNotFoundError):
                    self._unlink()

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

    Object stores have no exclusive create or rename, so two drivers starting within the same
    instant could both see no lease; each rewrite is still a whole object, and a driver that
    finds the lease taken over stops (``lost``).
    """

    def __init__(self, url: str, storage_options: dict | None = None, **kwargs: Any) -> None:
        super().__init__("/" + url.split("://", 1)[-1], **kwargs)
        self.path = url
        self.storage_options = storage_options or {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        yield

    def _read(self) -> dict[str, Any] | None:
        from nhance_batch.storage import read_bytes

        try:
            record = json.loads(read_bytes(self.path, self.storage_options))
        except FileNotFoundError:
            return None
        if not isinstance(record, dict):
            raise ValueError("lease object does not hold a JSON object")
        return record

    def _write_replace(self, record: dict[str, Any]) -> None:
        from nhance_batch.storage import write_bytes

        write_bytes(self.path, json.dumps(record).encode(), self.storage_options)

    def _create_exclusive(self, record: dict[str, Any]) -> bool:
        from nhance_batch.storage import exists

        if exists(self.path, self.storage_options):
            return False
        self._write_replace(record)
        return True

    def _mtime(self) -> float:
        return 0.0  # an unreadable lease object is stale: objects are written whole

    def _unlink(self) -> None:
        from nhance_batch.storage import remove

        remove(self.path, self.storage_options)


def lease_for(url: str, storage_options: dict | None = None, **kwargs: Any) -> Lease:
    """The lease at ``url``: a lease file for local paths, a lease object in a store."""
    from nhance_batch.storage import is_local_url, local_path

    if is_local_url(url):
        return Lease(local_path(url), **kwargs)
    return StoreLease(url, storage_options, **kwargs)


def live_holder(path: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """The record of the driver holding the lease at ``path`` if it is alive, else None."""
    try:
        holder = lease_for(path, storage_options)._read()
    except ValueError:
        return None
    return holder if holder is not None and Lease._alive(holder, time.time()) else None

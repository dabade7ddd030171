"""Where a lease record lives: the small interface the lease loop needs, and its two homes.

:class:`LeaseBackend` keeps one JSON record and offers four operations, each conditional
on a version (an opaque string): read the record with its version, create it only if
absent, replace it or delete it only if it is still at a given version. A condition that
does not hold answers None (False for delete); other failures raise.

* :class:`LeaseFile`: a local file (``OUTPUT/_nhance/lease.json``). Each operation runs
  under an exclusive ``flock`` on the folder, which serializes them among the processes of
  this machine, and a version is the content's hash. The writer also holds the sibling lock
  file ``lease.json.lock`` from its first write until its delete (an ``flock`` the kernel
  drops when the process dies) and writes ``"lock": true`` in its record, so a free lock
  behind such a record proves its holder dead (:attr:`Found.lock_free`).
* :class:`LeaseObject`: an object in S3, GCS or Azure Blob, whose store enforces the
  conditions itself (:mod:`nhance_batch.storage.conditional`); on other stores, or one that
  answers that it does not implement them, read-then-write, which cannot stop two writers
  of the same instant (the loop reads back what it wrote).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

try:  # POSIX only; elsewhere the lease file goes unlocked and the pid check guards it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    """What a read saw: the record (``{}`` when the content is not a JSON object), its
    version, and what the backend can tell about its writer."""

    record: dict[str, Any]
    version: str
    #: wall-clock time of the last write, where a reader may see a write half done (a local
    #: create); None where every write is seen whole
    written: float | None = None
    #: the record says its holder keeps a lifetime lock, and that lock is free: it is dead
    lock_free: bool = False


class LeaseBackend(Protocol):
    """One lease record, read and written only under conditions on its version."""

    #: the path or URL, for messages
    where: str
    #: "file" or "object", for messages
    kind: str

    def read(self) -> Found | None:
        """The record and its version; None if there is none."""

    def create(self, record: dict[str, Any]) -> str | None:
        """Write ``record`` if there is none; its version, or None if one exists."""

    def replace(self, record: dict[str, Any], version: str) -> str | None:
        """Overwrite the record if it is still at ``version``; the new version, or None."""

    def delete(self, version: str) -> bool:
        """Remove the record if it is still at ``version``; False if not (or gone)."""


def _parse(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError:  # empty, partial or garbage
        return {}
    return record if isinstance(record, dict) else {}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LeaseFile:
    """The lease record in a local file, guarded by ``flock`` (see the module docstring)."""

    kind = "file"

    def __init__(self, path: str) -> None:
        self.where = os.path.abspath(path)
        self._life_fd: int | None = None  # the held lifetime lock file

    def read(self) -> Found | None:
        with self._locked():
            data, written = self._content()
            if data is None:
                return None
            record = _parse(data)
            lock_free = bool(record.get("lock")) and self._lock_is_free() is True
            return Found(record, _digest(data), written, lock_free)

    def create(self, record: dict[str, Any]) -> str | None:
        with self._locked():
            try:
                fd = os.open(self.where, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            data = self._encode(record)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return _digest(data)

    def replace(self, record: dict[str, Any], version: str) -> str | None:
        from nhance_batch.storage.objects import write_bytes

        with self._locked():
            data, _ = self._content()
            if data is None or _digest(data) != version:
                return None
            data = self._encode(record)
            write_bytes(self.where, data)
            return _digest(data)

    def delete(self, version: str) -> bool:
        """Remove the file if it is still at ``version``, and in any case let go of the
        lifetime lock (removing its file): a delete is the holder's last act."""
        with self._locked():
            try:
                data, _ = self._content()
                if data is None or _digest(data) != version:
                    return False
                os.unlink(self.where)
                return True
            finally:
                self._drop_life_lock()

    def _content(self) -> tuple[bytes | None, float | None]:
        """The file's bytes and modification time; (None, None) if it is absent."""
        try:
            with open(self.where, "rb") as f:
                return f.read(), os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None, None

    def _encode(self, record: dict[str, Any]) -> bytes:
        """``record`` as written by this process, its ``lock`` field saying whether it
        holds the lifetime lock (taken here if it is free)."""
        return json.dumps({**record, "lock": self._take_life_lock()}).encode()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize this machine's operations on the lease (flock on the folder)."""
        folder = os.path.dirname(self.where)
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
        return f"{self.where}.lock"

    def _take_life_lock(self) -> bool:
        """Hold the lifetime lock file from now until the delete (call under
        :meth:`_locked`); False if another open of it holds the lock, or locks are
        unavailable."""
        if self._life_fd is not None:
            return True
        if fcntl is None:
            return False
        try:
            fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._life_fd = fd
        return True

    def _drop_life_lock(self) -> None:
        """Remove and unlock the lifetime lock file (call under :meth:`_locked`)."""
        fd, self._life_fd = self._life_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self._lock_path)
        os.close(fd)

    def _lock_is_free(self) -> bool | None:
        """Whether the lifetime lock file is there and nobody holds it (a probe, under
        :meth:`_locked`); None when that cannot be told. A missing file proves nothing
        (removed by hand, say), so it is None too."""
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
            os.close(fd)  # also drops a probe lock just taken
        return True


class LeaseObject:
    """The lease record as one object in a store (see the module docstring).

    ``attempt_timeout``: each request is one attempt cut after that many seconds, the
    client library's own retries off (the lease loop retries within its ttl); None keeps
    the library's retries.
    """

    kind = "object"

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                 attempt_timeout: float | None = None) -> None:
        self.where = url
        self.storage_options = dict(storage_options or {})
        self.attempt_timeout = attempt_timeout
        self._object: Any = None

    @property
    def object(self) -> Any:
        """The :class:`~nhance_batch.storage.conditional.ConditionalObject` (its client
        resolved on first use)."""
        if self._object is None:
            from nhance_batch.storage.conditional import conditional_object

            self._object = conditional_object(self.where, self.storage_options,
                                              attempt_timeout=self.attempt_timeout)
        return self._object

    def read(self) -> Found | None:
        """The record (unparseable content reads as ``{}``: objects are written whole, so
        it is never a write in progress)."""
        found = self.object.read()
        if found is None:
            return None
        data, version = found
        return Found(_parse(data), version)

    def create(self, record: dict[str, Any]) -> str | None:
        return self._conditional("create", json.dumps(record).encode())

    def replace(self, record: dict[str, Any], version: str) -> str | None:
        return self._conditional("replace", json.dumps(record).encode(), version)

    def delete(self, version: str) -> bool:
        return self._conditional("delete", version)

    def _conditional(self, op: str, *args: Any) -> Any:
        """``self.object.<op>(*args)``. A store that turns out not to implement conditional
        requests is used through read-then-write from then on (with a warning); a version
        read before the switch means nothing to it, so a replace or delete at one answers
        "condition failed" and the lease loop reads the record again."""
        from nhance_batch.storage.conditional import PlainObject, PreconditionsUnsupported

        try:
            return getattr(self.object, op)(*args)
        except PreconditionsUnsupported as exc:
            log.warning("%s; the lease falls back to read-then-write, which cannot stop two "
                        "drivers started in the same instant", exc)
            self._object = PlainObject(self.where, self.storage_options)
            if op == "create":
                return self._object.create(*args)
            return None if op == "replace" else False

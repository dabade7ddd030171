"""The bounded, LRU-evicted local cache of input objects (the media layer opens local
files only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.listing import fingerprint
from nhance_batch.storage.objects import TEMP_MARK, download
from nhance_batch.storage.urls import display_url, is_local_url, local_path

ENV_INPUT_CACHE_BYTES = "NHANCE_INPUT_CACHE_BYTES"
DEFAULT_INPUT_CACHE_BYTES = 20 * 2**30


#: The environment variable that moves every per-user cache of nhance-batch.
ENV_CACHE = "NHANCE_CACHE"


def user_cache_dir() -> Path:
    """The folder of this user's caches (models, inputs, calibration, autotune timings):
    ``$NHANCE_CACHE``, else the platform's user cache folder."""
    base = os.environ.get(ENV_CACHE)
    if not base:
        from platformdirs import user_cache_dir as platform_cache_dir

        base = platform_cache_dir("nhance-batch")
    return Path(base)


def default_cache_dir() -> str:
    """The input cache's folder: ``inputs`` in :func:`user_cache_dir`."""
    return str(user_cache_dir() / "inputs")


class InputCache:
    """A bounded local cache of whole input objects, shared by the processes of one machine.

    Each object is downloaded once (under an exclusive per-entry lock, to a temp name, then
    renamed) into ``root``, named by a hash of its URL and fingerprint, so a changed object
    never reuses a stale copy. A user holds a shared ``flock`` on the copy while decoding;
    after each release, least recently used copies that nobody holds are deleted until the
    total is under ``max_bytes``. One object larger than the budget is still cached (it has
    to be decoded) and evicted as soon as it is released.
    """

    def __init__(self, root: str | None = None, max_bytes: int | None = None) -> None:
        self.root = root or default_cache_dir()
        env = os.environ.get(ENV_INPUT_CACHE_BYTES)
        self.max_bytes = int(max_bytes if max_bytes is not None else
                             (int(env) if env else DEFAULT_INPUT_CACHE_BYTES))

    def _entry(self, url: str, fp: str) -> str:
        key = hashlib.sha256(f"{url}\0{fp}".encode()).hexdigest()[:32]
        suffix = Path(url.rstrip("/").rsplit("/", 1)[-1]).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""
        return os.path.join(self.root, key + suffix)

    @contextlib.contextmanager
    def local_copy(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                   known_fingerprint: str | None = None, known_size: int | None = None
                   ) -> Iterator[str]:
        """A local path holding the object at ``url`` for the block's duration.

        ``known_fingerprint``/``known_size`` (from the manifest) save a metadata request;
        without them the store is asked.
        """
        import fcntl

        if known_fingerprint is None or known_size is None:
            known_fingerprint, known_size = fingerprint(url, storage_options)
        os.makedirs(self.root, exist_ok=True)
        path = self._entry(url, known_fingerprint)
        for _ in range(5):
            if not os.path.exists(path):
                with open(path + ".lock", "a+b") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    if not os.path.exists(path):
                        self._make_room(known_size)
                        got = download(url, path, storage_options)
                        if got != known_size:
                            os.unlink(path)
                            raise StorageError(
                                f"downloading {display_url(url)}: got {got} bytes, the store "
                                f"listed {known_size} (changed while running?)", transient=True)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # evicted between the check and the open
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    same = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    continue
                with contextlib.suppress(OSError):
                    os.utime(path)
                yield path
                return
            finally:
                os.close(fd)
                self._make_room(0)
        raise StorageError(f"{display_url(url)}: the local cache copy kept disappearing",
                           transient=True)

    def _entries(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root) as it:
                return [e for e in it if e.is_file() and not e.name.endswith(".lock")
                        and TEMP_MARK not in e.name]
        except FileNotFoundError:
            return []

    def _make_room(self, incoming: int) -> None:
        """Delete unheld copies, least recently used first, until ``incoming`` more fit."""
        import fcntl

        entries = self._entries()
        stats = []
        for e in entries:
            with contextlib.suppress(FileNotFoundError):
                stats.append((e.stat().st_mtime, e.stat().st_size, e.path))
        total = sum(s for _, s, _ in stats)
        for _, nbytes, path in sorted(stats):
            if total + incoming <= self.max_bytes:
                break
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                total -= nbytes
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        os.unlink(path)
                        total -= nbytes
            finally:
                os.close(fd)

    def clear(self) -> None:
        """Remove every unheld copy."""
        saved, self.max_bytes = self.max_bytes, 0
        try:
            self._make_room(0)
        finally:
            self.max_bytes = saved


@contextlib.contextmanager
def local_input(url: str, storage_options: Mapping[str, Any] | None = None, *,
                cache: InputCache | None = None, known_fingerprint: str | None = None,
                known_size: int | None = None) -> Iterator[str]:
    """A local path to decode ``url`` from: the path itself for local inputs, else a copy in
    ``cache`` (default: :class:`InputCache` with its defaults), held for the block."""
    if is_local_url(url):
        yield local_path(url)
        return
    with (cache or InputCache()).local_copy(url, storage_options,
                                            known_fingerprint=known_fingerprint,
                                            known_size=known_size) as path:
        yield path

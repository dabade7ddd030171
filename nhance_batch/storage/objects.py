"""Whole-object operations: exists, size, remove, download, and writes that are never seen
half-done.

Every atomic write of the package goes through one family here, so the durability is decided
once: on a local disk the content is written under a temporary name beside the destination
(:func:`temp_name`), fsynced, renamed over it with :func:`os.replace`, and the folder fsynced
(:func:`commit_local`); on an object store it is one whole-object upload, which the store
publishes atomically. :func:`write_bytes` takes bytes, :func:`atomic_local_file` a local file
written by the caller, :func:`upload` a finished local file."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.retry import RetryPolicy, call_with_retries, with_retries
from nhance_batch.storage.urls import display_url, is_local_url, local_path, resolve

def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """True if the file/object exists (fresh from the store)."""
    if is_local_url(url):
        return os.path.exists(local_path(url))
    fs, path = resolve(url, storage_options)
    fs.invalidate_cache(path)
    return with_retries(fs.exists, path, what="checking", url=url,
                        storage_options=storage_options)


def size(url: str, storage_options: Mapping[str, Any] | None = None) -> int:
    """The size in bytes of a file/object (FileNotFoundError if missing)."""
    if is_local_url(url):
        return os.path.getsize(local_path(url))
    fs, path = resolve(url, storage_options)
    fs.invalidate_cache(path)
    info = call_with_retries(fs, url, path, "reading metadata of", fs.info, path,
                 storage_options=storage_options)
    return int(info.get("size") or 0)


def remove(url: str, storage_options: Mapping[str, Any] | None = None, *,
           missing_ok: bool = True) -> None:
    """Delete one file/object (parts once assembled)."""
    if is_local_url(url):
        try:
            os.unlink(local_path(url))
        except FileNotFoundError:
            if not missing_ok:
                raise
        return
    fs, path = resolve(url, storage_options)
    try:
        with_retries(fs.rm_file, path, what="deleting", url=url, storage_options=storage_options)
    except FileNotFoundError:
        if not missing_ok:
            raise
    fs.invalidate_cache(path)


def makedirs_for(url: str) -> None:
    """Create the local folder that will hold ``url`` (object stores need none)."""
    if is_local_url(url):
        folder = os.path.dirname(os.path.abspath(local_path(url)))
        os.makedirs(folder, exist_ok=True)


def download(url: str, dest: str, storage_options: Mapping[str, Any] | None = None, *,
             policy: RetryPolicy | None = None) -> int:
    """Copy the object at ``url`` to the local file ``dest`` (an atomic local write)."""
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with atomic_local_file(dest) as tmp:
        if is_local_url(url):
            shutil.copyfile(local_path(url), tmp)
        else:
            fs, path = resolve(url, storage_options)
            call_with_retries(fs, url, path, "downloading", fs.get_file, path, tmp,
                  storage_options=storage_options, policy=policy)
    return os.path.getsize(dest)


# -- atomic writes: the one place that decides how a file replaces another ------------------

TEMP_MARK = ".tmp-"  # in the name of every temporary file of an atomic local write


def temp_name(final: str) -> str:
    """The temporary name, beside ``final``, that an atomic write of ``final`` uses."""
    return f"{final}{TEMP_MARK}{uuid.uuid4().hex[:8]}"


def _fsync_path(path: str) -> None:
    """Flush a file's content, or a folder's entries, to the disk (folders: where the
    platform lets them be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if os.path.isdir(path):
            return  # folders cannot be opened here (Windows): renames are as durable as it gets
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):
            raise  # some file systems refuse fsync on folders; a file's must succeed
    finally:
        os.close(fd)


def commit_local(tmp: str, final: str) -> None:
    """Make the finished local file ``tmp`` durable and rename it onto ``final`` (same file
    system), then make the rename durable: the file is fsynced, renamed with
    :func:`os.replace`, and its folder fsynced. A crash at any instant leaves ``final``
    either as it was or complete."""
    final = os.path.abspath(final)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    _fsync_path(tmp)
    os.replace(tmp, final)
    _fsync_path(os.path.dirname(final))


@contextlib.contextmanager
def atomic_local_file(dest: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary path beside the local file ``dest`` for the block to write.

    When the block ends without an exception the file is committed onto ``dest`` with
    :func:`commit_local`; when it raises, ``dest`` is left as it was. Either way no
    temporary file is left behind. The folder must exist.
    """
    final = os.path.abspath(os.fspath(dest))
    tmp = temp_name(final)
    try:
        yield tmp
        commit_local(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def upload(local: str, url: str, storage_options: Mapping[str, Any] | None = None, *,
           policy: RetryPolicy | None = None, move: bool = True) -> int:
    """Publish the finished local file ``local`` at ``url``; returns its size.

    Object stores: one ``put_file`` (a single PUT, or a multipart/resumable/block upload
    that becomes visible only once complete, aborted on failure), retried as a whole on
    transient errors, then checked by size. The final key is never half-written.
    Local destinations: committed with :func:`commit_local` (``move``), or copied through
    :func:`atomic_local_file` (not ``move``, or another file system).
    ``local`` is removed after a successful upload when ``move`` is True.
    """
    nbytes = os.path.getsize(local)
    if is_local_url(url):
        final = local_path(url)
        if move:
            try:
                commit_local(local, final)
                return nbytes
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        with atomic_local_file(final) as tmp:
            shutil.copyfile(local, tmp)
        if move:
            os.unlink(local)
        return nbytes
    fs, path = resolve(url, storage_options)
    call_with_retries(fs, url, path, "uploading to", fs.put_file, local, path,
          storage_options=storage_options, policy=policy)
    fs.invalidate_cache(path)
    stored = int(call_with_retries(fs, url, path, "checking the upload of", fs.info, path,
                       storage_options=storage_options, policy=policy).get("size") or 0)
    if stored != nbytes:
        raise StorageError(f"uploading to {display_url(url)}: the store holds {stored} bytes, "
                           f"{nbytes} were sent", transient=True)
    if move:
        os.unlink(local)
    return nbytes


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Replace the file or object at ``url`` with ``data``, atomically and durably.

    Local: written through :func:`atomic_local_file` (a temporary name beside it, fsynced,
    renamed, the folder fsynced; missing folders are created). Object stores: one
    whole-object put, which stores publish atomically. A reader sees the old content or the
    new, never a part.
    """
    if is_local_url(url):
        final = local_path(url)
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        with atomic_local_file(final) as tmp, open(tmp, "wb") as f:
            f.write(data)
        return
    fs, path = resolve(url, storage_options)
    call_with_retries(fs, url, path, "writing", fs.pipe_file, path, data, storage_options=storage_options)
    fs.invalidate_cache(path)


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole content of a small file/object."""
    if is_local_url(url):
        with open(local_path(url), "rb") as f:
            return f.read()
    fs, path = resolve(url, storage_options)
    return call_with_retries(fs, url, path, "reading", fs.cat_file, path, storage_options=storage_options)

"""Whole-object operations: exists, size, remove, download, and writes that are never seen
half-done (local: temp file + rename; stores: one upload checked by size)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.retry import RetryPolicy, _call, with_retries
from nhance_batch.storage.urls import _display, is_local_url, local_path, resolve

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
    info = _call(fs, url, path, "reading metadata of", fs.info, path,
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
    """Copy the object at ``url`` to the local file ``dest`` (written whole, then renamed)."""
    tmp = f"{dest}.part-{uuid.uuid4().hex[:8]}"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    try:
        if is_local_url(url):
            shutil.copyfile(local_path(url), tmp)
        else:
            fs, path = resolve(url, storage_options)
            _call(fs, url, path, "downloading", fs.get_file, path, tmp,
                  storage_options=storage_options, policy=policy)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return os.path.getsize(dest)


def commit_local(tmp: str, final: str) -> None:
    """Move the finished local file ``tmp`` onto ``final`` atomically (same filesystem)."""
    os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
    os.replace(tmp, final)


def upload(local: str, url: str, storage_options: Mapping[str, Any] | None = None, *,
           policy: RetryPolicy | None = None, move: bool = True) -> int:
    """Publish the finished local file ``local`` at ``url``; returns its size.

    Object stores: one ``put_file`` (a single PUT, or a multipart/resumable/block upload
    that becomes visible only once complete, aborted on failure), retried as a whole on
    transient errors, then checked by size. The final key is never half-written.
    Local destinations: renamed into place (``move``) or copied to a temp name and renamed.
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
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if move:
            os.unlink(local)
        return nbytes
    fs, path = resolve(url, storage_options)
    _call(fs, url, path, "uploading to", fs.put_file, local, path,
          storage_options=storage_options, policy=policy)
    fs.invalidate_cache(path)
    stored = int(_call(fs, url, path, "checking the upload of", fs.info, path,
                       storage_options=storage_options, policy=policy).get("size") or 0)
    if stored != nbytes:
        raise StorageError(f"uploading to {_display(url)}: the store holds {stored} bytes, "
                           f"{nbytes} were sent", transient=True)
    if move:
        os.unlink(local)
    return nbytes


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` as one whole object/file (local: temp file + rename)."""
    if is_local_url(url):
        final = local_path(url)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    fs, path = resolve(url, storage_options)
    _call(fs, url, path, "writing", fs.pipe_file, path, data, storage_options=storage_options)
    fs.invalidate_cache(path)


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole content of a small file/object."""
    if is_local_url(url):
        with open(local_path(url), "rb") as f:
            return f.read()
    fs, path = resolve(url, storage_options)
    return _call(fs, url, path, "reading", fs.cat_file, path, storage_options=storage_options)

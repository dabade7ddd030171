"""Listing inputs (a local file, folder or glob; a bucket prefix or glob) and their
fingerprints for resume."""

from __future__ import annotations

import errno
import glob as _glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.retry import RetryPolicy, call_with_retries, with_retries
from nhance_batch.storage.urls import _ALIASES, display_url, is_local_url, join, local_path, protocol_of, resolve

@dataclass(frozen=True)
class StoredVideo:
    """An input video: its URL (or local path), its key relative to the input root (mirrored
    under the output), and, for objects, the fingerprint and size from the listing."""

    source: str
    relative: str
    fingerprint: str | None = None
    size: int | None = None


_MAGIC = set("*?[")

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".3gp", ".3g2",
    ".flv", ".wmv", ".asf", ".mpg", ".mpeg", ".ogv", ".mxf", ".nut",
})


def is_video_name(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS


def _glob_root(pattern: str) -> Path:
    root = []
    for part in Path(pattern).parts:
        if _MAGIC & set(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def list_local(spec: str, *, exclude: str | None = None) -> list[tuple[str, str]]:
    """``(path, relative)`` of the videos named by a local ``spec``: a file, a folder
    (recursively, by extension) or a glob (``**`` recurses); nothing under ``exclude``.

    Raises:
        FileNotFoundError: ``spec`` names nothing.
    """
    excluded = Path(exclude).resolve() if exclude else None

    def keep(path: Path) -> bool:
        if excluded is None:
            return True
        resolved = path.resolve()
        return resolved != excluded and excluded not in resolved.parents

    path = Path(spec)
    if path.is_file():
        return [(str(path), path.name)]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*")
                       if p.is_file() and is_video_name(p.name) and keep(p))
        return [(str(p), p.relative_to(path).as_posix()) for p in found]
    if _MAGIC & set(spec):
        root = _glob_root(spec)
        found = sorted(Path(p) for p in _glob.glob(spec, recursive=True))
        return [(str(p), p.relative_to(root).as_posix()) for p in found
                if p.is_file() and keep(p)]
    raise FileNotFoundError(f"input {spec!r}: no such file, folder or matching glob")


def _as_detail(found: Any, fs: Any) -> dict[str, Mapping[str, Any]]:
    """``find``/``glob`` detail output as ``{path: info}`` (adlfs gives a list of names when
    the path is one blob; those are looked up)."""
    if isinstance(found, Mapping):
        return dict(found)
    out: dict[str, Mapping[str, Any]] = {}
    for item in found:
        if isinstance(item, Mapping):
            out[str(item["name"]).rstrip("/")] = item
        else:
            out[str(item).rstrip("/")] = with_retries(fs.info, item, what="reading metadata of")
    return out


def _fingerprint_from_info(info: Mapping[str, Any]) -> tuple[str, int]:
    """(fingerprint, size) from an fsspec info/listing entry: a checksum, else the ETag, else
    a version/generation, else the modification time; always with the size."""
    size = int(info.get("size") or info.get("Size") or 0)
    content = info.get("content_settings")
    content_md5 = None
    if isinstance(content, Mapping):
        content_md5 = content.get("content_md5")
    elif content is not None:
        content_md5 = getattr(content, "content_md5", None)
    if isinstance(content_md5, (bytes, bytearray)):
        content_md5 = content_md5.hex() if content_md5 else None
    candidates = (
        ("md5", info.get("md5Hash")),
        ("crc32c", info.get("crc32c")),
        ("md5", content_md5),
        ("etag", info.get("ETag") or info.get("etag") or info.get("e_tag")),
        ("version", info.get("generation") or info.get("VersionId") or info.get("version_id")),
        ("mtime", info.get("LastModified") or info.get("last_modified") or info.get("mtime")
         or info.get("updated") or info.get("created")),
    )
    for name, value in candidates:
        if value:
            text = str(value).strip().strip('"')
            return f"{name}={text};size={size}", size
    raise StorageError(f"{info.get('name')}: the store reports no checksum, ETag or time")


def _local_fingerprint(path: str) -> tuple[str, int]:
    st = os.stat(path)
    return f"size={st.st_size};mtime_ns={st.st_mtime_ns}", st.st_size


def fingerprint(url: str, storage_options: Mapping[str, Any] | None = None, *,
                policy: RetryPolicy | None = None) -> tuple[str, int]:
    """(fingerprint, size) of one input, fresh from the store (no listing cache).

    Local: ``size=N;mtime_ns=T`` (as before, so old manifests still match). Objects: the
    checksum (GCS md5Hash/crc32c, Azure Content-MD5) or ETag (S3) and the size.

    Raises:
        FileNotFoundError: no such file/object (OSError for other local errors).
        StorageError: a permanent store error, or transient ones outlasting the retries.
    """
    if is_local_url(url):
        return _local_fingerprint(local_path(url))
    fs, path = resolve(url, storage_options)
    fs.invalidate_cache(path)
    info = call_with_retries(fs, url, path, "reading metadata of", fs.info, path,
                 storage_options=storage_options, policy=policy)
    return _fingerprint_from_info(info)


def video_fingerprint(video: StoredVideo, storage_options: Mapping[str, Any] | None = None
                      ) -> tuple[str, int]:
    """The listed fingerprint of ``video`` if the listing had one, else :func:`fingerprint`."""
    if video.fingerprint is not None and video.size is not None:
        return video.fingerprint, video.size
    return fingerprint(video.source, storage_options)


def list_videos(url: str, storage_options: Mapping[str, Any] | None = None, *,
                exclude: str | None = None, policy: RetryPolicy | None = None
                ) -> list[StoredVideo]:
    """The input videos named by ``url``: one file/object, a folder/prefix (recursively, by
    video extension, sorted), or a glob (``**`` recurses).

    Local paths are listed by :func:`list_local` (fingerprints
    left None). For objects, ``source`` is ``url`` joined with the relative key (so the
    URL's own form, account or endpoint is kept) and the fingerprint comes from the listing.
    ``exclude`` (the job's output) and anything under it is never an input.

    Raises:
        FileNotFoundError: ``url`` names nothing.
        StorageError: missing bucket, access denied, missing extra, retries exhausted.
    """
    if is_local_url(url):
        ex = local_path(exclude) if exclude and is_local_url(exclude) else None
        return [StoredVideo(source, relative)
                for source, relative in list_local(local_path(url), exclude=ex)]
    fs, root = resolve(url, storage_options)
    excluded = _excluded_path(fs, url, exclude)
    if _MAGIC & set(root):
        return _list_glob(fs, url, root, excluded, storage_options, policy)
    return _list_prefix(fs, url, root, excluded, storage_options, policy)


def _excluded_path(fs: Any, url: str, exclude: str | None) -> str | None:
    """``exclude`` as a path of ``fs`` when it lies in the same store as ``url``, else None."""
    if exclude and not is_local_url(exclude) and protocol_of(exclude) in (
            protocol_of(url), _ALIASES.get(protocol_of(url))):
        return fs._strip_protocol(exclude).rstrip("/")
    return None


def _entries(found: Mapping[str, Any], base_path: str, base_url: str,
             excluded: str | None) -> list[StoredVideo]:
    """The videos among listed objects (sorted by path), keyed relative to ``base_path``;
    nothing at or under ``excluded``."""
    out = []
    for path, info in sorted(found.items()):
        if info.get("type", "file") != "file" or (
                excluded is not None and (path == excluded or path.startswith(excluded + "/"))):
            continue
        relative = path[len(base_path):].lstrip("/")
        if not relative or not is_video_name(relative):
            continue
        fp, size = _fingerprint_from_info(info)
        out.append(StoredVideo(join(base_url, relative), relative, fp, size))
    return out


def _list_glob(fs: Any, url: str, root: str, excluded: str | None,
               storage_options: Mapping[str, Any] | None,
               policy: RetryPolicy | None) -> list[StoredVideo]:
    """The videos matching a glob in a store, keyed relative to the glob's fixed head."""
    fs.invalidate_cache()
    found = call_with_retries(fs, url, root, "listing", fs.glob, root, detail=True,
                  storage_options=storage_options, policy=policy)
    parts = root.split("/")
    keep_parts = []
    for part in parts:
        if _MAGIC & set(part):
            break
        keep_parts.append(part)
    base_path = "/".join(keep_parts)
    url_parts = str(url).split("/")
    n_magic = len(parts) - len(keep_parts)
    base_url = "/".join(url_parts[: len(url_parts) - n_magic])
    files = {p: i for p, i in _as_detail(found, fs).items() if i.get("type", "file") == "file"}
    return _entries(files, base_path, base_url, excluded)


def _list_prefix(fs: Any, url: str, root: str, excluded: str | None,
                 storage_options: Mapping[str, Any] | None,
                 policy: RetryPolicy | None) -> list[StoredVideo]:
    """The videos under a prefix in a store, or the one object ``url`` names.

    Raises:
        FileNotFoundError: ``url`` names no object and no prefix.
    """
    fs.invalidate_cache(root)
    found = call_with_retries(fs, url, root, "listing", fs.find, root, detail=True, withdirs=False,
                  storage_options=storage_options, policy=policy)
    if not found:
        # maybe a single object (find lists below a prefix), or nothing at all
        try:
            info = call_with_retries(fs, url, root, "reading metadata of", fs.info, root,
                         storage_options=storage_options, policy=policy)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, f"input {display_url(url)}: no such object, prefix or matching glob"
            ) from None
        return [_one_object(url, root, info)] if info.get("type") == "file" else []
    found = _as_detail(found, fs)
    if len(found) == 1 and next(iter(found)).rstrip("/") == root.rstrip("/"):
        return [_one_object(url, root, next(iter(found.values())))]  # the URL names one object
    return _entries(found, root.rstrip("/"), str(url).rstrip("/"), excluded)


def _one_object(url: str, root: str, info: Mapping[str, Any]) -> StoredVideo:
    """The input ``url`` that names one object (whatever its extension), keyed by its name."""
    name = root.rstrip("/").rsplit("/", 1)[-1]
    fp, size = _fingerprint_from_info(info)
    return StoredVideo(str(url), name, fp, size)

"""URLs and store options: protocol, local paths, ``--storage-options`` parsing, the
options for one URL, URL -> ``(fs, path)``, joining."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.redact import redact

#: protocol -> (the extra that installs it, the package)
EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs"),
    "gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs"),
    "az": ("azure", "adlfs"), "abfs": ("azure", "adlfs"), "abfss": ("azure", "adlfs"),
}
_ALIASES = {"s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az"}
_LOCAL_PROTOCOLS = {"file", "local"}


def protocol_of(url: str) -> str:
    """The URL's protocol (``file`` for a plain path)."""
    import fsspec.core

    protocol, _ = fsspec.core.split_protocol(str(url))
    return (protocol or "file").lower()


def is_local_url(url: str) -> bool:
    """True for a plain path or a ``file://`` / ``local://`` URL."""
    return protocol_of(url) in _LOCAL_PROTOCOLS


def local_path(url: str) -> str:
    """The filesystem path of a local URL (``file:///a/b`` -> ``/a/b``; a path is unchanged)."""
    if not is_local_url(url):
        raise ValueError(f"not a local path: {url!r}")
    import fsspec.core

    _, path = fsspec.core.split_protocol(str(url))
    return path


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """``--storage-options`` JSON -> dict (empty for None/""). The text is never echoed back."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StorageError(f"--storage-options is not valid JSON ({exc.msg} at line {exc.lineno}"
                           f" column {exc.colno})") from None
    if not isinstance(value, dict):
        raise StorageError("--storage-options must be a JSON object")
    return value


def options_for(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options for ``url``: a flat dict as is, or the entry for its protocol.

    ``{"s3": {...}, "gs": {...}}`` (keys are protocols, values dicts) picks by protocol, with
    aliases (``s3a``->``s3``, ``gcs``->``gs``, ``abfs``/``abfss``->``az``); a protocol with no
    entry gets ``{}``. Local paths always get ``{}`` from a protocol-keyed dict.
    """
    if not storage_options:
        return {}
    opts = dict(storage_options)
    keyed = [k for k, v in opts.items() if isinstance(v, dict) and (k in EXTRAS or k in (
        "file", "local", "memory"))]
    if not keyed or len(keyed) != len(opts):
        return opts if not is_local_url(url) else {}
    protocol = protocol_of(url)
    want = _ALIASES.get(protocol, protocol)
    for key, value in opts.items():
        if _ALIASES.get(key, key) == want:
            return dict(value)
    return {}


def _missing_backend(url: str, exc: BaseException) -> StorageError:
    protocol = protocol_of(url)
    extra, package = EXTRAS.get(protocol, (None, None))
    if extra:
        return StorageError(
            f"{protocol}:// URLs need the optional dependency {package}: "
            f"pip install 'nhance-batch[{extra}]' (or 'nhance-batch[cloud]' for every store)")
    return StorageError(f"{protocol}:// URLs need a library that is not installed ({exc})")


def _use_plain_gcsfs(opts: Mapping[str, Any]) -> bool:
    """gcsfs's default class probes bucket types over gRPC, which emulators and custom
    endpoints do not serve (each call would wait on the probe); use the plain HTTP class."""
    return bool(opts.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST"))


def resolve(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fs, path)`` for ``url``; ``path`` is what ``fs`` methods take.

    Raises:
        StorageError: the store's library is missing (naming the extra), the protocol is
            unknown, or the options are rejected by the library.
    """
    import fsspec.core

    url = str(url)
    opts = options_for(url, storage_options)
    protocol = protocol_of(url)
    try:
        if protocol in ("gs", "gcs") and _use_plain_gcsfs(opts):
            try:
                from gcsfs.core import GCSFileSystem
            except ImportError as exc:
                raise _missing_backend(url, exc) from None
            fs = GCSFileSystem(**opts)
            return fs, fs._strip_protocol(url)
        s3_layer = protocol in ("s3", "s3a") and not _user_retries(opts)
        if s3_layer:
            opts = _single_attempt_s3(opts)
        fs, path = fsspec.core.url_to_fs(url, **opts)
        if s3_layer:
            fs.retries = 1  # s3fs's own retry loop: ours is the one layer (retry.py)
        return fs, path
    except ImportError as exc:
        raise _missing_backend(url, exc) from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(f"unknown storage protocol {protocol!r} in {redact(url)}") from None
        raise StorageError(redact(f"cannot use {url}: {exc}", storage_options)) from None
    except TypeError as exc:
        raise StorageError(redact(f"storage options rejected for {protocol}:// ({exc})",
                                  storage_options)) from None


def _user_retries(opts: Mapping[str, Any]) -> bool:
    return "retries" in (opts.get("config_kwargs") or {})


def _single_attempt_s3(opts: Mapping[str, Any]) -> dict[str, Any]:
    """S3 options whose botocore client makes one attempt per call, unless the user set its
    retries: transient errors are retried by :mod:`nhance_batch.storage.retry` alone, not
    5 (s3fs) x 5 (botocore) x 6 (ours) times."""
    opts = dict(opts)
    if not _user_retries(opts):
        config = dict(opts.get("config_kwargs") or {})
        config["retries"] = {"max_attempts": 1, "mode": "standard"}
        opts["config_kwargs"] = config
    return opts


def is_local(fs: Any) -> bool:
    """True if ``fs`` is the local filesystem (None counts as local)."""
    if fs is None:
        return True
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def join(url: str, *parts: str) -> str:
    """``url`` with ``parts`` appended, keeping its protocol (``os.path.join`` for paths)."""
    parts = tuple(p for p in parts if p)
    if protocol_of(url) == "file" and "://" not in str(url):
        return os.path.join(url, *parts)
    out = str(url).rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def parent(url: str) -> str:
    """The URL of the folder/prefix holding ``url``."""
    if protocol_of(url) == "file" and "://" not in str(url):
        return os.path.dirname(url)
    head, _, _ = str(url).rstrip("/").rpartition("/")
    return head


def display_url(url: str) -> str:
    """``url`` as it may be shown in a message or a log: credentials removed."""
    return redact(str(url))

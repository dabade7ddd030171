"""Storage: URLs -> filesystems, listing, fingerprints, whole-object writes, retries, redaction.

Every place the job names (INPUT, OUTPUT, ``--manifest``) is a local path or an fsspec URL:
``file://``, ``s3://``, ``gs://`` / ``gcs://``, ``az://`` / ``abfs://`` / ``abfss://``. This
module is the only one that talks to a store; the pipeline calls it with plain strings (the
URL) and a plain dict (the storage options), both picklable, so workers resolve their own
filesystem.

* :func:`resolve` turns a URL into ``(fs, path)``. A store whose library is not installed
  raises :class:`StorageError` naming the extra (``pip install 'nhance-batch[s3]'``).
* Credentials come the way each ecosystem expects (environment, config files, instance
  metadata) or from ``storage_options`` (``--storage-options JSON``). The options may be one
  flat dict, used for every URL, or keyed by protocol (``{"s3": {...}, "gs": {...}}``) when
  input and output live in different stores (:func:`options_for`).
* :func:`list_videos` lists a local folder/glob (via :mod:`nhance_batch.pipeline.inputs`) or a
  bucket prefix recursively, with the same extension rules; object-store entries carry the
  fingerprint from the listing (no extra request per object).
* :func:`fingerprint` is ``size=..;mtime_ns=..`` locally (unchanged from before) and the
  store's checksum or ETag plus size for objects.
* Reads: the media layer opens local files only, so an object is copied whole into a bounded,
  LRU-evicted local cache (:class:`InputCache`, :func:`local_input`) and the local copy is
  decoded; a local input is used in place.
* Writes: the caller writes a local scratch file, then :func:`upload` puts it as one object
  (a single PUT or a multipart/resumable/block upload that the store publishes only when it
  completes), so a final key is never half-written. Locally, :func:`upload` renames it into
  place (:func:`commit_local`).
* Every store call goes through :func:`with_retries`: transient errors (timeouts, connection
  errors, 5xx, 408, 429, SlowDown/Throttling) are retried with exponential backoff and jitter;
  permanent ones (no such bucket, access denied, bad request) fail at once with a clear
  :class:`StorageError`.
* :func:`redact` removes every credential (from the storage options, the environment and
  well-known URL/connection-string fields) from text before it is logged, recorded in the
  manifest or printed; :class:`RedactingFilter` does it for log records.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nhance_batch.pipeline.inputs import is_video_name, list_inputs

log = logging.getLogger(__name__)
T = TypeVar("T")

# -- errors --------------------------------------------------------------------------------


class StorageError(RuntimeError):
    """A store operation failed; the message is redacted and says what to do.

    ``transient`` is True when the operation gave up after retrying transient errors (a later
    attempt may succeed), False for a permanent error (missing bucket, access denied, missing
    optional dependency, bad options) that no retry will fix.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# -- protocols, extras, options --------------------------------------------------------------

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
        return fsspec.core.url_to_fs(url, **opts)
    except ImportError as exc:
        raise _missing_backend(url, exc) from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(f"unknown storage protocol {protocol!r} in {redact(url)}") from None
        raise StorageError(redact(f"cannot use {url}: {exc}", storage_options)) from None
    except TypeError as exc:
        raise StorageError(redact(f"storage options rejected for {protocol}:// ({exc})",
                                  storage_options)) from None


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


def _display(url: str) -> str:
    return redact(str(url))


# -- retries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: delay ``i`` is ``min(cap, base * 2**i)`` times a
    random factor in [0.5, 1]; at most ``attempts`` calls in all."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 10.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** attempt)) * (0.5 + random.random() / 2)


DEFAULT_RETRY = RetryPolicy()

_TRANSIENT_NAMES = frozenset({
    # botocore / aiobotocore
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
    "ConnectTimeoutError", "ProxyConnectionError", "IncompleteReadError",
    "ResponseStreamingError", "AioReadTimeoutError",
    # aiohttp
    "ClientConnectionError", "ClientConnectorError", "ServerDisconnectedError",
    "ClientPayloadError", "ClientOSError", "ServerTimeoutError", "ConnectionTimeoutError",
    "SocketTimeoutError",
    # azure-core
    "ServiceRequestError", "ServiceResponseError", "ServiceRequestTimeoutError",
    "ServiceResponseTimeoutError",
    # requests / google-auth / gcsfs
    "ChunkedEncodingError", "ProxyError", "TransportError", "ChecksumError",
    # fsspec
    "FSTimeoutError",
})
_PERMANENT_NAMES = frozenset({
    "NoCredentialsError", "PartialCredentialsError", "ClientAuthenticationError",
    "ResourceNotFoundError", "ResourceExistsError", "DefaultCredentialsError",
    "CredentialUnavailableError", "NonRetryableError", "ParamValidationError",
})
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable", "ServerBusy", "OperationTimedOut",
    "RequestLimitExceeded", "TooManyRequests", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded",
})
_TRANSIENT_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN,
})
_TRANSIENT_TEXT = re.compile(
    r"SlowDown|Throttl|Too Many Requests|Service Unavailable|ServerBusy|InternalError|"
    r"Internal Server Error|Bad Gateway|Gateway Time-?out|timed out|Connection reset|"
    r"Connection refused|Server disconnected", re.I)


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any (botocore, azure-core, gcsfs, aiohttp)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status:
            return int(status)
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
        if isinstance(value, str) and value.isdigit() and 100 <= int(value) < 600:
            return int(value)
    return None


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    code = getattr(exc, "error_code", None)
    return str(code) if code else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """True if a retry of the failed store call may succeed.

    Transient: timeouts, connection errors, HTTP 5xx/408/429, SlowDown/Throttling codes.
    Permanent: missing objects/buckets, access denied, other 4xx, bad arguments, missing
    credentials. The exception's cause chain is inspected (s3fs wraps botocore errors in
    OSError subclasses); what cannot be classified is permanent.
    """
    for e in _chain(exc):
        if isinstance(e, StorageError):
            return e.transient
        names = _names(e)
        if names & _PERMANENT_NAMES:
            return False
        code = _error_code(e)
        if code in _TRANSIENT_CODES:
            return True
        status = _status(e)
        if status is not None:
            if status >= 500 or status in (408, 429):
                return True
            if 400 <= status < 500:
                return False
        if names & _TRANSIENT_NAMES:
            return True
        if isinstance(e, (TimeoutError, ConnectionError)):
            return True
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError,
                          NotADirectoryError, FileExistsError, ValueError, TypeError,
                          KeyError, NotImplementedError)):
            return False
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
    # s3fs turns unknown service errors into plain OSError(EIO, "...SlowDown...")
    return isinstance(exc, OSError) and bool(_TRANSIENT_TEXT.search(str(exc)))


def _reason(exc: BaseException) -> str:
    """A short, human reason for a permanent error."""
    for e in _chain(exc):
        status = _status(e)
        code = _error_code(e) or ""
        names = _names(e)
        if isinstance(e, PermissionError) or status in (401, 403) or code in (
                "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                "AuthorizationFailure", "AuthenticationFailed") or \
                names & {"ClientAuthenticationError", "NoCredentialsError",
                         "DefaultCredentialsError", "CredentialUnavailableError"} or \
                str(e).startswith("Forbidden"):
            return ("access denied or no valid credentials (set them in the environment, the "
                    "store's config files, or --storage-options)")
        if code in ("NoSuchBucket", "ContainerNotFound") or "NoSuchBucket" in str(e):
            return "no such bucket/container"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def with_retries(fn: Callable[..., T], *args: Any, what: str = "storage call",
                 url: str | None = None, storage_options: Mapping[str, Any] | None = None,
                 policy: RetryPolicy | None = None, keep: tuple[type[BaseException], ...] = (
                     FileNotFoundError,), **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried on transient errors with backoff.

    Exceptions of the types in ``keep`` (by default FileNotFoundError, which callers handle)
    propagate unchanged; any other permanent error becomes a :class:`StorageError`
    (``transient=False``) at once; transient errors that outlast the policy become a
    :class:`StorageError` with ``transient=True``. Messages name ``what`` and ``url``,
    redacted.
    """
    policy = policy or DEFAULT_RETRY
    where = f"{what} {_display(url)}" if url else what
    started = time.monotonic()
    for attempt in range(policy.attempts):
        try:
            return fn(*args, **kwargs)
        except keep:
            raise
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc):
                raise StorageError(redact(f"{where}: {_reason(exc)}", storage_options),
                                   transient=False) from exc
            if attempt + 1 >= policy.attempts:
                raise StorageError(redact(
                    f"{where}: gave up after {policy.attempts} attempts over "
                    f"{time.monotonic() - started:.1f}s: {_reason(exc)}", storage_options),
                    transient=True) from exc
            delay = policy.delay(attempt)
            log.warning("%s", redact(f"{where}: transient error ({_reason(exc)}); retry "
                                     f"{attempt + 1}/{policy.attempts - 1} in {delay:.1f}s",
                                     storage_options))
            time.sleep(delay)
    raise AssertionError("unreachable")


def _bucket_of(fs: Any, path: str) -> str:
    return path.strip("/").split("/", 1)[0]


def _not_found(fs: Any, url: str, path: str, storage_options: Any) -> FileNotFoundError:
    """A FileNotFoundError for ``url``, or a StorageError when its bucket itself is missing."""
    if not is_local(fs):
        bucket = _bucket_of(fs, path)
        try:
            fs.invalidate_cache(bucket)
            exists = fs.exists(bucket)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            exists = True
        if not exists:
            raise StorageError(f"{_display(url)}: no such bucket/container {bucket!r}",
                               transient=False)
    return FileNotFoundError(errno.ENOENT, f"{_display(url)}: no such object or folder")


def _call(fs: Any, url: str, path: str, what: str, fn: Callable[..., T], *args: Any,
          storage_options: Any = None, policy: RetryPolicy | None = None, **kwargs: Any) -> T:
    """with_retries, turning a not-found caused by a missing bucket into a clear StorageError."""
    try:
        return with_retries(fn, *args, what=what, url=url, storage_options=storage_options,
                            policy=policy, **kwargs)
    except FileNotFoundError:
        raise _not_found(fs, url, path, storage_options) from None


# -- listing and fingerprints ----------------------------------------------------------------


@dataclass(frozen=True)
class StoredVideo:
    """An input video: its URL (or local path), its key relative to the input root (mirrored
    under the output), and, for objects, the fingerprint and size from the listing."""

    source: str
    relative: str
    fingerprint: str | None = None
    size: int | None = None


_MAGIC = set("*?[")


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
    info = _call(fs, url, path, "reading metadata of", fs.info, path,
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

    Local paths delegate to :func:`nhance_batch.pipeline.inputs.list_inputs` (fingerprints
    left None). For objects, ``source`` is ``url`` joined with the relative key (so the
    URL's own form, account or endpoint is kept) and the fingerprint comes from the listing.
    ``exclude`` (the job's output) and anything under it is never an input.

    Raises:
        FileNotFoundError: ``url`` names nothing.
        StorageError: missing bucket, access denied, missing extra, retries exhausted.
    """
    if is_local_url(url):
        ex = local_path(exclude) if exclude and is_local_url(exclude) else None
        return [StoredVideo(v.source, v.relative)
                for v in list_inputs(local_path(url), exclude=ex)]

    fs, root = resolve(url, storage_options)
    excluded = None
    if exclude and not is_local_url(exclude) and protocol_of(exclude) in (
            protocol_of(url), _ALIASES.get(protocol_of(url))):
        excluded = fs._strip_protocol(exclude).rstrip("/")

    def keep(path: str) -> bool:
        return excluded is None or not (path == excluded or path.startswith(excluded + "/"))

    def entries(found: Mapping[str, Any], base_path: str, base_url: str) -> list[StoredVideo]:
        out = []
        for path, info in sorted(found.items()):
            if info.get("type", "file") != "file" or not keep(path):
                continue
            relative = path[len(base_path):].lstrip("/")
            if not relative or not is_video_name(relative):
                continue
            fp, size = _fingerprint_from_info(info)
            out.append(StoredVideo(join(base_url, relative), relative, fp, size))
        return out

    if _MAGIC & set(root):
        fs.invalidate_cache()
        found = _call(fs, url, root, "listing", fs.glob, root, detail=True,
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
        return entries(files, base_path, base_url)

    fs.invalidate_cache(root)
    found = _call(fs, url, root, "listing", fs.find, root, detail=True, withdirs=False,
                  storage_options=storage_options, policy=policy)
    if not found:
        # maybe a single object (find lists below a prefix), or nothing at all
        try:
            info = _call(fs, url, root, "reading metadata of", fs.info, root,
                         storage_options=storage_options, policy=policy)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, f"input {_display(url)}: no such object, prefix or matching glob"
            ) from None
        if info.get("type") == "file":
            name = root.rstrip("/").rsplit("/", 1)[-1]
            fp, size = _fingerprint_from_info(info)
            return [StoredVideo(str(url), name, fp, size)]
        return []
    found = _as_detail(found, fs)
    if len(found) == 1 and next(iter(found)).rstrip("/") == root.rstrip("/"):
        info = next(iter(found.values()))  # the URL names one object
        name = root.rstrip("/").rsplit("/", 1)[-1]
        fp, size = _fingerprint_from_info(info)
        return [StoredVideo(str(url), name, fp, size)]
    return entries(found, root.rstrip("/"), str(url).rstrip("/"))


# -- simple object operations ----------------------------------------------------------------


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


# -- local copies of inputs --------------------------------------------------------------------

ENV_INPUT_CACHE_BYTES = "NHANCE_INPUT_CACHE_BYTES"
DEFAULT_INPUT_CACHE_BYTES = 20 * 2**30


def default_cache_dir() -> str:
    """``$NHANCE_CACHE/inputs``, or the platform's user cache folder's ``inputs``."""
    base = os.environ.get("NHANCE_CACHE")
    if not base:
        from platformdirs import user_cache_dir

        base = user_cache_dir("nhance-batch")
    return os.path.join(base, "inputs")


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
                                f"downloading {_display(url)}: got {got} bytes, the store "
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
        raise StorageError(f"{_display(url)}: the local cache copy kept disappearing",
                           transient=True)

    def _entries(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root) as it:
                return [e for e in it if e.is_file() and not e.name.endswith(".lock")
                        and ".part-" not in e.name]
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


# -- credential redaction ----------------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"(^|_)(key|secret|token|password|passwd|pwd|credential|credentials|sas|sig|signature|"
    r"connection_string|account_key|private_key|session_token|client_secret|refresh_token|"
    r"access_token|auth|authorization)($|_)", re.I)
_NOT_SECRET_KEY = re.compile(r"^(key_id|private_key_id|token_uri|auth_uri|auth_provider_"
                             r"x509_cert_url|client_x509_cert_url)$", re.I)
_SECRET_FIELDS = frozenset({"accountkey", "sharedaccesssignature", "sharedaccesskey", "sig",
                            "signature", "password", "pwd", "secret", "token"})
_SECRET_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)
_PATTERNS = (
    (re.compile(r"(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s'\"]+", re.I),
     r"\1=***"),
    (re.compile(r"((?:[?&]|\b)(?:sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
                r"X-Goog-Signature|X-Goog-Credential|access_token)=)[^&\s'\"]+", re.I), r"\1***"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.I), r"\1***@"),
    (re.compile(r"(Authorization:\s*\w+\s+)\S+", re.I), r"\1***"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                re.S), "***"),
)


def _collect(value: Any, secret: bool, out: set[str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = str(k)
            is_secret = secret or (bool(_SECRET_KEY.search(key))
                                   and not _NOT_SECRET_KEY.match(key))
            _collect(v, is_secret, out)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _collect(v, secret, out)
    elif isinstance(value, (str, bytes)) and secret:
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if len(text) >= 4 and text.lower() not in ("anon", "none", "true", "false",
                                                   "google_default", "cloud", "cache"):
            out.add(text)
            for part in re.split(r"[;&\s]", text):  # connection strings: secret fields too
                name, eq, val = part.partition("=")
                if eq and len(val) >= 4 and name.strip().lower() in _SECRET_FIELDS:
                    out.add(val)


def secret_values(storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Every credential string in ``storage_options`` (by key name, recursively; a secret
    dict such as a service-account ``token`` counts whole) and in the usual environment
    variables, longest first."""
    found: set[str] = set()
    _collect(storage_options or {}, False, found)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            _collect({name: value}, True, found)
    return sorted(found, key=len, reverse=True)


def redact(text: Any, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` with every credential replaced by ``***``: the secret values of
    ``storage_options`` and the environment, plus account keys, SAS/presigned-URL
    signatures, URL passwords and private keys wherever they appear."""
    out = str(text)
    for secret in secret_values(storage_options):
        out = out.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def redacted_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``storage_options`` safe to print or record: secret values are ``***``."""
    def walk(value: Any, secret: bool) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(v, secret or (bool(_SECRET_KEY.search(str(k)))
                                          and not _NOT_SECRET_KEY.match(str(k))))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, secret) for v in value]
        if secret and isinstance(value, (str, bytes)):
            return "***"
        if isinstance(value, str):
            return redact(value, storage_options)
        return value
    return walk(dict(storage_options or {}), False)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts credentials from each record's message (and drops
    its args, already merged into the message). Attach it to handlers."""

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.storage_options = dict(storage_options or {})

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logged as it is
            return True
        record.msg, record.args = redact(message, self.storage_options), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.storage_options)
        return True


def install_log_redaction(storage_options: Mapping[str, Any] | None = None,
                          logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to every handler of ``logger`` (default: root) and
    to the logger itself; returns the filter (remove it with ``removeFilter``)."""
    target = logger or logging.getLogger()
    flt = RedactingFilter(storage_options)
    target.addFilter(flt)
    for handler in target.handlers:
        handler.addFilter(flt)
    return flt

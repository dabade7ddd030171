"""Retries of store calls: transient vs permanent errors, exponential backoff with jitter."""

from __future__ import annotations

import errno
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.redact import redact
from nhance_batch.storage.urls import display_url, is_local

log = logging.getLogger(__name__)
T = TypeVar("T")

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
#: gcsfs (6 tries with backoff, fixed in the library) and azure-core (its retry policy) retry
#: each request themselves; for their URLs that is the one layer, and ours does not retry.
SDK_RETRIES = RetryPolicy(attempts=1)
_SDK_RETRYING = frozenset({"gs", "gcs", "az", "abfs", "abfss"})


def policy_for(url: str | None) -> RetryPolicy:
    """The retry policy for calls on ``url``: ours for local paths and S3 (whose client is
    set to one attempt, :func:`nhance_batch.storage.urls.resolve`), none on top of the
    libraries that retry on their own (GCS, Azure)."""
    from nhance_batch.storage.urls import protocol_of

    if url is not None and protocol_of(url) in _SDK_RETRYING:
        return SDK_RETRIES
    return DEFAULT_RETRY

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
    policy = policy or policy_for(url)
    where = f"{what} {display_url(url)}" if url else what
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
            raise StorageError(f"{display_url(url)}: no such bucket/container {bucket!r}",
                               transient=False)
    return FileNotFoundError(errno.ENOENT, f"{display_url(url)}: no such object or folder")


def call_with_retries(fs: Any, url: str, path: str, what: str, fn: Callable[..., T], *args: Any,
          storage_options: Any = None, policy: RetryPolicy | None = None, **kwargs: Any) -> T:
    """with_retries, turning a not-found caused by a missing bucket into a clear StorageError."""
    try:
        return with_retries(fn, *args, what=what, url=url, storage_options=storage_options,
                            policy=policy, **kwargs)
    except FileNotFoundError:
        raise _not_found(fs, url, path, storage_options) from None

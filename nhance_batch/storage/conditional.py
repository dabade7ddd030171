"""Conditional writes of one small object: create only if absent, replace or delete only if
unchanged since it was read. The stores enforce the condition themselves:

* S3: ``PutObject`` with ``If-None-Match: *`` (create) or ``If-Match: <ETag>`` (replace),
  ``DeleteObject`` with ``If-Match``;
* GCS: uploads and deletes with ``ifGenerationMatch`` (``0`` means "does not exist");
* Azure Blob: ``Put Blob`` with ``If-None-Match: *`` or ``If-Match: <ETag>``, ``Delete Blob``
  with ``If-Match``.

Every other store gets :class:`PlainObject`: the same interface over whole-object reads and
writes, with versions made from the content; it cannot stop two writers of the same instant
(``atomic`` is False), so its callers must confirm by reading back.

By default the client libraries' own retries apply (one retry layer). With
``attempt_timeout`` every operation is one attempt of at most that many seconds (the
libraries' retries are turned off for it) and the caller retries: a caller with a deadline,
like the lease whose heartbeat must land within its ttl, cannot wait out a library's backoff
(azure-storage-blob waits 15 s and more before its first retry, gcsfs up to 31 s over its
tries). A retried create or replace whose first attempt did land answers "precondition
failed": callers re-read to learn who won.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from nhance_batch.storage.urls import protocol_of, resolve


class PreconditionsUnsupported(OSError):
    """The store answered that it does not implement the conditional request."""


class ConditionalObject:
    """One object's conditional operations. ``version`` strings are opaque (an ETag, a
    generation); None results mean the condition did not hold."""

    #: True when the store itself refuses a write whose condition does not hold.
    atomic = True

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                 attempt_timeout: float | None = None) -> None:
        if attempt_timeout is not None and attempt_timeout <= 0:
            raise ValueError(f"attempt_timeout must be positive, got {attempt_timeout}")
        self.url = url
        #: None: the library retries; else one attempt per operation, cut after these seconds
        self.attempt_timeout = attempt_timeout
        self.fs, path = resolve(url, storage_options)
        self.bucket, _, self.key = path.lstrip("/").partition("/")
        if not self.bucket or not self.key:
            raise ValueError(f"{url!r} does not name an object inside a bucket or container")

    def _sync(self, coro_fn: Any, *args: Any) -> Any:
        """Run ``coro_fn(*args)`` on the file system's loop; with an attempt timeout, a
        request still running after it is cancelled and TimeoutError raised (transient)."""
        from fsspec.asyn import sync

        limit = self.attempt_timeout
        if limit is None:
            return sync(self.fs.loop, coro_fn, *args)

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(coro_fn(*args), limit)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{self.url}: no answer within {limit:g} s") from None
        return sync(self.fs.loop, bounded)

    def read(self) -> tuple[bytes, str] | None:
        """``(content, version)`` read in one request, or None if there is no object."""
        raise NotImplementedError

    def create(self, data: bytes) -> str | None:
        """Write ``data`` if no object exists; its version, or None if one exists."""
        raise NotImplementedError

    def replace(self, data: bytes, version: str) -> str | None:
        """Overwrite the object if it is still at ``version``; the new version, or None."""
        raise NotImplementedError

    def delete(self, version: str) -> bool:
        """Delete the object if it is still at ``version``; False if it is not (or gone)."""
        raise NotImplementedError


class S3Object(ConditionalObject):
    """Through the s3fs file system's own botocore client (its credentials, endpoint and
    retry configuration: one attempt per call unless the user configured retries, see
    :func:`nhance_batch.storage.urls.resolve`)."""

    _RACE = {"ConditionalRequestConflict"}  # S3: a concurrent conditional write is in flight

    async def _client(self) -> Any:
        await self.fs.set_session()
        return await self.fs.get_s3(self.bucket)

    @staticmethod
    def _code(exc: BaseException) -> tuple[str, int]:
        response = getattr(exc, "response", None) or {}
        code = str((response.get("Error") or {}).get("Code", ""))
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        return code, status

    def _unsupported(self, exc: BaseException) -> None:
        code, status = self._code(exc)
        if code == "NotImplemented" or status == 501:  # S3-compatible stores without them
            raise PreconditionsUnsupported(f"{self.url}: the store does not implement "
                                           f"conditional writes ({code or status})") from exc

    def _failed_condition(self, exc: BaseException) -> bool:
        code, status = self._code(exc)
        return code in ("PreconditionFailed", "NoSuchKey", "404") or status in (404, 412) \
            or code in self._RACE or status == 409

    def read(self) -> tuple[bytes, str] | None:
        async def go() -> tuple[bytes, str] | None:
            client = await self._client()
            try:
                response = await client.get_object(Bucket=self.bucket, Key=self.key)
            except Exception as exc:  # noqa: BLE001 - botocore ClientError
                code, status = self._code(exc)
                if code in ("NoSuchKey", "404") or status == 404:
                    return None
                raise
            async with response["Body"] as body:
                data = await body.read()
            return data, response["ETag"]
        return self._sync(go)

    def _put(self, data: bytes, **condition: str) -> str | None:
        async def go() -> str | None:
            client = await self._client()
            try:
                response = await client.put_object(Bucket=self.bucket, Key=self.key, Body=data,
                                                   ContentType="application/json", **condition)
            except Exception as exc:  # noqa: BLE001 - botocore ClientError
                if self._failed_condition(exc):
                    return None
                self._unsupported(exc)
                raise
            return response["ETag"]
        return self._sync(go)

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, version: str) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: str) -> bool:
        async def go() -> bool:
            client = await self._client()
            try:
                await client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
            except Exception as exc:  # noqa: BLE001 - botocore ClientError
                if self._failed_condition(exc):
                    return False
                self._unsupported(exc)
                raise
            return True
        return self._sync(go)


class GCSObject(ConditionalObject):
    """Through gcsfs's authorized session (JSON API), with its request retries unless the
    object makes one attempt per operation."""

    async def _call(self, method: str, path: str, *args: Any, json_out: bool = False,
                    **kwargs: Any) -> Any:
        """``fs._call``; with an attempt timeout, one request without gcsfs's retry loop
        (the undecorated request, where this gcsfs version exposes it)."""
        single = getattr(type(self.fs)._request, "__wrapped__", None)
        if self.attempt_timeout is None or single is None:
            return await self.fs._call(method, path, *args, json_out=json_out, **kwargs)
        _, headers, _, contents = await single(self.fs, method, path, *args, **kwargs)
        return json.loads(contents) if json_out else (headers, contents)

    def read(self) -> tuple[bytes, str] | None:
        async def go() -> tuple[bytes, str] | None:
            try:
                headers, data = await self._call("GET", "b/{}/o/{}", self.bucket, self.key,
                                                 alt="media")
            except FileNotFoundError:
                return None
            generation = headers.get("X-Goog-Generation")
            if generation is None:  # pragma: no cover - GCS always sends it
                raise OSError(f"{self.url}: the store sent no object generation")
            return data, str(generation)
        return self._sync(go)

    def _generation(self) -> str | None:
        async def go() -> str | None:
            try:
                meta = await self._call("GET", "b/{}/o/{}", self.bucket, self.key,
                                        json_out=True)
            except FileNotFoundError:
                return None
            return str(meta["generation"])
        return self._sync(go)

    def _upload(self, data: bytes, generation: str) -> str | None:
        # a multipart upload (metadata + media in one request) with the precondition
        boundary = "nhance-" + hashlib.sha256(data).hexdigest()[:24]
        body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                + json.dumps({"name": self.key, "contentType": "application/json"})
                + f"\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n").encode() \
            + data + f"\r\n--{boundary}--\r\n".encode()

        async def go() -> str | None:
            try:
                meta = await self._call(
                    "POST", f"{self.fs._location}/upload/storage/v1/b/{quote(self.bucket)}/o",
                    uploadType="multipart", ifGenerationMatch=generation,
                    headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                    data=body, json_out=True)
            except (FileExistsError, FileNotFoundError):  # 412; 404: gone while replacing
                return None
            return str(meta["generation"])
        return self._sync(go)

    def create(self, data: bytes) -> str | None:
        return self._upload(data, "0")

    def replace(self, data: bytes, version: str) -> str | None:
        return self._upload(data, version)

    def delete(self, version: str) -> bool:
        async def go() -> bool:
            try:
                await self._call("DELETE", "b/{}/o/{}", self.bucket, self.key,
                                 ifGenerationMatch=version)
            except (FileExistsError, FileNotFoundError):
                return False
            return True
        # GCS enforces the precondition; checking first also covers emulators that ignore it
        if self._generation() != version:
            return False
        return self._sync(go)


class AzureObject(ConditionalObject):
    """Through adlfs's azure-storage-blob service client (its credentials, and its retries
    unless the object makes one attempt per operation)."""

    def _blob(self) -> Any:
        return self.fs.service_client.get_blob_client(self.bucket, self.key)

    @property
    def _options(self) -> dict[str, Any]:
        """Per-request options: no retries by the client's policy for one attempt."""
        return {} if self.attempt_timeout is None else {"retry_total": 0}

    def read(self) -> tuple[bytes, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        async def go() -> tuple[bytes, str] | None:
            async with self._blob() as blob:
                try:
                    stream = await blob.download_blob(**self._options)
                    data = await stream.readall()
                except ResourceNotFoundError:
                    return None
                return data, str(stream.properties.etag)
        return self._sync(go)

    def _upload(self, data: bytes, **condition: Any) -> str | None:
        from azure.core.exceptions import (ResourceExistsError, ResourceModifiedError,
                                           ResourceNotFoundError)

        async def go() -> str | None:
            async with self._blob() as blob:
                try:
                    result = await blob.upload_blob(data, **condition, **self._options)
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                    return None
                return str(result["etag"])
        return self._sync(go)

    def create(self, data: bytes) -> str | None:
        return self._upload(data, overwrite=False)

    def replace(self, data: bytes, version: str) -> str | None:
        from azure.core import MatchConditions

        return self._upload(data, overwrite=True, etag=version,
                            match_condition=MatchConditions.IfNotModified)

    def delete(self, version: str) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        async def go() -> bool:
            async with self._blob() as blob:
                try:
                    await blob.delete_blob(etag=version,
                                           match_condition=MatchConditions.IfNotModified,
                                           **self._options)
                except (ResourceModifiedError, ResourceNotFoundError):
                    return False
                return True
        return self._sync(go)


class PlainObject(ConditionalObject):
    """Any other store: read, then write. Versions are content hashes; the check and the
    write are two steps, so two writers of the same instant can both pass it."""

    atomic = False

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                 attempt_timeout: float | None = None) -> None:
        self.url = url
        self.storage_options = storage_options
        self.attempt_timeout = attempt_timeout  # not applied: plain calls retry themselves

    @staticmethod
    def _version(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[bytes, str] | None:
        from nhance_batch.storage.objects import read_bytes

        try:
            data = read_bytes(self.url, self.storage_options)
        except FileNotFoundError:
            return None
        return data, self._version(data)

    def _write(self, data: bytes) -> str:
        from nhance_batch.storage.objects import write_bytes

        write_bytes(self.url, data, self.storage_options)
        return self._version(data)

    def create(self, data: bytes) -> str | None:
        return None if self.read() is not None else self._write(data)

    def replace(self, data: bytes, version: str) -> str | None:
        current = self.read()
        return None if current is None or current[1] != version else self._write(data)

    def delete(self, version: str) -> bool:
        from nhance_batch.storage.objects import remove

        current = self.read()
        if current is None or current[1] != version:
            return False
        remove(self.url, self.storage_options)
        return True


_KINDS: dict[str, type[ConditionalObject]] = {
    "s3": S3Object, "s3a": S3Object, "gs": GCSObject, "gcs": GCSObject,
    "az": AzureObject, "abfs": AzureObject, "abfss": AzureObject,
}


def conditional_object(url: str, storage_options: Mapping[str, Any] | None = None, *,
                       attempt_timeout: float | None = None) -> ConditionalObject:
    """The conditional operations for the object at ``url`` (with the store's own
    preconditions for S3, GCS and Azure Blob; :class:`PlainObject` for any other store).
    ``attempt_timeout``: one attempt per operation, of at most that many seconds."""
    kind = _KINDS.get(protocol_of(url), PlainObject)
    return kind(url, storage_options, attempt_timeout=attempt_timeout)

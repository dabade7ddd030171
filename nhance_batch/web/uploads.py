"""Multipart uploads streamed straight into a job's input folder.

The request body is parsed as it arrives (python-multipart's streaming parser): file parts are
written to their final place chunk by chunk, so the server's memory stays flat however large
the upload is; form fields are kept in memory (small, bounded). The byte limit counts the file
bytes of the whole request; past it, the upload stops with :class:`UploadTooLarge`, and the
caller removes what was written.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio

MAX_FIELD_BYTES = 64 << 10
MAX_FIELDS = 64
MAX_NAME_CHARS = 180
# multipart framing allowed on top of the file bytes before the Content-Length check refuses
_FRAMING_SLACK = 1 << 20


class UploadError(ValueError):
    """A malformed upload (HTTP 400)."""


class UploadTooLarge(UploadError):
    """The upload is larger than the server accepts (HTTP 413)."""


def safe_name(name: str, fallback: str = "upload") -> str:
    """A plain file name from a client's ``filename``: the last path component (either slash),
    no control characters or NULs, no leading dots (so ``..`` and hidden names go), at most
    180 characters with the extension kept."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in "\x00:*?\"<>|")
    name = name.strip().lstrip(".").strip()
    if not name:
        return fallback
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if dot and len(ext) <= 10 else ""
        name = (stem if ext else name)[: MAX_NAME_CHARS - len(ext)] + ext
    return name


def unique_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-1.ext``... when that name is taken."""
    path = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


@dataclass
class Upload:
    """What a multipart request carried: its form fields and the stored files' names."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    file_bytes: int = 0


class _Receiver:
    """python-multipart callbacks writing file parts into ``folder``."""

    def __init__(self, folder: Path, max_bytes: int, file_field: str) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.file_field = file_field
        self.result = Upload()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._out = None
        self._value: bytearray | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._out = None
        self._value = None

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").strip().lower()] = bytes(
            self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None and name == self.file_field:
            stored = unique_path(self.folder, safe_name(filename.decode("utf-8", "replace")))
            self._out = open(stored, "xb")
            self.result.files.append(stored.name)
        elif filename is None:
            if len(self.result.fields) >= MAX_FIELDS:
                raise UploadError("too many form fields")
            self._name = name
            self._value = bytearray()
        # any other file part (a field name we do not know) is read and dropped

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self.result.file_bytes += end - start
            if self.result.file_bytes > self.max_bytes:
                raise UploadTooLarge(f"upload larger than {self.max_bytes} bytes")
            self._out.write(data[start:end])
        elif self._value is not None:
            self._value.extend(data[start:end])
            if len(self._value) > MAX_FIELD_BYTES:
                raise UploadError(f"form field {self._name!r} is too long")

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._value is not None and self._name:
            self.result.fields[self._name] = self._value.decode("utf-8", "replace")
            self._value = None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def receive_multipart(content_type: str, body: AsyncIterator[bytes], folder: Path, *,
                            max_bytes: int, content_length: int | None = None,
                            file_field: str = "file") -> Upload:
    """Parse a ``multipart/form-data`` body into ``folder``.

    Raises:
        UploadTooLarge: the files exceed ``max_bytes`` (or the declared length does).
        UploadError: not multipart, no boundary, or a malformed body.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError("expected multipart/form-data with a boundary, or a JSON body")
    if content_length is not None and content_length > max_bytes + _FRAMING_SLACK:
        raise UploadTooLarge(f"upload of {content_length} bytes is larger than {max_bytes}")
    folder.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(folder, max_bytes, file_field)
    parser = MultipartParser(boundary, receiver.callbacks())
    try:
        async for chunk in body:
            if chunk:
                # file writes happen in the parser's callbacks: off the event loop
                await anyio.to_thread.run_sync(parser.write, chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python-multipart's parse errors, a client that went away
        raise UploadError(f"malformed multipart body: {exc}") from exc
    finally:
        receiver.close()
    if not receiver.result.files:
        raise UploadError("no file parts named 'file' in the upload")
    return receiver.result

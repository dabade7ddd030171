"""Safe opening of media files with PyAV.

FFmpeg's demuxers are powerful: a text playlist (HLS ``.m3u8``), an ``ffconcat``
script or an ``image2`` pattern can make FFmpeg open *other* files, whatever the
name of the file given. A file named ``clip.mp4`` that is really a playlist
pointing at ``/home/user/secret.mp4`` must never be followed. So inputs are
opened with four layers of defence:

1. The file is opened by Python and handed to FFmpeg as a file object, so
   FFmpeg never interprets the name as a URL or protocol (``concat:``,
   ``pipe:``, ...). Non-ASCII names work the same way.
2. ``format_whitelist`` restricts probing to the real media containers in
   :data:`ALLOWED_DEMUXERS`; FFmpeg refuses any other demuxer before it reads
   a header (the error names the demuxer it detected).
3. Every nested open FFmpeg asks for (``io_open``) is refused.
4. After opening, the demuxer's name is checked against the allowlist again.

Outputs are written through a Python file object too (same reasons), to a
temporary name next to the destination that is renamed into place only once
the file is complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nhance_batch.media.errors import MediaError

if TYPE_CHECKING:
    from av.container import InputContainer, OutputContainer

#: Demuxers allowed to open inputs (FFmpeg short names). None of them opens other files.
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",  # reported as "mov,mp4,m4a,3gp,3g2,mj2"
    "matroska",  # reported as "matroska,webm"
    "avi",
    "nut",
    "mpegts",
    "flv",
    "ogg",
    "mpeg",
    "asf",
    "ivf",
    "mxf",
)

# Text signatures of playlists and scripts, to name them clearly even before FFmpeg looks.
_SCRIPT_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"#EXTM3U", "hls"),
    (b"ffconcat", "concat"),
    (b"[playlist]", "pls playlist"),
    (b"<?xml", "xml (dash manifest or similar)"),
)
_NOT_WHITELISTED = re.compile(r"\[([\w,]+)\] Format not on whitelist")


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    """``io_open`` hook: an input must never make FFmpeg open another file."""
    raise PermissionError(f"refused to open {url!r} referenced from inside the input")


def _demuxer_allowed(format_name: str) -> bool:
    return any(name in ALLOWED_DEMUXERS for name in format_name.split(","))


def _check_regular_file(path: str) -> int:
    """Return the size of ``path``, or raise :class:`MediaError` if it is no regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediaError(path, "file not found") from None
    except OSError as exc:
        raise MediaError(path, f"cannot access file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(path, "not a regular file")
    if st.st_size == 0:
        raise MediaError(path, "empty file")
    return st.st_size


def _sniff_script(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    for signature, kind in _SCRIPT_SIGNATURES:
        if text[: len(signature)].lower() == signature.lower():
            return kind
    return None


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str]) -> Iterator[InputContainer]:
    """Open ``path`` for demuxing, allowing only real media containers.

    Raises:
        MediaError: the file is missing, empty, a playlist/script, or not a
            readable media file; the message names the file and the reason.
    """
    import av

    spath = os.fspath(path)
    _check_regular_file(spath)
    with open(spath, "rb") as fh:
        script = _sniff_script(fh.read(64))
        if script is not None:
            raise MediaError(
                spath, f"refusing a {script} playlist/script: only real media containers are opened"
            )
        fh.seek(0)
        try:
            with _ffmpeg_errors() as logs:
                container = av.open(
                    fh,
                    mode="r",
                    container_options={"format_whitelist": ",".join(ALLOWED_DEMUXERS)},
                    io_open=_refuse_nested_open,
                )
        except PermissionError as exc:
            raise MediaError(spath, f"refused: {exc}") from None
        except (av.FFmpegError, OSError, ValueError) as exc:
            messages = [f"[{name}] {message.strip()}" for _, name, message in logs]
            match = _NOT_WHITELISTED.search("\n".join(messages + [str(exc)]))
            if match:
                reason = (
                    f"demuxer {match.group(1)!r} is not allowed "
                    "(playlists, scripts and image sequences can open other files)"
                )
            else:
                detail = ffmpeg_reason(exc)
                if messages and messages[-1] not in detail:
                    detail = f"{detail}: {messages[-1]}"
                reason = f"not a readable media file ({detail})"
            raise MediaError(spath, reason) from None
        try:
            if not _demuxer_allowed(container.format.name):
                raise MediaError(spath, f"demuxer {container.format.name!r} is not allowed")
            yield container
        finally:
            container.close()


@contextlib.contextmanager
def _ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """Collect FFmpeg's error logs of this thread as ``(level, name, message)``.

    PyAV silences FFmpeg by default, which also drops the demuxer's own error
    message; switch error logging on for the block (as PyAV's own device listing
    does) and route it into a list instead of Python logging.
    """
    import av.logging

    previous = av.logging.get_level()
    if previous is None:
        av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        if previous is None:
            av.logging.set_level(None)


def ffmpeg_reason(exc: BaseException) -> str:
    """A short reason from a PyAV error: its strerror and FFmpeg's last log line."""
    reason = str(getattr(exc, "strerror", None) or type(exc).__name__)
    _, sep, log = str(exc).partition("last error log: ")
    return f"{reason}: {log.strip()}" if sep and log.strip() else reason


@contextlib.contextmanager
def open_output(
    dest: str | os.PathLike[str], format: str, options: dict[str, str] | None = None
) -> Iterator[OutputContainer]:
    """Open ``dest`` for muxing ``format``; the file appears only if the block succeeds.

    ``options`` are muxer (format context) options.

    The file is written under a temporary name in the same folder and committed onto
    ``dest`` at the end (:func:`nhance_batch.storage.atomic_local_file`), so a failed or
    interrupted write never leaves a broken ``dest``.
    """
    import av

    from nhance_batch.storage.objects import atomic_local_file

    final = Path(os.fspath(dest))
    with atomic_local_file(final) as tmp:
        try:
            fh = open(tmp, "wb")  # noqa: SIM115 - closed by the with block below
        except OSError as exc:
            raise MediaError(str(final), f"cannot write file ({exc.strerror})") from None
        with fh:
            try:
                container = av.open(fh, mode="w", format=format, container_options=options or {})
            except (av.FFmpegError, ValueError) as exc:
                raise MediaError(str(final), f"cannot create a {format!r} file ({exc})") from None
            try:
                yield container
            except BaseException:
                with contextlib.suppress(Exception):
                    container.close()
                raise
            try:
                container.close()
            except av.FFmpegError as exc:
                raise MediaError(str(final), f"cannot finish the file ({ffmpeg_reason(exc)})") from None

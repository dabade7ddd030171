"""Output names and the safety of where outputs go: decided at plan time, before any work.

Three rules, each checked here and nowhere else:

1. **Sources are never written.** OUTPUT may not be the input folder, the folder of a
   single-file input, or a folder that contains the input; and no output may resolve to an
   input. Locations are compared resolved: local paths through ``realpath`` (symlinks, ``..``),
   store URLs with their protocol aliases folded (``s3a://`` is ``s3://``) and their paths
   normalised. A violation refuses the whole job (:class:`UnsafeOutput`, exit 2).
2. **Nothing escapes OUTPUT.** A relative key holding a ``..`` or ``.`` part, an absolute part,
   a backslash, a NUL or a drive letter fails that video (:func:`unsafe_key`).
3. **Two inputs never share an output.** Names are compared case-insensitively, so outputs
   stay distinct on case-insensitive stores too. An output keeps its input's relative path;
   when its container must change (a codec the source's container cannot carry falls back to
   Matroska), the new extension replaces the old one unless that name is, or may become,
   another input's, in which case the source's extension is kept and the new one added
   (``a.webm`` -> ``a.webm.mkv``). A name still taken gets a short hash of its input's path
   (``a.3f2c9e1b.mp4``). Every decision depends only on the set of inputs, never on the order
   they were probed, so a rerun names everything the same; the manifest records each name.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Iterable

from nhance_batch import storage
from nhance_batch.state.layout import STATE_DIR

_ALIASES = {"s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az"}
_CONTAINER_SUFFIXES = {"mp4": {".mp4", ".m4v"}, "mov": {".mov"}, "matroska": {".mkv"},
                       "webm": {".webm"}}
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeOutput(ValueError):
    """The job would write onto or among its sources (the message names both paths)."""


def location(url: str) -> str:
    """A comparable form of a local path or store URL: resolved, normalised."""
    if storage.is_local_url(url):
        return os.path.normcase(os.path.realpath(os.path.abspath(storage.local_path(url))))
    protocol, _, rest = str(url).partition("://")
    protocol = _ALIASES.get(protocol.lower(), protocol.lower())
    path = posixpath.normpath("/" + rest.strip("/")).lstrip("/")
    return f"{protocol}://{path}"


def _inside(path: str, folder: str) -> bool:
    """True if ``path`` is ``folder`` or below it (both from :func:`location`)."""
    if path == folder:
        return True
    sep = "/" if "://" in folder else os.sep
    return path.startswith(folder.rstrip(sep) + sep)


def input_root(spec: str) -> str:
    """The folder an input names: itself for a folder or prefix, the fixed part of a glob,
    the parent of a single file."""
    magic = set("*?[")
    text = str(spec)
    if magic & set(text):
        head = []
        for part in text.split("/"):
            if magic & set(part):
                break
            head.append(part)
        return "/".join(head) or "."
    if storage.is_local_url(text):
        path = storage.local_path(text)
        return os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else path
    return text


def check_output_safe(input_spec: str, output: str, sources: Iterable[str],
                      *, single_file: bool) -> None:
    """Refuse (:class:`UnsafeOutput`) a job whose outputs could land on or among its sources.

    Args:
        input_spec: INPUT as given.
        output: OUTPUT as given.
        sources: every listed input's URL or path.
        single_file: INPUT named one file (its folder is then off limits too).
    """
    out = location(output)
    root_spec = storage.parent(input_spec) if single_file else input_root(input_spec)
    root = location(root_spec)
    if _inside(root, out):
        what = (f"the folder of the input file {input_spec}" if single_file
                else f"the input {input_spec}")
        raise UnsafeOutput(
            f"OUTPUT {output} is or contains {what}: outputs would be written among the "
            "sources; choose an OUTPUT outside the input")
    for source in sources:
        here = location(source)
        if _inside(here, out):
            raise UnsafeOutput(f"the input {source} lies inside OUTPUT {output}: its output "
                               "could overwrite a source; choose an OUTPUT outside the input")


def unsafe_key(relative: str) -> str | None:
    """Why a relative key cannot name an output under OUTPUT, or None when it can."""
    if "\x00" in relative:
        return "holds a NUL character"
    if "\\" in relative:
        return "holds a backslash"
    if relative.startswith("/") or _DRIVE.match(relative):
        return "is absolute"
    parts = relative.split("/")
    if any(p in ("..", ".") for p in parts):
        return "holds a '..' or '.' part"
    if any(p == "" for p in parts):
        return "holds an empty part"
    if parts[0] == STATE_DIR:
        return f"lies in the job's own {STATE_DIR} folder"
    return None


def _fold(name: str) -> str:
    return name.casefold()


def _stem_fold(name: str) -> str:
    return _fold(posixpath.splitext(name)[0])


def _hashed(name: str, relative: str) -> str:
    stem, suffix = posixpath.splitext(name)
    return f"{stem}.{hashlib.sha1(relative.encode()).hexdigest()[:8]}{suffix}"


def container_suffix(relative: str, container: str) -> str | None:
    """The new extension an output needs when its container is not what its name says."""
    suffix = posixpath.splitext(relative)[1].lower()
    if container == "matroska" and suffix not in _CONTAINER_SUFFIXES["matroska"]:
        return ".mkv"
    return None


class OutputNames:
    """Decides each input's output name (its key under OUTPUT) from the whole set of inputs.

    Args:
        relatives: every input's relative key in this job.
    """

    def __init__(self, relatives: Iterable[str]) -> None:
        self._relatives = sorted(set(relatives))
        self._primary_owner: dict[str, str] = {}
        self._stems: dict[str, int] = {}
        for relative in self._relatives:
            self._primary_owner.setdefault(_fold(relative), relative)
            self._stems[_stem_fold(relative)] = self._stems.get(_stem_fold(relative), 0) + 1

    def primary(self, relative: str) -> tuple[str, str | None]:
        """The name for ``relative`` when its container keeps its extension, and a note
        when it had to differ from the input's own key."""
        owner = self._primary_owner.get(_fold(relative), relative)
        if owner == relative:
            return relative, None
        name = _hashed(relative, relative)
        return name, (f"output named {name}: {owner} differs from {relative} only in case, "
                      "and the two would collide on a case-insensitive store")

    def name(self, relative: str, container: str) -> tuple[str, str | None]:
        """The output name of ``relative`` written in ``container`` (an FFmpeg muxer name),
        and a note saying why when it is not the input's own key."""
        new = container_suffix(relative, container)
        if new is None:
            return self.primary(relative)
        short = posixpath.splitext(relative)[0] + new
        taken = self._primary_owner.get(_fold(short))
        shared_stem = self._stems.get(_stem_fold(relative), 0) > 1
        if taken is None and not shared_stem:
            return short, None  # the plain container fallback: a.webm -> a.mkv
        name = relative + new
        why = (f"{taken} is another input" if taken else
               f"another input shares the name {posixpath.splitext(relative)[0]}")
        if self._primary_owner.get(_fold(name)) not in (None, relative):
            name = _hashed(name, relative)
        return name, (f"output named {name} ({container} container): {short} would collide "
                      f"({why})")

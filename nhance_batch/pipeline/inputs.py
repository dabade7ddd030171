"""Find the input videos and where each one's output goes."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".3gp", ".3g2",
    ".flv", ".wmv", ".asf", ".mpg", ".mpeg", ".ogv", ".mxf", ".nut",
})
_MAGIC = set("*?[")


@dataclass(frozen=True)
class InputVideo:
    """A source video and its path relative to the input root (mirrored under the output)."""

    source: str
    relative: str


def is_video_name(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root = []
    for part in parts:
        if _MAGIC & set(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def list_inputs(spec: str, *, exclude: str | None = None) -> list[InputVideo]:
    """The videos named by ``spec``: a file, a folder (recursively, by extension) or a glob.

    Args:
        spec: file, folder or glob pattern (``**`` recurses).
        exclude: a folder whose contents are never inputs (the job's own output).
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
        return [InputVideo(str(path), path.name)]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*")
                       if p.is_file() and is_video_name(p.name) and keep(p))
        return [InputVideo(str(p), p.relative_to(path).as_posix()) for p in found]
    if _MAGIC & set(spec):
        root = _glob_root(spec)
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        return [InputVideo(str(p), p.relative_to(root).as_posix()) for p in found
                if p.is_file() and keep(p)]
    raise FileNotFoundError(f"input {spec!r}: no such file, folder or matching glob")


def output_path(output_root: str, relative: str, extension: str | None = None) -> str:
    """Where the output of the video at ``relative`` goes; ``extension`` replaces its suffix."""
    rel = Path(relative)
    if extension:
        rel = rel.with_suffix(extension)
    return os.path.join(output_root, *rel.parts)

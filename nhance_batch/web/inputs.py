"""Where a web job reads its videos: the check that a server-side input lies under one of the
server's ``--allow-input`` prefixes, and the input spec of an upload job.

The check decides which of the server's own files a client may have processed, so it compares
what a path means, not how it is spelled: local paths after resolving ``..`` and symlinks,
URLs segment by segment with any ``.`` or ``..`` refused.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path


def input_allowed(spec: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a server-side input lies under one of the ``--allow-input`` prefixes: local
    paths compared after resolving (``..`` and symlinks), URLs by their segments (any ``..``
    refused)."""
    for prefix in prefixes:
        if "://" in prefix or "://" in spec:
            if "://" not in prefix or "://" not in spec:
                continue
            if any(part in ("..", ".") for part in spec.split("://", 1)[1].split("/")):
                return False
            base = prefix.rstrip("/")
            if spec == base or spec.startswith(base + "/"):
                return True
            continue
        real, root = os.path.realpath(spec), os.path.realpath(prefix)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def uploads_input(folder: Path) -> str:
    """The input spec of an upload job: every file of its folder (a glob, so a non-video
    upload is tried and fails with its error instead of being skipped)."""
    if glob.has_magic(str(folder)):
        return str(folder)  # a data folder with glob characters: the folder, by extension
    return str(folder / "*")

"""The one exception type of the media layer."""

from __future__ import annotations

import os


class MediaError(Exception):
    """A media file could not be read or written.

    The message always names the file and the reason, so it can be shown to a
    user as is.

    Attributes:
        path: the file concerned (as given, converted with ``os.fspath``).
        reason: why it failed, without the file name.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        # Keep the two-argument constructor working across process boundaries.
        return (type(self), (self.path, self.reason))

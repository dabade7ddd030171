"""The storage layer's one error type."""

from __future__ import annotations

class StorageError(RuntimeError):
    """A store operation failed; the message is redacted and says what to do.

    ``transient`` is True when the operation gave up after retrying transient errors (a later
    attempt may succeed), False for a permanent error (missing bucket, access denied, missing
    optional dependency, bad options) that no retry will fix.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

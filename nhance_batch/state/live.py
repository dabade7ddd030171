"""The running driver's live progress record, ``OUTPUT/_nhance/progress.json``.

The manifest and its journal hold committed work only; a chunk is committed when it is
encoded, which may be a minute after its first frame was enhanced. So the driver also writes,
every :data:`WRITE_INTERVAL_S` seconds while it runs, a small record of what it has enhanced
so far (:class:`LiveRecord`), written whole (a rename locally, one object in a store); readers
(``status``, the web app) add it to the manifest's counts while its driver is alive.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from nhance_batch import storage
from nhance_batch.state.layout import JobLayout

log = logging.getLogger(__name__)

#: Seconds between two writes of the record by a running driver.
WRITE_INTERVAL_S = 2.0


@dataclass
class LiveRecord:
    """What a running driver has done so far.

    Attributes:
        run: the run's number in the manifest.
        updated: when it was written (UTC, ISO 8601).
        frames_enhanced: own frames of the job enhanced so far: committed (this run's and
            earlier runs') and in chunks not yet committed.
        frames_committed: own frames of committed chunks.
        frames_total: frames of the videos probed so far.
        fps: the enhancer's frames per second used for the ETA (measured, or known from
            the rate before enough was measured).
        eta_seconds: seconds still to go when written; None while unknown.
        enhancing: the chunks not yet committed, ``{"video": relative, "chunk": index,
            "frames": own frames enhanced}``.
    """

    run: int
    updated: str
    frames_enhanced: int = 0
    frames_committed: int = 0
    frames_total: int = 0
    fps: float | None = None
    eta_seconds: float | None = None
    enhancing: list[dict[str, Any]] = field(default_factory=list)


def live_url(layout: JobLayout) -> str:
    return storage.join(layout.state_dir, "progress.json")


def write_live(layout: JobLayout, record: LiveRecord) -> bool:
    """Write ``record``; False (logged at debug level) when the store refused: the record is
    a courtesy to readers, never a reason to stop a run."""
    try:
        storage.write_bytes(live_url(layout), json.dumps(asdict(record)).encode(),
                            layout.output_options)
    except (OSError, storage.StorageError) as exc:
        log.debug("progress record not written: %s", layout.redact(exc))
        return False
    return True


def read_live(layout: JobLayout) -> LiveRecord | None:
    """The record, or None when there is none or it cannot be read."""
    try:
        data = json.loads(storage.read_bytes(live_url(layout), layout.output_options))
        return LiveRecord(**data)
    except (OSError, ValueError, TypeError, storage.StorageError):
        return None

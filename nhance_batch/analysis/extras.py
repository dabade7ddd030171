"""What the pipeline adds to each video after assembling it: its metrics and, with
``run --previews``, its browser preview.

It runs on the worker that assembled the output, where the local source and the assembled file
are at hand, before the output is committed. It never fails the video: a problem becomes a
note, and the output is kept.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extras:
    """The metrics (None when they could not be measured), the preview's URL (None when none
    was asked for or it failed) and the notes saying what went wrong."""

    metrics: dict[str, Any] | None = None
    preview: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def note(self) -> str | None:
        return "; ".join(self.notes) or None


def video_extras(source: str, output: str, *, preview_dest: str | None = None,
                 storage_options: dict | None = None, measure: bool = True) -> Extras:
    """Measure the metrics of local ``source`` -> local ``output`` and, when ``preview_dest``
    (a local path or store URL) is given, render the preview there.

    Never raises: errors are returned as notes (secrets of ``storage_options`` redacted).
    """
    from nhance_batch.storage import redact

    notes: list[str] = []
    metrics: dict[str, Any] | None = None
    preview: str | None = None
    if measure:
        try:
            from nhance_batch.analysis.metrics import video_metrics

            metrics = video_metrics(source, output)
        except Exception as exc:  # noqa: BLE001 - a note, never a failed video
            notes.append(redact(f"metrics not measured: {_reason(exc)}", storage_options))
    if preview_dest is not None:
        try:
            from nhance_batch.analysis.jobfiles import publish
            from nhance_batch.analysis.preview import render_preview

            with tempfile.TemporaryDirectory(prefix="nhance-preview-") as work:
                local = os.path.join(work, "preview.mp4")
                render_preview(output, local, audio_from=output)
                publish(local, preview_dest, storage_options)
            preview = preview_dest
        except Exception as exc:  # noqa: BLE001
            notes.append(redact(f"no preview: {_reason(exc)}", storage_options))
    for note in notes:
        log.warning("%s: %s", source, note)
    return Extras(metrics=metrics, preview=preview, notes=tuple(notes))


def _reason(exc: BaseException) -> str:
    from nhance_batch.media.errors import MediaError

    return exc.reason if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"

"""The status document of a job: what ``nhance-batch status --json`` prints and the web app
serves, from the job's state (manifest and journal) and its lease."""

from __future__ import annotations

from typing import Any

from nhance_batch.state.layout import JobLayout


def status_document(output: str, manifest: str | None = None,
                    storage_options: dict | None = None) -> dict[str, Any] | None:
    """The status of the job in ``output`` (its manifest at ``manifest`` if given); None when
    there is no job there.

    Keys: ``videos`` (per video ``input``, ``output``, ``status``, ``error``, ``frames``,
    ``note``, ``chunks_done``, ``chunks_total``, ``added_flicker``, ``metrics``, ``preview``,
    ``output_codec``, ``size_ratio``,
    ``chunks``), ``runs``, ``progress``, ``eta_seconds`` and ``driver_alive``. A video left
    ``running`` by a driver that is gone shows as ``pending``.

    Raises:
        ManifestError: a manifest is there but cannot be read.
        StorageError: the store cannot be read.
    """
    from nhance_batch.state.jobstate import read_manifest
    from nhance_batch.state.lease import live_holder
    from nhance_batch.state.manifest import summarize_for_status

    layout = JobLayout.create(output, output, storage_options, manifest=manifest)
    recorded = read_manifest(layout.manifest, layout.manifest_options)
    if recorded is None:
        return None
    report = summarize_for_status(recorded)
    alive = live_holder(layout.lease, layout.output_options) is not None
    report["driver_alive"] = alive
    if not alive:  # a driver that died mid-run left "running" rows: nothing runs them now
        for video in report["videos"]:
            if video["status"] == "running":
                video["status"] = "pending"
    return report

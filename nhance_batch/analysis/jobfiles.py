"""A finished job's files, for the analysis commands: its manifest and layout, local copies of
its inputs and outputs, and publishing what analysis writes under ``OUTPUT/_nhance``.

Every URL goes with its own store's options (keyed or flat ``storage_options``, as the job
took them); local paths are used in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def job_manifest(output: str, storage_options: dict | None = None, *,
                 manifest: str | None = None) -> tuple[Any, Any]:
    """``(layout, manifest)`` of the job in ``output``.

    Raises:
        ManifestError: there is no manifest, or it cannot be read.
    """
    from nhance_batch.state.jobstate import read_manifest
    from nhance_batch.state.layout import JobLayout
    from nhance_batch.state.manifest import ManifestError

    options = dict(storage_options or {})
    layout = JobLayout.for_job(output, options, manifest=manifest)
    recorded = read_manifest(layout.manifest, layout.manifest_options)
    if recorded is None:
        raise ManifestError(f"no job manifest at {layout.manifest}; start one with "
                            "`nhance-batch run`")
    source = recorded.job.get("input") if isinstance(recorded.job, dict) else None
    if isinstance(source, str) and source:
        layout = JobLayout.create(source, output, options, manifest=manifest)
    return layout, recorded


@contextlib.contextmanager
def local_copy(url: str, storage_options: dict | None = None) -> Iterator[str]:
    """A local path to read ``url`` from for the block (the path itself when local)."""
    from nhance_batch import storage

    with storage.local_input(url, storage.options_for(url, storage_options or {})) as path:
        yield path


def publish(local: str, url: str, storage_options: dict | None = None) -> None:
    """Move the finished local file ``local`` to ``url`` (renamed or uploaded whole)."""
    from nhance_batch import storage

    storage.upload(local, url, storage.options_for(url, storage_options or {}))


def publish_bytes(data: bytes, url: str, storage_options: dict | None = None) -> None:
    """Write ``data`` at ``url`` as one whole file or object."""
    from nhance_batch import storage

    storage.write_bytes(url, data, storage.options_for(url, storage_options or {}))


def exists(url: str, storage_options: dict | None = None) -> bool:
    from nhance_batch import storage

    return storage.exists(url, storage.options_for(url, storage_options or {}))

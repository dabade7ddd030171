"""Where a job's things are: INPUT, OUTPUT and everything under ``OUTPUT/_nhance``, each URL with
its own store's options, resolved once.

``OUTPUT/_nhance/`` holds::

    manifest.parquet        the job's state (nhance_batch.state.manifest)
    journal/                chunk commits since the manifest was last compacted
    lease.json              the driver's lease (nhance_batch.state.lease)
    parts/<key>/NNNNN.mp4   encoded chunks of a video until it is assembled
    tmp/                    local outputs being assembled (renamed into place when complete)
    preview/<relative>.mp4  browser-playable previews (``run --previews``)
    compare/<relative>.<mode>.mp4  comparison videos (``nhance-batch compare OUTPUT``)
    report/index.html       the job report (``nhance-batch report OUTPUT``)
    summary.json            the last run's summary (throughput curve, stage speeds)

Every URL goes with the options of its own store: inputs are read with the input store's
options, and parts, outputs, manifest and lease are written with the output store's, so a
local input never loses an S3 endpoint meant for the output and a GCS token never reaches
s3fs. The layout is picklable and is what the driver, the stages and the lease share.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any

from nhance_batch import storage

STATE_DIR = "_nhance"


def video_key(relative: str) -> str:
    """A short stable name for a video's private folders (parts)."""
    return hashlib.sha1(relative.encode()).hexdigest()[:16]


def manifest_url(output: str, manifest: str | None = None) -> str:
    """The URL of the manifest of the job in ``output``: ``manifest`` when given, else
    OUTPUT/_nhance/manifest.parquet."""
    return manifest or storage.join(output, STATE_DIR, "manifest.parquet")


@dataclass(frozen=True)
class JobLayout:
    """A job's URLs and their store options.

    Attributes:
        input: INPUT as given (file, folder, glob; local path or URL); None in the layout of
            an existing job read from its OUTPUT alone (:meth:`for_job`).
        output: OUTPUT (folder or prefix).
        storage_options: the options as given (flat or keyed by protocol); used only to
            redact secrets from text.
        input_options, output_options: the options of INPUT's and OUTPUT's stores (no
            input options without an INPUT).
        manifest: the manifest's URL (OUTPUT/_nhance/manifest.parquet unless given).
    """

    input: str | None
    output: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    input_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    output_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    manifest: str = ""
    manifest_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def create(cls, input: str | None, output: str,
               storage_options: dict[str, Any] | None = None, *,
               manifest: str | None = None) -> JobLayout:
        """The layout of a job from INPUT to OUTPUT (a run's)."""
        options = dict(storage_options or {})
        manifest = manifest_url(output, manifest)
        return cls(input=input, output=output, storage_options=options,
                   input_options={} if input is None else storage.options_for(input, options),
                   output_options=storage.options_for(output, options),
                   manifest=manifest, manifest_options=storage.options_for(manifest, options))

    @classmethod
    def for_job(cls, output: str, storage_options: dict[str, Any] | None = None, *,
                manifest: str | None = None) -> JobLayout:
        """The layout of the existing job in ``output``, to read its state and outputs (status,
        report, compare): no INPUT is needed."""
        return cls.create(None, output, storage_options, manifest=manifest)

    # -- the state folder --------------------------------------------------------------
    @property
    def state_dir(self) -> str:
        return storage.join(self.output, STATE_DIR)

    @property
    def lease(self) -> str:
        return storage.join(self.state_dir, "lease.json")

    @property
    def journal_dir(self) -> str:
        return storage.join(storage.parent(self.manifest), "journal")

    @property
    def output_is_local(self) -> bool:
        return storage.is_local_url(self.output)

    def part(self, relative: str, index: int) -> str:
        return storage.join(self.state_dir, "parts", video_key(relative), f"{index:05d}.mp4")

    def scratch(self, relative: str, suffix: str) -> str | None:
        """Where a local output is assembled before it is renamed into place (beside it, on
        the same filesystem); None for stores (a worker's temporary file, then uploaded)."""
        if not self.output_is_local:
            return None
        return storage.join(storage.local_path(self.state_dir), "tmp",
                            video_key(relative) + suffix)

    def output_url(self, name: str) -> str:
        """The URL of the output named ``name`` (a checked relative key)."""
        return storage.join(self.output, *name.split("/"))

    def preview(self, relative: str) -> str:
        return storage.join(self.state_dir, "preview",
                            *posixpath.splitext(relative)[0].split("/")) + ".mp4"

    def compare(self, relative: str, mode: str) -> str:
        return storage.join(self.state_dir, "compare",
                            *posixpath.splitext(relative)[0].split("/")) + f".{mode}.mp4"

    @property
    def report_dir(self) -> str:
        return storage.join(self.state_dir, "report")

    @property
    def summary(self) -> str:
        """The last run's summary (``JobSummary.as_dict()`` as JSON), kept for the report."""
        return storage.join(self.state_dir, "summary.json")

    # -- secrets -----------------------------------------------------------------------
    def redact(self, text: Any) -> str:
        return storage.redact(text, self.storage_options)

"""A job's media for the web routes: which file answers ``/videos/{i}/{kind}``, checked to lie
inside the data folder, and what is rendered on first request (comparisons, previews, stills)
through the analysis package.

Kinds: ``input``, ``output``, ``preview`` (the run's preview of the output, rendered on first
request when the run wrote none; ``side=before`` gives a preview of the input instead),
``compare`` (``mode`` = split, swipe or side-by-side; cached under
``OUTPUT/_nhance/compare/``), ``still`` (a PNG of the frame shown at ``t``).

Every file served is resolved (symlinks followed) and must lie inside the data folder; the
only exception is the input of a server-side job, which must lie inside one of the server's
``--allow-input`` prefixes. Anything else is 404, whatever the names contain.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nhance_batch.web.store import JobStore

KINDS = ("input", "output", "preview", "compare", "still")
COMPARE_MODES = ("split", "swipe", "side-by-side")
SIDES = ("before", "after")

_BROWSER_CONTAINERS = {"mp4", "mov", "webm", "m4a", "3gp"}
_BROWSER_CODECS = {"h264": {"yuv420p", "yuvj420p"}, "vp8": {"yuv420p"},
                   "vp9": {"yuv420p"}, "av1": {"yuv420p"}}


class MediaNotFound(LookupError):
    """No such video or file (HTTP 404)."""


class MediaUnavailable(RuntimeError):
    """The file cannot be made (HTTP 409: e.g. the video is not done, or compare refused)."""


@dataclass(frozen=True)
class VideoFiles:
    """The local files of one video of a job."""

    index: int
    relative: str
    status: str
    input: Path | None
    output: Path | None
    preview: Path | None      # the recorded or rendered preview of the output
    compare_dir: Path | None  # where comparisons go (layout's compare folder)
    layout: Any


def within(path: str | os.PathLike[str], roots: list[Path]) -> Path | None:
    """``path`` resolved (symlinks followed), if it is inside one of ``roots``; else None."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real == root or root in real.parents:
            return real
    return None


def _local(url: str | None) -> Path | None:
    if not url:
        return None
    if "://" in url:
        if url.startswith("file://"):
            return Path(url[len("file://"):])
        return None
    return Path(url)


def browser_plays(path: Path) -> bool:
    """Whether a browser's <video> plays this file: MP4/MOV/WebM holding 8-bit 4:2:0 H.264,
    VP8, VP9 or AV1."""
    import av

    try:

        with av.open(str(path)) as container:
            names = set(container.format.name.split(","))
            if not names & _BROWSER_CONTAINERS:
                return False
            stream = container.streams.video[0]
            formats = _BROWSER_CODECS.get(stream.codec_context.name)
            return bool(formats) and (stream.codec_context.format is not None
                                      and stream.codec_context.format.name in formats)
    except Exception:  # noqa: BLE001 - unreadable: not playable
        return False


class JobMedia:
    """Resolves and renders a job's media; renders each file once (per-file locks)."""

    def __init__(self, store: JobStore, allow_input: tuple[str, ...] = ()) -> None:
        self.store = store
        self.roots = [Path(os.path.realpath(store.data))]
        self.input_roots = [Path(os.path.realpath(p)) for p in allow_input if "://" not in p]
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._manifests: dict[str, tuple[Any, Any, Any]] = {}

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _manifest(self, job_id: str) -> tuple[Any, Any]:
        from nhance_batch.analysis.jobfiles import job_manifest
        from nhance_batch.state.manifest import ManifestError

        with self._lock(f"manifest:{job_id}"):
            key = self.store.state_signature(job_id)
            cached = self._manifests.get(job_id)
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
            try:
                layout, manifest = job_manifest(str(self.store.output_dir(job_id)))
            except (ManifestError, FileNotFoundError) as exc:
                raise MediaNotFound(f"job {job_id} has no manifest yet") from exc
            self._manifests[job_id] = (key, layout, manifest)
            return layout, manifest

    def video(self, job_id: str, index: int) -> VideoFiles:
        layout, manifest = self._manifest(job_id)
        if not 0 <= index < len(manifest.videos):
            raise MediaNotFound(f"job {job_id} has no video {index}")
        record = manifest.videos[index]
        server_side = self.store.get(job_id).settings.get("input") is not None
        input_roots = self.roots + (self.input_roots if server_side else [])
        source = _local(record.input)
        output = _local(record.output) if record.status == "done" else None
        preview = _local(getattr(record, "preview", None)) or _local(
            layout.preview(record.relative))
        compare = _local(layout.compare(record.relative, "split"))
        return VideoFiles(
            index=index, relative=record.relative, status=record.status,
            input=within(source, input_roots) if source else None,
            output=within(output, self.roots) if output else None,
            preview=self._inside_or_none(preview),
            compare_dir=compare.parent if compare is not None else None,
            layout=layout)

    def _inside_or_none(self, path: Path | None) -> Path | None:
        if path is None:
            return None
        # the path may not exist yet (rendered on demand): check its folder's real place
        real_parent = within(path.parent, self.roots) if path.parent.exists() else None
        if real_parent is None:
            lexical = Path(os.path.abspath(path))
            return lexical if any(r in lexical.parents for r in self.roots) and \
                not any(part == ".." for part in path.parts) else None
        return real_parent / path.name

    # -- files ---------------------------------------------------------------------------
    @staticmethod
    def _done(files: VideoFiles) -> None:
        if files.status != "done":
            raise MediaUnavailable(f"video {files.index} is {files.status}; it has no output")

    def existing(self, path: Path | None) -> Path:
        """``path`` if it is a regular file inside the allowed roots."""
        if path is None or not path.is_file():
            raise MediaNotFound("no such file")
        return path

    def input_file(self, job_id: str, index: int) -> Path:
        files = self.video(job_id, index)
        return self.existing(files.input)

    def output_file(self, job_id: str, index: int) -> Path:
        files = self.video(job_id, index)
        self._done(files)
        return self.existing(files.output)

    def preview_file(self, job_id: str, index: int, side: str = "after") -> Path:
        """The browser-playable preview of the output (``after``) or input (``before``)."""
        from nhance_batch.analysis.preview import render_preview

        files = self.video(job_id, index)
        if side == "before":
            source = self.existing(files.input)
            dest = self.store.web_dir(job_id) / f"before-{index}.mp4"
            audio = None
        else:
            self._done(files)
            source = self.existing(files.output)
            if files.preview is None:
                raise MediaNotFound("no place for a preview")
            dest = files.preview
            audio = files.input if files.input is not None and files.input.is_file() else None
        return self._render(dest, lambda out: render_preview(str(source), out,
                                                             audio_from=audio and str(audio)))

    def compare_file(self, job_id: str, index: int, mode: str) -> Path:
        from nhance_batch.analysis.compare import render_compare

        files = self.video(job_id, index)
        self._done(files)
        before, after = self.existing(files.input), self.existing(files.output)
        dest = _local(files.layout.compare(files.relative, mode))
        dest = self._inside_or_none(dest)
        if dest is None:
            raise MediaNotFound("no place for a comparison")
        return self._render(dest, lambda out: render_compare(str(before), str(after), out,
                                                             mode=mode))

    def still_png(self, job_id: str, index: int, t: float, side: str) -> bytes:
        from nhance_batch.analysis.stills import frame_at, png_bytes

        files = self.video(job_id, index)
        if side == "before":
            path = self.existing(files.input)
        else:
            self._done(files)
            path = self.existing(files.output)
        return png_bytes(frame_at(str(path), t))

    def _render(self, dest: Path, render) -> Path:
        with self._lock(str(dest)):
            if dest.is_file():
                return dest
            from nhance_batch.storage import atomic_local_file

            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_local_file(dest) as tmp:
                render(tmp)
            return dest

    def gains(self, job_id: str, index: int) -> dict[str, list[float]] | None:
        """The video's per-frame mean gains before and after stabilisation (see
        :func:`nhance_batch.analysis.gains.mean_gains`); None while the job has no manifest
        or the video recorded none."""
        from nhance_batch.analysis.gains import mean_gains

        try:
            _, manifest = self._manifest(job_id)
        except MediaNotFound:
            return None
        return mean_gains(manifest.videos[index])

    def player_sources(self, job_id: str, index: int) -> dict[str, str]:
        """Which kind the comparison page plays for each side: the files themselves when a
        browser plays them, else previews."""
        files = self.video(job_id, index)
        before = "input" if files.input is not None and browser_plays(files.input) \
            else "preview?side=before"
        if files.preview is not None and files.preview.is_file():
            after = "preview"
        elif files.output is not None and browser_plays(files.output):
            after = "output"
        else:
            after = "preview"
        return {"before": before, "after": after}

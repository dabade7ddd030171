"""``GET /api/jobs/{id}/videos/{i}/{kind}``: a video's files and what is rendered from them.

``kind`` is ``input``, ``output``, ``preview`` (``side=before`` previews the input),
``compare`` (``mode`` = split, swipe or side-by-side) or ``still`` (a PNG of the frame at
``t`` seconds, of ``side``). Files are answered with Range support (206) and shown inline, or
as attachments with ``download=true``. Which file answers, and the checks that it lies inside
the data folder, are :class:`nhance_batch.web.media.JobMedia`'s.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, JSONResponse, Response

from nhance_batch.web.media import COMPARE_MODES, KINDS, SIDES, JobMedia, MediaNotFound, \
    MediaUnavailable
from nhance_batch.web.services import Media, Store

mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("video/x-matroska", ".mkv")
mimetypes.add_type("video/webm", ".webm")
mimetypes.add_type("video/quicktime", ".mov")

router = APIRouter()


def _file(media: JobMedia, job_id: str, index: int, kind: str, mode: str, side: str) -> Path:
    """The file that answers ``kind`` (any but ``still``), rendered first where needed."""
    if kind == "input":
        return media.input_file(job_id, index)
    if kind == "output":
        return media.output_file(job_id, index)
    if kind == "preview":
        return media.preview_file(job_id, index, side)
    try:
        return media.compare_file(job_id, index, mode)
    except ValueError as exc:  # CompareError: frame counts or sizes differ
        raise MediaUnavailable(str(exc)) from exc


def _download_name(media: JobMedia, job_id: str, index: int, kind: str, mode: str,
                   path: Path) -> str:
    """The file name offered to the browser: the file's own for inputs and outputs, else the
    video's name with the kind (and comparison mode) added, e.g. ``clip.compare.split.mp4``."""
    if kind in ("input", "output"):
        return path.name
    stem = Path(media.video(job_id, index).relative).stem
    return f"{stem}.{kind}{'.' + mode if kind == 'compare' else ''}{path.suffix}"


@router.get("/api/jobs/{job_id}/videos/{index}/{kind}")
def video_media(job_id: str, index: int, kind: str, store: Store, media: Media,
                mode: str = Query("split"), side: str = Query("after"),
                t: float = Query(0.0, ge=0.0), download: bool = Query(False)):
    store.get(job_id)
    if kind not in KINDS:
        raise MediaNotFound(f"no media kind {kind!r}; one of {', '.join(KINDS)}")
    if side not in SIDES:
        return JSONResponse({"detail": f"side must be one of {', '.join(SIDES)}"},
                            status_code=422)
    if kind == "still":
        return Response(media.still_png(job_id, index, t, side), media_type="image/png",
                        headers={"cache-control": "private, max-age=3600"})
    if kind == "compare" and mode not in COMPARE_MODES:
        return JSONResponse({"detail": f"mode must be one of {', '.join(COMPARE_MODES)}"},
                            status_code=422)
    path = _file(media, job_id, index, kind, mode, side)
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0]
                        or "application/octet-stream",
                        filename=_download_name(media, job_id, index, kind, mode, path),
                        content_disposition_type="attachment" if download else "inline",
                        headers={"cache-control": "private, no-cache"})

"""The HTML pages: ``/`` (the job list and the new-job form), ``/jobs/{id}`` (one job, followed
live) and ``/jobs/{id}/videos/{i}`` (before and after, compared, with the flicker plot).
The pages fetch everything else from the JSON API; templates ship in ``web/templates/``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from nhance_batch.web.media import COMPARE_MODES, MediaNotFound
from nhance_batch.web.services import Media, Server, Store, Templates
from nhance_batch.web.settings import JobSettings

router = APIRouter()


def registry_models() -> list[tuple[str, str]]:
    """(name, description) of each registered model, the default first."""
    from nhance_batch.model.registry import load_registry

    default, specs = load_registry()
    return [(name, spec.description) for name, spec in sorted(
        specs.items(), key=lambda item: (item[0] != default, item[0]))]


@router.get("/", response_class=HTMLResponse)
def index_page(request: Request, server: Server, templates: Templates):
    return templates.TemplateResponse(request, "index.html", {
        "models": registry_models(), "allow_input": list(server.allow_input),
        "max_upload_bytes": server.max_upload_bytes, "defaults": JobSettings()})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, store: Store, templates: Templates):
    doc, _ = store.document(job_id)
    return templates.TemplateResponse(request, "job.html", {"job": doc})


@router.get("/jobs/{job_id}/videos/{index}", response_class=HTMLResponse)
def video_page(request: Request, job_id: str, index: int, store: Store, media: Media,
               templates: Templates):
    doc, _ = store.document(job_id)
    videos = (doc.get("status") or {}).get("videos") or []
    if not 0 <= index < len(videos):
        raise MediaNotFound(f"job {job_id} has no video {index}")
    video = videos[index]
    sources = media.player_sources(job_id, index) if video.get("status") == "done" else None
    return templates.TemplateResponse(request, "video.html", {
        "job": doc, "index": index, "video": video, "sources": sources,
        "name": Path(video.get("input") or "").name, "modes": COMPARE_MODES,
        "gains": media.gains(job_id, index) if sources else None})

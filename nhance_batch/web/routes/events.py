"""``GET /api/jobs/{id}/events``: the job's document as server-sent events, one event each time
it changes.

Each event's ``id:`` is the document's version, so a client that reconnects with
``Last-Event-ID`` gets only newer documents. A comment line keeps an idle stream open; the
stream ends with ``event: deleted`` when the job is removed, and when the server stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from nhance_batch.web.services import AppServices, Services
from nhance_batch.web.store import JobNotFound

EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0

router = APIRouter()


async def document_events(services: Services, job_id: str, request: Request,
                          last_version: int) -> AsyncIterator[str]:
    """The event stream's text: the job's document whenever its version passes
    ``last_version``, polled every ``EVENT_POLL_S`` seconds."""
    yield "retry: 2000\n\n"
    quiet = 0.0
    while not services.stopping.is_set() and not await request.is_disconnected():
        try:
            doc, version = await anyio.to_thread.run_sync(services.store.document, job_id)
        except JobNotFound:
            yield "event: deleted\ndata: {}\n\n"
            return
        if version > last_version:
            last_version = version
            quiet = 0.0
            yield f"id: {version}\ndata: {json.dumps(doc)}\n\n"
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(EVENT_POLL_S)
        quiet += EVENT_POLL_S


@router.get("/api/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, services: AppServices):
    # an unknown job is 404 before the stream starts
    await anyio.to_thread.run_sync(services.store.document, job_id)
    last = request.headers.get("last-event-id", "")
    last_version = int(last) if last.strip().isdigit() else -1
    return StreamingResponse(document_events(services, job_id, request, last_version),
                             media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})

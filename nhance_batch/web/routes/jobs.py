"""The jobs API.

* ``POST /api/jobs``: multipart ``file`` parts plus the settings as form fields, or a JSON
  ``{"input": ..., settings}`` naming a server-side input -> 201 and the job document; 400 a
  malformed body, 403 an input outside ``--allow-input``, 413 an upload over the limit, 422
  settings that do not validate.
* ``GET /api/jobs``: every job's document, newest first (weak ETag; 304 when unchanged).
* ``GET /api/jobs/{id}``; ``POST /api/jobs/{id}/cancel``, ``POST /api/jobs/{id}/resume``
  (409 when the job's state does not allow it); ``DELETE /api/jobs/{id}`` -> 204.
"""

from __future__ import annotations

import hashlib
import json

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from nhance_batch.web.inputs import input_allowed, uploads_input
from nhance_batch.web.services import Runner, Server, Store
from nhance_batch.web.settings import JobRequest, JobSettings, ServerConfig
from nhance_batch.web.store import JobNotFound, JobStore
from nhance_batch.web.uploads import UploadError, UploadTooLarge, receive_multipart

router = APIRouter()


def _invalid_settings(exc: ValidationError) -> JSONResponse:
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


async def _create_from_json(request: Request, store: JobStore,
                            server: ServerConfig) -> str | Response:
    """A job reading a server-side input: its id, or the response refusing it."""
    try:
        body = json.loads(await request.body() or b"null")
        job = JobRequest.model_validate(body)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            return _invalid_settings(exc)
        return JSONResponse({"detail": f"bad JSON: {exc}"}, status_code=400)
    if not input_allowed(job.input, server.allow_input):
        return JSONResponse(
            {"detail": f"server-side input {job.input!r} is not under an allowed "
                       "prefix (serve --allow-input PREFIX)"}, status_code=403)
    job_id = await anyio.to_thread.run_sync(store.reserve)
    store.create(job_id, job.model_dump(), job.input)
    return job_id


async def _create_from_upload(request: Request, content_type: str, store: JobStore,
                              server: ServerConfig) -> str | Response:
    """A job reading the request's uploaded files: its id, or the response refusing it (the
    reserved folder then removed, with whatever was written)."""
    job_id = await anyio.to_thread.run_sync(store.reserve)
    length = request.headers.get("content-length")
    try:
        upload = await receive_multipart(
            content_type, request.stream(), store.input_dir(job_id),
            max_bytes=server.max_upload_bytes,
            content_length=int(length) if length and length.isdigit() else None)
        settings = JobSettings.from_form(upload.fields)
    except UploadTooLarge as exc:
        await anyio.to_thread.run_sync(store.discard, job_id)
        return JSONResponse({"detail": str(exc)}, status_code=413,
                            headers={"connection": "close"})
    except UploadError as exc:
        await anyio.to_thread.run_sync(store.discard, job_id)
        return JSONResponse({"detail": str(exc)}, status_code=400)
    except ValidationError as exc:
        await anyio.to_thread.run_sync(store.discard, job_id)
        return _invalid_settings(exc)
    except BaseException:
        await anyio.to_thread.run_sync(store.discard, job_id)
        raise
    store.create(job_id, settings.model_dump(), uploads_input(store.input_dir(job_id)),
                 upload.files)
    return job_id


@router.post("/api/jobs", status_code=201)
async def create_job(request: Request, store: Store, runner: Runner, server: Server):
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == "application/json":
        created = await _create_from_json(request, store, server)
    else:
        created = await _create_from_upload(request, content_type, store, server)
    if isinstance(created, Response):
        return created
    runner.submit(created)
    doc, _ = await anyio.to_thread.run_sync(store.document, created)
    return JSONResponse(doc, status_code=201)


@router.get("/api/jobs")
def list_jobs(request: Request, store: Store):
    out, versions = [], []
    for job_id in store.ids():
        try:
            doc, version = store.document(job_id)
        except JobNotFound:
            continue  # deleted meanwhile
        out.append(doc)
        versions.append(f"{job_id}:{version}")
    # an unchanged list is answered 304 (the job list page asks every 2 s)
    etag = 'W/"' + hashlib.sha1(",".join(versions).encode()).hexdigest() + '"'
    headers = {"etag": etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return JSONResponse(out, headers=headers)


@router.get("/api/jobs/{job_id}")
def get_job(job_id: str, store: Store):
    return JSONResponse(store.document(job_id)[0])


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(job_id: str, store: Store, runner: Runner):
    runner.cancel(job_id)
    return store.document(job_id)[0]


@router.post("/api/jobs/{job_id}/resume")
def resume_job(job_id: str, store: Store, runner: Runner):
    runner.resume(job_id)
    return store.document(job_id)[0]


@router.delete("/api/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, runner: Runner):
    runner.delete(job_id)
    return Response(status_code=204)

"""The ASGI app of ``nhance-batch serve``: the JSON API, the events stream, the media routes and
the three pages, over the job store, the queue and the analysis package.

Routes (all behind the token, see :mod:`nhance_batch.web.auth`):

* ``POST /api/jobs`` (multipart ``file`` parts + settings, or JSON ``{"input": ...}``) -> 201
* ``GET /api/jobs``, ``GET /api/jobs/{id}``, ``GET /api/jobs/{id}/events`` (server-sent events)
* ``GET /api/jobs/{id}/videos/{i}/{kind}`` (input, output, preview, compare, still; Range: 206)
* ``POST /api/jobs/{id}/cancel``, ``POST /api/jobs/{id}/resume``, ``DELETE /api/jobs/{id}``
* pages ``/``, ``/jobs/{id}``, ``/jobs/{id}/videos/{i}``; assets under ``/static/``
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import mimetypes
import os
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from nhance_batch.web.auth import TokenAuth
from nhance_batch.web.media import COMPARE_MODES, KINDS, SIDES, JobMedia, MediaNotFound, \
    MediaUnavailable
from nhance_batch.web.runner import JobRunner, JobStateError
from nhance_batch.web.settings import JobRequest, JobSettings, ServerConfig
from nhance_batch.web.store import JobNotFound, JobStore
from nhance_batch.web.uploads import UploadError, UploadTooLarge, receive_multipart

HERE = Path(__file__).resolve().parent
EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0

mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("video/x-matroska", ".mkv")
mimetypes.add_type("video/webm", ".webm")
mimetypes.add_type("video/quicktime", ".mov")


def input_allowed(spec: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a server-side input lies under one of the ``--allow-input`` prefixes: local
    paths compared after resolving (``..`` and symlinks), URLs by their segments (any ``..``
    refused)."""
    for prefix in prefixes:
        if "://" in prefix or "://" in spec:
            if "://" not in prefix or "://" not in spec:
                continue
            if any(part in ("..", ".") for part in spec.split("://", 1)[1].split("/")):
                return False
            base = prefix.rstrip("/")
            if spec == base or spec.startswith(base + "/"):
                return True
            continue
        real, root = os.path.realpath(spec), os.path.realpath(prefix)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def uploads_input(folder: Path) -> str:
    """The input spec of an upload job: every file of its folder (a glob, so a non-video
    upload is tried and fails with its error instead of being skipped)."""
    if glob.has_magic(str(folder)):
        return str(folder)  # a data folder with glob characters: the folder, by extension
    return str(folder / "*")


def _settings_error(exc: ValidationError) -> JSONResponse:
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(server: ServerConfig, *, run_job: Callable[..., Any] | None = None) -> FastAPI:
    """The app for one server; ``run_job`` replaces the library's entry point (tests)."""
    store = JobStore(server.data)
    runner = JobRunner(store, server, run_job=run_job)
    media = JobMedia(store, server.allow_input)
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def warm_up() -> None:
        """Import the media and analysis stack once, in the background, so that the first
        still or comparison does not pay for it (nor two requests import it at once)."""
        try:
            import nhance_batch.analysis.compare  # noqa: F401
            import nhance_batch.analysis.preview  # noqa: F401
            import nhance_batch.analysis.stills  # noqa: F401
            import nhance_batch.analysis.frames  # noqa: F401
            import PIL.Image  # noqa: F401
        except Exception:  # noqa: BLE001 - the request that needs it will say what is wrong
            pass

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=warm_up, name="nhance-warm-up", daemon=True).start()
        runner.start()
        try:
            yield
        finally:
            app.state.stopping = True
            await anyio.to_thread.run_sync(runner.stop)

    app = FastAPI(title="nhance-batch", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store, app.state.runner, app.state.media = store, runner, media
    app.state.stopping = False
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- errors --------------------------------------------------------------------------
    @app.exception_handler(JobNotFound)
    async def _no_job(request: Request, exc: JobNotFound):
        return JSONResponse({"detail": f"no job {exc.args[0] if exc.args else ''}"},
                            status_code=404)

    @app.exception_handler(MediaNotFound)
    async def _no_media(request: Request, exc: MediaNotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(MediaUnavailable)
    async def _unavailable(request: Request, exc: MediaUnavailable):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(JobStateError)
    async def _state(request: Request, exc: JobStateError):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    # -- jobs ----------------------------------------------------------------------------
    @app.post("/api/jobs", status_code=201)
    async def create_job(request: Request):
        kind = request.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() == "application/json":
            try:
                body = json.loads(await request.body() or b"null")
                job = JobRequest.model_validate(body)
            except ValueError as exc:
                if isinstance(exc, ValidationError):
                    return _settings_error(exc)
                return JSONResponse({"detail": f"bad JSON: {exc}"}, status_code=400)
            if not input_allowed(job.input, server.allow_input):
                return JSONResponse(
                    {"detail": f"server-side input {job.input!r} is not under an allowed "
                               "prefix (serve --allow-input PREFIX)"}, status_code=403)
            job_id = await anyio.to_thread.run_sync(store.reserve)
            settings = job.model_dump()
            store.create(job_id, settings, job.input)
        else:
            job_id = await anyio.to_thread.run_sync(store.reserve)
            length = request.headers.get("content-length")
            try:
                upload = await receive_multipart(
                    kind, request.stream(), store.input_dir(job_id),
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
                return _settings_error(exc)
            except BaseException:
                await anyio.to_thread.run_sync(store.discard, job_id)
                raise
            store.create(job_id, settings.model_dump(), uploads_input(store.input_dir(job_id)),
                         upload.files)
        runner.submit(job_id)
        doc, _ = await anyio.to_thread.run_sync(store.document, job_id)
        return JSONResponse(doc, status_code=201)

    @app.get("/api/jobs")
    def list_jobs(request: Request):
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

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str):
        return JSONResponse(store.document(job_id)[0])

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: str):
        runner.cancel(job_id)
        return store.document(job_id)[0]

    @app.post("/api/jobs/{job_id}/resume")
    def resume_job(job_id: str):
        runner.resume(job_id)
        return store.document(job_id)[0]

    @app.delete("/api/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str):
        runner.delete(job_id)
        return Response(status_code=204)

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request):
        await anyio.to_thread.run_sync(store.document, job_id)  # 404 before the stream starts
        last = request.headers.get("last-event-id", "")
        last_version = int(last) if last.strip().isdigit() else -1

        async def stream():
            nonlocal last_version
            yield "retry: 2000\n\n"
            quiet = 0.0
            while not app.state.stopping and not await request.is_disconnected():
                try:
                    doc, version = await anyio.to_thread.run_sync(store.document, job_id)
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

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store",
                                          "x-accel-buffering": "no"})

    # -- media ---------------------------------------------------------------------------
    @app.get("/api/jobs/{job_id}/videos/{index}/{kind}")
    def video_media(job_id: str, index: int, kind: str,
                    mode: str = Query("split"), side: str = Query("after"),
                    t: float = Query(0.0, ge=0.0), download: bool = Query(False)):
        store.get(job_id)
        if kind not in KINDS:
            raise MediaNotFound(f"no media kind {kind!r}; one of {', '.join(KINDS)}")
        if side not in SIDES:
            return JSONResponse({"detail": f"side must be one of {', '.join(SIDES)}"},
                                status_code=422)
        if kind == "still":
            png = media.still_png(job_id, index, t, side)
            return Response(png, media_type="image/png",
                            headers={"cache-control": "private, max-age=3600"})
        if kind == "input":
            path = media.input_file(job_id, index)
        elif kind == "output":
            path = media.output_file(job_id, index)
        elif kind == "preview":
            path = media.preview_file(job_id, index, side)
        else:
            if mode not in COMPARE_MODES:
                return JSONResponse({"detail": f"mode must be one of {', '.join(COMPARE_MODES)}"},
                                    status_code=422)
            try:
                path = media.compare_file(job_id, index, mode)
            except ValueError as exc:  # CompareError: frame counts or sizes differ
                raise MediaUnavailable(str(exc)) from exc
        name = path.name if kind in ("input", "output") else \
            f"{Path(media.video(job_id, index).relative).stem}.{kind}" \
            f"{'.' + mode if kind == 'compare' else ''}{path.suffix}"
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0]
                            or "application/octet-stream",
                            filename=name,
                            content_disposition_type="attachment" if download else "inline",
                            headers={"cache-control": "private, no-cache"})

    # -- pages ---------------------------------------------------------------------------
    def _models() -> list[tuple[str, str]]:
        from nhance_batch.model.registry import load_registry

        default, specs = load_registry()
        return [(name, spec.description) for name, spec in sorted(
            specs.items(), key=lambda item: (item[0] != default, item[0]))]

    @app.get("/", response_class=HTMLResponse)
    def index_page(request: Request):
        return templates.TemplateResponse(request, "index.html", {
            "models": _models(), "allow_input": list(server.allow_input),
            "max_upload_bytes": server.max_upload_bytes, "defaults": JobSettings()})

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str):
        doc, _ = store.document(job_id)
        return templates.TemplateResponse(request, "job.html", {"job": doc})

    @app.get("/jobs/{job_id}/videos/{index}", response_class=HTMLResponse)
    def video_page(request: Request, job_id: str, index: int):
        doc, _ = store.document(job_id)
        videos = (doc.get("status") or {}).get("videos") or []
        if not 0 <= index < len(videos):
            raise MediaNotFound(f"job {job_id} has no video {index}")
        video = videos[index]
        sources = media.player_sources(job_id, index) if video.get("status") == "done" else None
        return templates.TemplateResponse(request, "video.html", {
            "job": doc, "index": index, "video": video, "sources": sources,
            "name": Path(video.get("input") or "").name, "modes": COMPARE_MODES,
            "gains": _gains(job_id, index) if sources else None})

    def _gains(job_id: str, index: int) -> dict | None:
        """The per-frame gains before and after stabilisation (mean of R, G, B), for the
        flicker plot."""
        try:
            _, manifest = media._manifest(job_id)
        except MediaNotFound:
            return None
        record = manifest.videos[index]
        before: list[float] = []
        after: list[float] = []
        for chunk in sorted(record.chunks, key=lambda c: c.index):
            for series, values in ((before, chunk.gains_before), (after, chunk.gains_after)):
                values = [] if values is None else [float(v) for v in values]
                series.extend(sum(values[i:i + 3]) / 3 for i in range(0, len(values) - 2, 3))
        if not before:
            return None
        return {"before": before, "after": after}

    app.add_middleware(TokenAuth, token=server.token)
    return app


__all__ = ["create_app", "input_allowed", "uploads_input"]

"""The ASGI app of ``nhance-batch serve``: :func:`create_app` builds one server's services,
includes the routers (:mod:`nhance_batch.web.routes`), maps the services' errors to HTTP
statuses and puts every route, static assets included, behind the token
(:mod:`nhance_batch.web.auth`).

Errors: an unknown job or media 404; a job whose state refuses the operation, or media that
cannot be made (a video not done, a comparison refused) 409.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from nhance_batch.web.auth import TokenAuth
from nhance_batch.web.media import MediaNotFound, MediaUnavailable
from nhance_batch.web.routes import events, jobs, media, pages
from nhance_batch.web.runner import JobStateError
from nhance_batch.web.services import Services
from nhance_batch.web.settings import ServerConfig
from nhance_batch.web.store import JobNotFound

STATIC = Path(__file__).resolve().parent / "static"


def warm_up() -> None:
    """Import the media and analysis stack once, in the background, so that the first still
    or comparison does not pay for it (nor two requests import it at once)."""
    try:
        import nhance_batch.analysis.compare  # noqa: F401
        import nhance_batch.analysis.preview  # noqa: F401
        import nhance_batch.analysis.stills  # noqa: F401
        import nhance_batch.analysis.frames  # noqa: F401
        import PIL.Image  # noqa: F401
    except Exception:  # noqa: BLE001 - the request that needs it will say what is wrong
        pass


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the queue (and the warm-up) with the server; at shutdown, end the event streams
    and stop the queue after the running job's current chunk."""
    services: Services = app.state.services
    threading.Thread(target=warm_up, name="nhance-warm-up", daemon=True).start()
    services.runner.start()
    try:
        yield
    finally:
        services.stopping.set()
        await anyio.to_thread.run_sync(services.runner.stop)


async def _no_job(request: Request, exc: JobNotFound) -> JSONResponse:
    return JSONResponse({"detail": f"no job {exc.args[0] if exc.args else ''}"},
                        status_code=404)


def _detail_with_status(status: int) -> Callable[[Request, Exception], Any]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


def create_app(server: ServerConfig, *, run_job: Callable[..., Any] | None = None) -> FastAPI:
    """The app for one server; ``run_job`` replaces the library's entry point (tests)."""
    app = FastAPI(title="nhance-batch", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.services = Services.build(server, run_job=run_job)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_exception_handler(JobNotFound, _no_job)
    app.add_exception_handler(MediaNotFound, _detail_with_status(404))
    app.add_exception_handler(MediaUnavailable, _detail_with_status(409))
    app.add_exception_handler(JobStateError, _detail_with_status(409))
    for routes in (jobs, events, media, pages):
        app.include_router(routes.router)
    app.add_middleware(TokenAuth, token=server.token)
    return app


__all__ = ["create_app"]

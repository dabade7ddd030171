"""The services the routes work with, built once per app and handed to each route as a FastAPI
dependency (``store: Store`` in a route's signature), never captured in closures.

:class:`Services` lives on ``app.state.services``; the dependencies below read it from the
request's app, so a route names what it uses and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from nhance_batch.web.media import JobMedia
from nhance_batch.web.runner import JobRunner
from nhance_batch.web.settings import ServerConfig
from nhance_batch.web.store import JobStore

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Services:
    """One server's configuration, job store, queue, media and page templates.

    Attributes:
        stopping: set when the server shuts down, so that open event streams end.
    """

    server: ServerConfig
    store: JobStore
    runner: JobRunner
    media: JobMedia
    templates: Jinja2Templates
    stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, server: ServerConfig, *,
              run_job: Callable[..., Any] | None = None) -> "Services":
        """The services of ``server``; ``run_job`` replaces the library's entry point."""
        store = JobStore(server.data)
        return cls(server=server, store=store,
                   runner=JobRunner(store, server, run_job=run_job),
                   media=JobMedia(store, server.allow_input),
                   templates=Jinja2Templates(directory=str(TEMPLATES)))


# The dependencies are coroutines so that FastAPI calls them on the event loop (a plain
# function would be sent to the thread pool, a round trip for an attribute read).
async def app_services(request: Request) -> Services:
    return request.app.state.services


async def server_config(request: Request) -> ServerConfig:
    return request.app.state.services.server


async def job_store(request: Request) -> JobStore:
    return request.app.state.services.store


async def job_runner(request: Request) -> JobRunner:
    return request.app.state.services.runner


async def job_media(request: Request) -> JobMedia:
    return request.app.state.services.media


async def page_templates(request: Request) -> Jinja2Templates:
    return request.app.state.services.templates


AppServices = Annotated[Services, Depends(app_services)]
Server = Annotated[ServerConfig, Depends(server_config)]
Store = Annotated[JobStore, Depends(job_store)]
Runner = Annotated[JobRunner, Depends(job_runner)]
Media = Annotated[JobMedia, Depends(job_media)]
Templates = Annotated[Jinja2Templates, Depends(page_templates)]

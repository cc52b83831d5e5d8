"""The HTTP API: a thin shell over :class:`~gristmill.knowledge_base.KnowledgeBase`.

Every route is under ``/api/v1`` and, when tokens are configured, needs
``Authorization: Bearer <token>``: a ``read`` token for GET routes, an ``admin`` one to
start and steer jobs. Jobs run in processes of their own (see
:mod:`gristmill.api.launcher`); the server only writes requests into job rows and reads
them back, so it stays responsive and jobs outlive it. ``/`` is the dashboard and
``/healthz`` an unauthenticated liveness probe. Every request passes
:class:`~gristmill.api.guards.RequestGuard` first (Host, cross-site and content-type
checks; security headers on every response).

The routes live in one module per resource (:mod:`~gristmill.api.jobs`,
:mod:`~gristmill.api.search`, :mod:`~gristmill.api.health`, ...) and reach what they
share through :mod:`gristmill.api.state`; this module only assembles them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request

from gristmill.api import audio, dashboard, error_report, health, jobs, search, token
from gristmill.api.guards import RequestGuard
from gristmill.api.jobs import JobRequest, dispatching
from gristmill.api.problems import install_handlers
from gristmill.api.state import ApiState, authenticate
from gristmill.config import Settings

__all__ = ["JobRequest", "create_app"]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ApiState = app.state.gristmill
    state.searchers.start()
    dispatcher = asyncio.get_running_loop().create_task(dispatching(state))
    yield
    dispatcher.cancel()
    state.close()


def _openapi_schema(request: Request) -> dict[str, Any]:
    """The OpenAPI schema of this API (only with ``openapi_schema`` on)."""
    schema: dict[str, Any] = request.app.openapi()
    return schema


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI application serving the knowledge base at ``settings.home``."""
    # No /docs or /redoc: they load their scripts from a CDN. The schema only if asked.
    # The body limit is the guard's, not FastAPI's max_body_size (see guards.py).
    app = FastAPI(title="gristmill", version="1", lifespan=_lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gristmill = ApiState(settings)
    app.add_middleware(RequestGuard, allowed_hosts=settings.allowed_hosts,
                       tokens=settings.has_api_tokens,
                       max_body_bytes=settings.max_request_kb * 1024)
    install_handlers(app)
    authenticated = [Depends(authenticate)]
    app.include_router(health.probes)
    app.include_router(dashboard.router)
    if settings.openapi_schema:
        app.add_api_route("/openapi.json", _openapi_schema, methods=["GET"],
                          name="openapi_schema", include_in_schema=False,
                          dependencies=authenticated)
    app.mount("/static", dashboard.static_files(), name="static")
    for resource in (jobs, audio, search, health, error_report, token):
        app.include_router(resource.router, prefix="/api/v1", dependencies=authenticated)
    return app

"""The HTTP API: a thin shell over :class:`~gristmill.knowledge_base.KnowledgeBase`.

Every route is under ``/api/v1`` and, when tokens are configured, needs
``Authorization: Bearer <token>``: a ``read`` token for GET routes, an ``admin`` one to
start and steer jobs. Jobs run in processes of their own (see
:mod:`gristmill.api.launcher`); the server only writes requests into job rows and reads
them back, so it stays responsive and jobs outlive it. ``/`` is the dashboard and
``/healthz`` an unauthenticated liveness probe. Every request passes
:class:`~gristmill.api.guards.RequestGuard` first (Host, cross-site and content-type
checks; security headers on every response).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sse_starlette import EventSourceResponse

from gristmill.api.events import JobFeeds
from gristmill.api.guards import RequestGuard
from gristmill.api.launcher import JobLauncher
from gristmill.api.metrics import catalog_registry
from gristmill.api.params import MAX_ID, JobId, JobIdQuery, Text
from gristmill.api.problems import RETRY_AFTER_SECONDS, ApiError, install_handlers
from gristmill.api.search_pool import SearchPool
from gristmill.api.security import Caller, Tokens, require_admin, resolve_source
from gristmill.api.throttle import SearchThrottle
from gristmill.catalog.jobs import JobSpec, JobState, Problem
from gristmill.catalog.sqlite import lease_owner_token
from gristmill.config import Settings
from gristmill.knowledge_base import KnowledgeBase

__all__ = ["JobRequest", "create_app"]

_STATIC = Path(__file__).parent / "static"  # the dashboard: plain HTML/JS, no build step
_DISPATCH_SECONDS = 0.5  # how soon a queued job starts once a running one has ended

log = logging.getLogger(__name__)

T = TypeVar("T")


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class JobRequest(BaseModel):
    """The body of ``POST /api/v1/jobs``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not be ignored

    # One path or a list; always a list once read, so an error names `source.0`.
    source: Annotated[list[Text], BeforeValidator(_as_list)] = Field(
        description="Absolute path(s) inside a source root.")
    collection: Text = Field("default", min_length=1)
    include: list[Text] = Field(default_factory=list)
    exclude: list[Text] = Field(default_factory=list)
    max_files: int | None = Field(None, ge=1, le=MAX_ID)


def _catalog_place(kb: KnowledgeBase) -> dict[str, Any]:
    """Where the catalog is and how big: the SQLite file, or the PostgreSQL database (its
    URL without the password)."""
    if kb.db.backend == "postgresql":
        return {"backend": "postgresql", "url": kb.db.display_name,
                "bytes": kb.db.size_bytes()}
    return {"backend": "sqlite", "path": str(kb.settings.database_path),
            "bytes": kb.db.size_bytes()}


class _Guarded:
    """A knowledge base used by one thread at a time (its SQLite connection is shared
    by the server's worker threads)."""

    def __init__(self, settings: Settings) -> None:
        self.kb = KnowledgeBase(settings)
        self._lock = threading.Lock()

    def run(self, fn: Callable[[KnowledgeBase], T]) -> T:
        with self._lock:
            return fn(self.kb)


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI application serving the knowledge base at ``settings.home``."""
    # A request waits out a database restart for a few seconds at most, then gets a 503
    # with Retry-After (problems.py); the jobs it starts get the whole budget.
    control = _Guarded(settings.model_copy(update={"store_retry_seconds": min(
        settings.store_retry_seconds, RETRY_AFTER_SECONDS)}))
    searchers = SearchPool(control.kb, settings.search_threads, settings.search_nice)
    owner = lease_owner_token()  # answers for a queued job until its process takes over
    launcher = JobLauncher(settings, owner)
    tokens = Tokens(settings)
    throttle = SearchThrottle(settings.search_rate_limit)

    async def dispatching() -> None:
        """Start queued jobs as running ones end (``max_running_jobs`` at once)."""
        while True:
            await asyncio.sleep(_DISPATCH_SECONDS)
            if not launcher.waiting:
                continue
            try:
                await asyncio.to_thread(control.run, lambda kb: launcher.dispatch(kb.jobs))
            except Exception:  # e.g. the database is down: try again at the next tick
                log.exception("could not start queued jobs; retrying")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        searchers.start()
        dispatcher = asyncio.get_running_loop().create_task(dispatching())
        yield
        dispatcher.cancel()
        launcher.reap()
        searchers.close()
        control.kb.close()

    # Dependencies are closures over this app's tokens, so their parameters name only
    # module-level types (FastAPI resolves the annotations in this module's globals).
    def caller(request: Request,
               authorization: Annotated[str | None, Header()] = None) -> None:
        request.state.caller = tokens.caller(authorization)

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        require_admin(tokens.caller(authorization))

    def start(kb: KnowledgeBase, job_id: int) -> None:
        """Hand a queued job to the launcher: it starts now or when a slot frees."""
        why = launcher.submit(kb.jobs, job_id)
        if why is not None:
            raise ApiError(500, f"job {job_id} {why}")

    def job_dict(job_id: int) -> dict[str, Any]:
        launcher.reap()  # job processes that ended are collected while clients watch
        return control.run(lambda kb: kb.jobs.get(job_id).to_dict())  # or JobNotFound: 404

    def steer(job_id: int, fn: Callable[[KnowledgeBase], object]) -> dict[str, Any]:
        """Run a state change on a job and return the job: JobNotFound (404) for no such
        job, JobStateConflict (409) when its state refuses the change."""
        control.run(fn)
        return job_dict(job_id)

    def problems(job_id: int, after: tuple[float, int], limit: int) -> list[Problem]:
        return control.run(lambda kb: kb.jobs.problems(job_id, after, limit))

    feeds = JobFeeds(job_dict, problems)

    # No /docs or /redoc: they load their scripts from a CDN. The schema only if asked.
    # The body limit is the guard's, not FastAPI's max_body_size (see guards.py).
    app = FastAPI(title="gristmill", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGuard, allowed_hosts=settings.allowed_hosts,
                       tokens=settings.has_api_tokens,
                       max_body_bytes=settings.max_request_kb * 1024)
    install_handlers(app)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(caller)])
    steering = [Depends(admin)]

    @api.post("/jobs", status_code=202, dependencies=steering)
    def create_job(request: JobRequest, response: Response) -> dict[str, Any]:
        """Queue an ingest job and start the process that runs it."""
        given = request.source
        if not given:
            raise ApiError(422, "source: give at least one path")
        if not request.collection.strip():
            raise ApiError(422, "collection: must not be blank")
        sources = [resolve_source(source, settings.source_roots) for source in given]
        spec = JobSpec(request.collection, tuple(sources), tuple(request.include),
                       tuple(request.exclude), request.max_files)

        def queue(kb: KnowledgeBase) -> int:
            job_id = kb.jobs.create(spec, owner, state=JobState.QUEUED)
            start(kb, job_id)
            return job_id

        job_id = control.run(queue)
        response.headers["Location"] = f"/api/v1/jobs/{job_id}"
        return job_dict(job_id)

    @api.get("/jobs")
    def list_jobs(state: Text | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        """The latest jobs, newest first, optionally only those in ``state``."""
        return control.run(lambda kb: [job.to_dict() for job in kb.jobs.list(state, limit)])

    @api.get("/jobs/{job_id}")
    def get_job(job_id: JobId) -> dict[str, Any]:
        """One job: spec, state and counters."""
        return job_dict(job_id)

    @api.post("/jobs/{job_id}/pause", status_code=202, dependencies=steering)
    def pause_job(job_id: JobId) -> dict[str, Any]:
        """Ask a running job to pause: in-flight items finish, then its process exits."""
        return steer(job_id, lambda kb: kb.jobs.pause(job_id))

    @api.post("/jobs/{job_id}/resume", status_code=202, dependencies=steering)
    def resume_job(job_id: JobId) -> dict[str, Any]:
        """Queue a paused, interrupted or failed job again; its process starts when a
        slot is free."""

        def requeue(kb: KnowledgeBase) -> None:
            kb.jobs.requeue(job_id, owner)
            start(kb, job_id)

        return steer(job_id, requeue)

    @api.delete("/jobs/{job_id}", status_code=202, dependencies=steering)
    def cancel_job(job_id: JobId) -> dict[str, Any]:
        """Cancel a job: a running one stops within seconds, others at once."""
        return steer(job_id, lambda kb: kb.jobs.cancel(job_id))

    @api.get("/jobs/{job_id}/events")
    def job_event_stream(
        job_id: JobId,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventSourceResponse:
        """Server-Sent Events: ``state``, ``progress``, ``failure`` and ``heartbeat``
        (see :mod:`gristmill.api.events`); the stream ends once the job has ended."""
        job_dict(job_id)  # a 404 now, not an error in the middle of a stream
        return EventSourceResponse(feeds.events(job_id, last_event_id))

    @api.get("/search")
    async def search(
        request: Request,
        q: Text,
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
        mode: Literal["hybrid", "keyword", "vector"] = "hybrid",
        collection: Text | None = None,
    ) -> list[dict[str, object]]:
        """The ``k`` best chunks for ``q``, each with the passage around its words."""
        if len(q) > settings.max_query_chars:
            raise ApiError(422, f"query.q: at most {settings.max_query_chars} characters "
                                "(max_query_chars)")
        # Per token where there are tokens; per address where anyone may call.
        client = request.client.host if request.client else "unknown"
        who: Caller = request.state.caller
        throttle.check(who.name if tokens.enabled else client)
        # A ConfigError (vector search without an embedder) is a 400, as its class says.
        return await searchers.results(q, collection=collection, k=k, mode=mode)

    @api.get("/health")
    def health() -> dict[str, Any]:
        """The catalog, index, embedder, embedding cache and worker settings, and the
        jobs running now: what an operator checks first."""

        def read(kb: KnowledgeBase) -> dict[str, Any]:
            running = [job for job in kb.jobs.list(limit=1000)
                       if job.state == JobState.RUNNING]
            vectors = kb.index.vector_counts()
            return {
                "status": "ok",
                "catalog": {**_catalog_place(kb),
                            "schema_version": kb.db.schema_version,
                            "items": kb.catalog.counts(),
                            "collections": kb.catalog.collections()},
                "index": {"chunks": kb.index.chunk_count(),
                          "vectors": vectors,
                          "vector_engine": kb.index.vector_engine,
                          "vector_engine_note": kb.index.vector_engine_note},
                "embedder": {"name": settings.embedder,
                             "model": kb.embedder.model_id if kb.embedder else None},
                "cache": {"embedding_vectors": sum(vectors.values()),
                          "vector_search": (searchers.vectors.status
                                            if searchers.vectors else "scan")},
                "workers": {"per_job": settings.workers, "window": settings.window,
                            "item_timeout": settings.item_timeout},
                "jobs": {"running": [job.id for job in running],
                         "watched": feeds.watched},
            }

        return control.run(read)

    @api.get("/errors")
    def errors(collection: Text | None = None, job: JobIdQuery = None
               ) -> list[dict[str, Any]]:
        """Failed and skipped items grouped by the pattern of their reason, of one
        collection or one job if asked."""
        return control.run(lambda kb: [group.to_dict()
                                       for group in kb.errors(collection, job)])

    @api.get("/token")
    def whoami(request: Request) -> dict[str, str]:
        """The caller's token: its name and scope (what a client may offer its user)."""
        who: Caller = request.state.caller
        return {"name": who.name, "scope": who.scope}

    def snapshot() -> dict[str, Any]:
        def read(kb: KnowledgeBase) -> dict[str, Any]:
            jobs = kb.jobs.list(limit=1000)
            states: dict[str, int] = {}
            for job in jobs:
                states[job.state] = states.get(job.state, 0) + 1
            running = [{**job.to_dict(), "batcher": kb.jobs.run_stats(job.id)}
                       for job in jobs if job.state == JobState.RUNNING]
            return {"items": kb.catalog.counts(), "chunks": kb.index.chunk_count(),
                    "vectors": sum(kb.index.vector_counts().values()),
                    "jobs": states, "running": running}

        return control.run(read)

    registry = catalog_registry(snapshot)

    @app.get("/metrics", dependencies=[Depends(caller)])
    def metrics() -> Response:
        """Prometheus text format: items by status, chunks, vectors, jobs by state,
        running jobs' progress, rate, queue and batcher (flushes, rows, flush and commit
        latency), the server's RSS."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def alive() -> dict[str, str]:
        """Liveness for load balancers and supervisors: no token, no data."""
        control.run(lambda kb: kb.catalog.ping())
        return {"status": "ok"}

    # The dashboard's files are public (they hold no data); every call it makes to the
    # API carries the token the user types into it.
    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(_STATIC / "index.html")

    if settings.openapi_schema:
        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(caller)])
        def openapi_schema() -> dict[str, Any]:
            """The OpenAPI schema of this API (only with ``openapi_schema`` on)."""
            return app.openapi()

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.include_router(api)
    return app

"""The HTTP API: a thin shell over :class:`~gristmill.knowledge_base.KnowledgeBase`.

Every route is under ``/api/v1`` and, when ``api_token`` is set, needs
``Authorization: Bearer <token>``. Jobs run in processes of their own (see
:mod:`gristmill.api.launcher`); the server only writes requests into job rows and reads
them back, so it stays responsive and jobs outlive it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from gristmill.api.events import job_events
from gristmill.api.launcher import JobLauncher
from gristmill.api.metrics import catalog_registry
from gristmill.api.problems import ApiError, install_handlers
from gristmill.api.security import check_token, resolve_source
from gristmill.catalog.jobs import JobSpec
from gristmill.catalog.sqlite import lease_owner_token
from gristmill.config import Settings
from gristmill.errors import ConfigError
from gristmill.knowledge_base import KnowledgeBase

__all__ = ["JobRequest", "create_app"]

T = TypeVar("T")


class JobRequest(BaseModel):
    """The body of ``POST /api/v1/jobs``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not be ignored

    source: str | list[str] = Field(description="Absolute path(s) inside a source root.")
    collection: str = Field("default", min_length=1)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    max_files: int | None = Field(None, ge=1)


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
    # Two connections: a slow search (loading the model, embedding the query) must not
    # hold up job steering and event streams.
    control = _Guarded(settings)
    searcher = _Guarded(settings)
    launcher = JobLauncher(settings)
    owner = lease_owner_token()  # answers for a queued job until its process takes over
    token = settings.api_token.get_secret_value() if settings.api_token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        launcher.reap()
        control.kb.close()
        searcher.kb.close()

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        check_token(token, authorization)

    def job_dict(job_id: int) -> dict[str, Any]:
        launcher.reap()  # job processes that ended are collected while clients watch
        try:
            return control.run(lambda kb: kb.jobs.get(job_id).to_dict())
        except ConfigError as exc:
            raise ApiError(404, str(exc)) from None

    def steer(fn: Callable[[KnowledgeBase], object]) -> None:
        """Run a state change; a refused one (wrong state) is a 409."""
        try:
            control.run(fn)
        except ConfigError as exc:
            raise ApiError(409, str(exc)) from None

    app = FastAPI(title="gristmill", version="1", lifespan=lifespan)
    install_handlers(app)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])

    @api.post("/jobs", status_code=202)
    def create_job(request: JobRequest, response: Response) -> dict[str, Any]:
        """Queue an ingest job and start the process that runs it."""
        given = [request.source] if isinstance(request.source, str) else request.source
        if not given:
            raise ApiError(422, "source: give at least one path")
        if not request.collection.strip():
            raise ApiError(422, "collection: must not be blank")
        sources = [resolve_source(source, settings.source_roots) for source in given]
        spec = JobSpec(request.collection, tuple(sources), tuple(request.include),
                       tuple(request.exclude), request.max_files)

        def queue(kb: KnowledgeBase) -> int:
            job_id = kb.jobs.create(spec, owner, state="queued")
            try:
                launcher.launch(kb.jobs, job_id)
            except OSError as exc:  # no process: the job must not wait queued for ever
                kb.jobs.fail_queued(job_id, f"could not start its process: {exc}")
                raise ApiError(500, f"job {job_id} could not start its process: {exc}"
                               ) from None
            return job_id

        job_id = control.run(queue)
        response.headers["Location"] = f"/api/v1/jobs/{job_id}"
        return job_dict(job_id)

    @api.get("/jobs")
    def list_jobs(state: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        """The latest jobs, newest first, optionally only those in ``state``."""
        return control.run(lambda kb: [job.to_dict() for job in kb.jobs.list(state, limit)])

    @api.get("/jobs/{job_id}")
    def get_job(job_id: int) -> dict[str, Any]:
        """One job: spec, state and counters."""
        return job_dict(job_id)

    @api.post("/jobs/{job_id}/pause", status_code=202)
    def pause_job(job_id: int) -> dict[str, Any]:
        """Ask a running job to pause: in-flight items finish, then its process exits."""
        job_dict(job_id)
        steer(lambda kb: kb.jobs.pause(job_id))
        return job_dict(job_id)

    @api.post("/jobs/{job_id}/resume", status_code=202)
    def resume_job(job_id: int) -> dict[str, Any]:
        """Queue a paused, interrupted or failed job again and start its process."""
        job_dict(job_id)

        def requeue(kb: KnowledgeBase) -> None:
            kb.jobs.requeue(job_id, owner)
            launcher.launch(kb.jobs, job_id)

        steer(requeue)
        return job_dict(job_id)

    @api.delete("/jobs/{job_id}", status_code=202)
    def cancel_job(job_id: int) -> dict[str, Any]:
        """Cancel a job: a running one stops within seconds, others at once."""
        job_dict(job_id)
        steer(lambda kb: kb.jobs.cancel(job_id))
        return job_dict(job_id)

    @api.get("/jobs/{job_id}/events")
    def job_event_stream(
        job_id: int,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventSourceResponse:
        """Server-Sent Events: ``state``, ``progress`` and ``heartbeat``, each carrying
        the job; the stream ends once the job has ended."""
        job_dict(job_id)  # a 404 now, not an error in the middle of a stream
        after = int(last_event_id) if (last_event_id or "").strip().isdigit() else 0
        return EventSourceResponse(job_events(lambda: job_dict(job_id), after))

    @api.get("/search")
    def search(
        q: str,
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
        mode: Literal["hybrid", "keyword", "vector"] = "hybrid",
        collection: str | None = None,
    ) -> list[dict[str, object]]:
        """The ``k`` best chunks for ``q``."""
        try:
            hits = searcher.run(lambda kb: kb.search(q, collection=collection, k=k,
                                                     mode=mode))
        except ConfigError as exc:  # e.g. vector search without an embedder
            raise ApiError(400, str(exc)) from None
        return [hit.to_dict() for hit in hits]

    @api.get("/health")
    def health() -> dict[str, Any]:
        """Catalog counts, schema version and embedder: the server and its database work."""

        def read(kb: KnowledgeBase) -> dict[str, Any]:
            return {"status": "ok", "schema_version": kb.db.schema_version,
                    "embedder": settings.embedder, "items": kb.catalog.counts(),
                    "chunks": kb.index.chunk_count()}

        return control.run(read)

    @api.get("/errors")
    def errors(collection: str | None = None) -> list[dict[str, Any]]:
        """Failed and skipped items grouped by the pattern of their reason."""
        return control.run(lambda kb: [group.to_dict() for group in kb.errors(collection)])

    def snapshot() -> dict[str, Any]:
        def read(kb: KnowledgeBase) -> dict[str, Any]:
            jobs = kb.jobs.list(limit=1000)
            states: dict[str, int] = {}
            for job in jobs:
                states[job.state] = states.get(job.state, 0) + 1
            return {"items": kb.catalog.counts(), "chunks": kb.index.chunk_count(),
                    "vectors": kb.db.conn.execute(
                        "SELECT count(*) FROM embeddings").fetchone()[0],
                    "jobs": states,
                    "running": [job.to_dict() for job in jobs if job.state == "running"]}

        return control.run(read)

    registry = catalog_registry(snapshot)

    @app.get("/metrics", dependencies=[Depends(authorized)])
    def metrics() -> Response:
        """Prometheus text format: items by status, chunks, vectors, jobs by state,
        running jobs' progress, rate and queue, the server's RSS."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api)
    return app

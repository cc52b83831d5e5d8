"""``/api/v1/jobs``: start, list, read, pause, resume and cancel jobs (ingest, and the
per-user audio scans of :mod:`gristmill.api.audio`), and follow one over Server-Sent
Events.

Jobs run in processes of their own (see :mod:`gristmill.api.launcher`): these routes only
write requests into job rows and read them back, so the server stays responsive and
jobs outlive it. Starting and steering need an ``admin`` token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sse_starlette import EventSourceResponse

from gristmill.api.audio import AudioJobRequest, queue_audio_jobs
from gristmill.api.params import MAX_ID, JobId, Text
from gristmill.api.problems import ApiError
from gristmill.api.security import resolve_source
from gristmill.api.state import ApiState, State, admin_only
from gristmill.catalog.jobs import JobSpec, JobState
from gristmill.knowledge_base import KnowledgeBase

__all__ = ["JobRequest", "dispatching", "router"]

_DISPATCH_SECONDS = 0.5  # how soon a queued job starts once a running one has ended

log = logging.getLogger(__name__)

_Request = TypeVar("_Request", bound=BaseModel)

router = APIRouter()
_steering = [Depends(admin_only)]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class JobRequest(BaseModel):
    """The body of ``POST /api/v1/jobs``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not be ignored

    kind: Literal["ingest"] = "ingest"
    # One path or a list; always a list once read, so an error names `source.0`.
    source: Annotated[list[Text], BeforeValidator(_as_list)] = Field(
        description="Absolute path(s) inside a source root, or URL(s) "
        "(s3://bucket/prefix/) under a URL prefix among the source roots.")
    collection: Text = Field("default", min_length=1)
    include: list[Text] = Field(default_factory=list)
    exclude: list[Text] = Field(default_factory=list)
    max_files: int | None = Field(None, ge=1, le=MAX_ID)


async def dispatching(state: ApiState) -> None:
    """Start queued jobs as running ones end (``max_running_jobs`` at once); runs for
    the app's lifetime."""
    while True:
        await asyncio.sleep(_DISPATCH_SECONDS)
        if not state.launcher.waiting:
            continue
        try:
            await asyncio.to_thread(state.run, lambda kb: state.launcher.dispatch(kb.jobs))
        except Exception:  # e.g. the database is down: try again at the next tick
            log.exception("could not start queued jobs; retrying")


def _steer(state: ApiState, job_id: int, fn: Callable[[KnowledgeBase], object]
           ) -> dict[str, Any]:
    """Run a state change on a job and return the job: JobNotFound (404) for no such
    job, JobStateConflict (409) when its state refuses the change."""
    state.run(fn)
    return state.job(job_id)


def _parsed(model: type[_Request], body: dict[str, Any]) -> _Request:
    """``body`` as ``model``; a RequestValidationError (the API's 422) when it is not
    one, its fields named as FastAPI names a body's."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from None


@router.post("/jobs", status_code=202, dependencies=_steering)
def create_job(body: Annotated[dict[str, Any], Body()], response: Response,
               state: State) -> dict[str, Any]:
    """Queue an ingest job (``kind`` ``ingest``, the default) and start the process that
    runs it, or an audio scan's jobs, one per user (``kind`` ``audio``): then the answer
    is ``{"kind": "audio", "ids": [...], "jobs": [...]}``."""
    # Dispatched by hand rather than as a pydantic tagged union, whose errors would
    # name the tag (`ingest.source.0`) instead of the field.
    kind = body.get("kind", "ingest")
    if kind == "audio":
        ids = queue_audio_jobs(state, _parsed(AudioJobRequest, body))
        response.headers["Location"] = f"/api/v1/jobs/{ids[0]}"
        return {"kind": "audio", "ids": ids, "jobs": [state.job(i) for i in ids]}
    if kind != "ingest":
        raise ApiError(422, f"kind: {kind!r} is not a kind of job; give \"ingest\" (the "
                            "default) or \"audio\"")
    return _create_ingest_job(_parsed(JobRequest, body), response, state)


def _create_ingest_job(request: JobRequest, response: Response, state: State
                       ) -> dict[str, Any]:
    """Queue an ingest job and start the process that runs it."""
    given = request.source
    if not given:
        raise ApiError(422, "source: give at least one path")
    if not request.collection.strip():
        raise ApiError(422, "collection: must not be blank")
    sources = [resolve_source(source, state.settings.source_roots, remote=True,
                              s3_endpoint_url=state.settings.s3_endpoint_url)
               for source in given]
    spec = JobSpec(request.collection, tuple(sources), tuple(request.include),
                   tuple(request.exclude), request.max_files)

    def queue(kb: KnowledgeBase) -> int:
        job_id = kb.jobs.create(spec, state.owner, state=JobState.QUEUED)
        state.start(kb, job_id)
        return job_id

    job_id = state.run(queue)
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    return state.job(job_id)


@router.get("/jobs")
def list_jobs(state: State, job_state: Annotated[Text | None, Query(alias="state")] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """The latest jobs, newest first, optionally only those in ``state``."""
    return state.run(lambda kb: [job.to_dict() for job in kb.jobs.recent(job_state, limit)])


@router.get("/jobs/{job_id}")
def get_job(job_id: JobId, state: State) -> dict[str, Any]:
    """One job: spec, state and counters."""
    return state.job(job_id)


@router.post("/jobs/{job_id}/pause", status_code=202, dependencies=_steering)
def pause_job(job_id: JobId, state: State) -> dict[str, Any]:
    """Ask a running job to pause: in-flight items finish, then its process exits."""
    return _steer(state, job_id, lambda kb: kb.jobs.pause(job_id))


@router.post("/jobs/{job_id}/resume", status_code=202, dependencies=_steering)
def resume_job(job_id: JobId, state: State) -> dict[str, Any]:
    """Queue a paused, interrupted or failed job again; its process starts when a
    slot is free."""

    def requeue(kb: KnowledgeBase) -> None:
        kb.jobs.requeue(job_id, state.owner)
        state.start(kb, job_id)

    return _steer(state, job_id, requeue)


@router.delete("/jobs/{job_id}", status_code=202, dependencies=_steering)
def cancel_job(job_id: JobId, state: State) -> dict[str, Any]:
    """Cancel a job: a running one stops within seconds, others at once."""
    return _steer(state, job_id, lambda kb: kb.jobs.cancel(job_id))


@router.get("/jobs/{job_id}/events")
def job_event_stream(
    job_id: JobId,
    state: State,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events: ``state``, ``progress``, ``failure`` and ``heartbeat``
    (see :mod:`gristmill.api.events`); the stream ends once the job has ended."""
    state.job(job_id)  # a 404 now, not an error in the middle of a stream
    return EventSourceResponse(state.feeds.events(job_id, last_event_id))

"""Audio over HTTP: the per-user scan jobs ``POST /api/v1/jobs`` queues for
``{"kind": "audio", ...}``, and ``GET /api/v1/audio/events``.

An audio scan over HTTP is what ``gristmill audio scan`` runs, one queued job per user
(:func:`~gristmill.audio.scan.audio_job_spec`), each started by the launcher as a
``gristmill jobs run`` process like an ingest job: the home's scan lock makes each
job wait for the one before it, so users are scanned one after another.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gristmill.api.params import Text
from gristmill.api.problems import ApiError
from gristmill.api.security import resolve_source
from gristmill.api.state import ApiState, State
from gristmill.audio.recording import AudioOptions
from gristmill.audio.scan import audio_job_spec, parse_since, plan_users
from gristmill.catalog.jobs import JobState
from gristmill.errors import ConfigError, ModelError, SourceError
from gristmill.knowledge_base import KnowledgeBase

__all__ = ["AudioJobRequest", "queue_audio_jobs", "router"]

router = APIRouter()

#: Events one ``GET /api/v1/audio/events`` returns at most (``limit``'s ceiling).
MAX_EVENTS = 100_000
#: The latest ``since`` the catalog can compare: it counts nanoseconds in 64 bits.
_LATEST_SINCE = (2**63 - 1) / 1e9


class AudioJobRequest(BaseModel):
    """The body of ``POST /api/v1/jobs`` for an audio scan: ``audio scan``'s options."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option must not be ignored

    kind: Literal["audio"]
    root: Text = Field(description="Absolute folder of recordings inside a source root; "
                       "with per_user, a folder of users' folders.")
    per_user: bool = False
    user: Text | None = Field(None, min_length=1)
    collection: Text = Field("audio", min_length=1)
    # The same bounds as the settings they override (audio_threshold, audio_min_duration).
    threshold: float | None = Field(None, gt=0, le=1)
    min_duration: float | None = Field(None, ge=0, le=3600)
    clips: bool = False
    since: Text | None = Field(None, description="2024-05-01 or 2024-05-01T18:30.")


def queue_audio_jobs(state: ApiState, request: AudioJobRequest) -> list[int]:
    """Queue one audio job per user of ``request`` and hand each to the launcher; their
    ids, in the order the users are scanned.

    Raises:
        ApiError: 422 for a bad request (no users, a bad date or name), 409 when the
            server cannot scan (no audio_model, no PyAV), 403/400 for a root outside
            the source roots or missing.
    """
    if not request.collection.strip():
        raise ApiError(422, "collection: must not be blank")
    if request.per_user and request.user is not None:
        raise ApiError(422, "per_user: give per_user (each folder of root is a user) or "
                            "user (root is that user's folder), not both")
    root = resolve_source(request.root, state.settings.source_roots)
    since = _since(request.since, "since")
    try:
        users = plan_users(root, per_user=request.per_user, user=request.user)
    except (ConfigError, SourceError) as exc:
        raise ApiError(422, _field_message(exc)) from None
    if not users:
        raise ApiError(422, f"root: {root} holds no users' folders (per_user takes each "
                            "first-level folder as a user)")
    # Each user's folder is checked as a source itself: a folder swapped for a link
    # since plan_users listed it must not lead outside the roots.
    folders = [(name, resolve_source(folder, state.settings.source_roots))
               for name, folder in users]
    options = _options(state, request, [name for name, _ in folders], since)
    specs = [audio_job_spec(option, request.collection, folder)
             for option, (_, folder) in zip(options, folders, strict=True)]

    def queue(kb: KnowledgeBase) -> list[int]:
        ids = [kb.jobs.create(spec, state.owner, state=JobState.QUEUED) for spec in specs]
        # Queued first, all of them, then started: the launcher starts the oldest
        # first, and the scan lock makes each job wait for the one before it.
        for job_id in ids:
            state.start(kb, job_id)
        return ids

    return state.run(queue)


def _options(state: ApiState, request: AudioJobRequest, users: list[str],
             since: float | None) -> list[AudioOptions]:
    """Each user's scan options: the server's audio settings, with the request's
    threshold and minimum duration."""
    if importlib.util.find_spec("av") is None:  # else every recording would fail alike
        raise ApiError(409, "this server cannot decode recordings: install PyAV there "
                            "(pip install 'gristmill[audio]') and restart it")
    overrides = {name: value for name, value in (
        ("audio_threshold", request.threshold),
        ("audio_min_duration", request.min_duration)) if value is not None}
    settings = state.settings.model_copy(update=overrides)
    try:
        base = AudioOptions.from_settings(settings, users[0], clips=request.clips,
                                          since=since)
        # The other users' options from the first one's: the model file is read (for
        # its sha256) once, not once per user.
        return [base] + [AudioOptions.from_spec({**base.to_spec(), "user": user},
                                                settings.home) for user in users[1:]]
    except ModelError as exc:
        # The server's setting, not the request, is wrong: its operator sets audio_model.
        raise ApiError(409, f"the server has no usable audio model: {exc}") from None
    except ConfigError as exc:  # a user's name that cannot name a folder
        raise ApiError(422, f"user: {exc}") from None


def _since(text: str | None, field: str) -> float | None:
    """``since`` as seconds since the epoch (None for none); a 422 naming ``field`` for
    what is not a date the catalog can compare."""
    if text is None:
        return None
    try:
        when = parse_since(text)
    except ConfigError as exc:
        raise ApiError(422, _field_message(exc, field)) from None
    except (OverflowError, OSError):  # a date the platform's clock cannot place
        when = float("inf")
    if not -_LATEST_SINCE <= when <= _LATEST_SINCE:
        raise ApiError(422, f"{field}: {text!r} is out of range: give a date between "
                            "1678 and 2262")
    return when


def _field_message(exc: Exception, since: str = "since") -> str:
    """A library error, worded for the CLI's flags, as a 422 sentence naming the
    request's field (``since``: where the date was given)."""
    text = str(exc)
    if text.startswith("--since"):
        return f"{since}: " + text.removeprefix("--since ")
    return f"root: {text}"


@router.get("/audio/events")
def audio_events(
    state: State,
    user: Text | None = None,
    since: Text | None = None,
    collection: Text | None = None,
    model: Text | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 1000,
) -> list[dict[str, Any]]:
    """The stored sound events, by user, recording and time, as ``gristmill audio
    events --json`` lists them: ``{user, source, start, end, label, score, clip}``;
    ``model`` (the first characters of a model's sha256) as ``--model``."""
    when = _since(since, "query.since")
    try:
        found = state.run(lambda kb: kb.audio_events(user=user, since=when,
                                                     collection=collection, model=model))
    except ConfigError as exc:  # a model that is not a sha256 prefix, or names several
        raise ApiError(422, "query.model: " + str(exc).removeprefix("--model ")) from None
    return [event.to_dict() for event in found[:limit]]

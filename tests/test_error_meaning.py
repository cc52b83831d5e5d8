"""Errors carry their meaning: each class of the tree says its HTTP status and CLI exit
code, "no such job" and "wrong job state" are classes of their own, and the API answers
every one of them through one handler with ``{"detail": ...}``."""

from __future__ import annotations

import gc
import json
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

import gristmill.errors as errors_module
from gristmill.api import create_app
from gristmill.batching import (  # its StoreError classes join the tree walked here
    DeadLettered,
    QueueFull,
    WriterClosed,
)
from gristmill.catalog.jobs import JobSpec, JobState
from gristmill.catalog.leases import lease_owner_token
from gristmill.config import Settings
from gristmill.errors import (
    ConfigError,
    CredentialError,
    EmbedderUnavailable,
    GristmillError,
    HomeUnwritable,
    ItemError,
    JobNotFound,
    JobStateConflict,
    ModelError,
    NoKnowledgeBase,
    ScanBusy,
    SourceError,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from gristmill.knowledge_base import KnowledgeBase
from gristmill.ops.archive import ArchiveRefused  # joins the tree walked here
from gristmill.runtime.worker import Outcome, WorkResult
from gristmill.sinks.openai_vector_store import (  # and these
    SinkRejected,
    SinkUnavailable,
)
from process_tools import env_for, gristmill

#: Each class and what it answers with: (HTTP status, CLI exit code). The statuses are
#: those the API gave before they moved onto the classes (a job error's per route).
MEANINGS: dict[type[GristmillError], tuple[int, int]] = {
    ConfigError: (400, 2),
    ModelError: (500, 2),
    HomeUnwritable: (500, 2),
    JobNotFound: (404, 2),
    JobStateConflict: (409, 2),
    CredentialError: (500, 2),
    ArchiveRefused: (400, 2),
    SinkRejected: (400, 2),
    EmbedderUnavailable: (503, 1),
    SinkUnavailable: (503, 1),
    NoKnowledgeBase: (500, 1),
    ScanBusy: (409, 75),
    SourceError: (500, 1),
    StoreError: (500, 1),
    StoreBusy: (503, 1),
    StoreUnavailable: (503, 1),
    QueueFull: (503, 1),
    StoreFull: (507, 1),
    StoreCorrupt: (500, 1),
    DeadLettered: (500, 1),
    WriterClosed: (500, 1),
}
SECRET = "/srv/private/model.onnx at db.internal:5432"


def _tree(root: type[GristmillError] = GristmillError) -> list[type[GristmillError]]:
    """``root`` and every class below it, wherever defined."""
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_tree(sub))
    return found


def _undeclared() -> list[str]:
    """Classes that can reach the API (all but an item error's subclasses, which the run
    records on their item) and do not say their own status."""
    return [cls.__qualname__ for cls in _tree()
            if not issubclass(cls, ItemError) or cls is ItemError
            if "http_status" not in vars(cls)]


def _instance(cls: type[GristmillError], message: str) -> GristmillError:
    """An instance of ``cls`` whose message is ``message``, whatever its constructor."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


@pytest.mark.parametrize("cls", list(MEANINGS), ids=lambda cls: cls.__name__)
def test_each_error_says_its_status_and_exit_code(cls: type[GristmillError]) -> None:
    """Each class of the tree carries the HTTP status and the exit code it answers with."""
    assert (cls.http_status, cls.exit_code) == MEANINGS[cls]


def test_job_errors_are_config_errors_with_the_message_users_know() -> None:
    """`except ConfigError` still catches the job errors, whose messages are unchanged."""
    assert issubclass(JobNotFound, ConfigError) and issubclass(JobStateConflict, ConfigError)
    assert str(JobNotFound(7)) == "no job 7: `gristmill jobs list` shows the jobs"
    conflict = JobStateConflict(7, JobState.CANCELLED, "job 7 is already cancelled")
    assert (str(conflict), conflict.job_id, conflict.state) == (
        "job 7 is already cancelled", 7, "cancelled")


def test_every_class_that_can_reach_the_api_declares_its_status() -> None:
    """No config, store or other error class inherits its status by accident: the whole
    tree (batching's classes included) is in the table above and declares its own."""
    assert _undeclared() == []
    reachable = {cls for cls in _tree() if not issubclass(cls, ItemError)} - {GristmillError}
    assert reachable == set(MEANINGS)


def test_a_new_subclass_without_a_status_is_caught() -> None:
    """A StoreError or ConfigError subclass added without `http_status` fails the check."""

    class StoreSlow(StoreError):
        """An error someone adds later and forgets to give a status."""

    class ConfigTypo(ConfigError):
        """Another one."""

    try:
        assert {"test_a_new_subclass_without_a_status_is_caught.<locals>.StoreSlow",
                "test_a_new_subclass_without_a_status_is_caught.<locals>.ConfigTypo"
                } <= set(_undeclared())
    finally:
        del StoreSlow, ConfigTypo
        gc.collect()  # __subclasses__ holds them weakly: the other tests no longer see them


def test_the_docstring_tree_draws_each_status_and_exit_code() -> None:
    """The HTTP and exit columns drawn in errors.py's docstring are the classes' own."""
    assert errors_module.__doc__ is not None
    drawn = {}
    for line in errors_module.__doc__.splitlines():
        for connector in ("── ", "╌╌ "):
            if connector in line:
                words = line.split(connector, 1)[1].split()
                if words[-2:] and all(word.isdigit() for word in words[-2:]):
                    drawn[words[0]] = (int(words[-2]), int(words[-1]))
                break
    assert drawn == {cls.__name__: meaning for cls, meaning in MEANINGS.items()}


# -- the API: one handler for the tree ------------------------------------------------

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a home with one folder under the source roots (on the suite's backend)."""
    (tmp_path / "root" / "notes").mkdir(parents=True)
    return Settings.load(home=tmp_path / "home", embedder="none",
                         source_roots=[tmp_path / "root"])


def _job(settings: Settings, state: JobState) -> int:
    """A job in ``state``: ``succeeded`` (ended) or ``running`` (under this process)."""
    kb = KnowledgeBase(settings)
    try:
        owner = lease_owner_token()
        job_id = kb.jobs.create(JobSpec("default", (str(settings.home),)), owner)
        run_id = kb.jobs.start_run(job_id, owner)
        if state == JobState.SUCCEEDED:
            kb.jobs.finish(job_id, JobState.SUCCEEDED, {}, run_id=run_id)
        return job_id
    finally:
        kb.close()


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process, with its lifespan, over httpx's ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


@pytest.mark.anyio
async def test_missing_job_is_404_on_every_job_route(settings: Settings) -> None:
    """Reading, pausing, resuming, cancelling or following a job that does not exist is
    a 404 whose one sentence names the job."""
    async with _client(settings) as client:
        for method, path in (("GET", "/api/v1/jobs/424242"),
                             ("POST", "/api/v1/jobs/424242/pause"),
                             ("POST", "/api/v1/jobs/424242/resume"),
                             ("DELETE", "/api/v1/jobs/424242"),
                             ("GET", "/api/v1/jobs/424242/events")):
            answer = await client.request(method, path, headers={"Content-Type":
                                                                  "application/json"})
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json() == {
                "detail": "no job 424242: `gristmill jobs list` shows the jobs"}


@pytest.mark.anyio
async def test_wrong_job_state_is_409(settings: Settings) -> None:
    """Pausing or cancelling an ended job, or resuming a running one, is a 409 that says
    the job's state and what the call needs."""
    ended = _job(settings, JobState.SUCCEEDED)
    running = _job(settings, JobState.RUNNING)
    json = {"Content-Type": "application/json"}
    async with _client(settings) as client:
        paused = await client.post(f"/api/v1/jobs/{ended}/pause", headers=json)
        cancelled = await client.delete(f"/api/v1/jobs/{ended}", headers=json)
        resumed = await client.post(f"/api/v1/jobs/{running}/resume", headers=json)
    assert (paused.status_code, paused.json()) == (409, {
        "detail": f"job {ended} is succeeded: only a running job can be paused"})
    assert (cancelled.status_code, cancelled.json()) == (409, {
        "detail": f"job {ended} is already succeeded"})
    assert (resumed.status_code, resumed.json()) == (409, {
        "detail": f"job {running} is running: only a paused, interrupted or failed job "
                  "can be resumed"})


@pytest.mark.anyio
async def test_a_config_error_of_a_request_is_400(settings: Settings) -> None:
    """Vector search on a knowledge base without an embedder is a 400 saying why."""
    async with _client(settings) as client:
        answer = await client.get("/api/v1/search", params={"q": "word", "mode": "vector"})
    assert answer.status_code == 400
    assert list(answer.json()) == ["detail"]
    assert "vector search needs an embedder" in answer.json()["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize("cls", list(MEANINGS), ids=lambda cls: cls.__name__)
async def test_one_handler_answers_every_class_with_its_status(
        settings: Settings, cls: type[GristmillError]) -> None:
    """Any error of the tree raised in any route is answered with its class's status in
    the one JSON shape; a 5xx names no server internals, and a 503 says when to retry."""
    app = create_app(settings)

    def fail() -> None:
        raise _instance(cls, f"broken: {SECRET}")

    app.add_api_route("/raises", fail)  # a route with no mapping of its own
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            answer = await client.get("/raises")
    assert answer.status_code == cls.http_status
    assert list(answer.json()) == ["detail"]
    detail = answer.json()["detail"]
    if cls.http_status < 500:
        assert detail == f"broken: {SECRET}"
    else:
        assert SECRET not in detail and detail.startswith(cls.public_detail)
    assert ("retry-after" in answer.headers) == (cls.http_status == 503)


# -- the CLI: exit codes kept -----------------------------------------------------------


def test_cli_exits_2_for_a_missing_job_and_a_wrong_state(tmp_path: Path) -> None:
    """`jobs show` of a missing job and `jobs pause` of an ended one exit 2 (the user's
    to fix, as every ConfigError) with the one-line reason and no traceback."""
    env = env_for(tmp_path / "home")
    settings = Settings.load(home=tmp_path / "home", embedder="none",
                             database_url=env.get("GRISTMILL_DATABASE_URL"))
    ended = _job(settings, JobState.SUCCEEDED)
    missing = gristmill("jobs", "show", "424242", env=env)
    assert missing.returncode == 2, missing.stderr
    assert "no job 424242" in missing.stderr and "Traceback" not in missing.stderr
    refused = gristmill("jobs", "pause", str(ended), env=env)
    assert refused.returncode == 2, refused.stderr
    assert "only a running job can be paused" in refused.stderr


# -- states and outcomes as str enums: the same text everywhere ------------------------


def test_job_states_and_outcomes_read_as_their_plain_values(settings: Settings) -> None:
    """A job's state is stored, dumped as JSON and written into messages as the same
    plain word as before it was an enum; a worker's outcome crosses processes intact."""
    job_id = _job(settings, JobState.SUCCEEDED)
    kb = KnowledgeBase(settings)
    try:
        job = kb.jobs.get(job_id)
        stored = kb.db.conn.execute("SELECT state FROM jobs WHERE id = ?",
                                    (job_id,)).fetchone()[0]
    finally:
        kb.close()
    assert job.state is JobState.SUCCEEDED
    assert type(stored) is str and stored == "succeeded"
    assert json.loads(json.dumps(job.to_dict()))["state"] == "succeeded"
    assert f"job {job_id} is {job.state}" == f"job {job_id} is succeeded"
    result = pickle.loads(pickle.dumps(WorkResult(Outcome.CHANGED)))
    assert result.outcome is Outcome.CHANGED and result.outcome == "changed"
    assert {outcome.value for outcome in Outcome} == {
        "extracted", "skipped", "failed", "retry", "changed", "misconfigured"}

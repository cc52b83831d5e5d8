"""Every error the API answers has the one JSON shape ``{"detail": "<one sentence>"}``:
one request per status it can return, in-process over ``httpx.ASGITransport`` (the real
sockets are in test_api_hardening.py and test_api_access.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gristmill.api import create_app
from gristmill.catalog import lease_owner_token
from gristmill.catalog.jobs import JobSpec, JobStore
from gristmill.config import Settings
from gristmill.errors import GristmillError, StoreFull, StoreUnavailable
from gristmill.knowledge_base import KnowledgeBase

ORIGIN = "http://127.0.0.1:8000"
ADMIN_TOKEN = "admin-test-token"
READ_TOKEN = "read-only-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
READ = {"Authorization": f"Bearer {READ_TOKEN}", "Content-Type": "application/json"}

Send = Callable[[httpx.AsyncClient, int, pytest.MonkeyPatch], Awaitable[httpx.Response]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _settings(tmp_path: Path) -> Settings:
    """Tokens (an admin one, a read-only one), one allowed host name, a search budget of
    one a minute and 1 KiB bodies: every refusal within one request's reach."""
    notes = tmp_path / "root" / "notes"
    notes.mkdir(parents=True)
    (notes / "a.txt").write_text("a note about quillfeather\n")
    return Settings.load(
        home=tmp_path / "home", embedder="none", source_roots=[tmp_path / "root"],
        api_token=ADMIN_TOKEN, allowed_hosts=["kb.example.com"], max_request_kb=1,
        search_rate_limit="1/minute",
        api_tokens=[{"name": "viewer", "sha256": hashlib.sha256(READ_TOKEN.encode())
                     .hexdigest(), "scope": "read"}])


@asynccontextmanager
async def _serving_a_finished_job(settings: Settings) -> AsyncIterator[
        tuple[httpx.AsyncClient, int]]:
    """The app with its lifespan running, and the id of a job that succeeded."""
    kb = KnowledgeBase(settings)
    try:
        owner = lease_owner_token()
        job_id = kb.jobs.create(JobSpec("default", (str(settings.source_roots[0]),)), owner)
        kb.jobs.finish(job_id, "succeeded", {}, run_id=kb.jobs.start_run(job_id, owner))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                yield client, job_id
    finally:
        kb.close()


def _job_reads_fail(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Reading a job fails with ``error``, as it does when the database is away (the real
    restart: test_api_postgres_restart.py)."""
    def get(self: JobStore, job_id: int) -> None:
        raise error

    monkeypatch.setattr(JobStore, "get", get)


async def _relative_source(client: httpx.AsyncClient, job_id: int,
                           monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post("/api/v1/jobs", json={"source": "notes"}, headers=ADMIN)


async def _vector_search_without_embedder(client: httpx.AsyncClient, job_id: int,
                                          monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get("/api/v1/search", params={"q": "quillfeather", "mode": "vector"},
                            headers=ADMIN)


async def _no_token(client: httpx.AsyncClient, job_id: int,
                    monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get("/api/v1/jobs")


async def _read_token_steers(client: httpx.AsyncClient, job_id: int,
                             monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post(f"/api/v1/jobs/{job_id}/pause", headers=READ)


async def _foreign_origin(client: httpx.AsyncClient, job_id: int,
                          monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post(f"/api/v1/jobs/{job_id}/pause",
                             headers={**ADMIN, "Origin": "http://evil.example"})


async def _no_such_job(client: httpx.AsyncClient, job_id: int,
                       monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get(f"/api/v1/jobs/{job_id + 1000}", headers=ADMIN)


async def _no_such_route(client: httpx.AsyncClient, job_id: int,
                         monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get("/api/v1/nowhere", headers=ADMIN)


async def _wrong_method(client: httpx.AsyncClient, job_id: int,
                        monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get(f"/api/v1/jobs/{job_id}/pause", headers=ADMIN)


async def _pause_a_finished_job(client: httpx.AsyncClient, job_id: int,
                                monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post(f"/api/v1/jobs/{job_id}/pause", headers=ADMIN)


async def _body_too_large(client: httpx.AsyncClient, job_id: int,
                          monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post("/api/v1/jobs", json={"source": ["/x" * 1024]}, headers=ADMIN)


async def _text_body(client: httpx.AsyncClient, job_id: int,
                     monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post(f"/api/v1/jobs/{job_id}/pause",
                             headers={**ADMIN, "Content-Type": "text/plain"})


async def _rebound_host(client: httpx.AsyncClient, job_id: int,
                        monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get("/api/v1/jobs", headers={**ADMIN, "Host": "rebind.evil.example"})


async def _limit_out_of_range(client: httpx.AsyncClient, job_id: int,
                              monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.get("/api/v1/jobs", params={"limit": 0}, headers=ADMIN)


async def _unknown_field(client: httpx.AsyncClient, job_id: int,
                         monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await client.post("/api/v1/jobs", json={"sources": ["/x"]}, headers=ADMIN)


async def _second_search(client: httpx.AsyncClient, job_id: int,
                         monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    search = {"q": "quillfeather", "mode": "keyword"}
    first = await client.get("/api/v1/search", params=search, headers=ADMIN)
    assert first.status_code == 200, first.text
    return await client.get("/api/v1/search", params=search, headers=ADMIN)


async def _server_bug(client: httpx.AsyncClient, job_id: int,
                      monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    _job_reads_fail(monkeypatch, RuntimeError("a bug"))
    return await client.get(f"/api/v1/jobs/{job_id}", headers=ADMIN)


async def _database_away(client: httpx.AsyncClient, job_id: int,
                         monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    _job_reads_fail(monkeypatch, StoreUnavailable("server at 10.0.0.5:5432 is restarting"))
    return await client.get(f"/api/v1/jobs/{job_id}", headers=ADMIN)


async def _database_disk_full(client: httpx.AsyncClient, job_id: int,
                              monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    _job_reads_fail(monkeypatch, StoreFull("/srv/gristmill", 12))
    return await client.get(f"/api/v1/jobs/{job_id}", headers=ADMIN)


CASES: list[tuple[int, Send]] = [
    (400, _relative_source),
    (400, _vector_search_without_embedder),
    (401, _no_token),
    (403, _read_token_steers),
    (403, _foreign_origin),
    (404, _no_such_job),
    (404, _no_such_route),
    (405, _wrong_method),
    (409, _pause_a_finished_job),
    (413, _body_too_large),
    (415, _text_body),
    (421, _rebound_host),
    (422, _limit_out_of_range),
    (422, _unknown_field),
    (429, _second_search),
    (500, _server_bug),
    (503, _database_away),
    (507, _database_disk_full),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "send"), [
    pytest.param(status, send, id=f"{status}{send.__name__}") for status, send in CASES])
async def test_every_error_status_has_the_one_json_shape(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, send: Send) -> None:
    """Each error status the API returns comes as JSON holding one string, `detail`."""
    async with _serving_a_finished_job(_settings(tmp_path)) as (client, job_id):
        answer = await send(client, job_id, monkeypatch)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["detail"], body
    assert isinstance(body["detail"], str) and body["detail"].strip()
    assert "10.0.0.5" not in body["detail"] and "/srv" not in body["detail"]  # no internals


def test_every_status_of_the_error_tree_is_among_the_shapes_tested() -> None:
    """A status a new class of the error tree carries gets a case above."""
    tree: list[type[GristmillError]] = [GristmillError]
    for cls in tree:
        tree.extend(cls.__subclasses__())
    carried = {getattr(cls, "http_status", 500) for cls in tree}
    assert carried <= {status for status, _ in CASES}

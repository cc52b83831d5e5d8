"""The API by resource: each route is served by the module named for what it serves, and
``/api/v1/health``, ``/metrics`` and ``gristmill status`` are views of one snapshot.

In-process over ``httpx.ASGITransport``; the real sockets are in test_api_access.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from gristmill.api import create_app
from gristmill.catalog import lease_owner_token
from gristmill.catalog.jobs import JobSpec
from gristmill.config import Settings
from gristmill.knowledge_base import KnowledgeBase

ORIGIN = "http://127.0.0.1:8000"
TOKEN = "resource-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

# Each URL and the module whose route must answer it.
ROUTES = [
    ("GET", "/api/v1/jobs", "jobs"),
    ("GET", "/api/v1/jobs/1", "jobs"),
    ("POST", "/api/v1/jobs/1/pause", "jobs"),
    ("DELETE", "/api/v1/jobs/1", "jobs"),
    ("GET", "/api/v1/search?q=note&mode=keyword", "search"),
    ("GET", "/api/v1/health", "health"),
    ("GET", "/metrics", "health"),
    ("GET", "/healthz", "health"),
    ("GET", "/api/v1/errors", "error_report"),
    ("GET", "/api/v1/token", "token"),
    ("GET", "/", "dashboard"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _settings(tmp_path: Path) -> Settings:
    notes = tmp_path / "root" / "notes"
    notes.mkdir(parents=True)
    (notes / "a.txt").write_text("a note about quillfeather\n")
    (notes / "b.txt").write_text("another note, about mills\n")
    return Settings.load(home=tmp_path / "home", embedder="none",
                         source_roots=[tmp_path / "root"], api_token=TOKEN)


class _EndpointRecorder:
    """Middleware noting the module of the endpoint that answered each request (the
    router writes the endpoint into the request's scope)."""

    seen: ClassVar[list[str]] = []

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen.append(scope["endpoint"].__module__)


@pytest.mark.anyio
async def test_each_route_is_served_by_its_resource_module(tmp_path: Path) -> None:
    """Jobs, search, health and metrics, errors, the token and the dashboard are each
    answered by a route in their own module of gristmill.api, not by app.py."""
    settings = _settings(tmp_path)
    app = create_app(settings)
    app.add_middleware(_EndpointRecorder)
    seen = _EndpointRecorder.seen
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            for method, url, module in ROUTES:
                seen.clear()
                await client.request(method, url, headers=AUTH)
                assert seen == [f"gristmill.api.{module}"], (method, url)


def _gauges(text: str, name: str) -> dict[str, float]:
    """A metric's samples from Prometheus text, by their labels."""
    return {labels: float(value) for labels, value in
            re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)}


@pytest.mark.anyio
async def test_health_metrics_and_status_are_views_of_one_snapshot(tmp_path: Path) -> None:
    """The items, chunks, vectors and running jobs that /api/v1/health, /metrics and
    `status` report are those of KnowledgeBase.snapshot()."""
    settings = _settings(tmp_path)
    kb = KnowledgeBase(settings)
    try:
        kb.ingest([str(tmp_path / "root" / "notes")], collection="notes")
        owner = lease_owner_token()  # a job this process drives: running while it lives
        running = kb.jobs.create(JobSpec("later", (str(tmp_path / "root"),)), owner)
        kb.jobs.start_run(running, owner)
        now = kb.snapshot()
        items, chunks, vectors = now.items, now.chunks, sum(now.vectors.values())
        assert items["indexed"] == 2 and chunks == 2
        assert [run.job.id for run in now.running] == [running]
        status = kb.status()

        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                health = (await client.get("/api/v1/health", headers=AUTH)).json()
                metrics = (await client.get("/metrics", headers=AUTH)).text
    finally:
        kb.close()

    assert status["items"] == health["catalog"]["items"] == items
    assert status["chunks"] == health["index"]["chunks"] == chunks
    assert health["cache"]["embedding_vectors"] == vectors
    assert health["catalog"]["collections"] == list(status["collections"]) == ["notes"]
    assert [job["job"] for job in status["running"]] == health["jobs"]["running"] == [running]
    assert _gauges(metrics, "gristmill_items") == {
        f'{{status="{name}"}}': float(count) for name, count in items.items()}
    assert _gauges(metrics, "gristmill_chunks") == {"": float(chunks)}
    assert _gauges(metrics, "gristmill_vectors") == {"": float(vectors)}
    assert _gauges(metrics, "gristmill_job_items_done") == {f'{{job="{running}"}}': 0.0}
    assert _gauges(metrics, "gristmill_jobs") == {'{state="running"}': 1.0,
                                                  '{state="succeeded"}': 1.0}

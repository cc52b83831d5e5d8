"""`gristmill serve` while its PostgreSQL restarts: 503 with Retry-After meanwhile, in the
API's one JSON shape, never 500; 200 again once the server is back. The server is one
the test owns (see ``own_postgres``): the shared one is never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import start_server

from own_postgres import OwnPostgres, own_postgres
from process_tools import env_for

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[OwnPostgres]:
    """A PostgreSQL server this test may stop and start."""
    with own_postgres() as own:
        yield own


def test_serve_answers_503_while_postgres_is_away(server: OwnPostgres,
                                                  tmp_path: Path) -> None:
    """During a restart the API answers 503 with Retry-After in its one JSON shape, never
    500; once the server is back, the next request is a 200."""
    home = tmp_path / "home"
    env = {**env_for(home), "GRISTMILL_DATABASE_URL": server.url}
    api = start_server(env, home, tmp_path / "serve.log", token=None)
    try:
        assert api.client.get("/api/v1/jobs").status_code == 200
        assert api.client.get("/api/v1/health").status_code == 200
        server.stop()
        for path in ("/api/v1/jobs", "/api/v1/health", "/api/v1/search?q=word",
                     "/api/v1/errors", "/healthz"):
            started = time.monotonic()
            answer = api.client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["Retry-After"].isdigit()
            assert set(answer.json()) == {"detail"}
            assert "unavailable" in answer.json()["detail"]
            assert time.monotonic() - started < 20  # a few seconds' wait, then the answer
        server.start()
        for path in ("/api/v1/jobs", "/api/v1/health", "/api/v1/search?q=word", "/healthz"):
            answer = api.client.get(path)
            assert answer.status_code == 200, (path, answer.text)
    finally:
        api.stop()
    log = (home / "logs" / "gristmill.log").read_text()
    assert "is unreachable" in log and "is reachable again" in log, log
    assert "answered 503" in log
    assert "Traceback" not in (tmp_path / "serve.log").read_text()

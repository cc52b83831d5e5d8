import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Lets tests import shared helpers as top-level modules (``from docs import make_pdf``).
sys.path.insert(0, str(Path(__file__).parent))

from backends import (
    BACKEND,
    ON_POSTGRES,
    databases_of_test,
    drop_database,
    fresh_postgres_database,
    made_outside_tests,
    server_reason,
)


def pytest_report_header() -> str:
    return f"catalog backend: {BACKEND} (GRISTMILL_TEST_DATABASE)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND not in ("sqlite", "postgresql", "postgres"):
        raise pytest.UsageError(f"GRISTMILL_TEST_DATABASE={BACKEND!r}: use sqlite or "
                                "postgresql")
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if ON_POSTGRES and marker is not None:
            reason = marker.args[0] if marker.args else "tests the SQLite backend itself"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


@pytest.fixture(autouse=True)
def catalog_backend(request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """On PostgreSQL, a database of this test's own (created before, dropped after) as
    ``GRISTMILL_DATABASE_URL``, which subprocesses inherit: its URL. On SQLite: None."""
    if not ON_POSTGRES or request.node.get_closest_marker("sqlite_only") is not None:
        yield None
        return
    reason = server_reason()
    if reason is not None:
        pytest.fail(reason)
    with databases_of_test() as url:
        monkeypatch.setenv("GRISTMILL_DATABASE_URL", url)
        yield url
    monkeypatch.delenv("GRISTMILL_DATABASE_URL", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _drop_databases_of_module_fixtures() -> Iterator[None]:
    yield
    while made_outside_tests:
        drop_database(made_outside_tests.pop())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database whatever the suite's backend, for the tests of the
    PostgreSQL backend itself (skipped without a server, except under CI)."""
    reason = server_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with fresh_postgres_database() as url:
        yield url

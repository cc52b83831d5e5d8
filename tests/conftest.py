import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sources.seaweed import SeaweedFS

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


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator["SeaweedFS"]:
    """One SeaweedFS on loopback for the session (each test makes its own buckets);
    a module that needs another (authenticating, stopped by its tests) defines its own."""
    from sources.seaweed import running_seaweed

    with running_seaweed(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture()
def bucket(seaweed: "SeaweedFS", monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with this process's (and its workers') credentials and endpoint
    set the standard AWS way."""
    import uuid

    from sources.seaweed import ACCESS_KEY, SECRET_KEY

    name = f"gm-{uuid.uuid4().hex[:12]}"
    seaweed.client().create_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(variable, raising=False)
    return name

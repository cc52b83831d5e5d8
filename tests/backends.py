"""The catalog backend the suite runs against, and ways to look inside it from a test.

``GRISTMILL_TEST_DATABASE=postgresql`` runs the suite on PostgreSQL: ``conftest.py``
then gives each test a fresh database on the local server (``GRISTMILL_TEST_POSTGRES``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``: the server whose databases
are created and dropped) and points ``GRISTMILL_DATABASE_URL`` at it, so the library and
every ``gristmill`` subprocess the test starts use it. Unset (or ``sqlite``): the SQLite
file in each test's home folder, as always.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gristmill.catalog import CatalogDatabase, SqliteDatabase

BACKEND = os.environ.get("GRISTMILL_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
ADMIN_URL = os.environ.get("GRISTMILL_TEST_POSTGRES",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
ON_POSTGRES = BACKEND in ("postgresql", "postgres")


def server_reason() -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it can."""
    import psycopg

    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {ADMIN_URL}: {' '.join(str(exc).split())}"


def _create_database() -> str:
    import psycopg

    name = f"gm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop a database :func:`fresh_postgres_database` or :func:`url_for` made (the
    connections still open to it, a test's subprocess's for one, are ended)."""
    import psycopg

    from gristmill.catalog.postgres import close_pools

    close_pools(url)  # those a test left open in this process
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the server: its URL; dropped afterwards."""
    url = _create_database()
    try:
        yield url
    finally:
        drop_database(url)


# A test may use several knowledge bases (a reference run and a crashed one, say): each
# home gets a database of its own, the first one the test's (GRISTMILL_DATABASE_URL, what
# the library reads in the test's own process), the others made on first use.
_test_default: str | None = None
_by_path: dict[Path, str] = {}
_made_by_test: list[str] = []
made_outside_tests: list[str] = []  # by module fixtures: dropped at the session's end


@contextmanager
def databases_of_test() -> Iterator[str]:
    """The current test's database (its URL) and any more :func:`url_for` makes for it;
    all dropped at its end."""
    global _test_default
    with fresh_postgres_database() as url:
        _test_default = url
        try:
            yield url
        finally:
            _test_default = None
            for path in [p for p, u in _by_path.items() if u == url or u in _made_by_test]:
                del _by_path[path]
            while _made_by_test:
                drop_database(_made_by_test.pop())


def url_for(sqlite_path: Path) -> str:
    """The PostgreSQL database standing for the SQLite file ``sqlite_path`` in this test."""
    key = sqlite_path.resolve()
    url = _by_path.get(key)
    if url is None:
        if _test_default is not None and _test_default not in _by_path.values():
            url = _test_default
        else:
            url = _create_database()
            (_made_by_test if _test_default is not None else made_outside_tests).append(url)
        _by_path[key] = url
    return url


def open_catalog(sqlite_path: Path) -> CatalogDatabase:
    """The test's catalog: its PostgreSQL database when the suite runs on PostgreSQL,
    else the SQLite file at ``sqlite_path``."""
    if ON_POSTGRES:
        from gristmill.catalog.postgres import PostgresDatabase

        return PostgresDatabase(url_for(sqlite_path))
    return SqliteDatabase(sqlite_path)


def query(home: Path, sql: str, params: Any = (), *,
          missing_ok: bool = False) -> list[tuple[Any, ...]]:
    """Run one statement (SQLite-style placeholders) on the catalog of the knowledge base
    at ``home``, as another process would (a connection of its own, committed data
    only); its rows. ``missing_ok``: no rows, rather than an error, before the catalog
    and its tables exist."""
    if ON_POSTGRES:
        import psycopg

        from gristmill.catalog.postgres import to_pyformat

        with psycopg.connect(url_for(home / "gristmill.db"), autocommit=True) as conn:
            try:
                return [tuple(row) for row in conn.execute(to_pyformat(sql), params)]
            except psycopg.errors.UndefinedTable:
                if missing_ok:
                    return []
                raise
    import sqlite3

    path = home / "gristmill.db"
    if missing_ok and not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(row) for row in conn.execute(sql, params)]
    except sqlite3.OperationalError:
        if missing_ok:  # the schema is still being created
            return []
        raise
    finally:
        conn.close()


def group_concat(expression: str) -> str:
    """SQL joining ``expression`` over a group with spaces, in the backend's dialect."""
    return (f"string_agg({expression}, ' ')" if ON_POSTGRES
            else f"group_concat({expression}, ' ')")

"""Where a BatchWriter's batches go: PostgreSQL (COPY over a pool) or SQLite (one writer).

Each store writes one batch in one transaction, turns "the database is unavailable"
into :class:`~gristmill.errors.StoreBusy` (retried) and lets an error about the data
itself propagate (the batch is bisected), and keeps the dead-letter table.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from gristmill.errors import StoreBusy, StoreError, translate_store_error

Row = dict[str, Any]

# Read at call time (tests shorten them).
_SQLITE_BUSY_TIMEOUT = 5.0  # seconds SQLite itself waits for another writer's lock
_PG_CONNECT_TIMEOUT = 10.0  # opening the pool: fail fast on a wrong URL
_PG_CHECKOUT_TIMEOUT = 10.0  # waiting for a free pooled connection
_ERROR_CHARS = 2000


class _Store(Protocol):
    backend: str
    writers: int  # flusher threads (and so connections) the store allows

    def write(self, table: str, rows: Sequence[Row], *, bulk: bool) -> None: ...
    def write_dead(self, records: Sequence[tuple[str, Row, BaseException]]) -> None: ...
    def close(self) -> None: ...


def _by_columns(rows: Sequence[Row]) -> list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Consecutive rows with the same columns, as (columns, value tuples), order kept."""
    groups: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = []
    columns: tuple[str, ...] | None = None
    values: list[tuple[Any, ...]] = []
    for row in rows:
        keys = tuple(row)
        if keys != columns:
            columns, values = keys, []
            groups.append((keys, values))
        values.append(tuple(row.values()))
    return groups


def _dead_record(table: str, row: Row, error: BaseException) -> tuple[str, str, str, str]:
    return (table, json.dumps(row, default=str, ensure_ascii=False),
            type(error).__name__, str(error)[:_ERROR_CHARS])


class _PostgresStore:
    """psycopg 3: a pool of at most ``pool_size`` autocommit connections."""

    backend = "postgresql"

    def __init__(self, url: str, pool_size: int, dead_table: str) -> None:
        import psycopg
        from psycopg import sql
        from psycopg_pool import ConnectionPool, PoolTimeout

        self._sql = sql
        self._unavailable = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
        self._duplicate = (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation)
        self.writers = pool_size
        self._dead_table = self._name(dead_table)
        self._dead_ready = False
        self._ddl_lock = threading.Lock()
        self._statements: dict[tuple[str, tuple[str, ...], bool], Any] = {}
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, timeout=_PG_CHECKOUT_TIMEOUT,
            kwargs={"autocommit": True, "application_name": "gristmill-batch-writer"})
        try:
            self._pool.open(wait=True, timeout=_PG_CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            self._pool.close()
            where = psycopg.conninfo.conninfo_to_dict(url)
            raise StoreError(f"cannot connect to PostgreSQL at {where.get('host', 'localhost')}"
                             f":{where.get('port', 5432)}/{where.get('dbname', '')} within "
                             f"{_PG_CONNECT_TIMEOUT:.0f} s") from exc

    def _name(self, table: str) -> Any:
        return self._sql.Identifier(*table.split("."))  # "schema.table" works too

    def _statement(self, table: str, columns: tuple[str, ...], bulk: bool) -> Any:
        key = (table, columns, bulk)
        statement = self._statements.get(key)
        if statement is None:
            sql = self._sql
            names = sql.SQL(", ").join(map(sql.Identifier, columns))
            if bulk:
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(self._name(table), names)
            else:
                marks = sql.SQL(", ").join(sql.Placeholder() * len(columns))
                statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    self._name(table), names, marks)
            self._statements[key] = statement
        return statement

    def write(self, table: str, rows: Sequence[Row], *, bulk: bool) -> None:
        """One transaction: COPY for a whole batch, row-by-row INSERTs for a bisected part."""
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                for columns, values in _by_columns(rows):
                    statement = self._statement(table, columns, bulk)
                    if bulk:
                        with cur.copy(statement) as copy:
                            for value in values:
                                copy.write_row(value)
                    else:
                        # One statement per row, not executemany: its pipeline mode
                        # logs an "aborted" warning per bisection step of a bad batch.
                        for value in values:
                            cur.execute(statement, value)
        except self._unavailable as exc:
            raise StoreBusy(f"PostgreSQL unavailable: {_describe_error(exc)}") from exc

    def write_dead(self, records: Sequence[tuple[str, Row, BaseException]]) -> None:
        sql = self._sql
        try:
            self._create_dead_table()
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} (table_name, row_data, error_type, error) "
                            "VALUES (%s, %s, %s, %s)").format(self._dead_table),
                    [_dead_record(*record) for record in records])
        except self._unavailable as exc:
            raise StoreBusy(f"PostgreSQL unavailable: {_describe_error(exc)}") from exc

    def _create_dead_table(self) -> None:
        with self._ddl_lock:
            if self._dead_ready:
                return
            try:
                with self._pool.connection() as conn:
                    # json, not jsonb: it keeps the row exactly as sent, "\u0000" included.
                    conn.execute(self._sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, "
                        "table_name text NOT NULL, row_data json NOT NULL, "
                        "error_type text NOT NULL, error text NOT NULL, "
                        "failed_at timestamptz NOT NULL DEFAULT now())"
                    ).format(self._dead_table))
            except self._duplicate:
                pass  # another process created it at the same moment
            self._dead_ready = True

    def close(self) -> None:
        self._pool.close()


class _SqliteStore:
    """One connection, one writer: SQLite allows no more."""

    backend = "sqlite"
    writers = 1

    def __init__(self, path: str, dead_table: str) -> None:
        self._dead_table = dead_table
        self._dead_ready = False
        try:
            # Used by the one flusher thread only, after this constructor returns.
            self._conn = sqlite3.connect(path, timeout=_SQLITE_BUSY_TIMEOUT,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss
        except sqlite3.Error as exc:
            raise translate_store_error(exc) from exc

    def write(self, table: str, rows: Sequence[Row], *, bulk: bool) -> None:
        """One ``BEGIN IMMEDIATE`` transaction of ``executemany`` (``bulk`` is moot)."""
        self._transaction([(
            f"INSERT INTO {_quote(table)} ({', '.join(map(_quote, columns))}) "
            f"VALUES ({', '.join('?' * len(columns))})", values)
            for columns, values in _by_columns(rows)])

    def write_dead(self, records: Sequence[tuple[str, Row, BaseException]]) -> None:
        if not self._dead_ready:
            self._transaction([(
                f"CREATE TABLE IF NOT EXISTS {_quote(self._dead_table)} ("
                "id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, row_data TEXT NOT NULL, "
                "error_type TEXT NOT NULL, error TEXT NOT NULL, failed_at TEXT NOT NULL "
                "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))", [()])])
            self._dead_ready = True
        self._transaction([(
            f"INSERT INTO {_quote(self._dead_table)} (table_name, row_data, error_type, "
            "error) VALUES (?, ?, ?, ?)", [_dead_record(*record) for record in records])])

    def _transaction(self, statements: list[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement, values in statements:
                    conn.executemany(statement, values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            translated = translate_store_error(exc)
            if isinstance(translated, StoreBusy):
                raise translated from exc
            raise  # the data's fault (a constraint, a missing table): bisect and dead-letter

    def close(self) -> None:
        self._conn.close()


def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:_ERROR_CHARS] if text else type(exc).__name__


def _open_store(target: str | os.PathLike[str], pool_size: int, dead_table: str) -> _Store:
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        return _PostgresStore(text, pool_size, dead_table)
    return _SqliteStore(text, dead_table)


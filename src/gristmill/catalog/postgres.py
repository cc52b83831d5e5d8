"""The PostgreSQL catalog: what :class:`~gristmill.catalog.sqlite.SqliteDatabase` offers for
SQLite, over a pool of psycopg 3 connections.

SQL is written once, with SQLite's placeholders (``?`` and ``:name``); each distinct
statement is translated once to psycopg's (``%s``, ``%(name)s``, a literal ``%`` doubled).

Each process keeps one pool per database URL, of at most ``pool_size`` connections,
shared by every :class:`PostgresDatabase` it opens on that URL (the driver's, discovery's
and a watch's feeder thread), and one more of read-only connections where searches run.
A statement outside a transaction borrows a connection for that statement alone
(autocommit) and returns its rows fully fetched. Inside :meth:`PostgresDatabase.transaction`
every statement the same thread runs on that URL, through the transaction or through
``conn``, goes to the transaction's connection: reads see the transaction's own writes,
and a thread never waits for a second connection while holding one.

A server restart or failover is waited out (:func:`~gristmill.batching.policy.retry_busy`,
for ``store_retry_seconds``): statements outside a transaction are run again, and
:meth:`PostgresDatabase.transact` runs a whole transaction again. A pooled connection is
checked before it is lent, so the first statement after a restart does not meet a
connection the restart broke.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from gristmill.batching.policy import retry_busy
from gristmill.catalog.migrations import postgres as pg_migrations
from gristmill.errors import StoreError, translate_store_error

__all__ = [
    "PostgresDatabase",
    "PostgresTransaction",
    "Rows",
    "close_pools",
    "display_url",
    "to_pyformat",
]

Params = Sequence[Any] | Mapping[str, Any]
T = TypeVar("T")

_CONNECT_TIMEOUT = 10  # seconds to open a connection: a wrong host fails fast
_CHECKOUT_TIMEOUT = 30.0  # seconds a thread waits for a free pooled connection
# While a thread waits that long, it asks every second whether the server is there
# at all: an outage is then told apart from a busy pool, and waited out by the retry
# policy, which asks the pool again and so makes it try to reconnect at once.
_PROBE_EVERY = 1.0
# The pool's own reconnection attempts back off (1, 2, 4 ... s); capped this short, so
# that a server back after a minute is not left waiting for an attempt due a minute later.
_RECONNECT_SECONDS = 5.0

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The pool logs a warning for each failed reconnection attempt. With no handler set up
# for it, Python would print each on stderr, over the terminal's progress; an outage is
# logged once by the retry policy instead (an application's own handlers still get them).
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


@functools.lru_cache(maxsize=4096)
def to_pyformat(sql: str) -> str:
    """``?`` -> ``%s``, ``:name`` -> ``%(name)s``, ``%`` -> ``%%``; string literals,
    quoted names, comments and ``::`` casts are left alone (``%`` is doubled even in a
    literal: psycopg reads placeholders everywhere)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # '' or "" inside
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i:end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        elif ch == ":":
            if sql.startswith("::", i):
                out.append("::")
                i += 2
                continue
            match = _NAME.match(sql, i + 1)
            if match is None:
                out.append(":")
                i += 1
            else:
                out.append(f"%({match.group()})s")
                i = match.end()
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def display_url(url: str) -> str:
    """``url`` with its password (in the user part or as a parameter) masked."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = "&".join(
        f"{key}=***" if key == "password" else f"{key}={value}"
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class Rows:
    """The fully fetched result of one statement, read like a DB-API cursor."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None."""
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        """Up to ``size`` more rows."""
        part = self._rows[self._next:self._next + size]
        self._next += len(part)
        return part

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row not yet read."""
        part = self._rows[self._next:]
        self._next = len(self._rows)
        return part

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


class PostgresTransaction:
    """What ``transaction()`` yields: SQLite-style SQL on the transaction's connection.

    ``raw`` is that ``psycopg.Connection`` itself, for what only psycopg offers
    (``raw.cursor().copy(...)`` for ``COPY``); SQL given to it is not translated.
    """

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> psycopg.Cursor[Any]:
        """Run one statement; the cursor holds its rows."""
        return self.raw.execute(to_pyformat(sql), params)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> psycopg.Cursor[Any]:
        """Run one statement for each set of parameters (``rowcount`` is their total)."""
        cursor = self.raw.cursor()
        cursor.executemany(to_pyformat(sql), seq_of_params)
        return cursor


class _Pool:
    """A process's pool for one URL: shared by every database object opened on it."""

    def __init__(self, url: str, size: int, readonly: bool) -> None:
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "gristmill",
                                  "connect_timeout": _CONNECT_TIMEOUT}
        if readonly:
            # Added to the URL's own options (a search_path, say), not in their place.
            given = conninfo_to_dict(url).get("options") or ""
            kwargs["options"] = f"{given} -c default_transaction_read_only=on".strip()
        self.url = url
        self.kwargs = kwargs
        # check: a connection a server restart broke is replaced before it is lent.
        self.pool = ConnectionPool(url, min_size=1, max_size=size, kwargs=kwargs, open=False,
                                   timeout=_CHECKOUT_TIMEOUT, name="gristmill",
                                   check=ConnectionPool.check_connection,
                                   reconnect_timeout=_RECONNECT_SECONDS)
        self.local = threading.local()  # .conn: this thread's transaction connection
        self.users = 0

    def in_transaction(self) -> psycopg.Connection[Any] | None:
        return getattr(self.local, "conn", None)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, checked alive, for the ``with`` block.

        Raises:
            StoreUnavailable: the server cannot be reached.
            StoreBusy: every connection stayed busy for ``_CHECKOUT_TIMEOUT`` seconds.
        """
        conn = self.checkout()
        try:
            with conn:
                yield conn
        finally:
            self.pool.putconn(conn)

    def checkout(self) -> psycopg.Connection[Any]:
        """A pooled connection, checked alive: give it back with ``pool.putconn``."""
        deadline = time.monotonic() + _CHECKOUT_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                return self.pool.getconn(timeout=max(0.01, min(_PROBE_EVERY, left)))
            except PoolTimeout as exc:
                down = self._unreachable()
                if down is not None:
                    raise translate_store_error(down) from down
                if left <= _PROBE_EVERY:
                    raise translate_store_error(exc) from exc

    def _unreachable(self) -> psycopg.Error | None:
        """Why a fresh connection to the server fails now, or None when it succeeds."""
        try:
            psycopg.connect(self.url, **{**self.kwargs, "connect_timeout": 3}).close()
        except psycopg.Error as exc:
            return exc
        return None


_POOLS: dict[tuple[str, int, bool], _Pool] = {}
_POOLS_LOCK = threading.Lock()
_ORPHANED: list[_Pool] = []


def _forget_pools_after_fork() -> None:
    # A forked child must neither use nor close its parent's connections: closing one
    # would end the parent's session on the shared socket. It opens pools of its own.
    global _POOLS_LOCK
    _ORPHANED.extend(_POOLS.values())
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


class _Autocommit:
    """``db.conn``: each statement on a borrowed connection (run again while the server
    is away, see the module docstring), or on this thread's transaction connection when
    it has one (the transaction is retried as a whole, not the statement)."""

    def __init__(self, pool: _Pool, db: PostgresDatabase) -> None:
        self._pool = pool
        self._db = db

    def execute(self, sql: str, params: Params = ()) -> Rows | psycopg.Cursor[Any]:
        """Run one statement; returns a cursor-like holding every row."""
        conn = self._pool.in_transaction()
        if conn is not None:
            return conn.execute(to_pyformat(sql), params)

        def once() -> Rows:
            with self._pool.connection() as conn, conn.cursor() as cursor:
                cursor.execute(to_pyformat(sql), params)
                rows = cursor.fetchall() if cursor.description is not None else []
                return Rows(rows, cursor.rowcount)

        return self._db.retrying(once)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Rows | psycopg.Cursor[Any]:
        """Run one statement for each set of parameters."""
        conn = self._pool.in_transaction()
        if conn is not None:
            return PostgresTransaction(conn).executemany(sql, seq_of_params)
        rows = list(seq_of_params)  # an iterator could not be run a second time

        def once() -> Rows:
            with self._pool.connection() as conn, conn.cursor() as cursor:
                cursor.executemany(to_pyformat(sql), rows)
                return Rows([], cursor.rowcount)

        return self._db.retrying(once)


class PostgresDatabase:
    """A PostgreSQL catalog, used as :class:`~gristmill.catalog.sqlite.SqliteDatabase` is.

    Opening one checks the connection and applies the migrations this database lacks
    (``readonly`` ones do neither migrations nor writes).

    Raises:
        StoreError: the server cannot be reached, or rejects the name or password
            (:class:`~gristmill.errors.StoreBusy` when it is only unreachable), or the
            database holds a newer schema than this gristmill knows.
    """

    backend = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 3, readonly: bool = False,
                 retry_seconds: float | None = None) -> None:
        self.url = url
        self.readonly = readonly
        self.display_name = display_url(url)
        #: How long an unreachable server is waited out (None: the policy's default).
        self.retry_seconds = retry_seconds
        key = (url, pool_size, readonly)
        with _POOLS_LOCK:
            shared = _POOLS.get(key)
            if shared is None:
                shared = _Pool(url, pool_size, readonly)
                self._first_open(shared)
                _POOLS[key] = shared
            shared.users += 1
        self._key = key
        self._shared: _Pool | None = shared
        self.conn = _Autocommit(shared, self)

    def _first_open(self, shared: _Pool) -> None:
        """Connect once directly, so a wrong URL fails at once with the server's own
        reason (a pool would retry in the background until its timeout), migrate, then
        open the pool."""
        try:
            with psycopg.connect(self.url, **shared.kwargs) as conn:
                if self.readonly:
                    pg_migrations.check_version(conn, self.display_name)
                else:
                    pg_migrations.migrate(conn, self.display_name)
            shared.pool.open(wait=False)
        except psycopg.Error as exc:
            raise translate_store_error(exc) from exc

    @property
    def _pool(self) -> _Pool:
        if self._shared is None:
            raise StoreError(f"{self.display_name}: this database object was closed")
        return self._shared

    def retrying(self, call: Callable[[], T]) -> T:
        """``call()`` (a read, or a whole transaction), run again while the server is
        away or the database busy; see :func:`~gristmill.batching.policy.retry_busy`.
        psycopg's errors come out as :class:`~gristmill.errors.StoreError`."""

        def once() -> T:
            try:
                return call()
            except (psycopg.Error, PoolTimeout) as exc:
                raise translate_store_error(exc, f"the PostgreSQL server {self.display_name}"
                                            ) from exc

        return retry_busy(once, outage_seconds=self.retry_seconds, where=self.display_name)

    def transact(self, work: Callable[[PostgresTransaction], T]) -> T:
        """Run ``work`` in a transaction, and again, whole, when the transaction failed
        for a lost deadlock, a busy or unreachable server (its writes were rolled back).
        Inside another transaction it is part of that one (which its caller retries)."""
        if self._pool.in_transaction() is not None:
            with self.transaction() as txn:
                return work(txn)

        def attempt() -> T:
            with self.transaction() as txn:
                return work(txn)

        return self.retrying(attempt)

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """``BEGIN`` ... ``COMMIT`` on one pooled connection, rolled back on any
        exception; psycopg's errors come out as :class:`~gristmill.errors.StoreError`.
        Not retried: :meth:`transact` is, or the caller's own policy (the batcher's)."""
        shared = self._pool
        current = shared.in_transaction()
        if current is not None:
            # Nested (a migration step reading the version, say): a savepoint on the
            # connection this thread already holds.
            with current.transaction():
                yield PostgresTransaction(current)
            return
        # A server away is waited out before BEGIN (so a JobStore or index write made
        # during a restart goes through); one lost after BEGIN fails the transaction.
        conn = self.retrying(shared.checkout)
        try:
            with conn:
                shared.local.conn = conn
                try:
                    with conn.transaction():
                        yield PostgresTransaction(conn)
                finally:
                    shared.local.conn = None
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate_store_error(exc, f"the PostgreSQL server {self.display_name}"
                                        ) from exc
        finally:
            shared.pool.putconn(conn)

    def close(self) -> None:
        """Give this object's share of the pool back; the last user closes it."""
        shared, self._shared = self._shared, None
        if shared is None:
            return
        with _POOLS_LOCK:
            shared.users -= 1
            if shared.users > 0:
                return
            if _POOLS.get(self._key) is shared:
                del _POOLS[self._key]
        shared.pool.close()

    @property
    def schema_version(self) -> int:
        """The number of migrations applied."""
        conn = self._pool.in_transaction()
        if conn is not None:
            return pg_migrations.version(conn)

        def read() -> int:
            with self._pool.connection() as conn:
                return pg_migrations.version(conn)

        return self.retrying(read)

    def size_bytes(self) -> int:
        """The database's size on the server (``pg_database_size``)."""
        row = self.conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def server_version(self) -> str:
        """The server's version, as ``SHOW server_version`` gives it."""
        row = self.conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.display_name!r}, readonly={self.readonly})"


def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of ``url`` only, when given), whoever still uses
    them: at exit, or after a test that left a database open."""
    with _POOLS_LOCK:
        doomed = [key for key in _POOLS if url is None or key[0] == url]
        pools = [_POOLS.pop(key) for key in doomed]
    for shared in pools:
        shared.users = 0
        shared.pool.close()


# Sessions end cleanly at exit, instead of as broken connections in the server's log.
atexit.register(close_pools)

"""BatchWriter: batched, pooled, transactional writes that survive kill -9 once acknowledged.

Every test runs against a real store: a fresh PostgreSQL database (created and dropped
around the test) and a fresh SQLite file. PostgreSQL is the local server at
``GRISTMILL_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
without it the PostgreSQL cases are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import gristmill.batching as batching
import gristmill.batching.policy as policy
import gristmill.batching.stores as stores
from gristmill.batching import BatchWriter, DeadLettered, QueueFull, Ticket, WriterClosed
from gristmill.errors import ConfigError, StoreBusy, StoreError

ADMIN_URL = os.environ.get("GRISTMILL_TEST_POSTGRES",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
TABLE = "CREATE TABLE t (id integer PRIMARY KEY, n integer NOT NULL CHECK (n >= 0), note text)"


def _postgres_reason() -> str | None:
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {ADMIN_URL}: {' '.join(str(exc).split())}"


class Store:
    """One fresh database of either backend, with a way to look inside it."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own (autocommit) and return its rows."""
        if self.backend == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(statement)
                return cur.fetchall() if cur.description else []
        conn = sqlite3.connect(self.url, isolation_level=None)
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()

    def count(self, table: str = "t") -> int:
        return self.sql(f"SELECT count(*) FROM {table}")[0][0]

    def hold_write_lock(self) -> WriteLock:
        """Block every writer of table t until the lock's ``release()``."""
        return WriteLock(self)


class WriteLock:
    """A transaction holding table t's write lock, from another connection."""

    def __init__(self, store: Store) -> None:
        self._conn: psycopg.Connection[Any] | sqlite3.Connection
        if store.backend == "postgresql":
            self._conn = psycopg.connect(store.url)
            self._conn.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        else:
            self._conn = sqlite3.connect(store.url, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if isinstance(self._conn, sqlite3.Connection):
            self._conn.execute("ROLLBACK")
        else:
            self._conn.rollback()
        self._conn.close()


@pytest.fixture
def postgres() -> Iterator[Store]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    reason = _postgres_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"gm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            store = Store("postgresql", ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
            store.sql(TABLE)
            yield store
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite(tmp_path: Path) -> Store:
    """A SQLite file of this test's own."""
    store = Store("sqlite", str(tmp_path / "writes.db"))
    store.sql("PRAGMA journal_mode=WAL")
    store.sql(TABLE)
    return store


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each backend in turn."""
    return request.getfixturevalue(request.param)


def rows(ids: range) -> list[dict[str, Any]]:
    return [{"id": i, "n": i, "note": f"row {i}"} for i in ids]


def test_rows_commit_in_transactions_of_max_rows(store: Store) -> None:
    """250 rows with max_rows=100 are written by exactly three transactions."""
    with BatchWriter(store.url, max_rows=100, max_delay=60, handle_signals=False) as writer:
        tickets = writer.insert_many("t", rows(range(250)))
        assert writer.flush(timeout=30)
        assert all(ticket.exception() is None for ticket in tickets)
        assert writer.stats()["flushes"] == 3
        assert writer.stats()["rows"] == 250
    assert store.count() == 250
    if store.backend == "postgresql":
        # Rows inserted by one transaction share its xmin: count the transactions.
        assert store.sql("SELECT count(DISTINCT xmin::text) FROM t") == [(3,)]


def test_a_partial_batch_is_flushed_after_max_delay(store: Store) -> None:
    """Fewer than max_rows rows are written once the oldest has waited max_delay."""
    with BatchWriter(store.url, max_rows=1000, max_delay=0.5, handle_signals=False) as writer:
        started = time.monotonic()
        tickets = writer.insert_many("t", rows(range(3)))
        assert store.count() == 0  # not yet: the queue waits for more rows or the delay
        assert tickets[-1].wait(timeout=10)
        assert time.monotonic() - started >= 0.5
        assert store.count() == 3
        assert writer.stats()["flushes"] == 1
        called: list[Ticket] = []
        tickets[0].add_done_callback(called.append)  # already done: called at once
        assert called == [tickets[0]]


def test_bad_rows_are_dead_lettered_and_the_rest_commit(store: Store) -> None:
    """Rows breaking a CHECK, a NOT NULL and a unique key go to the dead-letter table."""
    batch = rows(range(100))
    batch[20]["n"] = -1
    batch[40]["n"] = None
    batch.append({"id": 70, "n": 1, "note": "duplicate"})
    with BatchWriter(store.url, max_rows=500, max_delay=60, handle_signals=False) as writer:
        tickets = writer.insert_many("t", batch)
        writer.flush(timeout=30)
        rejected = {}
        for row, ticket in zip(batch, tickets, strict=True):
            error = ticket.exception()
            if error is not None:
                assert isinstance(error, DeadLettered)
                with pytest.raises(DeadLettered):
                    ticket.result()
                rejected[row["note"]] = error
        assert writer.stats()["dead"] == 3
    assert sorted(rejected) == ["duplicate", "row 20", "row 40"]
    assert store.count() == 98
    assert store.sql("SELECT note FROM t WHERE id = 70") == [("row 70",)]
    dead = store.sql("SELECT table_name, row_data, error_type, error "
                     "FROM gristmill_dead_letters ORDER BY id")
    assert len(dead) == 3
    by_note = {}
    for table, data, error_type, error in dead:
        row = data if isinstance(data, dict) else json.loads(data)
        assert table == "t" and error_type
        by_note[row["note"]] = (row, error.lower())
    assert by_note["row 20"][0] == {"id": 20, "n": -1, "note": "row 20"}
    assert "check" in by_note["row 20"][1]
    assert "null" in by_note["row 40"][1]
    assert "unique" in by_note["duplicate"][1] or "duplicate" in by_note["duplicate"][1]


def test_a_full_queue_blocks_producers_until_there_is_room(store: Store) -> None:
    """With max_queue rows waiting, insert blocks (or raises QueueFull) and then resumes."""
    held = store.hold_write_lock()
    inserted: list[Ticket] = []
    with BatchWriter(store.url, max_rows=5, max_queue=10, max_delay=0.05,
                     handle_signals=False) as writer:

        def produce() -> None:
            for row in rows(range(30)):
                inserted.append(writer.insert("t", row))

        producer = threading.Thread(target=produce)
        producer.start()
        deadline = time.monotonic() + 60
        while len(inserted) < 10:  # the queue fills, however slowly the thread runs
            assert time.monotonic() < deadline, "the producer never filled the queue"
            time.sleep(0.01)
        time.sleep(0.2)  # time for an 11th insert, were there room
        assert producer.is_alive()
        assert len(inserted) == 10  # the 11th insert is waiting for room
        stats = writer.stats()
        assert stats["queued"] == 10 and stats["queue_depth"] == {"t": 10}
        with pytest.raises(QueueFull):
            writer.insert("t", {"id": 99, "n": 1}, timeout=0.1)
        assert writer.flush(timeout=0.1) is False  # nothing can commit while locked
        held.release()  # release the lock: the flushers drain, the producer resumes
        producer.join(timeout=30)
        assert not producer.is_alive()
        writer.flush(timeout=30)
        assert all(ticket.exception() is None for ticket in inserted)
    assert store.count() == 30


def test_a_store_that_stays_locked_fails_tickets_with_store_busy(
        sqlite: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """When retries run out the ticket says StoreBusy; the row is in neither table."""
    monkeypatch.setattr(stores, "_SQLITE_BUSY_TIMEOUT", 0.01)
    monkeypatch.setattr(policy, "_BUSY_RETRIES", 2)
    monkeypatch.setattr(policy, "_BUSY_BASE_DELAY", 0.0)
    held = sqlite.hold_write_lock()
    with BatchWriter(sqlite.url, max_delay=60, handle_signals=False) as writer:
        ticket = writer.insert("t", {"id": 1, "n": 1})
        writer.flush(timeout=30)
        assert isinstance(ticket.exception(), StoreBusy)
        assert writer.stats()["failed"] == 1
        held.release()
        retry = writer.insert("t", {"id": 1, "n": 1})  # the caller's own retry
        writer.flush(timeout=30)
        retry.result(timeout=0)
    assert sqlite.count() == 1
    assert sqlite.sql("SELECT name FROM sqlite_master WHERE name = 'gristmill_dead_letters'") \
        == []


def test_connections_never_exceed_pool_size(postgres: Store) -> None:
    """Four producers at full speed use at most pool_size connections (pg_stat_activity)."""
    name = postgres.url.rsplit("/", 1)[1]
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            while not done.is_set():
                seen.append(admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    (name,)).fetchone()[0])
                time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with BatchWriter(postgres.url, max_rows=200, pool_size=2,
                         handle_signals=False) as writer:
            producers = [threading.Thread(target=writer.insert_many,
                                          args=("t", rows(range(k, 40_000, 4))))
                         for k in range(4)]
            for producer in producers:
                producer.start()
            for producer in producers:
                producer.join()
            writer.flush(timeout=60)
    finally:
        done.set()
        sampler.join()
    assert postgres.count() == 40_000
    assert 1 <= max(seen) <= 2, seen


def test_settings_and_use_after_close_fail_clearly(sqlite: Store) -> None:
    """A bad setting is a ConfigError naming it; insert after close() is WriterClosed."""
    with pytest.raises(ConfigError, match="max_rows"):
        BatchWriter(sqlite.url, max_rows=0)
    with pytest.raises(ConfigError, match="max_delay"):
        BatchWriter(sqlite.url, max_delay=0)
    writer = BatchWriter(sqlite.url, handle_signals=False)
    writer.close()
    with pytest.raises(WriterClosed):
        writer.insert("t", {"id": 1, "n": 1})


def test_an_unreachable_postgresql_fails_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL nothing answers at is a StoreError when the writer opens, not a silent queue."""
    monkeypatch.setattr(stores, "_PG_CONNECT_TIMEOUT", 0.5)
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        BatchWriter("postgresql://postgres@127.0.0.1:9/nothing", handle_signals=False)


def test_signal_handlers_are_installed_and_given_back(sqlite: Store) -> None:
    """SIGTERM/SIGINT handlers are ours while open (unless opted out) and restored on close."""
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    with BatchWriter(sqlite.url, handle_signals=False):
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with BatchWriter(sqlite.url):
        assert signal.getsignal(signal.SIGTERM) != before[0]
        assert signal.getsignal(signal.SIGINT) != before[1]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_stats_and_prometheus_metrics(sqlite: Store) -> None:
    """The snapshot counts what was written; the registry exposes it per writer."""
    registry = CollectorRegistry()
    with BatchWriter(sqlite.url, max_rows=4, max_delay=60, handle_signals=False,
                     name="events") as writer:
        batching.register_metrics(registry, writer)
        writer.insert_many("t", rows(range(10)))
        writer.flush(timeout=30)
        stats = writer.stats()
        text = generate_latest(registry).decode()
    assert (stats["flushes"], stats["rows"], stats["dead"], stats["queued"]) == (3, 10, 0, 0)
    assert stats["flush_rows_p50"] == 4 and stats["latency_p99"] >= stats["latency_p50"] > 0
    assert stats["rows_per_second"] > 0
    assert 'gristmill_writer_rows_total{writer="events"} 10.0' in text
    assert 'gristmill_writer_flushes_total{writer="events"} 3.0' in text
    assert 'gristmill_writer_commit_latency_seconds{quantile="0.99",writer="events"}' in text
    assert "gristmill_writer_flush_seconds" in text


# -- shutdown and crashes, in child processes ------------------------------------------

CHILD_SHUTDOWN = textwrap.dedent("""
    import sys, time
    from gristmill.batching import BatchWriter
    url, how = sys.argv[1], sys.argv[2]
    writer = BatchWriter(url, max_rows=100_000, max_delay=600)
    writer.insert_many("t", [{"id": i, "n": i} for i in range(500)])
    print("queued", flush=True)
    if how == "exit":
        sys.stdin.readline()
        sys.exit(0)  # no close(): the atexit hook flushes
    time.sleep(60)
""")


@pytest.mark.parametrize("how", ["sigterm", "sigint", "exit"])
def test_clean_shutdown_flushes_what_was_enqueued(store: Store, how: str) -> None:
    """SIGTERM, SIGINT and a normal exit all write the un-flushed rows first."""
    with subprocess.Popen([sys.executable, "-c", CHILD_SHUTDOWN, store.url, how],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "queued\n"
            assert store.count() == 0  # not flushed yet: max_rows and max_delay are far off
            if how == "exit":
                child.stdin.write("go\n")
                child.stdin.flush()
            else:
                child.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
            code = child.wait(timeout=30)
        finally:
            child.kill()
    # After flushing, the previous handler acts: the default SIGTERM action, or Python's
    # KeyboardInterrupt, which (uncaught) ends the process by SIGINT.
    assert code == {"sigterm": -signal.SIGTERM, "sigint": -signal.SIGINT, "exit": 0}[how]
    assert store.count() == 500


CHILD_BUSY = textwrap.dedent("""
    import itertools, sys
    from gristmill.batching import BatchWriter
    writer = BatchWriter(sys.argv[1], max_rows=1000, max_delay=600, max_queue=int(sys.argv[2]))
    for i in itertools.count():
        writer.insert("t", {"id": i, "n": i})
        if i == 2000:
            print("busy", flush=True)
""")


def test_sigterm_during_a_busy_insert_loop_writes_every_enqueued_row(store: Store) -> None:
    """A signal that lands while the main thread holds the writer's lock (or waits for
    room) neither deadlocks nor drops a row: the ids in the table are exactly 0..max."""
    for max_queue in (2000, 1_000_000, 1_000_000):  # often waiting for room; never
        with subprocess.Popen([sys.executable, "-c", CHILD_BUSY, store.url, str(max_queue)],
                              stdout=subprocess.PIPE, text=True) as child:
            try:
                assert child.stdout is not None
                assert child.stdout.readline() == "busy\n"
                time.sleep(random.uniform(0.0, 0.3))
                child.send_signal(signal.SIGTERM)
                assert child.wait(timeout=30) == -signal.SIGTERM
            finally:
                child.kill()
        count, low, high = store.sql("SELECT count(*), min(id), max(id) FROM t")[0]
        assert (count, low) == (high + 1, 0)
        store.sql("DELETE FROM t")


CHILD_ACKS = textwrap.dedent("""
    import itertools, os, sys
    from gristmill.batching import BatchWriter
    writer = BatchWriter(sys.argv[1], max_rows=50, max_delay=0.02, max_queue=2000)

    def ack(ticket, i):
        if ticket.exception() is None:  # committed: durable from here on
            os.write(1, b"%d\\n" % i)

    for i in itertools.count():
        writer.insert("k", {"id": i}).add_done_callback(lambda t, i=i: ack(t, i))
""")


def test_kill_9_loses_no_acknowledged_row(store: Store) -> None:
    """A child printing each id once its ticket completes is SIGKILLed at random moments:
    every printed id is in the table, and no id is there twice."""
    store.sql("CREATE TABLE k (id bigint NOT NULL)")  # no key: duplicates would show
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    for _ in range(3):
        with subprocess.Popen([sys.executable, "-c", CHILD_ACKS, store.url],
                              stdout=subprocess.PIPE) as child:
            try:
                assert child.stdout is not None
                first = child.stdout.readline()
                assert first.endswith(b"\n"), "the child acknowledged nothing"
                time.sleep(rng.uniform(0.0, 0.5))
            finally:
                child.kill()
            tail = child.stdout.read()  # what it printed before dying: acked, so durable
        lines = (first + tail).split(b"\n")
        # The last piece is "" or a line cut by the kill: not an acknowledgement.
        acked = [int(line) for line in lines[:-1]]
        stored = [row[0] for row in store.sql("SELECT id FROM k")]
        assert set(acked) <= set(stored), f"seed {seed}: acknowledged rows lost"
        assert len(stored) == len(set(stored)), f"seed {seed}: rows written twice"
        store.sql("DELETE FROM k")  # the next child starts again from id 0

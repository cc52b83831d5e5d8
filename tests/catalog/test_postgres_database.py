"""The PostgreSQL database under the catalog: SQLite-style SQL translated once, pooled
connections shared per process, transactions that see their own writes, migrations
applied once however many processes start at once, claims that skip locked rows.

Each test has a database of its own on the local server, whatever backend the rest of
the suite runs on.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from gristmill.catalog import Catalog, FileFacts
from gristmill.catalog.migrations import postgres as pg_migrations
from gristmill.catalog.postgres import PostgresDatabase, display_url, to_pyformat
from gristmill.errors import StoreBusy, StoreError


@pytest.fixture
def db(postgres_url: str) -> PostgresDatabase:
    database = PostgresDatabase(postgres_url)
    yield database  # type: ignore[misc]
    database.close()


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement).fetchall()


# -- SQL in SQLite's style -----------------------------------------------------------


@pytest.mark.parametrize(("sqlite", "psycopg_style"), [
    ("SELECT * FROM t WHERE a = ? AND b IN (?, ?)",
     "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"),
    ("UPDATE t SET m = :model WHERE n = :now",
     "UPDATE t SET m = %(model)s WHERE n = %(now)s"),
    ("SELECT x::bigint, ? FROM t", "SELECT x::bigint, %s FROM t"),
    ("SELECT 'what? :no' FROM t WHERE s LIKE '%.txt'",
     "SELECT 'what? :no' FROM t WHERE s LIKE '%%.txt'"),
    ("SELECT \"odd?name\", 'it''s ?' -- why? 100%\nFROM t",
     "SELECT \"odd?name\", 'it''s ?' -- why? 100%%\nFROM t"),
    ("SELECT 5 % 2, ? /* a ? here */", "SELECT 5 %% 2, %s /* a ? here */"),
])
def test_placeholders_are_translated_outside_literals(sqlite: str, psycopg_style: str) -> None:
    """``?`` and ``:name`` become psycopg's; literals, quoted names, comments and casts
    keep theirs; every ``%`` is doubled."""
    assert to_pyformat(sqlite) == psycopg_style


def test_the_url_shown_never_holds_the_password() -> None:
    """Logs, /health and doctor show the URL with its password masked."""
    assert display_url("postgresql://gm:s3cret@db:5432/kb?sslmode=require&password=x") == \
        "postgresql://gm:***@db:5432/kb?sslmode=require&password=***"
    assert display_url("postgresql://gm@db/kb") == "postgresql://gm@db/kb"


def test_literal_percent_signs_and_named_parameters_reach_the_server(
        db: PostgresDatabase) -> None:
    """A ``%`` in a literal and ``:name`` parameters work through ``conn`` and in a
    transaction alike."""
    with db.transaction() as txn:
        txn.execute("INSERT INTO jobs (collection, sources, state, started_at) "
                    "VALUES (:c, '[\"100%\"]', 'running', :t)", {"c": "docs", "t": 1.5})
    assert db.conn.execute("SELECT sources, started_at FROM jobs WHERE sources LIKE '%100%%'"
                           ).fetchall() == [('["100%"]', 1.5)]


# -- connections and transactions -------------------------------------------------------


def test_reads_inside_a_transaction_see_its_own_writes(db: PostgresDatabase) -> None:
    """``db.conn`` on the thread that runs a transaction uses that transaction's
    connection; other threads see nothing until it commits."""
    seen_elsewhere: list[int] = []
    with db.transaction() as txn:
        txn.execute("INSERT INTO jobs (collection, sources, state, started_at) "
                    "VALUES ('c', '[]', 'running', 0)")
        assert db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
        other = threading.Thread(target=lambda: seen_elsewhere.append(
            db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]))
        other.start()
        other.join()
    assert seen_elsewhere == [0]
    assert db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1


def test_an_error_rolls_back_and_comes_out_as_a_store_error(db: PostgresDatabase) -> None:
    """A rejected statement rolls the whole transaction back and is raised as a
    StoreError with the server's message; the pooled connection stays usable."""
    with pytest.raises(StoreError, match="not-null"), db.transaction() as txn:
        txn.execute("INSERT INTO jobs (collection, sources, state, started_at) "
                    "VALUES ('c', '[]', 'running', 0)")
        txn.execute("INSERT INTO jobs (collection) VALUES ('no sources')")
    with pytest.raises(RuntimeError), db.transaction() as txn:
        txn.execute("INSERT INTO jobs (collection, sources, state, started_at) "
                    "VALUES ('c', '[]', 'running', 0)")
        raise RuntimeError("crash mid-write")
    assert db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_rows_read_like_a_cursor(db: PostgresDatabase) -> None:
    """Outside a transaction rows come fully fetched, read by fetchone, fetchmany,
    fetchall or iteration; rowcount counts the rows a statement changed."""
    db.conn.executemany("INSERT INTO jobs (collection, sources, state, started_at) "
                        "VALUES (?, '[]', 'queued', 0)", [(f"c{i}",) for i in range(5)])
    rows = db.conn.execute("SELECT collection FROM jobs ORDER BY id")
    assert rows.fetchone() == ("c0",)
    assert rows.fetchmany(2) == [("c1",), ("c2",)]
    assert list(rows) == [("c3",), ("c4",)]
    assert rows.fetchone() is None
    assert db.conn.execute("UPDATE jobs SET state = 'running' WHERE collection < 'c2'"
                           ).rowcount == 2


def test_a_read_only_database_refuses_writes(db: PostgresDatabase, postgres_url: str) -> None:
    """What searches use cannot write, even by mistake."""
    reader = PostgresDatabase(postgres_url, readonly=True)
    try:
        assert reader.conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0
        with pytest.raises(StoreError, match="read-only"):
            reader.conn.execute("DELETE FROM items")
    finally:
        reader.close()


def test_connections_never_exceed_the_pool_size(postgres_url: str) -> None:
    """Many database objects and threads in one process (driver, discovery, a watch's
    feeder) share at most ``pool_size`` server connections."""
    dbs = [PostgresDatabase(postgres_url, pool_size=2) for _ in range(5)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for database in dbs:
                with database.transaction() as txn:
                    txn.execute("SELECT pg_sleep(0.05)")
                database.conn.execute("SELECT pg_sleep(0.02)")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    peak = 0
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, _sql(postgres_url, "SELECT count(*) FROM pg_stat_activity WHERE "
                                            "application_name = 'gristmill' AND datname = "
                                            "current_database()")[0][0])
        time.sleep(0.01)
    for database in dbs:
        database.close()
    assert errors == []
    assert 1 <= peak <= 2


def test_an_unreachable_server_says_what_to_check() -> None:
    """A refused connection fails at once (StoreBusy: it may come back), naming the
    setting to check and the server to start."""
    started = time.monotonic()
    with pytest.raises(StoreBusy, match=r"GRISTMILL_DATABASE_URL.*server is running"):
        PostgresDatabase("postgresql://postgres:pw@127.0.0.1:9/nothing")
    assert time.monotonic() - started < 5


def test_a_missing_database_is_a_plain_store_error(postgres_url: str) -> None:
    """A database that does not exist is not retried: the error says to check the URL."""
    with pytest.raises(StoreError, match=r"does not exist.*GRISTMILL_DATABASE_URL") as caught:
        PostgresDatabase(postgres_url + "_missing")
    assert not isinstance(caught.value, StoreBusy)


# -- migrations ----------------------------------------------------------------------


def test_a_fresh_database_gets_every_table_and_index(db: PostgresDatabase) -> None:
    """The schema mirrors the SQLite file's final one: tables, unique keys, indexes."""
    assert db.schema_version == len(pg_migrations.MIGRATIONS)
    indexes = {name for (name,) in db.conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    assert {"items_status", "items_sha256", "items_root", "items_parent", "items_seen",
            "items_problems", "runs_job", "chunks_hash", "chunks_collection"} <= indexes
    tables = {name for (name,) in db.conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    assert {"items", "jobs", "runs", "chunks", "embeddings", "gristmill_schema"} <= tables


def test_processes_starting_at_once_migrate_once(postgres_url: str) -> None:
    """Four processes opening the same fresh database at the same moment all succeed;
    the migrations ran once (the advisory lock)."""
    script = ("import sys\n"
              "from gristmill.catalog.postgres import PostgresDatabase\n"
              "print('ready', flush=True); sys.stdin.readline()\n"
              "db = PostgresDatabase(sys.argv[1]); print(db.schema_version); db.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, postgres_url],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for proc in procs:  # every interpreter started, however long that took
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:  # then all four go
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, results
    assert {out.strip() for out, _ in results} == {str(len(pg_migrations.MIGRATIONS))}
    assert _sql(postgres_url, "SELECT version FROM gristmill_schema") == [
        (len(pg_migrations.MIGRATIONS),)]


def test_a_database_from_a_newer_gristmill_is_refused(db: PostgresDatabase,
                                                      postgres_url: str) -> None:
    """A schema newer than this code knows is refused, saying to upgrade gristmill."""
    db.conn.execute("UPDATE gristmill_schema SET version = version + 1")
    db.close()
    with pytest.raises(StoreError, match="newer gristmill"):
        PostgresDatabase(postgres_url)


# -- claims --------------------------------------------------------------------------


def test_a_claim_skips_items_another_transaction_has_locked(db: PostgresDatabase,
                                                            postgres_url: str) -> None:
    """While another process holds some pending rows locked (claiming them), a claim
    takes the others at once instead of waiting for or sharing them."""
    catalog = Catalog(db)
    catalog.record_discovered("docs", "/data", [
        FileFacts(f"/data/{i}.txt", size=1, mtime_ns=1) for i in range(6)], 1, lambda s: s)
    with psycopg.connect(postgres_url) as other:
        locked = [row[0] for row in other.execute(
            "SELECT id FROM items ORDER BY id LIMIT 3 FOR UPDATE")]
        started = time.monotonic()
        claimed = catalog.claim("me", "docs", ["/data"], 10, 60)
        assert time.monotonic() - started < 5
        other.rollback()
    assert len(claimed) == 3
    assert {item.id for item in claimed}.isdisjoint(locked)


def test_a_catalog_filling_up_gets_fresh_planner_statistics(db: PostgresDatabase,
                                                             postgres_url: str) -> None:
    """Discovery refreshes the statistics of ``items`` as it grows (autovacuum would
    wait up to a minute), so claims on a table that went from empty to thousands of
    pending files walk the pending-items index instead of sorting them all."""
    catalog = Catalog(db)

    def reltuples() -> float:
        return float(_sql(postgres_url, "SELECT reltuples FROM pg_class "
                                        "WHERE oid = 'items'::regclass")[0][0])

    assert reltuples() < 0  # never analyzed
    for start in range(0, 3000, 500):
        catalog.record_discovered("docs", "/data", [
            FileFacts(f"/data/{i}.txt", size=1, mtime_ns=1)
            for i in range(start, start + 500)], 1, lambda s: s)
        if start == 0:
            assert reltuples() < 0  # 500 rows: not worth it yet
    assert reltuples() >= 2000
    plan = "\n".join(row[0] for row in _sql(postgres_url, """
        EXPLAIN SELECT id FROM items WHERE status = 'pending' AND collection = 'docs'
        AND root IN ('/data') ORDER BY id LIMIT 4"""))
    assert "items_pending" in plan, plan


def test_a_knowledge_base_on_postgresql_keeps_no_catalog_file(tmp_path: Path,
                                                              postgres_url: str) -> None:
    """With ``database_url`` the catalog and the index live in PostgreSQL: the home
    folder holds logs only, and what was ingested is searchable from a second opener."""
    from gristmill.knowledge_base import KnowledgeBase

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("the miller grinds grist at the water mill")
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1,
                            database_url=postgres_url) as kb:
        assert kb.db.backend == "postgresql"
        assert kb.ingest([src]).items["indexed"] == 1
    assert not (tmp_path / "home" / "gristmill.db").exists()
    with KnowledgeBase.open(tmp_path / "other-home", embedder="none",
                            database_url=postgres_url) as kb:
        assert [hit.source for hit in kb.search("grist")] == [str(src / "a.txt")]


def test_the_database_flag_selects_postgresql_for_any_command(tmp_path: Path,
                                                                postgres_url: str) -> None:
    """`--database URL` wins over the environment; an unreachable server is one line
    naming what to check, and exit status 1."""
    from process_tools import env_for, gristmill

    env = {**env_for(tmp_path / "home"), "GRISTMILL_DATABASE_URL": "postgresql://x@127.0.0.1:9/x"}
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("flour and bran")
    done = gristmill("ingest", str(src), "--json", "--database", postgres_url, env=env)
    assert done.returncode == 0, done.stderr
    assert _sql(postgres_url, "SELECT status FROM items") == [("indexed",)]
    refused = gristmill("status", env=env)
    assert refused.returncode == 1
    assert "cannot reach PostgreSQL" in refused.stderr
    assert "GRISTMILL_DATABASE_URL" in refused.stderr
    assert "Traceback" not in refused.stderr

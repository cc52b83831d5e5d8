"""A PostgreSQL restart in the middle of an ingest: the run waits it out and finishes
(the API's side: tests/api/test_api_postgres_restart.py).

The server is one the test owns (see ``own_postgres``): the shared one is never stopped.
The ingest's pace is set by a gate (``tests/gate.py``): the test lets a number of items
through, waits until the catalog shows them done, and only then stops the server, so a
restart always falls in the middle of the run, on a fast machine or a slow one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gate import Gate
from own_postgres import OwnPostgres, own_postgres
from process_tools import env_for

FILES = 40
pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[OwnPostgres]:
    """A PostgreSQL server this test may stop and start."""
    with own_postgres() as own:
        yield own


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    for n in range(FILES):
        words = " ".join(f"word{n}x{i}" for i in range(600))
        (folder / f"note{n:02d}.txt").write_text(f"Note {n}.\n\n{words}\n")
    return folder


def _sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(statement).fetchall()


def _done(url: str) -> int:
    """Items finished (0 until the run has created the catalog's tables)."""
    try:
        return int(_sql(url, "SELECT count(*) FROM items WHERE status IN "
                             "('indexed', 'skipped', 'failed')")[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


def _wait_until(condition: Any, what: str, proc: subprocess.Popen[bytes] | None = None,
                timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended early: {what}"
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.1)


def test_an_ingest_survives_postgres_restarts(server: OwnPostgres, tmp_path: Path) -> None:
    """Two restarts mid-run (one of ~20 s, with results waiting to be written): the run
    exits 0, every item indexed once, and the log tells each outage's start and end."""
    corpus = _corpus(tmp_path / "corpus")
    home = tmp_path / "home"
    gate = Gate(tmp_path / "gate")
    env = gate.env({**env_for(home, workers="1"), "GRISTMILL_DATABASE_URL": server.url})
    out = (tmp_path / "run.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gristmill", "ingest", str(corpus)],
                            env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        gate.admit(10)
        _wait_until(lambda: _done(server.url) >= 10, "10 items done", proc)
        server.stop()  # the driver is polling its job and the catalog meanwhile
        time.sleep(3)
        server.start()

        gate.admit(10)
        _wait_until(lambda: _done(server.url) >= 20, "20 items done", proc)
        # Admitted just before the stop: their results reach the batcher while the
        # server is away, and must be written once it is back, not dead-lettered.
        gate.admit(5)
        server.stop()
        time.sleep(20)
        server.start()
        gate.open()
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    output = (tmp_path / "run.out").read_text(errors="replace")
    assert rc == 0, output
    assert "Traceback" not in output
    assert "error connecting" not in output  # the pool's retries are not on the terminal
    statuses = dict(_sql(server.url, "SELECT status, count(*) FROM items GROUP BY status"))
    assert statuses == {"indexed": FILES}, output
    # Nothing twice: each item holds exactly the chunks its count says, seq 0..n-1.
    mismatched = _sql(server.url, """
        SELECT i.source FROM items i LEFT JOIN chunks c ON c.item_id = i.id
        GROUP BY i.id, i.source, i.chunk_count
        HAVING count(c.id) != i.chunk_count OR count(DISTINCT c.seq) != count(c.id)
            OR max(c.seq) != count(c.id) - 1""")
    assert mismatched == []
    texts = _sql(server.url, "SELECT count(*), count(DISTINCT text_hash) FROM chunks")[0]
    assert texts[0] == texts[1] > FILES  # every chunk's text is distinct in this corpus
    log = (home / "logs" / "gristmill.log").read_text()
    assert log.count("is unreachable") == 2, log
    assert log.count("is reachable again") == 2, log


def test_a_client_connection_broken_by_a_restart_is_replaced(server: OwnPostgres) -> None:
    """The first statement after a restart runs on a live connection: pooled ones the
    restart broke are checked and replaced, not handed out."""
    from gristmill.catalog.postgres import PostgresDatabase, close_pools

    db = PostgresDatabase(server.url, pool_size=2)
    try:
        assert db.conn.execute("SELECT 1").fetchone() == (1,)
        server.stop()
        server.start()
        started = time.monotonic()
        assert db.conn.execute("SELECT 2").fetchone() == (2,)
        assert db.transact(lambda txn: txn.execute("SELECT 3").fetchone()) == (3,)
        assert time.monotonic() - started < 10
    finally:
        db.close()
        close_pools(server.url)

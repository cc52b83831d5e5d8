"""Several `gristmill ingest` processes on one PostgreSQL catalog: every item processed
exactly once, also when one of them is killed with SIGKILL part way.

Real processes on the local server, each test in a database of its own (whatever
backend the rest of the suite runs on).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backends import fresh_postgres_database
from corpus import build
from gate import Gate
from process_tools import env_for, gristmill, start

FILES = 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 real mixed files (PDF, DOCX, HTML, Markdown, text), a few byte-identical
    copies, one empty file (skipped) and one broken PDF (failed)."""
    folder = tmp_path_factory.mktemp("pg") / "corpus"
    paths = build(folder, FILES - 7, pdf_pages=2)
    for n in range(5):
        shutil.copy(paths[n], folder / f"copy{n}{paths[n].suffix}")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(3000))
    return folder


def _env(home: Path, url: str) -> dict[str, str]:
    # One worker each: two processes on two cores, still overlapping all the way.
    return {**env_for(home, workers="1"), "GRISTMILL_DATABASE_URL": url}


def _sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement).fetchall()


class LeaseWatcher:
    """Samples who holds which item's lease while the ingests run."""

    def __init__(self, url: str) -> None:
        self.holders: dict[int, set[str]] = {}
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                try:
                    for item_id, owner in conn.execute(
                            "SELECT id, lease_owner FROM items WHERE status = 'processing'"):
                        self.holders.setdefault(item_id, set()).add(owner)
                except psycopg.errors.UndefinedTable:
                    pass  # the first ingest has not created the schema yet
                time.sleep(0.02)

    def stop(self) -> dict[int, set[str]]:
        self._stop.set()
        self._thread.join()
        return self.holders


@pytest.fixture
def reference(corpus: Path, tmp_path: Path) -> Iterator[list[tuple[Any, ...]]]:
    """The chunks one uninterrupted ingest of the corpus gives: (source, seq, text)."""
    with fresh_postgres_database() as url:
        done = gristmill("ingest", str(corpus), "--json", env=_env(tmp_path / "ref", url))
        assert done.returncode == 0, done.stderr
        yield _chunks(url)


def _chunks(url: str) -> list[tuple[Any, ...]]:
    return _sql(url, "SELECT i.source, c.seq, c.text FROM chunks c JOIN items i "
                     "ON i.id = c.item_id ORDER BY i.source, c.seq")


def _check_every_item_once(url: str) -> None:
    """Every file is one item, settled; each item's chunks are exactly its chunk_count,
    with no seq twice; every chunk row belongs to an item."""
    statuses = dict(_sql(url, "SELECT status, count(*) FROM items GROUP BY status"))
    assert set(statuses) <= {"indexed", "skipped", "failed"}, statuses
    assert sum(statuses.values()) == FILES
    assert statuses["skipped"] == 1 and statuses["failed"] == 1
    wrong = _sql(url, """
        SELECT i.source, i.chunk_count, count(c.id), count(DISTINCT c.seq)
        FROM items i LEFT JOIN chunks c ON c.item_id = i.id
        GROUP BY i.id, i.source, i.chunk_count
        HAVING count(c.id) != coalesce(i.chunk_count, 0) OR count(c.id) != count(DISTINCT c.seq)""")
    assert wrong == []
    assert _sql(url, "SELECT count(*) FROM chunks WHERE item_id NOT IN "
                     "(SELECT id FROM items)") == [(0,)]


@pytest.mark.slow
def test_two_ingests_of_one_folder_process_every_item_exactly_once(
        corpus: Path, postgres_url: str, tmp_path: Path) -> None:
    """Two ingest processes started together on the same folder and catalog both work
    (each holds leases), share the items without overlap (no item leased by both, no
    chunk row written twice), and leave every item settled exactly once."""
    gate = Gate(tmp_path / "gate")
    watcher = LeaseWatcher(postgres_url)
    procs = [start("ingest", str(corpus), "--json",
                   env=gate.env(_env(tmp_path / name, postgres_url))) for name in ("a", "b")]
    # Each claims an item and holds it at the gate, however long its start-up took,
    # until the watcher has seen both at work.
    deadline = time.monotonic() + 300
    while len(set().union(*list(watcher.holders.values()))) < 2:
        assert all(proc.poll() is None for proc in procs), "an ingest ended early"
        assert time.monotonic() < deadline, "the two ingests never both got to work"
        time.sleep(0.02)
    gate.open()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        reports.append(json.loads(out))
    holders = watcher.stop()

    _check_every_item_once(postgres_url)
    assert {report["state"] for report in reports} == {"succeeded"}
    owners = {owner for item_owners in holders.values() for owner in item_owners}
    assert len(owners) == 2, "both processes must have claimed items"
    assert [item for item, item_owners in holders.items() if len(item_owners) > 1] == []
    assert _sql(postgres_url, "SELECT count(*) FROM items WHERE attempts > 0 "
                              "OR crashes > 0") == [(0,)]
    # Chunks are only ever inserted (a second settle would delete and insert again):
    # the server's own counters say how many rows the table has ever had.
    chunks = _sql(postgres_url, "SELECT count(*) FROM chunks")[0][0]
    deadline = time.monotonic() + 30
    while True:  # each backend reports its counters when its session ends
        inserted, deleted = _sql(postgres_url, "SELECT n_tup_ins, n_tup_del FROM "
                                               "pg_stat_user_tables WHERE relname = 'chunks'")[0]
        if inserted >= chunks or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (inserted, deleted) == (chunks, 0)


@pytest.mark.slow
def test_kill_9_of_one_of_two_ingests_loses_nothing_and_repeats_nothing(
        corpus: Path, postgres_url: str, tmp_path: Path,
        reference: list[tuple[Any, ...]]) -> None:
    """SIGKILL of one of two ingests part way: the other finishes its share; a re-run
    takes over the dead one's leases at once (its owner is gone) and the catalog ends
    with exactly the chunks of one uninterrupted run."""
    gate = Gate(tmp_path / "gate")
    victim = start("ingest", str(corpus), "--json",
                   env=gate.env(_env(tmp_path / "a", postgres_url)))
    survivor = start("ingest", str(corpus), "--json",
                     env=gate.env(_env(tmp_path / "b", postgres_url)))
    gate.admit(FILES // 5)
    deadline = time.monotonic() + 300
    while True:  # a fifth of the corpus settled, both holding an item at the gate
        rows = dict(_sql(postgres_url, "SELECT status, count(*) FROM items GROUP BY status")
                    ) if _has_items(postgres_url) else {}
        owners = _sql(postgres_url, "SELECT count(DISTINCT lease_owner) FROM items WHERE "
                                    "status = 'processing'")[0][0] if rows else 0
        done = sum(n for status, n in rows.items() if status in ("indexed", "skipped", "failed"))
        if done >= FILES // 5 and owners == 2 and not list(gate.folder.glob("ticket-*")):
            break
        assert victim.poll() is None and survivor.poll() is None, "an ingest ended early"
        assert time.monotonic() < deadline, "the two ingests never both got to work"
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)  # the driver, its worker, its fork server
    victim.communicate()
    gate.open()
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, f"exit {survivor.returncode}\n{out}\n{err}"
    dead_leases = _sql(postgres_url, "SELECT count(*) FROM items WHERE status = 'processing'")

    again = gristmill("ingest", str(corpus), "--json", env=_env(tmp_path / "c", postgres_url))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["state"] == "succeeded"
    _check_every_item_once(postgres_url)
    assert _chunks(postgres_url) == reference
    print(f"leases left by the killed ingest: {dead_leases[0][0]}")


def _has_items(url: str) -> bool:
    try:
        _sql(url, "SELECT 1 FROM items LIMIT 1")
    except psycopg.errors.UndefinedTable:
        return False
    return True


@pytest.mark.slow
def test_two_ingests_with_embeddings_store_each_vector_once(
        tmp_path: Path, postgres_url: str) -> None:
    """With the real embedder, both processes embed and promote at once: every item ends
    indexed, every distinct chunk text has exactly one vector, none is missing."""
    folder = tmp_path / "corpus"
    build(folder, 40, pdf_pages=2)
    procs = [start("ingest", str(folder), "--json",
                   env={**_env(tmp_path / name, postgres_url), "GRISTMILL_EMBEDDER": "minilm",
                        "GRISTMILL_EMBED_BATCH": "16", "GRISTMILL_EMBED_THREADS": "1"})
             for name in ("a", "b")]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert _sql(postgres_url, "SELECT status, count(*) FROM items GROUP BY status") == [
        ("indexed", 40)]
    assert _sql(postgres_url, "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 "
                              "FROM embeddings e WHERE e.text_hash = c.text_hash)") == [(0,)]
    assert _sql(postgres_url, "SELECT count(*) FROM embeddings") == _sql(
        postgres_url, "SELECT count(DISTINCT text_hash) FROM chunks")

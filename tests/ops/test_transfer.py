"""export / import / migrate: lossless copies between SQLite and PostgreSQL, consistent
while jobs run, resumable after kill -9, merging by item."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from moving_kb import add_audio, dump, fill_catalog, fts_rows, write_texts

from backends import ON_POSTGRES, fresh_postgres_database, query, server_reason, url_for
from gate import Gate
from gristmill.catalog import SqliteDatabase
from gristmill.catalog.migrations.sqlite import MIGRATIONS
from gristmill.catalog.transfer import catalog_tables
from gristmill.embed.minilm import MODEL_ID, MODEL_SHA256
from gristmill.ops.archive import ArchiveReader
from process_tools import env_for, gristmill, gristmill_json, start

QUERIES = ["heron lantern", "copper violin harbour", "glacier"]


def _sqlite_env(home: Path, embedder: str = "none") -> dict[str, str]:
    """A CLI environment on the SQLite file in ``home``, whatever the suite's backend."""
    return {k: v for k, v in env_for(home, embedder).items()
            if k != "GRISTMILL_DATABASE_URL"}


def _pg_env(home: Path, url: str, embedder: str = "none") -> dict[str, str]:
    return {**_sqlite_env(home, embedder), "GRISTMILL_DATABASE_URL": url}


def _without_clips(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {t: [{k: v for k, v in r.items() if k != "clip"} for r in rows[t]] for t in rows}


def _searches(env: dict[str, str], mode: str = "hybrid") -> list[list[tuple[Any, ...]]]:
    return [[(h["source"], h["text"], round(h["score"], 6)) for h in
             gristmill_json("search", q, "-k", "8", "--mode", mode, env=env)]
            for q in QUERIES]


@pytest.mark.slow
def test_sqlite_to_postgres_to_sqlite_loses_nothing(tmp_path: Path) -> None:
    """SQLite -> archive -> PostgreSQL -> archive -> SQLite: identical items, chunks,
    vectors (real MiniLM ones), audio events and clip files, and the same search
    results."""
    reason = server_reason()
    if reason is not None:
        pytest.skip(reason)
    first = tmp_path / "first"
    env1 = _sqlite_env(first, "minilm")
    done = gristmill("ingest", str(write_texts(tmp_path / "docs", 14)), env=env1)
    assert done.returncode == 0, done.stderr
    db = SqliteDatabase(first / "gristmill.db")
    try:
        clip = add_audio(db, first, item_id=2)
    finally:
        db.close()
    before = dump(path=first / "gristmill.db")
    assert before["embeddings"] and before["audio_events"]

    with fresh_postgres_database() as url:
        middle = tmp_path / "middle"
        gristmill_json("export", str(tmp_path / "a.gristmill"), env=env1)
        with ArchiveReader(tmp_path / "a.gristmill") as reader:
            assert reader.manifest["models"] == [{
                "model": MODEL_ID, "vectors": len(before["embeddings"]), "dim": 384,
                "sha256": MODEL_SHA256}]
            assert reader.manifest["audio_models"] == ["f" * 64]
        gristmill_json("import", str(tmp_path / "a.gristmill"), env=_pg_env(middle, url))
        on_postgres = dump(url=url)
        env2 = _pg_env(middle, url, "minilm")
        # Another engine's arithmetic (pgvector, or float32 sums in another order):
        # the same hits in the same order, scores aside.
        assert ([[hit[:2] for hit in hits] for hits in _searches(env2, "vector")]
                == [[hit[:2] for hit in hits] for hits in _searches(env1, "vector")])
        gristmill_json("export", str(tmp_path / "b.gristmill"), env=env2)

    last = tmp_path / "last"
    env3 = _sqlite_env(last, "minilm")
    report = gristmill_json("import", str(tmp_path / "b.gristmill"), env=env3)
    after = dump(path=last / "gristmill.db")
    assert report["mismatches"] == []
    assert _without_clips(on_postgres) == _without_clips(before)
    assert _without_clips(after) == _without_clips(before)
    assert fts_rows(last / "gristmill.db") == len(before["chunks"])
    assert _searches(env3) == _searches(env1)
    events1 = gristmill_json("audio", "events", env=env1)
    events3 = gristmill_json("audio", "events", env=env3)
    moved = last.absolute() / "clips" / "ada" / clip.name
    assert [e["clip"] for e in events3 if e["clip"]] == [str(moved)]
    assert [{**e, "clip": None} for e in events3] == [{**e, "clip": None} for e in events1]
    assert moved.read_bytes() == clip.read_bytes()


def _old_catalog(path: Path, version: int) -> None:
    """A catalog made by the first ``version`` migrations only (an older gristmill),
    with one finished item and its chunks."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for number, step in enumerate(MIGRATIONS[:version], start=1):
            conn.execute("BEGIN")
            step(conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        now = time.time()
        conn.execute("INSERT INTO jobs (id, collection, sources, state, started_at) "
                     "VALUES (1, 'default', '[]', 'succeeded', ?)", (now,))
        conn.execute("INSERT INTO runs (id, job_id, started_at) VALUES (1, 1, ?)", (now,))
        conn.execute("INSERT INTO items (id, collection, source, root, sha256, status, "
                     "chunk_count, created_at, updated_at) VALUES (1, 'default', "
                     "'/old/ledger.txt', '/old', 'ab', 'indexed', 2, ?, ?)", (now, now))
        conn.executemany("INSERT INTO chunks (item_id, collection, seq, text, text_hash) "
                         "VALUES (1, 'default', ?, ?, ?)",
                         [(0, "the harbour ledger of saffron", "h0"),
                          (1, "copper compass readings", "h1")])
    finally:
        conn.close()


def test_an_archive_from_an_older_schema_imports_and_is_searchable(tmp_path: Path) -> None:
    """An export of a catalog at schema 8 (no audio tables) imports into this schema:
    its rows are there, columns it lacked are NULL, and keyword search finds it."""
    old = tmp_path / "old"
    old.mkdir()
    _old_catalog(old / "gristmill.db", 8)
    gristmill_json("export", str(tmp_path / "old.gristmill"), env=_sqlite_env(old))
    assert sqlite3.connect(old / "gristmill.db").execute(
        "PRAGMA user_version").fetchone()[0] == 8, "export changed its source"
    target = tmp_path / "new"
    env = env_for(target)
    report = gristmill_json("import", str(tmp_path / "old.gristmill"), env=env)
    assert report["tables"]["chunks"] == 2 and report["mismatches"] == []
    hits = gristmill_json("search", "saffron harbour", env=env)
    assert [h["source"] for h in hits] == ["/old/ledger.txt"]
    assert query(target, "SELECT status, git_commit FROM items") == [("indexed", None)]


def test_import_into_a_knowledge_base_with_items_merges_by_item_or_refuses(
        tmp_path: Path) -> None:
    """Without --merge the import is refused (nothing changes); with it, items the
    target has with the same content are kept once, other content is a reported
    conflict (the target's kept), and the rest is added with its chunks."""
    docs = write_texts(tmp_path / "docs", 10)
    source = tmp_path / "source"
    done = gristmill("ingest", str(docs), env=env_for(source))
    assert done.returncode == 0, done.stderr
    gristmill_json("export", str(tmp_path / "kb.gristmill"), env=env_for(source))
    source_chunks = query(source, "SELECT i.source, c.seq, c.text FROM chunks c JOIN items i "
                          "ON i.id = c.item_id ORDER BY i.source, c.seq")

    (docs / "note0005.txt").write_text("Note 5 rewritten: thunder orchard\n")
    for n in range(4):
        (docs / f"note{n:04d}.txt").unlink()
    write_texts(tmp_path / "more", 3, seed=11)
    target = tmp_path / "target"
    for folder in (docs, tmp_path / "more"):
        done = gristmill("ingest", str(folder), env=env_for(target))
        assert done.returncode == 0, done.stderr
    items_before = query(target, "SELECT count(*) FROM items")[0][0]

    refused = gristmill("import", str(tmp_path / "kb.gristmill"), env=env_for(target))
    assert refused.returncode == 2 and "--merge" in refused.stderr
    assert query(target, "SELECT count(*) FROM items")[0][0] == items_before

    report = gristmill_json("import", str(tmp_path / "kb.gristmill"), "--merge",
                            env=env_for(target))
    assert report["same_items"] == 5
    assert report["conflicts"] == [f"default: {docs / 'note0005.txt'}"]
    assert report["tables"]["items"] == 4 and report["mismatches"] == []
    assert query(target, "SELECT count(*) FROM items")[0][0] == items_before + 4
    merged = query(target, "SELECT i.source, c.seq, c.text FROM chunks c JOIN items i "
                   "ON i.id = c.item_id ORDER BY i.source, c.seq")
    gone = [row for row in source_chunks if row[0] < str(docs / "note0004.txt")]
    assert gone and set(gone) <= set(merged)
    assert len(merged) == len(set(merged)), "a chunk is there twice"
    kept = query(target, "SELECT c.text FROM chunks c JOIN items i ON i.id = c.item_id "
                 "WHERE i.source = ?", (str(docs / "note0005.txt"),))
    assert [t for (t,) in kept if "rewritten" in t], "the target's version was replaced"
    hits = gristmill_json("search", "Note 1", "-k", "50", env=env_for(target))
    assert str(docs / "note0001.txt") in {h["source"] for h in hits}


def _finished(home: Path) -> int:
    rows = query(home, "SELECT count(*) FROM items WHERE status IN ('extracted', 'indexed', "
                 "'skipped', 'failed')", missing_ok=True)
    return rows[0][0] if rows else 0


def _claimed(home: Path) -> int:
    rows = query(home, "SELECT count(*) FROM items WHERE status = 'processing'",
                 missing_ok=True)
    return rows[0][0] if rows else 0


@pytest.mark.slow
def test_an_export_during_a_running_ingest_is_a_consistent_snapshot(tmp_path: Path) -> None:
    """Exported while items are held mid-extraction: every item in the archive is
    settled with all its chunks or not settled at all, its leases are given up on
    import, and the running job shows as interrupted there."""
    docs = write_texts(tmp_path / "docs", 24)
    home = tmp_path / "home"
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(home, workers="2"))
    gate.close()
    proc = start("ingest", str(docs), env=env)
    try:
        gate.admit(6)
        deadline = time.monotonic() + 120
        while not (_finished(home) >= 6 and _claimed(home) > 0
                   and not list(gate.folder.glob("ticket-*"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the ingest never settled its share"
            time.sleep(0.05)
        report = gristmill_json("export", str(tmp_path / "kb.gristmill"), env=env_for(home))
    finally:
        gate.open()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert any("running" in note for note in report["notes"])

    target = tmp_path / "target"
    gristmill_json("import", str(tmp_path / "kb.gristmill"), env=env_for(target))
    statuses = dict(query(target, "SELECT status, count(*) FROM items GROUP BY status"))
    assert "processing" not in statuses and statuses.get("pending", 0) > 0
    assert statuses.get("indexed", 0) >= 6
    half_settled = query(target, "SELECT i.source, i.status, i.chunk_count, count(c.id) "
                         "FROM items i LEFT JOIN chunks c ON c.item_id = i.id GROUP BY "
                         "i.id, i.source, i.status, i.chunk_count HAVING "
                         "(i.status = 'indexed' AND count(c.id) <> i.chunk_count) OR "
                         "(i.status = 'pending' AND count(c.id) > 0)")
    assert half_settled == []
    assert query(target, "SELECT state FROM jobs") == [("interrupted",)]
    # The same ingest against the copy finishes what the snapshot missed.
    done = gristmill("ingest", str(docs), env=env_for(target))
    assert done.returncode == 0, done.stderr
    assert query(target, "SELECT count(*) FROM items WHERE status = 'indexed'") == [(24,)]


# -- kill -9 -----------------------------------------------------------------------

_ITEMS, _CHUNKS_PER_ITEM = 400, 50  # 20,000 chunks: staging them takes a while


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite home of 20,000 chunks."""
    home = tmp_path_factory.mktemp("big") / "home"
    home.mkdir()
    fill_catalog(home / "gristmill.db", _ITEMS, _CHUNKS_PER_ITEM)
    return home


def _staged(home: Path) -> int:
    rows = query(home, "SELECT count(*) FROM import_state WHERE member <> '@published'",
                 missing_ok=True)
    return rows[0][0] if rows else 0


def _kill_once_staging(args: list[str], env: dict[str, str], target: Path) -> None:
    """Run ``gristmill ARGS`` and kill -9 it once it has staged its first table."""
    proc = start(*args, env=env)
    deadline = time.monotonic() + 120
    while _staged(target) == 0:
        if proc.poll() is not None:
            raise AssertionError(f"it ended before the kill: {proc.communicate()}")
        assert time.monotonic() < deadline, "nothing was ever staged"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    published = query(target, "SELECT count(*) FROM items", missing_ok=True)
    assert published in ([], [(0,)]), "a half copy is visible"


def _tables(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in catalog_tables():
        key = "model, text_hash" if table == "embeddings" else (
            "collection, root" if table == "source_heads" else
            "item_id" if table == "audio_recordings" else "id")
        columns = "*" if not ON_POSTGRES or table != "chunks" else \
            "id, item_id, collection, seq, text, text_hash, page, heading"
        out[table] = query(home, f"SELECT {columns} FROM {table} ORDER BY {key}")
    return out


@pytest.mark.slow
def test_kill_9_during_import_then_rerun_ends_identical(big_source: Path,
                                                        tmp_path: Path) -> None:
    """An import killed -9 part way shows nothing; run again it resumes from what it
    staged and ends identical to an uninterrupted import, nothing twice."""
    archive = tmp_path / "big.gristmill"
    gristmill_json("export", str(archive), env=_sqlite_env(big_source))
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    gristmill_json("import", str(archive), env=env_for(reference))

    _kill_once_staging(["import", str(archive)], env_for(crashed), crashed)
    report = gristmill_json("import", str(archive), env=env_for(crashed))
    assert "items" in report["resumed"] and report["mismatches"] == []
    assert _tables(crashed) == _tables(reference)
    assert query(crashed, "SELECT count(*) FROM chunks") == [(_ITEMS * _CHUNKS_PER_ITEM,)]
    if not ON_POSTGRES:
        assert fts_rows(crashed / "gristmill.db") == _ITEMS * _CHUNKS_PER_ITEM
    again = gristmill_json("import", str(archive), env=env_for(crashed))
    assert again["already_done"] is True


@pytest.mark.slow
def test_kill_9_during_migrate_then_rerun_ends_identical(big_source: Path,
                                                         tmp_path: Path) -> None:
    """A migration killed -9 part way shows nothing in the target; run again it
    resumes (the source has not changed) and the target equals the source."""
    target = tmp_path / "target"
    to = url_for(target / "gristmill.db") if ON_POSTGRES else str(target)
    env = _sqlite_env(big_source)
    _kill_once_staging(["migrate", "--to", to], env, target)
    report = gristmill_json("migrate", "--to", to, env=env)
    assert "items" in report["resumed"] and report["mismatches"] == []
    source = dump(path=big_source / "gristmill.db")
    copy = dump(url=to) if ON_POSTGRES else dump(path=target / "gristmill.db")
    assert copy == source
    hits = gristmill_json("search", "item17", env=env_for(target))
    assert {h["source"] for h in hits} == {"/src/f00017.txt"}


def test_migrate_refuses_a_target_with_items_and_itself(tmp_path: Path) -> None:
    """A migration never writes over a knowledge base: the source itself and a target
    with items are refused with exit 2."""
    home = tmp_path / "home"
    home.mkdir()
    fill_catalog(home / "gristmill.db", 3, 2)
    env = _sqlite_env(home)
    itself = gristmill("migrate", "--to", str(home), env=env)
    assert itself.returncode == 2 and "itself" in itself.stderr
    other = tmp_path / "other"
    other.mkdir()
    fill_catalog(other / "gristmill.db", 1, 1)
    full = gristmill("migrate", "--to", str(other), env=env)
    assert full.returncode == 2 and "already holds 1 items" in full.stderr
    assert json.loads(json.dumps(dump(path=other / "gristmill.db")))["items"][0]["id"] == 1


def test_export_of_one_collection_holds_that_collection_only(tmp_path: Path) -> None:
    """--collection exports that collection's items, chunks and jobs, nothing of
    another; imported, it searches as it did."""
    home = tmp_path / "home"
    for name, seed in (("papers", 1), ("notes", 2)):
        folder = write_texts(tmp_path / name, 4, seed=seed)
        done = gristmill("ingest", str(folder), "--collection", name, env=env_for(home))
        assert done.returncode == 0, done.stderr
    report = gristmill_json("export", str(tmp_path / "p.gristmill"), "--collection",
                            "papers", env=env_for(home))
    assert report["tables"]["items"] == 4 and report["tables"]["jobs"] == 1
    target = tmp_path / "target"
    gristmill_json("import", str(tmp_path / "p.gristmill"), env=env_for(target))
    assert query(target, "SELECT DISTINCT collection FROM chunks") == [("papers",)]
    assert query(target, "SELECT collection FROM jobs") == [("papers",)]
    for words in QUERIES:
        here = gristmill_json("search", words, "--collection", "papers", env=env_for(home))
        there = gristmill_json("search", words, env=env_for(target))
        assert [h["text"] for h in there] == [h["text"] for h in here]
    missing = gristmill("export", str(tmp_path / "x.gristmill"), "--collection", "nope",
                        env=env_for(home))
    assert missing.returncode == 2 and "no collection 'nope'" in missing.stderr


def test_migrate_to_postgresql_and_back_to_sqlite(tmp_path: Path) -> None:
    """migrate --to postgresql://... then, from there, --to a new SQLite home: both
    copies equal the source, audio clips travel to the new home, searches agree."""
    reason = server_reason()
    if reason is not None:
        pytest.skip(reason)
    home = tmp_path / "home"
    home.mkdir()
    fill_catalog(home / "gristmill.db", 30, 4)
    db = SqliteDatabase(home / "gristmill.db")
    try:
        clip = add_audio(db, home, item_id=3)
    finally:
        db.close()
    source = dump(path=home / "gristmill.db")
    back = tmp_path / "back"
    with fresh_postgres_database() as url:
        report = gristmill_json("migrate", "--to", url, env=_sqlite_env(home))
        assert report["mismatches"] == [] and report["tables"]["chunks"] == 120
        assert dump(url=url) == source  # same home: clip paths unchanged
        gristmill_json("migrate", "--to", str(back), env=_pg_env(home, url))
        on_postgres = gristmill_json("search", "item7", env=_pg_env(home, url))
    assert _without_clips(dump(path=back / "gristmill.db")) == _without_clips(source)
    moved = back.absolute() / "clips" / "ada" / clip.name
    assert moved.read_bytes() == clip.read_bytes()
    clips = sqlite3.connect(back / "gristmill.db").execute(
        "SELECT clip FROM audio_events WHERE clip IS NOT NULL").fetchall()
    assert clips == [(str(moved),)]
    hits = gristmill_json("search", "item7", env=_sqlite_env(back))
    assert hits and {h["source"] for h in hits} == {"/src/f00007.txt"}
    assert sorted(h["text"] for h in hits) == sorted(h["text"] for h in on_postgres)

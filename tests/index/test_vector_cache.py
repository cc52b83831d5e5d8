"""The in-memory vectors a server searches: the same answers as the SQLite scan, kept
fresh as chunks and vectors change, and out of the way when too big."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_index import MODEL, add_item, index_vectors, put_chunks, unit_vectors

from gristmill.catalog import Database
from gristmill.index import SqliteIndex, VectorCache

DIM = 8


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "gristmill.db")
    yield database
    database.close()


def _started(db: Database, max_mb: int = 64) -> VectorCache:
    cache = VectorCache(db.path, MODEL, DIM, max_mb)
    cache.start()
    return cache


def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the vector cache never caught up"
        time.sleep(0.05)


def test_cache_answers_exactly_as_the_scan(db: Database) -> None:
    """Top k with and without a collection filter: same ids, same order, same scores as
    the exact SQLite scan; an unknown collection finds nothing."""
    index_vectors(db, unit_vectors(300, DIM, seed=1), "docs")
    index_vectors(db, unit_vectors(200, DIM, seed=2), "mail")
    cache = _started(db)
    try:
        _until(lambda: cache.ready)
        scan = SqliteIndex(db)
        for seed in range(5):
            query = unit_vectors(1, DIM, seed=100 + seed)[0]
            for collection in (None, "docs", "mail"):
                fast = cache.search(query, collection, 25)
                exact = scan.vector(query, MODEL, collection, 25)
                assert fast is not None
                assert [cid for cid, _ in fast] == [cid for cid, _ in exact]
                assert [s for _, s in fast] == pytest.approx([s for _, s in exact], abs=1e-6)
        assert cache.search(unit_vectors(1, DIM, seed=9)[0], "nowhere", 5) == []
    finally:
        cache.close()


def test_cache_follows_new_and_replaced_chunks(db: Database) -> None:
    """Vectors stored after the first build are found after a refresh; chunks replaced
    by an item's new version (without vectors yet) drop out."""
    first = index_vectors(db, unit_vectors(50, DIM, seed=3), "docs")
    cache = _started(db)
    try:
        _until(lambda: cache.ready)
        added = unit_vectors(60, DIM, seed=4)
        new_ids = index_vectors(db, added, "mail")  # texts (and hashes) of their own
        _until(lambda: (cache.search(added[7], None, 1) or [(0, 0)])[0][0] == new_ids[7])

        item = db.conn.execute("SELECT item_id FROM chunks WHERE id = ?",
                               (first[0],)).fetchone()[0]
        put_chunks(db, item, ["rewritten text"], "docs")  # no vector for it yet
        _until(lambda: all(cid not in first
                           for cid, _ in cache.search(added[0], None, 200) or [(first[0], 0)])
               )
    finally:
        cache.close()


def test_an_index_over_the_memory_budget_is_left_to_the_scan(db: Database) -> None:
    """Over max_mb the cache builds nothing and says so by answering None."""
    index_vectors(db, unit_vectors(40_000, DIM, seed=5), "docs")  # ~0.8 MB of vectors
    cache = VectorCache(db.path, MODEL, DIM, max_mb=0)
    cache.start()
    try:
        _until(lambda: cache.status != "building")
        assert cache.status == "scan" and not cache.ready
        assert cache.search(unit_vectors(1, DIM, seed=6)[0], None, 5) is None
    finally:
        cache.close()
    assert add_item(db, "/r/unrelated.txt")  # the catalog is still writable

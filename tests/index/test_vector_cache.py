"""The in-memory vectors a server searches: the same answers as the index's own scan,
kept fresh as chunks and vectors change, and out of the way when too big."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from backends import open_catalog
from gristmill.catalog import CatalogDatabase, SqliteDatabase
from gristmill.index import StoredChunk, VectorCache, make_index

DIM = 8
MODEL = "test-model"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CatalogDatabase]:
    database = open_catalog(tmp_path / "gristmill.db")
    yield database
    database.close()


def add_item(db: CatalogDatabase, source: str, collection: str = "docs") -> int:
    now = time.time()
    with db.transaction() as txn:
        return int(txn.execute(
            "INSERT INTO items (collection, source, root, status, created_at, updated_at) "
            "VALUES (?, ?, '/r', 'extracted', ?, ?) RETURNING id",
            (collection, source, now, now)).fetchone()[0])


def put_chunks(db: CatalogDatabase, item_id: int, texts: list[str],
               collection: str = "docs") -> None:
    with db.transaction() as txn:
        make_index(db).replace_chunks(txn, item_id, collection, [
            StoredChunk(seq, text, f"hash-{text}", seq + 1, None)
            for seq, text in enumerate(texts)])


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def index_vectors(db: CatalogDatabase, vectors: np.ndarray, collection: str = "docs"
                  ) -> list[int]:
    item = add_item(db, f"/r/{collection}-{len(vectors)}.txt", collection)
    texts = [f"{collection} vector {i}" for i in range(len(vectors))]
    put_chunks(db, item, texts, collection)
    with db.transaction() as txn:
        make_index(db).store_vectors(txn, MODEL, [f"hash-{t}" for t in texts], vectors)
    return [i for (i,) in db.conn.execute(
        "SELECT id FROM chunks WHERE item_id = ? ORDER BY seq", (item,))]


def _source(db: CatalogDatabase) -> Callable[[], CatalogDatabase]:
    """What a server hands its cache: a read-only opener of the same catalog."""
    if db.backend == "sqlite":
        return partial(SqliteDatabase, Path(db.display_name), readonly=True)
    from gristmill.catalog.postgres import PostgresDatabase

    url = db.url  # type: ignore[attr-defined]
    return lambda: PostgresDatabase(url, readonly=True)


def _started(db: CatalogDatabase, max_mb: int = 64) -> VectorCache:
    cache = VectorCache(_source(db), MODEL, DIM, max_mb)
    cache.start()
    return cache


def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the vector cache never caught up"
        time.sleep(0.05)


def test_cache_answers_exactly_as_the_scan(db: CatalogDatabase) -> None:
    """Top k with and without a collection filter: same ids, same order, same scores as
    the exact SQLite scan; an unknown collection finds nothing."""
    index_vectors(db, unit_vectors(300, DIM, seed=1), "docs")
    index_vectors(db, unit_vectors(200, DIM, seed=2), "mail")
    cache = _started(db)
    try:
        _until(lambda: cache.ready)
        scan = make_index(db)
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


def test_cache_follows_new_and_replaced_chunks(db: CatalogDatabase) -> None:
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


def test_an_index_over_the_memory_budget_is_left_to_the_scan(db: CatalogDatabase) -> None:
    """Over max_mb the cache builds nothing and says so by answering None."""
    index_vectors(db, unit_vectors(40_000, DIM, seed=5), "docs")  # ~0.8 MB of vectors
    cache = VectorCache(_source(db), MODEL, DIM, max_mb=0)
    cache.start()
    try:
        _until(lambda: cache.status != "building")
        assert cache.status == "scan" and not cache.ready
        assert cache.search(unit_vectors(1, DIM, seed=6)[0], None, 5) is None
    finally:
        cache.close()
    assert add_item(db, "/r/unrelated.txt")  # the catalog is still writable

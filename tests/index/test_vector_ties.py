"""Vector rankings break ties the same way on every path: best score first, then the
lower chunk id (identical chunk texts share one vector, so ties are common)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import gristmill.index.postgres as postgres_module
import gristmill.index.sqlite as sqlite_module
from gristmill.catalog.backend import CatalogDatabase
from gristmill.catalog.postgres import PostgresDatabase
from gristmill.catalog.sqlite import SqliteDatabase
from gristmill.index import Index, StoredChunk, VectorCache, make_index, top_k_scan

MODEL = "test-model"
DIM = 4
ANSWER = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
# Every boilerplate chunk scores 0.6 against ANSWER.
BOILERPLATE = np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32)

pytestmark = pytest.mark.sqlite_only("opens both backends itself")


def rows(ids: list[int], vectors: list[np.ndarray]) -> list[tuple[int, bytes]]:
    return [(i, v.astype(np.float32).tobytes()) for i, v in zip(ids, vectors, strict=True)]


def test_top_k_scan_orders_ties_by_lower_id_whatever_the_row_order() -> None:
    """Equal scores come lower id first, even when rows arrive highest id first and the
    tie straddles the cut between blocks."""
    ids = list(range(40, 0, -1))
    vectors = [ANSWER if i == 25 else BOILERPLATE for i in ids]
    scanned = rows(ids, vectors)
    blocks = [scanned[n:n + 7] for n in range(0, len(scanned), 7)]
    result = top_k_scan(blocks, ANSWER, 5)
    assert [chunk_id for chunk_id, _ in result] == [25, 1, 2, 3, 4]
    assert [score for _, score in result] == pytest.approx([1.0, 0.6, 0.6, 0.6, 0.6])
    assert top_k_scan([], ANSWER, 5) == []
    everything = [c for c, _ in top_k_scan(blocks, ANSWER, 100)]
    assert everything == [25, *(i for i in range(1, 41) if i != 25)]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., CatalogDatabase]:
    """How to open a fresh catalog of each backend (the system PostgreSQL has no
    pgvector, so its index scans in the client, as SQLite's does)."""
    # Blocks smaller than the ties, so a tie is cut between blocks.
    monkeypatch.setattr(sqlite_module, "_SCAN_BLOCK", 7)
    monkeypatch.setattr(postgres_module, "_SCAN_BLOCK", 7)
    if request.param == "sqlite":
        return partial(SqliteDatabase, tmp_path / "gristmill.db")
    return partial(PostgresDatabase, str(request.getfixturevalue("postgres_url")))


def fill(db: CatalogDatabase, index: Index) -> tuple[int, list[int]]:
    """Twelve chunks of one boilerplate text, then the answer: (answer id, boilerplate
    ids)."""
    now = time.time()
    texts = ["boilerplate"] * 12 + ["answer"]
    with db.transaction() as txn:
        item = txn.execute(
            "INSERT INTO items (collection, source, root, status, created_at, updated_at) "
            "VALUES ('docs', '/r/a.txt', '/r', 'extracted', ?, ?) RETURNING id",
            (now, now)).fetchone()[0]
        index.replace_chunks(txn, item, "docs", [
            StoredChunk(seq, text, f"hash-{text}", None, None)
            for seq, text in enumerate(texts)])
        index.store_vectors(txn, MODEL, ["hash-boilerplate", "hash-answer"],
                            np.stack([BOILERPLATE, ANSWER]))
    ids = [int(i) for (i,) in db.conn.execute(
        "SELECT id FROM chunks WHERE item_id = ? ORDER BY seq", (item,)).fetchall()]
    return ids[-1], ids[:-1]


def test_both_backends_and_the_vector_cache_break_ties_by_lower_id(
        opener: Callable[..., CatalogDatabase]) -> None:
    """On SQLite and PostgreSQL, the index's scan and the in-memory vectors return the
    answer, then the boilerplate chunks with the lowest ids."""
    db = opener()
    cache = VectorCache(partial(opener, readonly=True), MODEL, DIM, max_mb=16)
    try:
        index = make_index(db)
        assert index.vector_engine == "client-scan"
        answer, boilerplate = fill(db, index)
        expected = [answer, *sorted(boilerplate)[:4]]
        assert [c for c, _ in index.vector(ANSWER, MODEL, None, 5)] == expected
        assert [c for c, _ in index.vector(ANSWER, MODEL, "docs", 5)] == expected
        cache.start()
        deadline = time.monotonic() + 60
        while not cache.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.ready
        assert [c for c, _ in cache.search(ANSWER, None, 5) or []] == expected
    finally:
        cache.close()
        db.close()

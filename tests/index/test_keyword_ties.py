"""Keyword rankings break ties the same way on both backends: best score first, then the
lower chunk id (identical chunk texts score the same, so ties are common)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from gristmill.catalog.backend import CatalogDatabase
from gristmill.catalog.postgres import PostgresDatabase
from gristmill.catalog.sqlite import SqliteDatabase
from gristmill.index import Index, StoredChunk, make_index

pytestmark = pytest.mark.sqlite_only("opens both backends itself")

ANSWER = "heron"
BOILERPLATE = "heron sightings are reported to the parish office"
OTHER = "sightings are reported weekly"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogDatabase]:
    """A fresh catalog of each backend."""
    opener: Callable[[], CatalogDatabase]
    if request.param == "sqlite":
        opener = partial(SqliteDatabase, tmp_path / "gristmill.db")
    else:
        opener = partial(PostgresDatabase, str(request.getfixturevalue("postgres_url")))
    database = opener()
    yield database
    database.close()


def add_item(db: CatalogDatabase, index: Index, source: str, collection: str,
             texts: list[str]) -> list[int]:
    """An extracted item holding ``texts``: its chunk ids, in order."""
    now = time.time()
    with db.transaction() as txn:
        item = txn.execute(
            "INSERT INTO items (collection, source, root, status, created_at, updated_at) "
            "VALUES (?, ?, '/r', 'extracted', ?, ?) RETURNING id",
            (collection, source, now, now)).fetchone()[0]
        index.replace_chunks(txn, item, collection, [
            StoredChunk(seq, text, f"hash-{text}", None, None)
            for seq, text in enumerate(texts)])
    return [int(i) for (i,) in db.conn.execute(
        "SELECT id FROM chunks WHERE item_id = ? ORDER BY seq", (item,)).fetchall()]


def test_equal_keyword_scores_come_lower_id_first(db: CatalogDatabase) -> None:
    """The best chunk, then the tied boilerplate chunks with the lowest ids (the tie cut
    by the limit), with and without a collection filter, and when chunks holding some
    of the words fill the list."""
    index = make_index(db)
    first = add_item(db, index, "/r/a.txt", "docs", [BOILERPLATE] * 6)
    answer = add_item(db, index, "/r/b.txt", "docs", [ANSWER])[0]
    second = add_item(db, index, "/r/c.txt", "docs", [BOILERPLATE] * 6 + [OTHER] * 3)
    add_item(db, index, "/r/d.txt", "mail", [BOILERPLATE] * 3)  # other collection
    others = second[6:]
    boilerplate = first + second[:6]

    assert [c for c, _ in index.keyword(ANSWER, None, 1)] == [answer]
    for collection in (None, "docs"):
        ranked = index.keyword(ANSWER, collection, 8)
        assert [c for c, _ in ranked] == [answer, *boilerplate[:7]]
        assert len({score for _, score in ranked[1:]}) == 1  # the boilerplate ties

    # "parish weekly": no chunk holds both; the boilerplate and the other chunks each
    # hold one word and tie among themselves.
    filled = index.keyword_ranking("parish weekly", "docs", 20)
    assert filled.complete == 0
    ids = [c for c, _ in filled.ranked]
    assert sorted(ids) == sorted(boilerplate + others)
    assert ids == sorted(ids, key=lambda c: (-dict(filled.ranked)[c], c))

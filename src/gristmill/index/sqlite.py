"""The embedded index: chunks in SQLite, FTS5 for BM25, vectors searched with NumPy.

Vectors live in the ``embeddings`` table keyed by (model, chunk-text hash), which makes
that table the embedding cache too. Vector search scans them in blocks with NumPy rather
than through the sqlite-vec extension because many CPython builds (pyenv's and macOS's
among them) cannot load SQLite extensions. An exact scan of 100k 384-d vectors spends
about 15 ms on arithmetic and half a second reading the vectors, which is why a server
keeps them in memory (:mod:`gristmill.index.vectors`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

from gristmill.catalog.sqlite import SqliteDatabase
from gristmill.index.base import (
    CHUNK_COLUMNS,
    Hit,
    PendingChunk,
    Scope,
    SharedQueries,
    StoredChunk,
    blocks,
    copy_chunk_rows,
    top_k_scan,
)

__all__ = [
    "Hit",
    "PendingChunk",
    "SqliteIndex",
    "StoredChunk",
    "fts_query",
]

_INSERT_CHUNK = (f"INSERT INTO chunks ({', '.join(CHUNK_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(CHUNK_COLUMNS))})")
_TOKEN = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_TOKENS = 64
_SCAN_BLOCK = 20_000


def fts_query(query: str, *, every_word: bool = False) -> str | None:
    """Turn any user string into a safe FTS5 query: each word quoted, then OR-ed together
    (or, with ``every_word``, AND-ed: FTS5's implicit operator between phrases).

    Quoting every token means FTS5 operators (AND, NEAR, ``*``, ``:``, parentheses) and
    stray quotes in the query are searched for as words instead of breaking the parser.
    """
    tokens = _TOKEN.findall(query)[:_MAX_QUERY_TOKENS]
    if not tokens:
        return None
    joiner = " " if every_word else " OR "
    return joiner.join('"' + t.replace('"', '""') + '"' for t in dict.fromkeys(tokens))


class SqliteIndex(SharedQueries):
    """Chunks, their full-text index and their vectors, in the catalog's database."""

    #: How vector search runs: an exact scan in NumPy (``PostgresIndex`` may say
    #: ``pgvector``); the note says why, where there is something to say.
    vector_engine = "client-scan"
    vector_engine_note: str | None = None

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        if not db.readonly:
            for statement in _UNINDEXED:  # not executescript: it would COMMIT
                db.conn.execute(statement)
            db.before_commit(_index_new_text)

    # -- writing (inside the batcher's transaction; their FTS rows at its commit) ----

    def replace_chunks(
        self, txn: sqlite3.Connection, item_id: int, collection: str,
        chunks: Iterable[StoredChunk]
    ) -> None:
        """Make ``chunks`` the item's only chunks (idempotent: re-applying is harmless)."""
        txn.execute("DELETE FROM chunks WHERE item_id = ?", (item_id,))
        txn.executemany(_INSERT_CHUNK, (c.row(item_id, collection) for c in chunks))
        _await_text_index(txn, item_id)

    def copy_chunks(self, txn: sqlite3.Connection, from_item: int, to_item: int,
                    collection: str) -> int:
        """Give ``to_item`` the chunks of an item with identical bytes; returns the count."""
        copied = copy_chunk_rows(txn, from_item, to_item, collection)
        _await_text_index(txn, to_item)
        return copied

    @staticmethod
    def store_vectors(
        txn: sqlite3.Connection, model: str, hashes: Sequence[str], vectors: np.ndarray
    ) -> None:
        """Store one float32 vector per text hash (first writer wins)."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        txn.executemany(
            "INSERT OR IGNORE INTO embeddings (model, text_hash, vector) VALUES (?, ?, ?)",
            ((model, h, data[i].tobytes()) for i, h in enumerate(hashes)))

    # -- reading (the rest: SharedQueries) --------------------------------------

    def _keyword_queries(self, query: str) -> tuple[str, str] | None:
        every = fts_query(query, every_word=True)
        some = fts_query(query)
        return None if every is None or some is None else (every, some)

    def _rank(self, match: str, scope: Scope, limit: int) -> list[tuple[int, float]]:
        # BM25, negated: FTS5 ranks lower as better. Equal scores come lower id first,
        # as on PostgreSQL: identical chunk texts (boilerplate) tie, and without the id
        # their order would be whatever SQLite's sorter happens to keep.
        conditions, params = scope.where()
        if not conditions:
            # `rank` over the FTS rows alone, without the join; with a second ORDER BY
            # term SQLite keeps the best `limit` rows instead of FTS5 sorting every
            # match. For a word in 65k of 100k chunks: 36 ms, against 54 over the
            # joined rows and 56 for FTS5's own sort.
            sql = ("SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? "
                   "ORDER BY rank, rowid LIMIT ?")
        else:
            sql = ("SELECT c.id, -bm25(chunks_fts) FROM chunks_fts "
                   "JOIN chunks c ON c.id = chunks_fts.rowid "
                   f"WHERE chunks_fts MATCH ? AND {' AND '.join(conditions)} "
                   "ORDER BY bm25(chunks_fts), c.id LIMIT ?")
        return [(int(i), float(s))
                for i, s in self.db.conn.execute(sql, [match, *params, limit])]

    def vector(
        self, query_vector: np.ndarray, model: str, scope: Scope | str | None, limit: int
    ) -> list[tuple[int, float]]:
        """``(chunk_id, cosine similarity)`` best first (an exact scan)."""
        conditions, params = Scope.of(scope).where()
        sql = ("SELECT c.id, e.vector FROM chunks c JOIN embeddings e "
               "ON e.model = ? AND e.text_hash = c.text_hash")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return top_k_scan(blocks(self.db.conn.execute(sql, [model, *params]), _SCAN_BLOCK),
                          query_vector, limit)

    def _id_in(self, ids: list[int]) -> tuple[str, Sequence[object]]:
        return f"c.id IN ({','.join('?' * len(ids))})", ids


def _await_text_index(txn: sqlite3.Connection, item_id: int) -> None:
    txn.execute("INSERT OR IGNORE INTO temp.fts_unindexed (item_id) VALUES (?)", (item_id,))


def _index_new_text(txn: sqlite3.Connection) -> None:
    """Add the chunks a transaction wrote to the FTS index, in one statement, just before
    it commits.

    Once per transaction, not once per item, and not from a row trigger: FTS5 writes a
    segment at the end of every statement (and of every statement savepoint, which a
    trigger runs in), then merges the segments. On the 11,318 chunks of 300 PDFs: 0.60 s
    of CPU by item, 0.32 s by 12 items (one flush of the runner), 0.20 s all at once.
    """
    txn.execute("INSERT INTO chunks_fts (rowid, text, heading, terms) "
                "SELECT id, text, heading, terms FROM chunks "
                "WHERE item_id IN (SELECT item_id FROM temp.fts_unindexed)")
    txn.execute("DELETE FROM temp.fts_unindexed")


# Items whose chunks this connection's open transaction wrote, and which wait for
# _index_new_text. The delete trigger (migration 001) tells FTS5 to forget every deleted
# chunk's terms; for a chunk whose terms it never had, that corrupts the index. So before
# such a chunk is deleted in the same transaction (its item replaced twice in one batch, a
# container's re-extraction dropping a member settled in that batch), this trigger indexes
# its item first. TEMP objects: per connection, and rolled back with the transaction.
_UNINDEXED = (
    "CREATE TEMP TABLE IF NOT EXISTS fts_unindexed (item_id INTEGER PRIMARY KEY)",
    """
CREATE TEMP TRIGGER IF NOT EXISTS fts_index_before_delete BEFORE DELETE ON main.chunks
WHEN EXISTS (SELECT 1 FROM temp.fts_unindexed WHERE item_id = old.item_id)
BEGIN
    INSERT INTO chunks_fts (rowid, text, heading, terms)
        SELECT id, text, heading, terms FROM main.chunks WHERE item_id = old.item_id;
    DELETE FROM fts_unindexed WHERE item_id = old.item_id;
END""")

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
from dataclasses import dataclass

import numpy as np

from gristmill import snippets
from gristmill.catalog.database import Database
from gristmill.index.fusion import KeywordRanking
from gristmill.snippets import Snippet

__all__ = [
    "Hit",
    "PendingChunk",
    "SqliteIndex",
    "StoredChunk",
    "fts_query",
]

_TOKEN = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_TOKENS = 64
_SCAN_BLOCK = 20_000


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as written to the index."""

    seq: int
    text: str
    text_hash: str
    page: int | None
    heading: str | None


@dataclass(frozen=True, slots=True)
class PendingChunk:
    """A chunk whose text has no vector yet for the embedder's model."""

    chunk_id: int
    item_id: int
    text_hash: str
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result."""

    source: str
    score: float
    text: str
    page: int | None
    heading: str | None
    collection: str
    chunk_id: int
    item_id: int

    def snippet(self, query: str) -> Snippet:
        """The passage of the chunk around ``query``'s words, with those words located."""
        return snippets.snippet(self.text, query)

    def to_dict(self, query: str = "") -> dict[str, object]:
        """The JSON shape of a hit: ``source``, ``score``, ``text`` (the whole chunk),
        provenance, and the ``snippet`` around ``query``'s words with their
        ``highlights`` (``[start, end]`` offsets into ``snippet``)."""
        return {"source": self.source, "score": self.score, "text": self.text,
                "page": self.page, "heading": self.heading, "collection": self.collection,
                "chunk_id": self.chunk_id, "item_id": self.item_id,
                **self.snippet(query).to_dict()}


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


class SqliteIndex:
    """Chunks, their full-text index and their vectors, in the catalog's database."""

    #: How vector search runs: an exact scan in NumPy (``PostgresIndex`` may say
    #: ``pgvector``); the note says why, where there is something to say.
    vector_engine = "client-scan"
    vector_engine_note: str | None = None

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing (inside the batcher's transaction) ------------------------------

    @staticmethod
    def replace_chunks(
        txn: sqlite3.Connection, item_id: int, collection: str, chunks: Iterable[StoredChunk]
    ) -> None:
        """Make ``chunks`` the item's only chunks (idempotent: re-applying is harmless)."""
        txn.execute("DELETE FROM chunks WHERE item_id = ?", (item_id,))
        txn.executemany(
            "INSERT INTO chunks (item_id, collection, seq, text, text_hash, page, heading) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((item_id, collection, c.seq, c.text, c.text_hash, c.page, c.heading)
             for c in chunks))
        _index_item_text(txn, item_id)

    @staticmethod
    def copy_chunks(txn: sqlite3.Connection, from_item: int, to_item: int, collection: str) -> int:
        """Give ``to_item`` the chunks of an item with identical bytes; returns the count."""
        txn.execute("DELETE FROM chunks WHERE item_id = ?", (to_item,))
        copied = txn.execute(
            "INSERT INTO chunks (item_id, collection, seq, text, text_hash, page, heading) "
            "SELECT ?, ?, seq, text, text_hash, page, heading FROM chunks WHERE item_id = ? "
            "ORDER BY seq", (to_item, collection, from_item)).rowcount
        _index_item_text(txn, to_item)
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

    # -- embedding backlog -------------------------------------------------------

    def pending_chunks(self, model: str, after_id: int, limit: int) -> list[PendingChunk]:
        """Chunks of ``extracted`` items with no ``model`` vector, in id order after
        ``after_id`` (a cursor, so chunks already handed out are not fetched again)."""
        rows = self.db.conn.execute(
            """SELECT c.id, c.item_id, c.text_hash, c.text
               FROM chunks c JOIN items i ON i.id = c.item_id
               WHERE c.id > ? AND i.status = 'extracted'
                 AND NOT EXISTS (SELECT 1 FROM embeddings e
                                 WHERE e.model = ? AND e.text_hash = c.text_hash)
               ORDER BY c.id LIMIT ?""", (after_id, model, limit)).fetchall()
        return [PendingChunk(*row) for row in rows]

    def embedding_backlog(self, model: str) -> int:
        """Distinct texts of ``extracted`` items' chunks with no ``model`` vector yet:
        what the embedding stage has left to do (progress reports count it)."""
        return int(self.db.conn.execute(
            """SELECT count(DISTINCT c.text_hash)
               FROM chunks c JOIN items i ON i.id = c.item_id
               WHERE i.status = 'extracted'
                 AND NOT EXISTS (SELECT 1 FROM embeddings e
                                 WHERE e.model = ? AND e.text_hash = c.text_hash)""",
            (model,)).fetchone()[0])

    def has_vector(self, model: str, text_hash: str) -> bool:
        """Whether the cache holds a ``model`` vector for this text."""
        return self.db.conn.execute(
            "SELECT 1 FROM embeddings WHERE model = ? AND text_hash = ?",
            (model, text_hash)).fetchone() is not None

    # -- reading -----------------------------------------------------------------

    def chunk_count(self, collection: str | None = None) -> int:
        """Chunks stored (in one collection, or all)."""
        if collection is None:
            return int(self.db.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        return int(self.db.conn.execute(
            "SELECT count(*) FROM chunks WHERE collection = ?", (collection,)).fetchone()[0])

    def chunks_with_vectors(self, model: str) -> int:
        """Chunks whose text has a ``model`` vector (identical texts share one vector,
        so this is at least :meth:`vector_count` of those texts)."""
        return int(self.db.conn.execute(
            "SELECT count(*) FROM chunks c WHERE EXISTS (SELECT 1 FROM embeddings e "
            "WHERE e.model = ? AND e.text_hash = c.text_hash)", (model,)).fetchone()[0])

    def vector_count(self, model: str) -> int:
        """Distinct chunk texts with a vector for ``model``."""
        return int(self.db.conn.execute(
            "SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()[0])

    def vector_counts(self) -> dict[str, int]:
        """Vectors stored (the embedding cache), by model."""
        return {model: int(n) for model, n in self.db.conn.execute(
            "SELECT model, count(*) FROM embeddings GROUP BY model")}

    def keyword(self, query: str, collection: str | None, limit: int) -> list[tuple[int, float]]:
        """``(chunk_id, bm25 score)`` best first; higher is better (see
        :meth:`keyword_ranking`)."""
        return self.keyword_ranking(query, collection, limit).ranked

    def keyword_ranking(self, query: str, collection: str | None, limit: int
                        ) -> KeywordRanking:
        """``(chunk_id, bm25 score)`` best first, higher better, and how many of them
        hold every word of the query.

        Chunks holding every word of the query come first; only when they are fewer than
        ``limit`` do chunks holding some of the words fill the rest, scored no higher
        than the last all-words chunk so the list stays in score order. Asking for every
        word first is what keeps a query cheap: BM25 is computed for each matching
        chunk, and "any of these words" can match a tenth of a 100k-chunk index
        (BENCHMARKS.md, "HTTP API under load").
        """
        every = fts_query(query, every_word=True)
        if every is None:
            return KeywordRanking([], 0)
        ranked = self._bm25(every, collection, limit)
        complete = len(ranked)
        some = fts_query(query)
        if len(ranked) >= limit or some == every:  # enough, or a single word
            return KeywordRanking(ranked, complete)
        found = {chunk_id for chunk_id, _ in ranked}
        ceiling = ranked[-1][1] if ranked else float("inf")
        for chunk_id, score in self._bm25(some, collection, limit + len(ranked)):
            if len(ranked) == limit:
                break
            if chunk_id not in found:
                ranked.append((chunk_id, min(score, ceiling)))
        return KeywordRanking(ranked, complete)

    def _bm25(self, match: str | None, collection: str | None, limit: int
              ) -> list[tuple[int, float]]:
        if collection is None:
            # FTS5 sorts by its own `rank` column without the join: about a third
            # cheaper than ORDER BY bm25() over the joined rows.
            sql = ("SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? "
                   "ORDER BY rank LIMIT ?")
            params: tuple[object, ...] = (match, limit)
        else:
            sql = ("SELECT c.id, -bm25(chunks_fts) FROM chunks_fts "
                   "JOIN chunks c ON c.id = chunks_fts.rowid "
                   "WHERE chunks_fts MATCH ? AND c.collection = ? "
                   "ORDER BY bm25(chunks_fts) LIMIT ?")
            params = (match, collection, limit)
        return [(int(i), float(s)) for i, s in self.db.conn.execute(sql, params)]

    def vector(
        self, query_vector: np.ndarray, model: str, collection: str | None, limit: int
    ) -> list[tuple[int, float]]:
        """``(chunk_id, cosine similarity)`` best first, by an exact blockwise scan."""
        sql = ("SELECT c.id, e.vector FROM chunks c JOIN embeddings e "
               "ON e.model = ? AND e.text_hash = c.text_hash")
        params: list[object] = [model]
        if collection is not None:
            sql += " WHERE c.collection = ?"
            params.append(collection)
        q = np.asarray(query_vector, dtype=np.float32).ravel()
        best_ids = np.empty(0, dtype=np.int64)
        best_scores = np.empty(0, dtype=np.float32)
        cursor = self.db.conn.execute(sql, params)
        while rows := cursor.fetchmany(_SCAN_BLOCK):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            scores = matrix.reshape(len(rows), q.shape[0]) @ q
            best_ids = np.concatenate([best_ids, ids])
            best_scores = np.concatenate([best_scores, scores])
            if len(best_ids) > limit:
                keep = np.argpartition(-best_scores, limit)[:limit]
                best_ids, best_scores = best_ids[keep], best_scores[keep]
        order = np.argsort(-best_scores, kind="stable")
        return [(int(best_ids[i]), float(best_scores[i])) for i in order]

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Attach text and provenance to ``(chunk_id, score)`` pairs, keeping their order."""
        if not scored:
            return []
        ids = [chunk_id for chunk_id, _ in scored]
        marks = ",".join("?" * len(ids))
        rows = {
            row[0]: row
            for row in self.db.conn.execute(
                f"SELECT c.id, i.source, c.text, c.page, c.heading, c.collection, c.item_id "
                f"FROM chunks c JOIN items i ON i.id = c.item_id WHERE c.id IN ({marks})", ids)
        }
        return [
            Hit(source=rows[cid][1], score=score, text=rows[cid][2], page=rows[cid][3],
                heading=rows[cid][4], collection=rows[cid][5], chunk_id=cid,
                item_id=rows[cid][6])
            for cid, score in scored if cid in rows
        ]


def _index_item_text(txn: sqlite3.Connection, item_id: int) -> None:
    """Add an item's freshly inserted chunks to the FTS index, in one statement.

    Not a row trigger: FTS5 flushes its pending terms at every statement savepoint, so
    a trigger writes one tiny segment per chunk (see migration 002).
    """
    txn.execute("INSERT INTO chunks_fts (rowid, text, heading) "
                "SELECT id, text, heading FROM chunks WHERE item_id = ?", (item_id,))


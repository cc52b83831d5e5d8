"""What every index offers: the :class:`Index` protocol, the types it reads and writes,
one exact top-k vector scan, and the queries whose SQL both backends share.

The runner writes chunks and vectors through an index and reads its embedding backlog;
the searcher ranks chunks with it. :class:`~gristmill.index.sqlite.SqliteIndex` (FTS5,
NumPy) and :class:`~gristmill.index.postgres.PostgresIndex` (tsvector, pgvector) differ
only where their SQL does; a new store implements :class:`Index`, and inherits
:class:`SharedQueries` where its SQL is the same.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gristmill.index.fusion import KeywordRanking
from gristmill.snippets import Snippet, snippet

if TYPE_CHECKING:
    from gristmill.catalog.backend import CatalogDatabase, Cursor

__all__ = [
    "Hit",
    "Index",
    "PendingChunk",
    "SharedQueries",
    "StoredChunk",
    "blocks",
    "copy_chunk_rows",
    "top_k",
    "top_k_scan",
]


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as written to the index."""

    seq: int
    text: str
    text_hash: str
    page: int | None
    heading: str | None
    language: str | None = None
    kind: str | None = None
    entity: str | None = None
    parent: str | None = None
    lines: tuple[int, int] | None = None
    terms: str | None = None  # identifiers split into words, for keyword search

    def row(self, item_id: int, collection: str) -> tuple[object, ...]:
        """The values of :data:`CHUNK_COLUMNS`."""
        start, end = self.lines if self.lines is not None else (None, None)
        return (item_id, collection, self.seq, self.text, self.text_hash, self.page,
                self.heading, self.language, self.kind, self.entity, self.parent, start,
                end, self.terms)


#: The chunk columns a writer fills, in :meth:`StoredChunk.row` order.
CHUNK_COLUMNS = ("item_id", "collection", "seq", "text", "text_hash", "page", "heading",
                 "language", "kind", "entity", "parent_entity", "line_start", "line_end",
                 "terms")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which chunks a search ranks: one collection, and for code a language, an entity
    kind and a glob over the file's path.

    ``path`` is matched like a shell glob (``*`` crosses ``/``) against the path relative
    to the folder that was ingested (``src/main/*/Invoice*.java``) or the whole path.
    """

    collection: str | None = None
    language: str | None = None
    kind: str | None = None
    path: str | None = None

    @classmethod
    def of(cls, scope: Scope | str | None) -> Scope:
        """``scope`` itself, or a collection's name (None: everything) as a scope."""
        return scope if isinstance(scope, Scope) else cls(collection=scope)

    @property
    def code(self) -> bool:
        """Whether it filters on what only code chunks have."""
        return (self.language, self.kind, self.path) != (None, None, None)

    def where(self, placeholder: str = "?", *, regex: bool = False
              ) -> tuple[list[str], list[object]]:
        """SQL conditions on chunks ``c`` (and their item), with their parameters:
        ``placeholder`` as the driver writes one; ``regex`` matches ``path`` with
        PostgreSQL's ``~`` instead of SQLite's ``GLOB``."""
        conditions: list[str] = []
        params: list[object] = []
        for column, value in (("collection", self.collection),
                              ("language", self.language), ("kind", self.kind)):
            if value is not None:
                conditions.append(f"c.{column} = {placeholder}")
                params.append(value)
        if self.path is not None:
            match, pattern = ("~", glob_regex(self.path)) if regex else ("GLOB", self.path)
            conditions.append(
                f"EXISTS (SELECT 1 FROM items i WHERE i.id = c.item_id AND ("
                f"i.source {match} {placeholder} OR "
                f"substr(i.source, length(i.root) + 2) {match} {placeholder}))")
            params += [pattern, pattern]
        return conditions, params


def glob_regex(glob: str) -> str:
    """A shell glob as an anchored POSIX regular expression, as SQLite's GLOB reads it:
    ``*`` any run of characters (``/`` too), ``?`` one, ``[...]``/``[^...]`` a class."""
    out, i = ["^"], 0
    while i < len(glob):
        char = glob[i]
        end = glob.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif end > 0:
            body = glob[i + 1:end]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"


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
    language: str | None = None
    kind: str | None = None
    entity: str | None = None
    lines: tuple[int, int] | None = None

    def snippet(self, query: str) -> Snippet:
        """The passage of the chunk around ``query``'s words, with those words located."""
        return snippet(self.text, query)

    def to_dict(self, query: str = "") -> dict[str, object]:
        """The JSON shape of a hit: ``source``, ``score``, ``text`` (the whole chunk),
        provenance, and the ``snippet`` around ``query``'s words with their
        ``highlights`` (``[start, end]`` offsets into ``snippet``)."""
        code = {"entity": self.entity, "kind": self.kind, "language": self.language,
                "lines": list(self.lines) if self.lines else None} \
            if self.language is not None else {}
        return {"source": self.source, "score": self.score, "text": self.text,
                "page": self.page, "heading": self.heading, "collection": self.collection,
                "chunk_id": self.chunk_id, "item_id": self.item_id, **code,
                **self.snippet(query).to_dict()}


class Index(Protocol):
    """Chunks, their keyword index and their vectors, in the catalog's database.

    Rankings are ``(chunk_id, score)`` pairs, best first, higher better; equal scores
    come in chunk id order. The writing methods run inside the batcher's transaction:
    ``txn`` is what the database's ``transaction()`` yields (a ``sqlite3.Connection``,
    or a ``PostgresTransaction``), hence ``Any``.
    """

    #: ``client-scan`` (an exact scan in NumPy) or ``pgvector`` (HNSW on the server).
    vector_engine: str
    #: Why the engine is ``client-scan``, in words for ``doctor`` and ``/health``.
    vector_engine_note: str | None

    @property
    def db(self) -> CatalogDatabase: ...

    # -- writing -------------------------------------------------------------------

    def replace_chunks(self, txn: Any, item_id: int, collection: str,
                       chunks: Iterable[StoredChunk]) -> None:
        """Make ``chunks`` the item's only chunks (idempotent: re-applying is harmless)."""
        ...
    def copy_chunks(self, txn: Any, from_item: int, to_item: int, collection: str) -> int:
        """Give ``to_item`` the chunks of an item with identical bytes; returns the count."""
        ...
    def store_vectors(self, txn: Any, model: str, hashes: Sequence[str],
                      vectors: np.ndarray) -> None:
        """Store one float32 vector per text hash (first writer wins)."""
        ...

    # -- embedding backlog -----------------------------------------------------------

    def pending_chunks(self, model: str, after_id: int, limit: int) -> list[PendingChunk]:
        """Chunks of ``extracted`` items with no ``model`` vector, in id order."""
        ...
    def embedding_backlog(self, model: str) -> int:
        """Distinct texts of ``extracted`` items' chunks with no ``model`` vector yet."""
        ...

    # -- reading -------------------------------------------------------------------

    def chunk_count(self, collection: str | None = None) -> int:
        """Chunks stored (in one collection, or all)."""
        ...
    def chunks_with_vectors(self, model: str) -> int:
        """Chunks whose text has a ``model`` vector."""
        ...
    def vector_counts(self) -> dict[str, int]:
        """Vectors stored (the embedding cache), by model."""
        ...
    def keyword(self, query: str, scope: Scope | str | None, limit: int
                ) -> list[tuple[int, float]]:
        """The keyword ranking alone (see :meth:`keyword_ranking`)."""
        ...
    def keyword_ranking(self, query: str, scope: Scope | str | None, limit: int
                        ) -> KeywordRanking:
        """The keyword ranking, chunks holding every word of the query first, among the
        chunks of ``scope`` (a :class:`Scope`, a collection's name, or None: all)."""
        ...
    def vector(self, query_vector: np.ndarray, model: str, scope: Scope | str | None,
               limit: int) -> list[tuple[int, float]]:
        """``(chunk_id, cosine similarity)`` best first, among the chunks of ``scope``."""
        ...
    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Attach text and provenance to ``(chunk_id, score)`` pairs, keeping their order."""
        ...


# -- the exact vector scan ---------------------------------------------------------------


def top_k(ids: np.ndarray, scores: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``limit`` best ``(ids, scores)``, best score first, equal scores by lower id.

    ``argpartition`` alone keeps an arbitrary few of the scores equal to the cut-off one,
    so every score tied with it stays a candidate until the sort by ``(-score, id)``:
    the same answer whatever order the rows came in (identical chunk texts share one
    vector, so ties are common: boilerplate repeated across files).
    """
    if limit <= 0:
        return ids[:0], scores[:0]
    if len(scores) > limit:
        cutoff = np.partition(-scores, limit - 1)[limit - 1]
        keep = np.flatnonzero(-scores <= cutoff)
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:limit]
    return ids[order], scores[order]


def blocks(cursor: Cursor, size: int) -> Iterator[list[Any]]:
    """A cursor's rows, ``size`` at a time."""
    while rows := cursor.fetchmany(size):
        yield rows


def top_k_scan(rows: Iterable[Sequence[tuple[int, bytes]]], query_vector: np.ndarray,
               limit: int) -> list[tuple[int, float]]:
    """``(chunk_id, cosine similarity)`` best first (ties by lower id) over blocks of
    ``(chunk_id, float32 vector bytes)`` rows: exact, holding one block and the best
    ``limit`` so far, never every vector."""
    q = np.asarray(query_vector, dtype=np.float32).ravel()
    best_ids = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0, dtype=np.float32)
    for block in rows:
        ids = np.fromiter((r[0] for r in block), dtype=np.int64, count=len(block))
        matrix = np.frombuffer(b"".join(r[1] for r in block), dtype=np.float32)
        scores = matrix.reshape(len(block), q.shape[0]) @ q
        best_ids, best_scores = top_k(np.concatenate([best_ids, ids]),
                                      np.concatenate([best_scores, scores]), limit)
    return [(int(i), float(s)) for i, s in zip(best_ids, best_scores, strict=True)]


# -- the queries both backends write the same way ---------------------------------------


def copy_chunk_rows(txn: Any, from_item: int, to_item: int, collection: str) -> int:
    """Make ``to_item``'s chunks copies of ``from_item``'s, in the caller's transaction;
    returns the count (the backend then indexes them for keywords where it must)."""
    txn.execute("DELETE FROM chunks WHERE item_id = ?", (to_item,))
    copied = ", ".join(CHUNK_COLUMNS[2:])
    return int(txn.execute(
        f"INSERT INTO chunks ({', '.join(CHUNK_COLUMNS)}) "
        f"SELECT ?, ?, {copied} FROM chunks WHERE item_id = ? "
        "ORDER BY seq", (to_item, collection, from_item)).rowcount)


def _hit(row: Sequence[Any], score: float) -> Hit:
    lines = (int(row[10]), int(row[11])) if row[10] is not None else None
    return Hit(source=row[1], score=score, text=row[2], page=row[3], heading=row[4],
               collection=row[5], chunk_id=row[0], item_id=row[6], language=row[7],
               kind=row[8], entity=row[9], lines=lines)


class SharedQueries(ABC):
    """The methods of :class:`Index` whose SQL is the same on SQLite and PostgreSQL
    (written in SQLite's style; the PostgreSQL connection translates placeholders).

    A backend sets ``db`` and provides ``_rank`` (its keyword scoring) and ``_id_in``
    (how it matches a list of chunk ids).
    """

    db: CatalogDatabase

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

    # -- reading -----------------------------------------------------------------

    def chunk_count(self, collection: str | None = None) -> int:
        """Chunks stored (in one collection, or all)."""
        if collection is None:
            return int(self.db.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        return int(self.db.conn.execute(
            "SELECT count(*) FROM chunks WHERE collection = ?", (collection,)).fetchone()[0])

    def chunks_with_vectors(self, model: str) -> int:
        """Chunks whose text has a ``model`` vector (identical texts share one vector,
        so this is at least the number of those distinct texts)."""
        return int(self.db.conn.execute(
            "SELECT count(*) FROM chunks c WHERE EXISTS (SELECT 1 FROM embeddings e "
            "WHERE e.model = ? AND e.text_hash = c.text_hash)", (model,)).fetchone()[0])

    def vector_counts(self) -> dict[str, int]:
        """Vectors stored (the embedding cache), by model."""
        return {model: int(n) for model, n in self.db.conn.execute(
            "SELECT model, count(*) FROM embeddings GROUP BY model")}

    def keyword(self, query: str, scope: Scope | str | None, limit: int
                ) -> list[tuple[int, float]]:
        """``(chunk_id, score)`` best first; higher is better (see
        :meth:`keyword_ranking`)."""
        return self.keyword_ranking(query, scope, limit).ranked

    def keyword_ranking(self, query: str, scope: Scope | str | None, limit: int
                        ) -> KeywordRanking:
        """``(chunk_id, score)`` best first, higher better, and how many of them hold
        every word of the query.

        Chunks holding every word of the query come first; only when they are fewer than
        ``limit`` do chunks holding some of the words fill the rest, scored no higher
        than the last all-words chunk so the list stays in score order. Asking for every
        word first is what keeps a query cheap: the score is computed for each matching
        chunk, and "any of these words" can match a tenth of a 100k-chunk index
        (BENCHMARKS.md, "HTTP API under load").
        """
        queries = self._keyword_queries(query)
        if queries is None:
            return KeywordRanking([], 0)
        every, some = queries
        scope = Scope.of(scope)
        ranked = self._rank(every, scope, limit)
        complete = len(ranked)
        if len(ranked) >= limit or some == every:  # enough, or a single word
            return KeywordRanking(ranked, complete)
        found = {chunk_id for chunk_id, _ in ranked}
        ceiling = ranked[-1][1] if ranked else float("inf")
        for chunk_id, score in self._rank(some, scope, limit + len(ranked)):
            if len(ranked) == limit:
                break
            if chunk_id not in found:
                ranked.append((chunk_id, min(score, ceiling)))
        return KeywordRanking(ranked, complete)

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Attach text and provenance to ``(chunk_id, score)`` pairs, keeping their order."""
        if not scored:
            return []
        match, params = self._id_in([chunk_id for chunk_id, _ in scored])
        rows = {
            row[0]: row
            for row in self.db.conn.execute(
                "SELECT c.id, i.source, c.text, c.page, c.heading, c.collection, c.item_id, "
                "c.language, c.kind, c.entity, c.line_start, c.line_end "
                f"FROM chunks c JOIN items i ON i.id = c.item_id WHERE {match}",
                params).fetchall()
        }
        return [_hit(rows[cid], score) for cid, score in scored if cid in rows]

    # -- what each backend says its own way ---------------------------------------

    @abstractmethod
    def _keyword_queries(self, query: str) -> tuple[str, str] | None:
        """The backend's match expressions for every word and for any word of
        ``query`` (equal for a single word), or None when it has no words."""

    @abstractmethod
    def _rank(self, match: str, scope: Scope, limit: int
              ) -> list[tuple[int, float]]:
        """``(chunk_id, score)`` of the chunks ``match`` finds, best first."""

    @abstractmethod
    def _id_in(self, ids: list[int]) -> tuple[str, Sequence[object]]:
        """A condition on ``c.id`` matching ``ids``, and its parameters."""

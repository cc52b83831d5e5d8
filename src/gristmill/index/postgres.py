"""The PostgreSQL index: chunks with a generated ``tsvector`` (GIN) for keyword search,
and vectors searched through pgvector's HNSW index where the server has the extension.

The ``tsv`` column and its GIN index are part of the chunks table
(:mod:`gristmill.catalog.migrations.postgres`, where the GIN settings are explained).

``embeddings.vector`` (float32 ``bytea``) is always written: it is the embedding cache
and works on any server. Where pgvector is available, each vector is also written to
``embedding_vectors`` (one table for every model, its ``vector`` column without a fixed
dimension) and each model gets a partial HNSW index over ``embedding::vector(dim)``,
pgvector's way of indexing vectors of several dimensions in one column. Without pgvector,
vector search is the exact blockwise scan the SQLite index does, reading the vectors
through a server-side cursor.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql

from gristmill.errors import StoreError
from gristmill.index.base import (
    CHUNK_COLUMNS,
    Scope,
    SharedQueries,
    StoredChunk,
    blocks,
    copy_chunk_rows,
    top_k_scan,
)

if TYPE_CHECKING:
    from gristmill.catalog.postgres import PostgresDatabase, PostgresTransaction

__all__ = ["NO_PGVECTOR", "PostgresIndex", "vector_search_check"]

log = logging.getLogger(__name__)

ENGINE_PGVECTOR = "pgvector"
ENGINE_CLIENT_SCAN = "client-scan"

NO_PGVECTOR = ("pgvector is not installed on this server: vector search scans every "
               "vector in the client (exact, slower beyond ~100k chunks); install the "
               "extension for an HNSW index")

_TOKEN = re.compile(r"\w+", re.UNICODE)  # the SQLite index's words, so both agree
_MAX_QUERY_TOKENS = 64
_SCAN_BLOCK = 20_000
# An item with at least this many chunks goes in by COPY, a smaller one by a pipelined
# executemany INSERT. Measured (benchmarks/bench_pg_index.py, chunks of real text,
# PostgreSQL 15): into the chunks table, whose tsvector (~0.3 ms a chunk) costs far more
# than the transfer, COPY was 1.15-1.2x faster from 16 chunks (1.4x at 4,096) and no
# faster below; without the tsvector column it is 1.5-1.65x faster from 256 chunks and
# slower for a handful (a COPY costs an extra round trip).
_COPY_FROM = 16
_BACKFILL_BLOCK = 5_000  # cached vectors copied per round trip when pgvector arrives
# HNSW candidates: pgvector 0.6 stops at ef_search (at most 1000) neighbours, and a
# collection filter or vectors no chunk uses any more (the cache keeps them) drop some
# of those; an exact scan answers when too few are left.
_MIN_CANDIDATES = 100
_MAX_EF_SEARCH = 1000
_LOCK_KEY = 0x67726973746D  # "gristm": serialises the lazy DDL of concurrent openers
_said: set[str] = set()


def _say_once(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.log(level, message)


class PostgresIndex(SharedQueries):
    """Chunks, their full-text index and their vectors, in the catalog's PostgreSQL."""

    db: PostgresDatabase  # its transactions carry ``raw``, for COPY and pgvector's SQL

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self._indexed: set[str] = set()  # models whose partial HNSW index exists
        self._late_table = False  # see _table_appeared
        engine, note = self._choose_engine(readonly=db.readonly)
        #: ``pgvector`` (HNSW index on the server) or ``client-scan`` (exact, in NumPy).
        self.vector_engine = engine
        #: Why the engine is ``client-scan``, in words for ``doctor`` and ``/health``.
        self.vector_engine_note = note

    # -- writing (inside the batcher's transaction) ------------------------------

    @staticmethod
    def replace_chunks(txn: PostgresTransaction, item_id: int, collection: str,
                       chunks: Iterable[StoredChunk]) -> None:
        """Make ``chunks`` the item's only chunks (idempotent: re-applying is harmless)."""
        rows = [replace(c, text=_clean(c.text),
                        heading=None if c.heading is None else _clean(c.heading)
                        ).row(item_id, collection) for c in chunks]
        txn.execute("DELETE FROM chunks WHERE item_id = ?", (item_id,))
        columns = ", ".join(CHUNK_COLUMNS)
        if len(rows) >= _COPY_FROM:
            with txn.raw.cursor() as cur, cur.copy(
                    f"COPY chunks ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elif rows:
            txn.executemany(
                f"INSERT INTO chunks ({columns}) "
                f"VALUES ({', '.join('?' * len(CHUNK_COLUMNS))})", rows)

    @staticmethod
    def copy_chunks(txn: PostgresTransaction, from_item: int, to_item: int, collection: str) -> int:
        """Give ``to_item`` the chunks of an item with identical bytes; returns the count."""
        return copy_chunk_rows(txn, from_item, to_item, collection)

    def store_vectors(self, txn: PostgresTransaction, model: str, hashes: Sequence[str],
                      vectors: np.ndarray) -> None:
        """Store one float32 vector per text hash (first writer wins)."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(hashes):
            return
        txn.executemany(
            "INSERT INTO embeddings (model, text_hash, vector) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(model, h, data[i].tobytes()) for i, h in enumerate(hashes)])
        if self.vector_engine == ENGINE_PGVECTOR or self._table_appeared():
            txn.executemany(
                "INSERT INTO embedding_vectors (model, text_hash, embedding) "
                "VALUES (?, ?, ?::vector) ON CONFLICT DO NOTHING",
                [(model, h, _vector_text(data[i])) for i, h in enumerate(hashes)])
            self._ensure_hnsw(txn, model, data.shape[1])

    def _table_appeared(self) -> bool:
        # pgvector set up while this process runs (a long watch, say): another process
        # has created embedding_vectors, complete up to then; what this one writes from
        # now on must go there too.
        if not self._late_table:
            self._late_table = self._vector_table_exists()
        return self._late_table

    # -- reading (the rest: SharedQueries) --------------------------------------

    def _keyword_queries(self, query: str) -> tuple[str, str] | None:
        # Scores are ``ts_rank_cd`` normalised by length and into [0, 1). Stop words
        # are not indexed: "every word" means every word but those.
        tokens = _tsquery_words(query)
        return (" & ".join(tokens), " | ".join(tokens)) if tokens else None

    def _rank(self, match: str, scope: Scope, limit: int) -> list[tuple[int, float]]:
        # Each token is a run of \w characters wrapped in quotes, so to_tsquery sees no
        # operator a user typed; it still stems each word and drops stop words.
        # Normalisation 1|32: divide by 1 + log(length) (long chunks do not win by
        # length alone, as in BM25), then map into [0, 1).
        conditions, params = scope.where(regex=True)
        where = " AND ".join(["c.tsv @@ q", *conditions])
        params = [match, *params, limit]
        rows = self.db.conn.execute(
            "SELECT c.id, ts_rank_cd(c.tsv, q, 33) AS score "
            f"FROM chunks c, to_tsquery('english', ?) q WHERE {where} "
            "ORDER BY score DESC, c.id LIMIT ?", params).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def vector(self, query_vector: np.ndarray, model: str, scope: Scope | str | None,
               limit: int) -> list[tuple[int, float]]:
        """``(chunk_id, cosine similarity)`` best first: HNSW with pgvector (approximate),
        else an exact blockwise scan in the client."""
        q = np.asarray(query_vector, dtype=np.float32).ravel()
        scope = Scope.of(scope)
        if self.vector_engine == ENGINE_PGVECTOR:
            return self._pgvector_search(q, model, scope, limit)
        return self._client_scan(q, model, scope, limit)

    def _id_in(self, ids: list[int]) -> tuple[str, Sequence[object]]:
        return "c.id = ANY(?)", (ids,)

    # -- vector search -----------------------------------------------------------

    def _client_scan(self, q: np.ndarray, model: str, scope: Scope,
                     limit: int) -> list[tuple[int, float]]:
        query = ("SELECT c.id, e.vector FROM chunks c JOIN embeddings e "
                 "ON e.model = %s AND e.text_hash = c.text_hash")
        conditions, params = scope.where("%s", regex=True)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        params = [model, *params]
        # A server-side cursor: the client holds one block of vectors at a time.
        with self.db.transaction() as txn, txn.raw.cursor(
                name="gristmill_vector_scan", binary=True) as cursor:
            cursor.execute(query, params)
            return top_k_scan(blocks(cursor, _SCAN_BLOCK), q, limit)

    def _pgvector_search(self, q: np.ndarray, model: str, scope: Scope,
                         limit: int) -> list[tuple[int, float]]:
        conditions, params = scope.where("%s", regex=True)
        vector_type = sql.SQL("vector({})").format(sql.Literal(q.shape[0]))
        query = _vector_text(q)
        with self.db.transaction() as txn:
            raw = txn.raw
            if self._has_hnsw(raw, model):
                candidates = min(_MAX_EF_SEARCH, max(_MIN_CANDIDATES, 2 * limit))
                raw.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(candidates)))
                # On a table never analysed (autovacuum off or not yet run) the planner
                # expects a handful of rows and sorts them all, a full exact scan; with
                # sorting discouraged it walks the HNSW index, which is what it is for.
                raw.execute("SET LOCAL enable_sort = off")
                # The model is a literal, not a parameter: the planner must see
                # `model = '...'` to use that model's partial index, and a prepared
                # statement's generic plan would not.
                nearest = dict(raw.execute(sql.SQL(
                    "SELECT text_hash, embedding::{t} <=> %(q)s::{t}"
                    " FROM embedding_vectors WHERE model = {model}"
                    " ORDER BY embedding::{t} <=> %(q)s::{t} LIMIT %(candidates)s").format(
                        t=vector_type, model=sql.Literal(model)),
                    {"q": query, "candidates": candidates}).fetchall())
                ranked = sorted(
                    ((int(chunk_id), 1.0 - float(nearest[text_hash]))
                     for chunk_id, text_hash in raw.execute(
                         " AND ".join(["SELECT c.id, c.text_hash FROM chunks c "
                                       "WHERE c.text_hash = ANY(%s)", *conditions]),
                         [list(nearest), *params]).fetchall()),
                    key=lambda pair: (-pair[1], pair[0]))[:limit]
                # Fewer candidates than asked for: the index has no more to give.
                if len(ranked) >= limit or len(nearest) < candidates:
                    return ranked
            # Exact: no HNSW index for this model yet, or the filter (or vectors whose
            # chunks are gone) left too few of the index's candidates. The distance is
            # computed on the server.
            raw.execute("SET LOCAL enable_sort = on")
            filter_ = sql.SQL("WHERE " + " AND ".join(conditions) if conditions else "")
            rows = raw.execute(sql.SQL(
                "SELECT c.id, 1 - (v.embedding <=> %s::vector) AS score"
                " FROM chunks c JOIN embedding_vectors v"
                " ON v.model = {model} AND v.text_hash = c.text_hash {filter}"
                " ORDER BY v.embedding <=> %s::vector, c.id LIMIT %s").format(
                    model=sql.Literal(model), filter=filter_),
                [query, *params, query, limit]).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    # -- pgvector set-up -----------------------------------------------------------

    def _choose_engine(self, readonly: bool) -> tuple[str, str | None]:
        row = self.db.conn.execute(
            "SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if row is None:
            _say_once(logging.WARNING, NO_PGVECTOR)
            return ENGINE_CLIENT_SCAN, NO_PGVECTOR
        if row[0] is not None and self._vector_table_exists():
            return ENGINE_PGVECTOR, None
        if readonly:  # a writer sets it up; until one has, scan
            return ENGINE_CLIENT_SCAN, ("pgvector is available but not set up in this "
                                        "database yet (gristmill does it the next time it "
                                        "opens it to write): vector search scans every "
                                        "vector in the client meanwhile")
        try:
            with self.db.transaction() as txn:
                txn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
                if row[0] is None:
                    txn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                if not self._vector_table_exists():  # another process may have made it
                    self._create_vector_table(txn)
        except StoreError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
                raise
            note = ("pgvector is available on this server but this role may not create the "
                    "extension: have a superuser run CREATE EXTENSION vector in this "
                    "database. Until then vector search scans every vector in the client "
                    "(exact, slower beyond ~100k chunks)")
            _say_once(logging.WARNING, note)
            return ENGINE_CLIENT_SCAN, note
        return ENGINE_PGVECTOR, None

    def _vector_table_exists(self) -> bool:
        row = self.db.conn.execute(
            "SELECT to_regclass('embedding_vectors') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def _create_vector_table(self, txn: PostgresTransaction) -> None:
        """Create ``embedding_vectors`` holding every vector already cached (those written
        before pgvector was installed) and index each model, in the caller's transaction:
        the table exists only complete, so its existence says no copy is needed."""
        txn.execute(
            "CREATE TABLE embedding_vectors ("
            " model text NOT NULL, text_hash text NOT NULL, embedding vector NOT NULL,"
            " PRIMARY KEY (model, text_hash),"
            " FOREIGN KEY (model, text_hash) REFERENCES embeddings (model, text_hash)"
            " ON DELETE CASCADE)")
        dims: dict[str, int] = {}
        copied = 0
        with txn.raw.cursor(name="gristmill_vector_copy", binary=True) as cursor:
            cursor.execute("SELECT model, text_hash, vector FROM embeddings")
            while rows := cursor.fetchmany(_BACKFILL_BLOCK):
                for model, _, vector in rows:
                    dims.setdefault(model, len(vector) // 4)
                txn.executemany(
                    "INSERT INTO embedding_vectors (model, text_hash, embedding) "
                    "VALUES (?, ?, ?::vector)",
                    [(model, h, _vector_text(np.frombuffer(v, dtype=np.float32)))
                     for model, h, v in rows])
                copied += len(rows)
        if copied:
            log.info("pgvector: copied %d cached vectors into embedding_vectors", copied)
        # Indexed after the copy: one bulk build is faster than growing the graph row by
        # row.
        for model, dim in dims.items():
            self._ensure_hnsw(txn, model, dim)

    def _ensure_hnsw(self, txn: PostgresTransaction, model: str, dim: int) -> None:
        if self._has_hnsw(txn.raw, model):
            return
        # Built when a model's first vectors are stored (or backfilled): one index per
        # model, on the column cast to its dimension. The lock: two processes storing a
        # model's first vectors at once would otherwise race to create it.
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
        txn.raw.execute(sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON embedding_vectors USING hnsw "
            "((embedding::vector({dim})) vector_cosine_ops) WHERE model = {model}").format(
                name=sql.Identifier(_hnsw_name(model)), dim=sql.Literal(dim),
                model=sql.Literal(model)))

    def _has_hnsw(self, raw: psycopg.Connection[Any], model: str) -> bool:
        # Remembered once seen. (Seen inside the transaction that created it, which may
        # yet roll back: searches then scan exactly, and the next process creates it.)
        if model not in self._indexed:
            row = raw.execute("SELECT to_regclass(%s) IS NOT NULL",
                              (_hnsw_name(model),)).fetchone()
            if row is not None and row[0]:
                self._indexed.add(model)
        return model in self._indexed


def vector_search_check(db: PostgresDatabase) -> tuple[str, str]:
    """``(level, detail)`` for ``doctor``: how vector search runs on this server
    (``ok`` or ``warning``), looked up without changing anything."""
    row = db.conn.execute("SELECT default_version, installed_version "
                          "FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if row is None:
        return "warning", NO_PGVECTOR
    if row[1] is not None:
        return "ok", f"pgvector {row[1]}: an HNSW index (cosine) per embedding model"
    superuser = db.conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if superuser and superuser[0]:
        return "ok", (f"pgvector {row[0]} is available: the next ingest creates the "
                      "extension and an HNSW index")
    return "warning", (f"pgvector {row[0]} is available but this role may not create the "
                       "extension: have a superuser run CREATE EXTENSION vector in this "
                       "database. Until then vector search scans every vector in the "
                       "client (exact, slower beyond ~100k chunks)")


def _tsquery_words(query: str) -> list[str]:
    """The query's words, each quoted for ``to_tsquery``: a word is a run of ``\\w``, so
    it holds no quote, backslash or operator, and any user string is safe."""
    words = dict.fromkeys(w.lower() for w in _TOKEN.findall(query)[:_MAX_QUERY_TOKENS])
    return [f"'{w}'" for w in words]


def _hnsw_name(model: str) -> str:
    return "embedding_vectors_hnsw_" + hashlib.sha1(model.encode()).hexdigest()[:12]


def _vector_text(vector: np.ndarray) -> str:
    # pgvector's text form; repr of a float32 widened to float64 round-trips exactly.
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL (SQLite can); extractors of binary-ish formats
    # occasionally leave one. The hash was taken before, so the cache key is unchanged.
    return text.replace("\x00", "") if "\x00" in text else text

"""The index: keyword (BM25) and vector search over chunks, and their fusion (hybrid)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.index.fusion import KeywordRanking, coverage, fuse, reciprocal_rank_fusion
from gristmill.index.sqlite import Hit, PendingChunk, SqliteIndex, StoredChunk, fts_query
from gristmill.index.vectors import VectorCache

if TYPE_CHECKING:  # psycopg is imported only where PostgreSQL is used
    from gristmill.catalog.backend import CatalogDatabase
    from gristmill.index.postgres import PostgresIndex

    # Either index: both offer the same methods to the runner and the searcher.
    Index = SqliteIndex | PostgresIndex

__all__ = [
    "Hit",
    "KeywordRanking",
    "PendingChunk",
    "SqliteIndex",
    "StoredChunk",
    "VectorCache",
    "coverage",
    "fts_query",
    "fuse",
    "make_index",
    "reciprocal_rank_fusion",
]


def make_index(db: CatalogDatabase) -> Index:
    """The index kept in ``db``: FTS5 and a NumPy scan in the SQLite file, or tsvector
    and pgvector (or a client-side scan) in PostgreSQL."""
    if db.backend == "postgresql":
        from gristmill.index.postgres import PostgresIndex

        return PostgresIndex(db)
    return SqliteIndex(db)  # type: ignore[arg-type]

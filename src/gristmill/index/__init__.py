"""The index: keyword (BM25) and vector search over chunks, and their fusion (hybrid).

:mod:`~gristmill.index.base` says what every index offers (the :class:`Index`
protocol); :mod:`~gristmill.index.sqlite` and :mod:`~gristmill.index.postgres` are the
two stores, :mod:`~gristmill.index.search` ranks chunks for a query with either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.catalog.sqlite import SqliteDatabase
from gristmill.index.base import Hit, Index, PendingChunk, StoredChunk, top_k, top_k_scan
from gristmill.index.fusion import KeywordRanking, coverage, fuse, reciprocal_rank_fusion
from gristmill.index.search import Searcher, SearchMode
from gristmill.index.sqlite import SqliteIndex, fts_query
from gristmill.index.vectors import VectorCache

if TYPE_CHECKING:
    from gristmill.catalog.backend import CatalogDatabase

__all__ = [
    "Hit",
    "Index",
    "KeywordRanking",
    "PendingChunk",
    "SearchMode",
    "Searcher",
    "SqliteIndex",
    "StoredChunk",
    "VectorCache",
    "coverage",
    "fts_query",
    "fuse",
    "make_index",
    "reciprocal_rank_fusion",
    "top_k",
    "top_k_scan",
]


def make_index(db: CatalogDatabase) -> Index:
    """The index kept in ``db``: FTS5 and a NumPy scan in the SQLite file, or tsvector
    and pgvector (or a client-side scan) in PostgreSQL."""
    if isinstance(db, SqliteDatabase):
        return SqliteIndex(db)
    # psycopg is imported only where PostgreSQL is used.
    from gristmill.catalog.postgres import PostgresDatabase
    from gristmill.index.postgres import PostgresIndex

    if isinstance(db, PostgresDatabase):
        return PostgresIndex(db)
    raise TypeError(f"no index keeps its chunks in a {type(db).__name__}")

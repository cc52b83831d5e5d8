"""The index: keyword (BM25) and vector search over chunks, fused by reciprocal rank."""

from gristmill.index.sqlite import (
    Hit,
    PendingChunk,
    SqliteIndex,
    StoredChunk,
    fts_query,
    reciprocal_rank_fusion,
)
from gristmill.index.vectors import VectorCache

__all__ = [
    "Hit",
    "PendingChunk",
    "SqliteIndex",
    "StoredChunk",
    "VectorCache",
    "fts_query",
    "reciprocal_rank_fusion",
]

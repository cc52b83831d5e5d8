"""Searching an index: a query's keyword ranking, vector ranking, or both fused.

One :class:`Searcher` serves one thread: it holds an index (and so a connection), the
embedder that turns the query into a vector, and optionally the in-memory vectors of a
long-lived process (:class:`~gristmill.index.vectors.VectorCache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from gristmill.errors import ConfigError
from gristmill.index.base import Hit, Index, Scope
from gristmill.index.fusion import KeywordRanking, coverage, fuse

if TYPE_CHECKING:
    from gristmill.embed import Embedder
    from gristmill.index.vectors import VectorCache

__all__ = ["SearchMode", "Searcher"]

SearchMode = Literal["hybrid", "keyword", "vector"]
_CANDIDATES = 50  # per ranking fed to the fusion


class Searcher:
    """Ranks chunks for queries: BM25, vectors, or both fused (:func:`gristmill.index.fuse`)."""

    def __init__(self, index: Index, embedder: Embedder | None,
                 vectors: VectorCache | None = None) -> None:
        self.index = index
        self.embedder = embedder
        self.vectors = vectors  # in-memory vectors, where a long-lived process keeps them

    def search(
        self, query: str, *, collection: str | None = None, k: int = 10,
        mode: SearchMode = "hybrid", language: str | None = None, kind: str | None = None,
        path: str | None = None,
    ) -> list[Hit]:
        """See :meth:`gristmill.KnowledgeBase.search`."""
        scope = Scope(collection, language, kind, path)
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        if mode not in ("hybrid", "keyword", "vector"):
            raise ConfigError(f"unknown search mode {mode!r}: use hybrid, keyword or vector")
        # Fusion needs deeper lists than it returns; one ranking alone does not.
        depth = max(k, _CANDIDATES) if mode == "hybrid" else k
        rankings = []
        keyword = None
        if mode in ("hybrid", "keyword"):
            keyword = self.index.keyword_ranking(query, scope, depth)
            rankings.append(keyword.ranked)
        if mode in ("hybrid", "vector"):
            if self.embedder is None:
                if mode == "vector":
                    raise ConfigError("vector search needs an embedder; this knowledge base "
                                      "runs with embedder = none (use --mode keyword)")
            elif query.strip():
                vector = self.embedder.embed([query])[0]
                # The in-memory vectors know collections, not code filters.
                ranked = (self.vectors.search(vector, collection, depth)
                          if self.vectors is not None and not scope.code else None)
                if ranked is None:  # no cache, or not built yet, or too big for it
                    ranked = self.index.vector(vector, self.embedder.model_id, scope,
                                               depth)
                rankings.append(ranked)
        if len(rankings) == 1:
            return self.index.hits(rankings[0][:k])
        assert keyword is not None  # two rankings: keyword and vector
        return self._fused(query, keyword, rankings[1], k)

    def _fused(self, query: str, keyword: KeywordRanking,
               vector: Sequence[tuple[int, float]], k: int) -> list[Hit]:
        """The ``k`` best of both rankings by :func:`~gristmill.index.fusion.fuse`, which
        weighs each candidate by its share of the query's words: the candidates' texts
        are read once, for that and for the hits returned."""
        ids = dict.fromkeys(chunk_id for chunk_id, _ in [*keyword.ranked, *vector])
        candidates = {hit.chunk_id: hit for hit in self.index.hits([(i, 0.0) for i in ids])}
        covered = coverage(query, {chunk_id: f"{hit.heading or ''}\n{hit.text}"
                                   for chunk_id, hit in candidates.items()})
        fused = fuse(keyword.ranked, vector, k, complete=keyword.complete, covered=covered)
        return [replace(candidates[chunk_id], score=score)
                for chunk_id, score in fused if chunk_id in candidates]

    def close(self) -> None:
        """Close its connection (only for one made by
        :meth:`gristmill.KnowledgeBase.searcher`)."""
        self.index.db.close()

"""What an operator and a supervisor ask a server: ``/api/v1/health`` (the catalog,
index, embedder and running jobs), ``/metrics`` (Prometheus) and ``/healthz`` (liveness).

Health and metrics are views of one :class:`~gristmill.ops.Snapshot`, the read behind
``gristmill status`` too, so the three report the same figures.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gristmill.api.metrics import catalog_registry
from gristmill.api.state import State, authenticate
from gristmill.knowledge_base import KnowledgeBase

__all__ = ["probes", "router"]

router = APIRouter()  # under /api/v1, with the API's token check
probes = APIRouter()  # at the root, where scrapers and supervisors look


def _catalog_place(kb: KnowledgeBase) -> dict[str, Any]:
    """Where the catalog is and how big: the SQLite file, or the PostgreSQL database (its
    URL without the password)."""
    if kb.db.backend == "postgresql":
        return {"backend": "postgresql", "url": kb.db.display_name,
                "bytes": kb.db.size_bytes()}
    return {"backend": "sqlite", "path": str(kb.settings.database_path),
            "bytes": kb.db.size_bytes()}


@router.get("/health")
def health(state: State) -> dict[str, Any]:
    """The catalog, index, embedder, embedding cache and worker settings, and the
    jobs running now: what an operator checks first."""
    settings = state.settings

    def read(kb: KnowledgeBase) -> dict[str, Any]:
        now = kb.snapshot()
        return {
            "status": "ok",
            "catalog": {**_catalog_place(kb),
                        "schema_version": kb.db.schema_version,
                        "items": now.items,
                        "collections": now.collection_names},
            "index": {"chunks": now.chunks,
                      "vectors": now.vectors,
                      "vector_engine": kb.index.vector_engine,
                      "vector_engine_note": kb.index.vector_engine_note},
            "embedder": {"name": settings.embedder,
                         "model": kb.embedder.model_id if kb.embedder else None},
            "cache": {"embedding_vectors": sum(now.vectors.values()),
                      "vector_search": (state.searchers.vectors.status
                                        if state.searchers.vectors else "scan")},
            "workers": {"per_job": settings.workers, "window": settings.window,
                        "item_timeout": settings.item_timeout},
            "jobs": {"running": [run.job.id for run in now.running],
                     "watched": state.feeds.watched},
        }

    return state.run(read)


def _metric_figures(kb: KnowledgeBase) -> dict[str, Any]:
    """What :func:`~gristmill.api.metrics.catalog_registry` reads at a scrape."""
    now = kb.snapshot()
    return {"items": now.items, "chunks": now.chunks, "vectors": sum(now.vectors.values()),
            "embedding_cache": now.embedding_cache, "jobs": now.job_states,
            "running": [{**run.job.to_dict(), "batcher": run.batcher}
                        for run in now.running]}


# At the root, where Prometheus looks, but like every route with data it needs a token.
@probes.get("/metrics", dependencies=[Depends(authenticate)])
def metrics(state: State) -> Response:
    """Prometheus text format: items by status, chunks, vectors, jobs by state,
    running jobs' progress, rate, queue and batcher (flushes, rows, flush and commit
    latency), the server's RSS."""
    # A registry per scrape costs a few small objects; its collector reads the figures
    # under the knowledge base's lock, in the thread serving this request.
    registry = catalog_registry(lambda: state.run(_metric_figures))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@probes.get("/healthz", include_in_schema=False)
def alive(state: State) -> dict[str, str]:
    """Liveness for load balancers and supervisors: no token, no data."""
    state.run(lambda kb: kb.catalog.ping())
    return {"status": "ok"}

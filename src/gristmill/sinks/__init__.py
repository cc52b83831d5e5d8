"""Sinks: copies of the knowledge base kept in other stores, synced on demand.

One module per sink; each keeps its own per-item state in the catalog
(:mod:`gristmill.catalog.sinks`), so a sync is idempotent and resumable.
"""

from gristmill.sinks.openai_vector_store import (
    SinkUnavailable,
    SyncReport,
    VectorStoreApi,
    sync_openai,
)

__all__ = ["SinkUnavailable", "SyncReport", "VectorStoreApi", "sync_openai"]

"""gristmill: turn a pile of files into a searchable knowledge base.

The public API is what this module exports; everything else is private and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.batching import BatchWriter, DeadLettered, QueueFull, Ticket, WriterClosed
    from gristmill.catalog import Status
    from gristmill.catalog.jobs import JobState
    from gristmill.config import Settings
    from gristmill.errors import (
        ConfigError,
        ExtractionError,
        GristmillError,
        HomeUnwritable,
        ItemError,
        JobNotFound,
        JobStateConflict,
        LimitExceeded,
        ModelError,
        NoKnowledgeBase,
        SourceError,
        StoreBusy,
        StoreCorrupt,
        StoreError,
        StoreFull,
        StoreUnavailable,
        TransientError,
        Unsupported,
    )
    from gristmill.extract import Extractor, Limits, Segment, register
    from gristmill.index import Hit
    from gristmill.knowledge_base import IngestReport, KnowledgeBase, SearchMode
    from gristmill.runtime.progress import Progress
    from gristmill.snippets import Snippet, snippet
    from gristmill.watching import Watcher, WatchReport

# Each public name and the module that owns it. They are imported on first use (PEP 562)
# so that a worker process, which imports gristmill.runtime.worker and the extractors,
# does not also pay for the catalog, the index, NumPy and the settings machinery: that is
# ~0.3 s before the first file of every run.
_HOMES = {
    **dict.fromkeys(["BatchWriter", "DeadLettered", "QueueFull", "Ticket", "WriterClosed"],
                    "gristmill.batching"),
    "Status": "gristmill.catalog",
    "JobState": "gristmill.catalog.jobs",
    "Settings": "gristmill.config",
    **dict.fromkeys(
        ["ConfigError", "ExtractionError", "GristmillError", "HomeUnwritable", "ItemError",
         "JobNotFound", "JobStateConflict", "LimitExceeded", "ModelError", "NoKnowledgeBase",
         "SourceError", "StoreBusy", "StoreCorrupt", "StoreError", "StoreFull",
         "StoreUnavailable", "TransientError", "Unsupported"],
        "gristmill.errors"),
    **dict.fromkeys(["Extractor", "Limits", "Segment", "register"], "gristmill.extract"),
    "Hit": "gristmill.index",
    **dict.fromkeys(["IngestReport", "KnowledgeBase", "SearchMode"],
                    "gristmill.knowledge_base"),
    "Progress": "gristmill.runtime.progress",
    **dict.fromkeys(["Snippet", "snippet"], "gristmill.snippets"),
    **dict.fromkeys(["WatchReport", "Watcher"], "gristmill.watching"),
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gristmill' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__version__ = "0.1.0"

__all__ = [
    "BatchWriter",
    "ConfigError",
    "DeadLettered",
    "ExtractionError",
    "Extractor",
    "GristmillError",
    "Hit",
    "HomeUnwritable",
    "IngestReport",
    "ItemError",
    "JobNotFound",
    "JobState",
    "JobStateConflict",
    "KnowledgeBase",
    "LimitExceeded",
    "Limits",
    "ModelError",
    "NoKnowledgeBase",
    "Progress",
    "QueueFull",
    "SearchMode",
    "Segment",
    "Settings",
    "Snippet",
    "SourceError",
    "Status",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "Ticket",
    "TransientError",
    "Unsupported",
    "WatchReport",
    "Watcher",
    "WriterClosed",
    "register",
    "snippet",
]

"""gristmill: turn a pile of files into a searchable knowledge base.

The public API is what this module exports; everything else is private and may change.
"""

from gristmill.catalog import Status
from gristmill.config import Settings
from gristmill.errors import (
    ConfigError,
    ExtractionError,
    GristmillError,
    ItemError,
    LimitExceeded,
    ModelError,
    SourceError,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    TransientError,
    Unsupported,
)
from gristmill.extract import Extractor, Limits, Segment, register
from gristmill.index import Hit
from gristmill.knowledge_base import IngestReport, KnowledgeBase, SearchMode
from gristmill.runtime import Progress

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ExtractionError",
    "Extractor",
    "GristmillError",
    "Hit",
    "IngestReport",
    "ItemError",
    "KnowledgeBase",
    "LimitExceeded",
    "Limits",
    "ModelError",
    "Progress",
    "SearchMode",
    "Segment",
    "Settings",
    "SourceError",
    "Status",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "TransientError",
    "Unsupported",
    "register",
]

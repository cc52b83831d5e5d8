"""The catalog: one row per item (status, attempts, lease, error) and one per job."""

from gristmill.catalog.database import Database
from gristmill.catalog.item import Item, Status
from gristmill.catalog.sqlite import Catalog, DiscoveryCounts, FileFacts, lease_owner_token

__all__ = [
    "Catalog",
    "Database",
    "DiscoveryCounts",
    "FileFacts",
    "Item",
    "Status",
    "lease_owner_token",
]

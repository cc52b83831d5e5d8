"""The catalog: one row per item (status, attempts, lease, error) and one per job."""

from gristmill.catalog.backend import (
    CatalogDatabase,
    Cursor,
    Transaction,
    catalog_exists,
    open_database,
)
from gristmill.catalog.database import Database
from gristmill.catalog.item import Item, Status
from gristmill.catalog.sqlite import Catalog, DiscoveryCounts, FileFacts, lease_owner_token

__all__ = [
    "Catalog",
    "CatalogDatabase",
    "Cursor",
    "Database",
    "DiscoveryCounts",
    "FileFacts",
    "Item",
    "Status",
    "Transaction",
    "catalog_exists",
    "lease_owner_token",
    "open_database",
]

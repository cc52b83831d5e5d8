"""The catalog: one row per item (status, attempts, lease, error) and one per job."""

from gristmill.catalog.backend import (
    CatalogDatabase,
    Cursor,
    Transaction,
    catalog_exists,
    open_database,
)
from gristmill.catalog.item import ErrorType, Item, Status
from gristmill.catalog.items import Catalog, DiscoveryCounts, FileFacts
from gristmill.catalog.leases import lease_owner_token
from gristmill.catalog.sqlite import SqliteDatabase

__all__ = [
    "Catalog",
    "CatalogDatabase",
    "Cursor",
    "DiscoveryCounts",
    "ErrorType",
    "FileFacts",
    "Item",
    "SqliteDatabase",
    "Status",
    "Transaction",
    "catalog_exists",
    "lease_owner_token",
    "open_database",
]

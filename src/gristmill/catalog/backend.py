"""Which database holds the catalog: the SQLite file in the home folder, or PostgreSQL
when ``database_url`` is set. Both offer the surface described here.

SQL is written once, in SQLite's style (``?`` and ``:name`` placeholders); where the two
dialects differ, the code branches on ``db.backend`` in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["CatalogDatabase", "Cursor", "Transaction", "catalog_exists", "open_database"]

T = TypeVar("T")


class Cursor(Protocol):
    """What a statement returns: its rows, and how many rows it changed."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchmany(self, size: int = ..., /) -> list[Any]: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Transaction(Protocol):
    """Runs SQLite-style SQL: ``db.conn``, or what ``db.transaction()`` yields (on
    PostgreSQL that one also has ``raw``, the ``psycopg.Connection``, for ``COPY``)."""

    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq_of_params: Iterable[Any], /) -> Cursor: ...


class CatalogDatabase(Protocol):
    """:class:`~gristmill.catalog.sqlite.SqliteDatabase` (SQLite) or
    :class:`~gristmill.catalog.postgres.PostgresDatabase`."""

    #: ``"sqlite"`` or ``"postgresql"``.
    backend: str
    #: Where it is, fit to show: the file's path, or the URL with its password masked.
    display_name: str
    readonly: bool
    #: Seconds an unreachable database is waited out (None: the retry policy's default).
    retry_seconds: float | None

    @property
    def conn(self) -> Transaction: ...
    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def transact(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work(txn)`` in a transaction, run again whole when the database was busy
        or unreachable (see :mod:`gristmill.batching.policy`)."""
        ...
    def retrying(self, call: Callable[[], T]) -> T:
        """``call()`` (a read, or a whole transaction), run again the same way."""
        ...
    def close(self) -> None: ...
    @property
    def schema_version(self) -> int: ...
    def size_bytes(self) -> int:
        """How much room the catalog takes: the SQLite file, or the PostgreSQL database
        on its server."""
        ...


def open_database(settings: Settings, *, readonly: bool = False) -> CatalogDatabase:
    """The catalog database ``settings`` name, migrated to this version's schema
    (``readonly``: for searches; neither migrated nor written).

    Raises:
        StoreError: it cannot be opened (see each backend).
    """
    if settings.database_url is None:
        from gristmill.catalog.sqlite import SqliteDatabase

        return SqliteDatabase(settings.database_path, readonly=readonly)
    from gristmill.catalog.postgres import PostgresDatabase

    return PostgresDatabase(settings.database_url.get_secret_value(),
                            pool_size=settings.pool_size, readonly=readonly,
                            retry_seconds=settings.store_retry_seconds)


def catalog_exists(settings: Settings) -> bool:
    """Whether the database ``settings`` name holds a gristmill catalog: the SQLite file
    exists, or the PostgreSQL database has gristmill's schema. Creates, migrates and
    writes nothing (what a command that only reads needs to know first).

    Raises:
        StoreError: the PostgreSQL server cannot be reached, or refuses the login.
    """
    if settings.database_url is None:
        return settings.database_path.is_file()
    from gristmill.catalog.postgres import PostgresDatabase

    db = PostgresDatabase(settings.database_url.get_secret_value(), pool_size=1,
                          readonly=True, retry_seconds=settings.store_retry_seconds)
    try:
        return db.schema_version > 0
    finally:
        db.close()

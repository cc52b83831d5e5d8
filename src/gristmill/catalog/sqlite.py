"""The SQLite file: connection settings, explicit transactions and schema migrations.

One file holds the catalog and the index, so an item's chunks and its status change
commit in the same transaction. One process writes (the driver); readers use WAL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from gristmill.catalog.migrations.sqlite import MIGRATIONS
from gristmill.errors import StoreError, StoreFull, room_to_free, translate_store_error

__all__ = ["SqliteDatabase", "sqlite_has_fts5"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Room kept beside the database file for when its disk fills up: deleting it lets the
# run that hit the full disk still give back its leases and record its job's state.
_RESERVE_BYTES = 1 << 20

def sqlite_has_fts5() -> bool:
    """Whether this Python's SQLite has FTS5, which the catalog's keyword index needs."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()
    return True


class SqliteDatabase:
    """A SQLite connection with gristmill's settings and explicit transactions."""

    backend = "sqlite"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.display_name = str(path)
        self.retry_seconds: float | None = None  # a file is never unreachable
        self._before_commit: list[Callable[[sqlite3.Connection], None]] = []
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        try:
            # isolation_level=None: no implicit transactions; we BEGIN explicitly.
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                        check_same_thread=False, timeout=30.0)
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._use_wal()
                # FULL: a committed flush survives power loss, and with one commit per
                # batch (not per row) the fsync costs little.
                self.conn.execute("PRAGMA synchronous = FULL")
                self._migrate()
                self._keep_reserve()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _use_wal(self) -> None:
        # Switching a new file to WAL takes an exclusive lock without calling SQLite's
        # busy handler, so two processes opening a fresh home at once can see "database
        # is locked" at once, timeout or not. WAL is persistent: the switch happens once
        # per file, and a short wait for the other opener is all it takes.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception; sqlite3's
        errors come out as :class:`~gristmill.errors.StoreError` (a full disk as
        :class:`~gristmill.errors.StoreFull`)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            yield self.conn
        except sqlite3.Error as exc:
            self._rollback()
            raise self._translate(exc) from exc
        except BaseException:
            self._rollback()
            raise
        try:
            for hook in self._before_commit:
                hook(self.conn)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise self._translate(exc) from exc

    def before_commit(self, hook: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``hook`` last in every transaction (a failure rolls it back)."""
        if hook not in self._before_commit:
            self._before_commit.append(hook)

    def _rollback(self) -> None:
        # After some errors (a full disk, an I/O error) SQLite has already rolled the
        # transaction back itself, and ROLLBACK would fail with "no transaction is
        # active": that error must not take the place of the one that caused it.
        if not self.conn.in_transaction:
            return
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("%s: rollback failed after an error: %s", self.path, exc)

    def transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a transaction. Not retried: SQLite already waits up to 30 s
        for another writer's lock, and a file is never unreachable."""
        with self.transaction() as txn:
            return work(txn)

    def retrying(self, call: Callable[[], T]) -> T:
        """``call()``: nothing to wait out on a file (see :meth:`transact`)."""
        return call()

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        """``exc`` as a StoreError; a full disk names the folder and what to free, and
        gives up the reserve so that the run can still wind down."""
        try:
            size = sum(self.path.with_name(self.path.name + suffix).stat().st_size
                       for suffix in ("", "-wal") if self.path.with_name(
                           self.path.name + suffix).exists())
        except OSError:
            size = 0
        error = translate_store_error(exc, str(self.path.parent), room_to_free(size))
        if isinstance(error, StoreFull):
            try:
                self._reserve.unlink(missing_ok=True)
            except OSError:
                pass
        return error

    @property
    def _reserve(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def _keep_reserve(self) -> None:
        """Keep the reserve (see ``_RESERVE_BYTES``) when there is room for it."""
        try:
            if self._reserve.exists() and self._reserve.stat().st_size >= _RESERVE_BYTES:
                return
            with open(self._reserve, "wb") as file:
                file.write(b"\0" * _RESERVE_BYTES)
                file.flush()
                os.fsync(file.fileno())
        except OSError:
            self._reserve.unlink(missing_ok=True)  # no room: nothing kept, nothing lost

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def size_bytes(self) -> int:
        """The database file's size (0 when it cannot be read)."""
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    @property
    def schema_version(self) -> int:
        """The number of migrations applied."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} was written by a newer gristmill (schema {current}); "
                "upgrade gristmill to open it"
            )
        for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction() as conn:
                # Re-read under the write lock: another process may have just migrated.
                if self.schema_version >= version:
                    continue
                step(conn)
                conn.execute(f"PRAGMA user_version = {version}")

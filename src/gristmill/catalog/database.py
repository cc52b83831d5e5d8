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

from gristmill.errors import StoreError, StoreFull, room_to_free, translate_store_error

__all__ = ["MIGRATIONS", "Database", "sqlite_has_fts5"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Room kept beside the database file for when its disk fills up: deleting it lets the
# run that hit the full disk still give back its leases and record its job's state.
_RESERVE_BYTES = 1 << 20

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next schema version; each runs in its own transaction."""
    MIGRATIONS.append(fn)
    return fn


@migration
def _m001_initial(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE items (
            id              INTEGER PRIMARY KEY,
            collection      TEXT NOT NULL,
            source          TEXT NOT NULL,
            root            TEXT NOT NULL,
            size            INTEGER,
            mtime_ns        INTEGER,
            sha256          TEXT,
            status          TEXT NOT NULL DEFAULT 'pending',
            attempts        INTEGER NOT NULL DEFAULT 0,
            crashes         INTEGER NOT NULL DEFAULT 0,
            not_before      REAL,
            lease_owner     TEXT,
            lease_expires   REAL,
            error           TEXT,
            error_type      TEXT,
            extractor       TEXT,
            extractor_version INTEGER,
            embed_model     TEXT,
            pages           INTEGER,
            chunk_count     INTEGER,
            seen_run        INTEGER,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            UNIQUE (collection, source)
        );
        CREATE INDEX items_status ON items (status, collection);
        CREATE INDEX items_sha256 ON items (sha256);
        CREATE INDEX items_root ON items (collection, root);

        CREATE TABLE jobs (
            id              INTEGER PRIMARY KEY,
            collection      TEXT NOT NULL,
            sources         TEXT NOT NULL,
            state           TEXT NOT NULL,
            owner           TEXT,
            started_at      REAL NOT NULL,
            finished_at     REAL,
            heartbeat_at    REAL,
            summary         TEXT
        );

        CREATE TABLE chunks (
            id          INTEGER PRIMARY KEY,
            item_id     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            collection  TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            text        TEXT NOT NULL,
            text_hash   TEXT NOT NULL,
            page        INTEGER,
            heading     TEXT,
            UNIQUE (item_id, seq)
        );
        CREATE INDEX chunks_hash ON chunks (text_hash);
        CREATE INDEX chunks_collection ON chunks (collection);

        CREATE VIRTUAL TABLE chunks_fts USING fts5 (
            text, heading,
            content = 'chunks', content_rowid = 'id',
            tokenize = 'porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts (rowid, text, heading)
            VALUES (new.id, new.text, new.heading);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text, heading)
            VALUES ('delete', old.id, old.text, old.heading);
        END;

        -- The embedding cache and the vector store at once: one vector per distinct
        -- chunk text per model, shared by every chunk, item and collection with that text.
        CREATE TABLE embeddings (
            model       TEXT NOT NULL,
            text_hash   TEXT NOT NULL,
            vector      BLOB NOT NULL,
            PRIMARY KEY (model, text_hash)
        ) WITHOUT ROWID;
        """
    )


@migration
def _m002_fts_rows_written_by_index(conn: sqlite3.Connection) -> None:
    # An FTS5 insert fired from a row trigger runs inside a statement savepoint, and
    # FTS5 flushes its pending terms at every savepoint: one tiny segment per chunk,
    # then merges. Measured on 15,041 chunks: 1.1 s by trigger, 0.3 s when the index
    # inserts an item's rows in one INSERT ... SELECT. The delete trigger stays: rows
    # deleted by ON DELETE CASCADE must leave the FTS index too.
    conn.execute("DROP TRIGGER IF EXISTS chunks_ai")


@migration
def _m003_child_items(conn: sqlite3.Connection) -> None:
    # Attachments and archive members are items of their own, under their container:
    # `member` is the name inside the parent; deleting a parent deletes its children
    # (and, through chunks' own cascade, their chunks and full-text rows).
    conn.execute("ALTER TABLE items ADD COLUMN parent_id INTEGER "
                 "REFERENCES items (id) ON DELETE CASCADE")
    conn.execute("ALTER TABLE items ADD COLUMN member TEXT")
    conn.execute("CREATE INDEX items_parent ON items (parent_id)")


@migration
def _m004_job_runs(conn: sqlite3.Connection) -> None:
    # A job can be resumed, and each driver that works on it is a run with its own id
    # for discovery to mark items with (a reused id would hide files removed between
    # runs). Existing jobs become their own first run, so run ids stay unique.
    conn.execute("ALTER TABLE jobs ADD COLUMN spec TEXT")
    _run_script(conn, """
        CREATE TABLE runs (
            id          INTEGER PRIMARY KEY,
            job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            started_at  REAL NOT NULL
        );
        CREATE INDEX runs_job ON runs (job_id);
        CREATE INDEX items_seen ON items (seen_run);
        INSERT INTO runs (id, job_id, started_at) SELECT id, id, started_at FROM jobs;
        """)


@migration
def _m005_problem_feed_and_run_stats(conn: sqlite3.Connection) -> None:
    # A job's event stream asks "failures and skips newer than X" twice a second; this
    # index answers it from the few problem rows instead of the job's every item.
    conn.execute("CREATE INDEX items_problems ON items (status, updated_at)")
    # A run's batcher figures (flushes, rows, flush and commit latency), JSON, written
    # every few seconds by its driver: the API's /metrics reads them from here.
    conn.execute("ALTER TABLE runs ADD COLUMN stats TEXT")


@migration
def _m006_run_holds_its_job(conn: sqlite3.Connection) -> None:
    # A job's state belongs to the run that holds it (jobs.run_id): a superseded driver's
    # late writes are ignored. A run's own liveness (its driver, heartbeat, end) tells
    # a resume whether the previous driver is still finishing its in-flight items.
    conn.execute("ALTER TABLE jobs ADD COLUMN run_id INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN heartbeat_at REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN ended_at REAL")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the migration's transaction first; run the
    # statements one by one instead (complete_statement knows trigger bodies).
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        conn.execute(statement)


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


class Database:
    """A SQLite connection with gristmill's settings and explicit transactions."""

    backend = "sqlite"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.display_name = str(path)
        self.retry_seconds: float | None = None  # a file is never unreachable
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
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise self._translate(exc) from exc

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

"""Copying a catalog's tables: a consistent snapshot read as row streams, and row streams
loaded into a target catalog through staging tables, then published at once.

Both ends are used by ``export`` / ``import`` (through an archive) and by ``migrate``
(straight from one database to the other): :mod:`gristmill.ops.moving` drives them. The
SQL lives here, in the catalog package, as every store's does.

Reading (:class:`CatalogSnapshot`): one read transaction for every table (SQLite: a
deferred ``BEGIN`` on a connection of its own, pinned by its first read under WAL;
PostgreSQL: ``REPEATABLE READ READ ONLY``), each table streamed in primary-key order
through a cursor (server-side on PostgreSQL): an item is either settled with its chunks
or not there yet, whatever a running job does meanwhile, and memory stays flat.

Which tables: those this gristmill's migrations create (read from a SQLite schema built
in memory), found in the source; their columns are read from the source itself, so a
catalog of an older schema has fewer, never a wrong list. Derived tables are left out:
SQLite's FTS5 index (rebuilt on publish) and PostgreSQL's ``embedding_vectors``
(pgvector's copy of ``embeddings``, made again by the index on first use).

Loading (:class:`Staging`): each table goes into ``import_<table>`` in the target
database in one transaction, recorded in ``import_state`` with the source's identity (an
archive's manifest sha256, a migration's fingerprint); a re-run with the same identity
skips the tables already staged, a different one starts again. :meth:`Staging.publish`
then moves everything into the live tables in ONE transaction: nothing of a copy is
visible before all of it is, and a kill -9 at any point leaves either the old target
(plus staging, resumed next time) or the finished copy.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gristmill.catalog.backend import CatalogDatabase, Transaction
from gristmill.catalog.migrations.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

__all__ = [
    "CatalogSnapshot",
    "Column",
    "Published",
    "Staging",
    "TableSpec",
    "catalog_tables",
    "live_columns",
    "row_counts",
    "source_identity",
]

#: (name, neutral type): the type is ``integer``, ``real``, ``text`` or ``blob``, as an
#: archive's table header writes it (:mod:`gristmill.ops.archive`).
Column = tuple[str, str]
#: Parents before children, so that every foreign key finds its row on publish.
_ORDER = ("items", "jobs", "runs", "chunks", "embeddings", "source_heads",
          "audio_recordings", "audio_events")
#: Id references no FOREIGN KEY declares (a run is recorded after the rows naming it).
_UNDECLARED_REFERENCES = {("items", "seen_run"): "runs", ("jobs", "run_id"): "runs"}
_BATCH = 2000  # rows per executemany on SQLite
_STATE = "import_state"
_PUBLISHED = "@published"  # import_state's row naming the copy last published
_PG_TYPES = {"integer": "BIGINT", "real": "DOUBLE PRECISION", "text": "TEXT",
             "blob": "BYTEA"}
_PG_NEUTRAL = {"bigint": "integer", "integer": "integer", "smallint": "integer",
               "boolean": "integer", "double precision": "real", "real": "real",
               "numeric": "real", "text": "text", "character varying": "text",
               "character": "text", "bytea": "blob"}


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table to copy: its columns (as found in the source) and primary key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Reference:
    """The catalog's own shape: key columns, and which columns hold which table's id."""

    keys: dict[str, tuple[str, ...]]
    references: dict[tuple[str, str], str]

    @property
    def tables(self) -> list[str]:
        known = [t for t in _ORDER if t in self.keys]
        return known + sorted(t for t in self.keys if t not in _ORDER)

    def id_tables(self) -> list[str]:
        """Tables keyed by one integer ``id``: an import into a catalog with rows shifts
        their ids past its own."""
        return [t for t in self.tables if self.keys[t] == ("id",)]


@functools.lru_cache(maxsize=1)
def _reference() -> _Reference:
    conn = sqlite3.connect(":memory:")
    try:
        for step in SQLITE_MIGRATIONS:
            step(conn)
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE "
            "'CREATE VIRTUAL TABLE%' AND name NOT LIKE 'sqlite_%'")]
        virtual = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")]
        names = [n for n in names if not any(n.startswith(v + "_") for v in virtual)]
        keys: dict[str, tuple[str, ...]] = {}
        references = dict(_UNDECLARED_REFERENCES)
        for name in names:
            info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
            keys[name] = tuple(r[1] for r in sorted((r for r in info if r[5]),
                                                    key=lambda r: r[5]))
            for ref in conn.execute(f'PRAGMA foreign_key_list("{name}")'):
                references[(name, ref[3])] = ref[2]
        return _Reference(keys, references)
    finally:
        conn.close()


def catalog_tables() -> list[str]:
    """The tables a catalog of this gristmill holds, parents first."""
    return _reference().tables


def _affinity(declared: str) -> str:
    # SQLite's own rules for a declared type (https://sqlite.org/datatype3.html, 3.1).
    upper = declared.upper()
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not upper or "BLOB" in upper:
        return "blob"
    return "real"


def live_columns(txn: Transaction, backend: str, table: str) -> list[Column]:
    """``table``'s stored columns in ``txn``'s database (generated ones left out); an
    empty list when there is no such table."""
    if backend == "sqlite":
        return [(r[1], _affinity(r[2] or "")) for r in
                txn.execute(f'PRAGMA table_info("{table}")').fetchall()]
    rows = txn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema() AND is_generated = 'NEVER' "
        "ORDER BY ordinal_position", (table,)).fetchall()
    return [(r[0], _PG_NEUTRAL.get(r[1], "text")) for r in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- reading -----------------------------------------------------------------------


class CatalogSnapshot:
    """One consistent, read-only view of a catalog: the SQLite file at ``path`` or the
    PostgreSQL database at ``url``. Opened and closed as a context manager."""

    def __init__(self, *, path: Path | None = None, url: str | None = None) -> None:
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        if url is not None:
            import psycopg

            from gristmill.catalog.migrations import postgres as pg_migrations

            self.backend = "postgresql"
            self._pg = psycopg.connect(url, autocommit=False, application_name="gristmill")
            self._pg.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self._pg.read_only = True
            # The first statement starts the transaction and pins its snapshot.
            self.schema_version = pg_migrations.version(self._pg)
        else:
            assert path is not None
            self.backend = "sqlite"
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                           isolation_level=None, timeout=30.0)
            # A deferred BEGIN takes no lock; under WAL the first read pins the
            # snapshot every later read of this transaction sees.
            self._sqlite.execute("BEGIN")
            self.schema_version = int(self._sqlite.execute("PRAGMA user_version").fetchone()[0])
        self.tables = self._specs()

    def __enter__(self) -> CatalogSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the read transaction and close the connection."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg = None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._sqlite is not None:
            return self._sqlite.execute(sql, params)
        from gristmill.catalog.postgres import to_pyformat

        return self._pg.execute(to_pyformat(sql), params)

    def _specs(self) -> list[TableSpec]:
        reference = _reference()
        specs = []
        for name in reference.tables:
            if self._sqlite is not None:
                columns = [(r[1], _affinity(r[2] or "")) for r in
                           self._sqlite.execute(f'PRAGMA table_info("{name}")')]
            else:
                columns = [(r[0], _PG_NEUTRAL.get(r[1], "text")) for r in self._pg.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE "
                    "table_name = %s AND table_schema = current_schema() AND is_generated "
                    "= 'NEVER' ORDER BY ordinal_position", (name,))]
            if columns:
                specs.append(TableSpec(name, tuple(columns), reference.keys[name]))
        return specs

    def spec(self, table: str) -> TableSpec | None:
        """The table ``table`` as found in this catalog, or None."""
        return next((s for s in self.tables if s.name == table), None)

    def _where(self, spec: TableSpec, collection: str | None) -> tuple[str, list[Any]]:
        """The filter selecting ``collection``'s rows of ``spec`` (all rows: None)."""
        if collection is None:
            return "", []
        names = {c for c, _ in spec.columns}
        if "collection" in names:
            return "WHERE collection = ?", [collection]
        if "item_id" in names:
            return "WHERE item_id IN (SELECT id FROM items WHERE collection = ?)", [collection]
        if "job_id" in names:
            return "WHERE job_id IN (SELECT id FROM jobs WHERE collection = ?)", [collection]
        if spec.name == "embeddings":
            return ("WHERE text_hash IN (SELECT text_hash FROM chunks WHERE collection = ?)",
                    [collection])
        return "", []

    def rows(self, spec: TableSpec, collection: str | None = None) -> Iterator[tuple[Any, ...]]:
        """``spec``'s rows in primary-key order (of ``collection`` only, when given),
        streamed."""
        columns = ", ".join(_quote(c) for c, _ in spec.columns)
        where, params = self._where(spec, collection)
        order = ", ".join(_quote(k) for k in spec.key) or "1"
        sql = f"SELECT {columns} FROM {_quote(spec.name)} {where} ORDER BY {order}"
        if self._sqlite is not None:
            yield from self._sqlite.execute(sql, params)
            return
        from gristmill.catalog.postgres import to_pyformat

        # A server-side cursor: the server sends rows a block at a time.
        with self._pg.cursor(name=f"gristmill_copy_{spec.name}") as cursor:
            cursor.itersize = _BATCH
            cursor.execute(to_pyformat(sql), params)
            for row in cursor:
                yield tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)

    def count(self, table: str, collection: str | None = None) -> int:
        """Rows of ``table`` (of ``collection``) in the snapshot."""
        spec = self.spec(table)
        if spec is None:
            return 0
        where, params = self._where(spec, collection)
        return int(self._execute(f"SELECT count(*) FROM {_quote(table)} {where}",
                                 params).fetchone()[0])

    def fingerprint(self) -> dict[str, Any]:
        """Per table: rows, and the largest id or ``updated_at`` where there is one. Two
        snapshots with equal fingerprints hold, in practice, the same data: what a
        resumed migration checks before it keeps what it staged."""
        out: dict[str, Any] = {"schema": [self.backend, self.schema_version]}
        for spec in self.tables:
            names = {c for c, _ in spec.columns}
            marks = [f"max({m})" for m in ("id", "updated_at", "scanned_at") if m in names]
            row = self._execute(f"SELECT count(*), {', '.join(marks) or '0'} "
                                f"FROM {_quote(spec.name)}").fetchone()
            out[spec.name] = list(row)
        return out

    def models(self, collection: str | None = None) -> list[dict[str, Any]]:
        """The embedding models whose vectors the snapshot holds: model, vectors, dim."""
        spec = self.spec("embeddings")
        if spec is None:
            return []
        where, params = self._where(spec, collection)
        size = "length(vector)" if self.backend == "sqlite" else "octet_length(vector)"
        rows = self._execute(f"SELECT model, count(*), max({size}) FROM embeddings {where} "
                             "GROUP BY model ORDER BY model", params).fetchall()
        return [{"model": m, "vectors": int(n), "dim": int(b or 0) // 4} for m, n, b in rows]

    def audio_models(self, collection: str | None = None) -> list[str]:
        """The sha256s of the audio models whose events the snapshot holds."""
        spec = self.spec("audio_recordings")
        if spec is None:
            return []
        where, params = self._where(spec, collection)
        return [r[0] for r in self._execute(
            f"SELECT DISTINCT model FROM audio_recordings {where} ORDER BY model",
            params).fetchall()]

    def running_jobs(self) -> int:
        """Jobs a driver held when the snapshot was taken (their later writes are not
        in it)."""
        if self.spec("jobs") is None:
            return 0
        return int(self._execute("SELECT count(*) FROM jobs WHERE state IN "
                                 "('running', 'queued', 'cancelling')").fetchone()[0])

    def clips(self, collection: str | None = None) -> Iterator[str]:
        """The clip file paths the snapshot's audio events (of ``collection``) name."""
        spec = self.spec("audio_events")
        if spec is None or "clip" not in {c for c, _ in spec.columns}:
            return
        where, params = self._where(spec, collection)
        where = f"{where} AND" if where else "WHERE"
        cursor = self._execute(f"SELECT DISTINCT clip FROM audio_events {where} clip IS NOT "
                               "NULL ORDER BY clip", params)
        while rows := cursor.fetchmany(_BATCH):
            yield from (r[0] for r in rows)


# -- loading -----------------------------------------------------------------------


@dataclass(slots=True)
class Published:
    """What :meth:`Staging.publish` added: rows per table, and merge decisions."""

    tables: dict[str, int] = field(default_factory=dict)
    #: Items the target already had (same collection, source and sha256): kept.
    same: int = 0
    #: Items the target had with other content: the target's kept, reported here.
    conflicts: list[str] = field(default_factory=list)
    #: Rows of the copy left out because their item was (same or conflicting items and
    #: what belongs to them): per table.
    skipped: dict[str, int] = field(default_factory=dict)


class Staging:
    """The staging tables of one copy into the catalog ``db``."""

    def __init__(self, db: CatalogDatabase) -> None:
        self.db = db
        self.backend = db.backend

    def _tables(self, txn: Transaction) -> list[str]:
        if self.backend == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'import%'"
        else:
            sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                   "current_schema() AND table_name LIKE 'import%'")
        return [r[0] for r in txn.execute(sql).fetchall()]

    def published(self, source_id: str) -> bool:
        """Whether the copy identified by ``source_id`` was already published here."""
        with self.db.transaction() as txn:
            if _STATE not in self._tables(txn):
                return False
            row = txn.execute(f"SELECT source FROM {_STATE} WHERE member = ?",
                              (_PUBLISHED,)).fetchone()
        return bool(row and row[0] == source_id)

    def begin(self, source_id: str) -> tuple[set[str], bool]:
        """Get staging ready for the copy ``source_id``: the tables already staged for
        it (a resumed copy), and whether the staging of another copy was discarded."""
        discarded = False
        with self.db.transaction() as txn:
            tables = self._tables(txn)
            if _STATE in tables:
                rows = txn.execute(f"SELECT member, source, verified FROM {_STATE} "
                                   "WHERE member <> ?", (_PUBLISHED,)).fetchall()
                if all(r[1] == source_id for r in rows):
                    return {r[0] for r in rows if r[2]}, False
                discarded = True
            for table in tables:
                if table != _STATE:
                    txn.execute(f"DROP TABLE {_quote(table)}")
            txn.execute(f"CREATE TABLE IF NOT EXISTS {_STATE} (member TEXT PRIMARY KEY, "
                        "source TEXT NOT NULL, rows_loaded BIGINT NOT NULL, "
                        "verified INTEGER NOT NULL)")
            txn.execute(f"DELETE FROM {_STATE} WHERE member <> ?", (_PUBLISHED,))
        return set(), discarded

    def load(self, source_id: str, table: str, columns: Sequence[Column],
             rows: Iterable[Sequence[Any]]) -> int:
        """Stage ``rows`` of ``table`` in one transaction, recorded as done for
        ``source_id`` in the same one; the number of rows. Whatever ``rows`` raises
        (a checksum found wrong at its end) rolls the whole table back."""
        staged = _quote(f"import_{table}")
        with self.db.transaction() as txn:
            txn.execute(f"DROP TABLE IF EXISTS {staged}")
            if self.backend == "sqlite":
                txn.execute(f"CREATE TABLE {staged} ("
                            + ", ".join(f"{_quote(c)} {t.upper()}" for c, t in columns) + ")")
            else:
                txn.execute(f"CREATE TABLE {staged} ("
                            + ", ".join(f"{_quote(c)} {_PG_TYPES[t]}" for c, t in columns)
                            + ")")
            count = (self._load_sqlite(txn, staged, len(columns), rows)
                     if self.backend == "sqlite" else
                     self._load_postgres(txn, staged, columns, rows))
            txn.execute(f"DELETE FROM {_STATE} WHERE member = ?", (table,))
            txn.execute(f"INSERT INTO {_STATE} (member, source, rows_loaded, verified) "
                        "VALUES (?, ?, ?, 1)", (table, source_id, count))
        return count

    @staticmethod
    def _load_sqlite(txn: Transaction, staged: str, width: int,
                     rows: Iterable[Sequence[Any]]) -> int:
        sql = f"INSERT INTO {staged} VALUES ({', '.join('?' * width)})"
        count = 0
        batch: list[Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                txn.executemany(sql, batch)
                count += len(batch)
                batch.clear()
        if batch:
            txn.executemany(sql, batch)
            count += len(batch)
        return count

    @staticmethod
    def _load_postgres(txn: Transaction, staged: str, columns: Sequence[Column],
                       rows: Iterable[Sequence[Any]]) -> int:
        raw = txn.raw  # type: ignore[attr-defined]
        names = ", ".join(_quote(c) for c, _ in columns)
        count = 0
        with raw.cursor() as cursor, cursor.copy(
                f"COPY {staged} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count

    def staged_columns(self, table: str) -> list[str]:
        """The columns of ``table``'s staging table (the source's)."""
        with self.db.transaction() as txn:
            return [c for c, _ in live_columns(txn, self.backend, f"import_{table}")]

    def staged(self) -> list[str]:
        """The tables staged (each ``import_<table>``), parents first."""
        with self.db.transaction() as txn:
            present = {t[len("import_"):] for t in self._tables(txn) if t != _STATE}
        order = _reference().tables
        return [t for t in order if t in present]

    def rewrite_prefix(self, table: str, column: str, old: str, new: str) -> int:
        """In staging, replace the leading ``old`` of ``table.column`` values by ``new``
        (clip paths from the source's home to the target's); rows changed."""
        if old == new or column not in self.staged_columns(table):
            return 0
        staged = _quote(f"import_{table}")
        with self.db.transaction() as txn:
            cursor = txn.execute(
                f"UPDATE {staged} SET {_quote(column)} = ? || substr({_quote(column)}, ?) "
                f"WHERE substr({_quote(column)}, 1, ?) = ?",
                (new, len(old) + 1, len(old), old))
            return int(cursor.rowcount)

    def publish(self, source_id: str, *, merge: bool = False,
                before_commit: Callable[[], None] | None = None) -> Published:
        """Move every staged table into the live ones, in one transaction, and drop
        staging; ``before_commit`` runs last inside it (a failure rolls all back).

        Ids of tables keyed by ``id`` are shifted past the target's largest (0 when it
        is empty: ids are kept), and the columns naming them with them. With ``merge``,
        an item whose (collection, source) the target has is not added, nor anything
        of it (its chunks, audio, attachments): same sha256, the same item; another
        sha256, a conflict, the target's kept. Leases the source held are given up
        (``processing`` items back to ``pending``, jobs held by a driver
        ``interrupted``). On PostgreSQL, identity sequences move past the new ids; on
        SQLite, the new chunks join the FTS5 index.
        """
        reference = _reference()
        tables = self.staged()
        published = Published()
        with self.db.transaction() as txn:
            if self.backend == "sqlite":
                # Foreign keys checked once, at the commit, when every table is in:
                # not row by row against a half-published copy.
                txn.execute("PRAGMA defer_foreign_keys = ON")
            before = {t: self._max_id(txn, t) for t in reference.id_tables()}
            skip = self._skipped_items(txn, published) if merge and "items" in tables else None
            for table in tables:
                added, left_out = self._publish_table(txn, table, reference, before, skip)
                published.tables[table] = added
                if left_out:
                    published.skipped[table] = left_out
            self._give_up_leases(txn, before)
            if self.backend == "sqlite":
                self._index_new_chunks(txn, before.get("chunks", 0))
            else:
                self._advance_sequences(txn, reference.id_tables())
            for table in self._tables(txn):
                if table != _STATE:
                    txn.execute(f"DROP TABLE {_quote(table)}")
            txn.execute(f"DELETE FROM {_STATE}")
            txn.execute(f"INSERT INTO {_STATE} (member, source, rows_loaded, verified) "
                        "VALUES (?, ?, 0, 1)", (_PUBLISHED, source_id))
            if before_commit is not None:
                before_commit()
        return published

    @staticmethod
    def _max_id(txn: Transaction, table: str) -> int:
        row = txn.execute(f"SELECT max(id) FROM {_quote(table)}").fetchone()
        return int(row[0] or 0)

    def _skipped_items(self, txn: Transaction, published: Published) -> str:
        """Fill ``import_skip`` with the staged items not to add; the SQL naming them."""
        txn.execute("CREATE TABLE import_skip (id BIGINT PRIMARY KEY)")
        txn.execute("INSERT INTO import_skip (id) SELECT s.id FROM import_items s JOIN items t "
                    "ON t.collection = s.collection AND t.source = s.source")
        same = "IS NOT DISTINCT FROM" if self.backend == "postgresql" else "IS"
        published.same = int(txn.execute(
            "SELECT count(*) FROM import_items s JOIN items t ON t.collection = s.collection "
            f"AND t.source = s.source AND t.sha256 {same} s.sha256").fetchone()[0])
        published.conflicts = [f"{c}: {s}" for c, s in txn.execute(
            "SELECT s.collection, s.source FROM import_items s JOIN items t "
            "ON t.collection = s.collection AND t.source = s.source "
            f"WHERE NOT (t.sha256 {same} s.sha256) ORDER BY s.collection, s.source"
        ).fetchall()]
        if "parent_id" in {c for c, _ in live_columns(txn, self.backend, "import_items")}:
            # Attachments and members of an item left out go with it, level by level.
            while txn.execute(
                    "INSERT INTO import_skip (id) SELECT s.id FROM import_items s "
                    "WHERE s.parent_id IN (SELECT id FROM import_skip) "
                    "AND s.id NOT IN (SELECT id FROM import_skip)").rowcount > 0:
                pass
        return "(SELECT id FROM import_skip)"

    def _publish_table(self, txn: Transaction, table: str, reference: _Reference,
                       before: dict[str, int], skip: str | None) -> tuple[int, int]:
        columns = [c for c, _ in live_columns(txn, self.backend, f"import_{table}")]
        values = []
        for column in columns:
            target = table if column == "id" and table in before else \
                reference.references.get((table, column))
            shift = before.get(target, 0) if target is not None else 0
            values.append(f"{_quote(column)} + {shift}" if shift else _quote(column))
        # Always a WHERE: SQLite reads INSERT ... SELECT ... ON CONFLICT without one as
        # a join's ON.
        where = "WHERE 1 = 1"
        if skip is not None:
            if table == "items":
                where = f"WHERE id NOT IN {skip}"
            elif reference.references.get((table, "item_id")) == "items":
                where = f"WHERE item_id NOT IN {skip}"
        staged = _quote(f"import_{table}")
        names = ", ".join(_quote(c) for c in columns)
        order = ", ".join(_quote(k) for k in reference.keys[table] if k in columns)
        # Kept rows win where the target has the same key (a vector of the same text
        # and model is the same vector; a source root's head is the target's own).
        cursor = txn.execute(
            f"INSERT INTO {_quote(table)} ({names}) SELECT {', '.join(values)} FROM {staged} "
            f"{where} {'ORDER BY ' + order if order else ''} ON CONFLICT DO NOTHING")
        added = int(cursor.rowcount)
        total = int(txn.execute(f"SELECT count(*) FROM {staged}").fetchone()[0])
        return added, total - added

    @staticmethod
    def _give_up_leases(txn: Transaction, before: dict[str, int]) -> None:
        # The source's drivers are not running here: their leases would only delay the
        # next run (items) or show a job as running that nothing drives.
        if "items" in before:
            txn.execute("UPDATE items SET status = 'pending', lease_owner = NULL, "
                        "lease_expires = NULL WHERE status = 'processing' AND id > ?",
                        (before["items"],))
        if "jobs" in before:
            txn.execute("UPDATE jobs SET state = 'interrupted' WHERE state IN "
                        "('running', 'queued', 'cancelling') AND id > ?", (before["jobs"],))

    @staticmethod
    def _index_new_chunks(txn: Transaction, after: int) -> None:
        columns = [r[1] for r in txn.execute("PRAGMA table_info(chunks_fts)").fetchall()]
        if not columns:
            return
        names = ", ".join(_quote(c) for c in columns)
        txn.execute(f"INSERT INTO chunks_fts (rowid, {names}) SELECT id, {names} "
                    "FROM chunks WHERE id > ? ORDER BY id", (after,))

    @staticmethod
    def _advance_sequences(txn: Transaction, tables: Sequence[str]) -> None:
        for table in tables:
            txn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) "
                        f"FROM {_quote(table)} HAVING max(id) IS NOT NULL")


def source_identity(data: Any) -> str:
    """A short, stable identity of ``data`` (a fingerprint), for ``import_state``."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def row_counts(db: CatalogDatabase, tables: Iterable[str]) -> dict[str, int]:
    """Rows of each of ``tables`` in ``db`` (0 for a table it lacks)."""
    counts = {}
    with db.transaction() as txn:
        for table in tables:
            counts[table] = (int(txn.execute(f"SELECT count(*) FROM {_quote(table)}")
                                 .fetchone()[0])
                             if live_columns(txn, db.backend, table) else 0)
    return counts

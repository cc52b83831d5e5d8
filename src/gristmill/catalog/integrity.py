"""Whether a catalog holds together (``gristmill verify``), each problem found given
as one line saying how to fix it; and the safe repairs.

The checks read one consistent snapshot (a read transaction on SQLite, one
``REPEATABLE READ`` transaction on PostgreSQL), so a job running meanwhile cannot make
one table disagree with another. Every check is counts and anti-joins in SQL, grouped by
collection (or model, or owner): memory does not grow with the knowledge base. Only the
optional file check walks rows, a page of ids at a time.

:func:`repair_database` applies the fixes that lose nothing a user made: it rebuilds the
SQLite keyword index, returns left-behind leases to ``pending``, deletes rows whose owner
is gone, deletes vectors of the wrong length and sends the items that relied on them
back for embedding, and queues items whose chunks disagree with the catalog again. What
it cannot do (a source file gone, a model switched) is left to the fix each line names.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.catalog.leases import owner_is_dead

if TYPE_CHECKING:
    from gristmill.catalog.backend import CatalogDatabase, Transaction
    from gristmill.config import Settings

__all__ = ["Finding", "Verification", "rebuild_keyword_index", "repair_database",
           "verify_database"]

#: Examples of missing files named per folder: enough to recognise a pattern.
_EXAMPLES = 3
#: Items read per page by the file check (keyset pagination, never all rows).
_PAGE = 1000
#: Repair statements over lists of ids go in parts this size (SQLite's variable limit).
_PART = 500

_REPAIR = "run `gristmill verify --repair`"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: which check found it, what is wrong, and what to do about it.

    ``repairable``: :func:`repair_database` (``verify --repair``) fixes it.
    """

    check: str
    what: str
    fix: str
    repairable: bool = False

    def line(self) -> str:
        """The one line the CLI prints."""
        return f"{self.what}: {self.fix}"

    def to_dict(self) -> dict[str, str]:
        """``{check, what, fix}`` for ``--json``."""
        return {"check": self.check, "what": self.what, "fix": self.fix}


@dataclass(slots=True)
class Verification:
    """What :func:`verify_database` found, and how much it looked at."""

    findings: list[Finding] = field(default_factory=list)
    #: Rows (or files) each check looked at: ``items``, ``chunks``, ``vectors``...
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether everything holds."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape: ``{ok, findings: [{check, what, fix}], checked}``."""
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings],
                "checked": dict(self.checked)}


def verify_database(db: CatalogDatabase, settings: Settings | None = None, *,
                    sources: bool = False) -> Verification:
    """Check the catalog and index in ``db``; read-only.

    Args:
        db: the knowledge base's database (a read-only one will do).
        settings: its settings: the configured embedder's model is checked against the
            items' (None: not checked).
        sources: also check that every top-level item's file (and every audio clip) is
            still on disk.

    Raises:
        StoreError: the database cannot be read.
    """
    result = Verification()
    behind = _schema_behind(db)
    if behind is not None:  # the checks below read columns an old schema lacks
        result.findings.append(behind)
        return result
    checks: list[Callable[[Transaction, str, Verification], Iterator[Finding]]] = [
        _counted, _keyword_index, _vector_lengths, _missing_vectors, _orphans, _leases,
        _chunk_counts]
    if settings is not None:
        checks.append(_configured_model(settings))
    if sources:
        checks += [_source_files, _clip_files]
    with _snapshot(db) as txn:
        for check in checks:
            result.findings.extend(check(txn, db.backend, result))
    return result


# -- the snapshot ----------------------------------------------------------------------


@contextmanager
def _snapshot(db: CatalogDatabase) -> Iterator[Transaction]:
    """One read transaction: every check sees the same committed state."""
    if db.backend == "postgresql":
        with db.transaction() as txn:
            # Must be the transaction's first statement; read-only, so it takes no locks
            # a running job's writes would wait on.
            txn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield txn
        return
    # SQLite: a deferred BEGIN takes no write lock (transaction() would, and fails on a
    # read-only file); in WAL mode the first read pins the snapshot until the end.
    conn = db.conn
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def _schema_behind(db: CatalogDatabase) -> Finding | None:
    if db.backend == "postgresql":
        from gristmill.catalog.migrations.postgres import MIGRATIONS
    else:
        from gristmill.catalog.migrations.sqlite import MIGRATIONS  # type: ignore[assignment]
    current, latest = db.schema_version, len(MIGRATIONS)
    if current >= latest:
        return None
    return Finding("schema", f"the catalog's schema is version {current}, older than this "
                   f"gristmill's {latest}, so nothing else was checked",
                   f"{_REPAIR} (it upgrades the schema, then checks everything)", True)


# -- the checks: each yields its findings and notes what it looked at ------------------


def _counted(txn: Transaction, backend: str, result: Verification) -> Iterator[Finding]:
    for name, sql in (("items", "SELECT count(*) FROM items"),
                      ("chunks", "SELECT count(*) FROM chunks"),
                      ("vectors", "SELECT count(*) FROM embeddings"),
                      ("audio_events", "SELECT count(*) FROM audio_events")):
        result.checked[name] = int(txn.execute(sql).fetchone()[0])
    return iter(())


def _keyword_index(txn: Transaction, backend: str, result: Verification
                   ) -> Iterator[Finding]:
    if backend == "postgresql":
        # Each chunk's tsvector is a generated column of its own row: it cannot be
        # missing. What can break is the GIN index over it (a failed REINDEX
        # CONCURRENTLY leaves it invalid; searches then scan every chunk).
        row = txn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'chunks_tsv' AND c.relnamespace = current_schema()::regnamespace"
        ).fetchone()
        if row is None:
            yield Finding("keyword_index", "the keyword index chunks_tsv is missing",
                          "recreate it: CREATE INDEX chunks_tsv ON chunks USING gin (tsv)")
        elif not row[0]:
            yield Finding("keyword_index", "the keyword index chunks_tsv is invalid",
                          f"{_REPAIR} (it runs REINDEX INDEX chunks_tsv)", True)
        return
    # FTS5 with external content: reading chunks_fts reads the chunks table, not the
    # index. Its docsize table has one row per chunk the index holds, keyed by chunk id:
    # an anti-join each way finds what the index lacks and what it holds in excess.
    for collection, missing in txn.execute(
            "SELECT c.collection, count(*) FROM chunks c WHERE NOT EXISTS ("
            "SELECT 1 FROM chunks_fts_docsize d WHERE d.id = c.id) "
            "GROUP BY c.collection ORDER BY c.collection"):
        yield Finding("keyword_index", f"{_many(missing, 'chunk')} of collection "
                      f"{collection} {_are(missing)} missing from the keyword index "
                      "(keyword search cannot find them)",
                      f"{_REPAIR} (it rebuilds the keyword index)", True)
    stale = int(txn.execute(
        "SELECT count(*) FROM chunks_fts_docsize d WHERE NOT EXISTS ("
        "SELECT 1 FROM chunks c WHERE c.id = d.id)").fetchone()[0])
    if stale:
        yield Finding("keyword_index", f"the keyword index holds {_many(stale, 'chunk')} "
                      "that no longer exist (searches may return nothing for them)",
                      f"{_REPAIR} (it rebuilds the keyword index)", True)


def _vector_lengths(txn: Transaction, backend: str, result: Verification
                    ) -> Iterator[Finding]:
    for model, length, count in _wrong_lengths(txn, backend):
        floats = f"{length // 4} floats" if length % 4 == 0 else f"{length} bytes"
        expected = _model_dimension(model)
        against = (f"not {expected}" if expected is not None
                   else "unlike the other vectors of that model")
        yield Finding("vectors", f"{_many(count, 'vector')} of model {model} "
                      f"{_are(count)} {floats} long, {against}",
                      f"{_REPAIR} (it deletes them and queues their items for embedding), "
                      "then run `gristmill ingest` on their sources", True)


def _wrong_lengths(txn: Transaction, backend: str) -> list[tuple[str, int, int]]:
    """``(model, byte length, count)`` of the vectors whose length is wrong: not the
    model's known dimension, or, for a model this gristmill does not know, not the
    length most of that model's vectors have."""
    size = "octet_length" if backend == "postgresql" else "length"
    by_model: dict[str, list[tuple[int, int]]] = {}
    for model, length, count in txn.execute(
            f"SELECT model, {size}(vector), count(*) FROM embeddings "
            f"GROUP BY model, {size}(vector) ORDER BY model"):
        by_model.setdefault(str(model), []).append((int(length), int(count)))
    wrong = []
    for model, lengths in by_model.items():
        right = _right_length(model, lengths)
        wrong += [(model, length, count) for length, count in lengths if length != right]
    return wrong


def _right_length(model: str, lengths: list[tuple[int, int]]) -> int:
    dim = _model_dimension(model)
    if dim is not None:
        return dim * 4
    # Ties go to the longer length: a truncated vector is the likelier damage.
    return max(lengths, key=lambda pair: (pair[1], pair[0]))[0]


def _model_dimension(model: str) -> int | None:
    """The vector length of a model id as gristmill's embedders name them, when the id
    alone tells it (None: a remote model whose length only its answers tell)."""
    from gristmill.embed.minilm import DIM, MODEL_ID

    if model == MODEL_ID:
        return DIM
    # openai:HOST/MODEL@N and bedrock:MODEL@N: N asked for (see embed/openai.py, bedrock.py).
    base, _, dims = model.rpartition("@")
    if base and dims.isdigit():
        return int(dims)
    if model.startswith("bedrock:"):  # each Bedrock family's own length, unasked
        return 1536 if "titan-embed-text-v1" in model else 1024
    return None


def _missing_vectors(txn: Transaction, backend: str, result: Verification
                     ) -> Iterator[Finding]:
    for collection, model, chunks, items in txn.execute(
            f"SELECT i.collection, i.embed_model, count(*), count(DISTINCT i.id) "
            f"{_INDEXED_WITHOUT_VECTOR} GROUP BY i.collection, i.embed_model "
            "ORDER BY i.collection, i.embed_model"):
        yield Finding("vectors", f"{_many(chunks, 'chunk')} of "
                      f"{_many(items, 'indexed item')} of collection {collection} "
                      f"{'has' if chunks == 1 else 'have'} no {model} vector "
                      "(vector search misses them)",
                      f"{_REPAIR} (it queues them for embedding), then run `gristmill "
                      "ingest` on their sources", True)


_INDEXED_WITHOUT_VECTOR = """
    FROM items i JOIN chunks c ON c.item_id = i.id
    WHERE i.status = 'indexed' AND coalesce(i.embed_model, 'none') != 'none'
      AND NOT EXISTS (SELECT 1 FROM embeddings e
                      WHERE e.model = i.embed_model AND e.text_hash = c.text_hash)"""


def _configured_model(settings: Settings) -> Callable[
        [Transaction, str, Verification], Iterator[Finding]]:
    """The check that items were embedded with the model the settings name (known
    without loading it only for the bundled MiniLM). Keyword-only items (``none``) are
    not counted: the next ingest with an embedder embeds them without being asked."""

    def check(txn: Transaction, backend: str, result: Verification) -> Iterator[Finding]:
        if settings.embedder != "minilm":
            return
        from gristmill.embed.minilm import MODEL_ID

        for collection, model, count in txn.execute(
                "SELECT collection, embed_model, count(*) FROM items WHERE status = "
                "'indexed' AND coalesce(chunk_count, 0) > 0 AND coalesce(embed_model, '') "
                "NOT IN (?, 'none') GROUP BY collection, embed_model "
                "ORDER BY collection, embed_model",
                (MODEL_ID,)):
            yield Finding("vectors", f"{_many(count, 'item')} of collection {collection} "
                          f"{'was' if count == 1 else 'were'} indexed with model "
                          f"{model or 'unknown'}, not the configured "
                          f"{MODEL_ID} (vector search skips them)",
                          "run `gristmill ingest` on their sources to embed them with "
                          f"{MODEL_ID}, or set --embedder to the model they were made with")

    return check


# What has lost its owner: (one, several, what became of its owner, SQL counting them,
# SQL deleting them).
_ORPHANS: list[tuple[str, str, str, str, str]] = [
    ("chunk", "chunks", "whose item is gone",
     "FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = c.item_id)",
     "DELETE FROM chunks WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = chunks.item_id)"),
    ("attachment or archive member", "attachments or archive members",
     "whose container item is gone",
     "FROM items c WHERE c.parent_id IS NOT NULL AND NOT EXISTS ("
     "SELECT 1 FROM items i WHERE i.id = c.parent_id)",
     "DELETE FROM items WHERE parent_id IS NOT NULL AND NOT EXISTS ("
     "SELECT 1 FROM items i WHERE i.id = items.parent_id)"),
    ("job run", "job runs", "whose job is gone",
     "FROM runs r WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.job_id)",
     "DELETE FROM runs WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = runs.job_id)"),
    ("scanned recording", "scanned recordings", "whose item is gone",
     "FROM audio_recordings r WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = r.item_id)",
     "DELETE FROM audio_recordings WHERE NOT EXISTS ("
     "SELECT 1 FROM items i WHERE i.id = audio_recordings.item_id)"),
    # Written against (item_id, model), which both versions of the recordings table have.
    ("audio event", "audio events", "whose recording is gone",
     "FROM audio_events e WHERE NOT EXISTS (SELECT 1 FROM audio_recordings r "
     "WHERE r.item_id = e.item_id AND r.model = e.model)",
     "DELETE FROM audio_events WHERE NOT EXISTS (SELECT 1 FROM audio_recordings r "
     "WHERE r.item_id = audio_events.item_id AND r.model = audio_events.model)"),
]


def _orphans(txn: Transaction, backend: str, result: Verification) -> Iterator[Finding]:
    for one, several, what, rows, _ in _ORPHANS:
        count = int(txn.execute(f"SELECT count(*) {rows}").fetchone()[0])
        if count:
            yield Finding("orphans", f"{_many(count, one, several)} {what}",
                          f"{_REPAIR} (it deletes them)", True)
    for collection, count in txn.execute(
            "SELECT i.collection, count(*) FROM chunks c JOIN items i ON i.id = c.item_id "
            "WHERE c.collection != i.collection GROUP BY i.collection ORDER BY i.collection"):
        yield Finding("orphans", f"{_many(count, 'chunk')} of items of collection "
                      f"{collection} {_are(count)} filed under another collection "
                      "(searches of it miss them)",
                      f"{_REPAIR} (it files them under their item's collection)", True)


def _leases(txn: Transaction, backend: str, result: Verification) -> Iterator[Finding]:
    # Grouped by owner: a few rows (one per driver process), whatever the item count.
    # Judged as Catalog.reap_expired judges them, which is what --repair runs.
    host, now = socket.gethostname(), time.time()
    held = 0
    for collection, owner, expired, count in txn.execute(
            "SELECT collection, lease_owner, coalesce(lease_expires, 0) < ?, count(*) "
            "FROM items WHERE status = 'processing' "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2", (now,)):
        held += int(count)
        if owner is None:
            why = "that has no holder"
        elif expired:
            why = f"of {owner} that has expired"
        elif owner_is_dead(owner, host):
            why = f"of {owner}, a process that is gone"
        else:
            continue  # a running job's: claimed work in flight
        yield Finding("leases", f"{_many(count, 'item')} of collection {collection} "
                      f"{_are(count)} left 'processing' under a lease {why}",
                      f"{_REPAIR} (it puts them back to pending), or run `gristmill "
                      "ingest` on their sources, which takes them back", True)
    result.checked["leases"] = held


def _chunk_counts(txn: Transaction, backend: str, result: Verification
                  ) -> Iterator[Finding]:
    for collection, count in txn.execute(
            f"SELECT i.collection, count(*) {_CHUNK_COUNT_WRONG} "
            "GROUP BY i.collection ORDER BY i.collection"):
        yield Finding("chunk_counts", f"{_many(count, 'item')} of collection {collection} "
                      f"{'has' if count == 1 else 'have'} a different number of chunks "
                      "than the catalog records",
                      f"{_REPAIR} (it queues them again), then run `gristmill ingest` on "
                      "their sources to extract them anew", True)


_CHUNK_COUNT_WRONG = """
    FROM items i WHERE i.status IN ('extracted', 'indexed')
      AND coalesce(i.chunk_count, 0) != (SELECT count(*) FROM chunks c WHERE c.item_id = i.id)"""


def _source_files(txn: Transaction, backend: str, result: Verification
                  ) -> Iterator[Finding]:
    # Only top-level items: an attachment or archive member has no file of its own.
    # Remote sources (s3://, gdrive://) are not files on this machine.
    missing: dict[tuple[str, str], list[Any]] = {}  # (collection, root) -> [count, examples]
    looked = 0
    last = 0
    while True:
        page = txn.execute(
            "SELECT id, collection, root, source FROM items WHERE parent_id IS NULL "
            "AND id > ? ORDER BY id LIMIT ?", (last, _PAGE)).fetchall()
        if not page:
            break
        last = int(page[-1][0])
        for _, collection, root, source in page:
            if "://" in source:
                continue
            looked += 1
            if not os.path.lexists(source):
                entry = missing.setdefault((collection, root), [0, []])
                entry[0] += 1
                if len(entry[1]) < _EXAMPLES:
                    entry[1].append(source)
    result.checked["source_files"] = looked
    for (collection, root), (count, examples) in sorted(missing.items()):
        shown = ", ".join(examples) + (", ..." if count > len(examples) else "")
        if os.path.isdir(root):
            fix = (f"restore them, or run `gristmill ingest {root} --collection "
                   f"{collection}` so that the catalog drops them")
        else:
            fix = (f"the folder {root} is not on this machine: copy or mount it there, "
                   "or ingest the files from where they are now")
        yield Finding("sources", f"{_many(count, 'file')} of collection {collection} "
                      f"{_are(count)} missing from {root} ({shown})", fix)


def _clip_files(txn: Transaction, backend: str, result: Verification
                ) -> Iterator[Finding]:
    missing, looked, example, last = 0, 0, "", 0
    while True:
        page = txn.execute("SELECT id, clip FROM audio_events WHERE clip IS NOT NULL "
                           "AND id > ? ORDER BY id LIMIT ?", (last, _PAGE)).fetchall()
        if not page:
            break
        last = int(page[-1][0])
        for _, clip in page:
            looked += 1
            if not Path(clip).is_file():
                missing += 1
                example = example or clip
    result.checked["clips"] = looked
    if missing:
        yield Finding("sources", f"{_many(missing, 'audio clip')} {_are(missing)} "
                      f"missing (such as {example})",
                      "copy the home's clips folder along with the knowledge base; "
                      "the events themselves are intact")


# -- repair ----------------------------------------------------------------------------


def repair_database(db: CatalogDatabase, findings: list[Finding]) -> list[str]:
    """Apply the safe fixes for ``findings`` (those marked ``repairable``); one line per
    thing done. Each fix is its own transaction and idempotent: a repair cut short can
    be run again.

    Raises:
        StoreError: the database refused a fix (a read-only one, say).
    """
    checks = {f.check for f in findings if f.repairable}
    done: list[str] = []
    # Orphans first: deleting chunks fires the keyword index's delete trigger, whose
    # damage (for a chunk the index never held) the rebuild below then undoes.
    chunks_deleted = False
    if "orphans" in checks:
        lines, chunks_deleted = _delete_orphans(db)
        done += lines
    if "keyword_index" in checks or (chunks_deleted and db.backend == "sqlite"):
        rebuild_keyword_index(db)
        done.append("rebuilt the keyword index")
    # Wrong vectors go before the demotion, which then finds their chunks without one.
    if "vectors" in checks:
        done += _requeue_for_embedding(db)
    if "leases" in checks:
        from gristmill.catalog.items import Catalog

        returned = Catalog(db).reap_expired()
        done.append(f"returned {_many(returned, 'left-behind lease')} to pending")
    if "chunk_counts" in checks:
        count = _changed(db, "UPDATE items SET status = 'pending', lease_owner = NULL, "
                         f"lease_expires = NULL WHERE id IN (SELECT i.id {_CHUNK_COUNT_WRONG})")
        done.append(f"queued {_many(count, 'item')} with a wrong chunk count to be "
                    "extracted again")
    return done


def _delete_orphans(db: CatalogDatabase) -> tuple[list[str], bool]:
    """What was deleted, and whether chunks were among it."""
    done, chunks_deleted = [], False
    for one, several, what, _, delete in _ORPHANS:
        count = _changed(db, delete)
        if count:
            done.append(f"deleted {_many(count, one, several)} {what}")
            chunks_deleted = chunks_deleted or delete.startswith("DELETE FROM chunks")
    moved = _changed(db, "UPDATE chunks SET collection = (SELECT i.collection FROM items i "
                     "WHERE i.id = chunks.item_id) WHERE collection != (SELECT "
                     "i.collection FROM items i WHERE i.id = chunks.item_id)")
    if moved:
        done.append(f"filed {_many(moved, 'chunk')} under their item's collection")
    return done, chunks_deleted


def rebuild_keyword_index(db: CatalogDatabase) -> None:
    """Rebuild the keyword index from the chunks: SQLite's FTS5 ``rebuild``, or
    PostgreSQL's ``REINDEX`` of the GIN index (either holds the write lock on the chunks
    meanwhile)."""
    sql = ("REINDEX INDEX chunks_tsv" if db.backend == "postgresql"
           else "INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild')")
    _changed(db, sql)


def _requeue_for_embedding(db: CatalogDatabase) -> list[str]:
    done = []
    size = "octet_length" if db.backend == "postgresql" else "length"
    with _snapshot(db) as txn:
        wrong = _wrong_lengths(txn, db.backend)
    for model, length, _ in wrong:
        count = _changed(db, f"DELETE FROM embeddings WHERE model = ? AND {size}(vector) = ?",
                         (model, length))
        done.append(f"deleted {_many(count, 'vector')} of model {model} of the wrong length")
    # Back to `extracted`: the next run's embedding stage embeds their chunks' texts.
    demoted = _changed(db, "UPDATE items SET status = 'extracted' WHERE id IN "
                       f"(SELECT DISTINCT i.id {_INDEXED_WITHOUT_VECTOR})")
    if demoted:
        done.append(f"queued {_many(demoted, 'item')} for embedding")
    return done


def _changed(db: CatalogDatabase, sql: str, params: tuple[object, ...] = ()) -> int:
    """Run one statement in a transaction of its own: the rows it changed."""
    return db.transact(lambda txn: txn.execute(sql, params).rowcount)


def _many(count: int, one: str, several: str | None = None) -> str:
    """``1 chunk``, ``2 chunks``: findings are read by people."""
    return f"{count:,} {one if count == 1 else several or one + 's'}"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"

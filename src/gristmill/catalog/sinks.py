"""What each sink holds of each item: the ``sink_files`` table.

A sink (``openai``: an OpenAI vector store) is a copy of the knowledge base kept
elsewhere. Its state lives here, beside the items, so that a sync is resumable and
idempotent: one row per (sink, store, item) with the sha256 of the content the store
holds and the remote file holding it.

Crash safety is in the columns. A file is uploaded, then named in ``pending_file_id``
(state ``uploading``) before it is attached to the store; once its batch completes,
:meth:`SinkFiles.settle` makes it the row's ``file_id`` and moves the version it
replaces to ``stale_file_id``, in one transaction; the stale file is deleted after that
commit and the column cleared. So whatever instant a sync is killed at, the next one
knows every file it made: pending ones (whose batch may or may not have run) are removed
and uploaded again, stale ones removed. A deleted item leaves its row (the reference is
``ON DELETE SET NULL``) until its file is removed from the store.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gristmill.catalog.backend import CatalogDatabase, Transaction
from gristmill.catalog.item import Status

__all__ = ["SinkFile", "SinkFileState", "SinkFiles", "SyncableItem"]

#: Items whose text is in the index: what a sink copies.
_SYNCABLE = (Status.EXTRACTED.value, Status.INDEXED.value)
#: Items that lost their text (a changed file that now fails, or is now empty): their
#: copy in a sink is removed like a deleted item's. Pending and processing items keep
#: theirs until they settle.
_LOST = (Status.SKIPPED.value, Status.FAILED.value)


class SinkFileState(enum.StrEnum):
    """Where an item's copy in a sink is."""

    UPLOADING = "uploading"  # pending_file_id uploaded, its batch not yet confirmed
    SYNCED = "synced"  # file_id holds the content sha256 names
    FAILED = "failed"  # the store refused the last upload (error says why)


@dataclass(frozen=True, slots=True)
class SinkFile:
    """One item's row in one sink's store."""

    row_id: int
    item_id: int | None  # None: the item is gone
    collection: str
    source: str
    sha256: str | None
    file_id: str | None
    state: SinkFileState
    pending_file_id: str | None
    stale_file_id: str | None

    @property
    def remote_files(self) -> list[str]:
        """Every remote file this row knows of, to remove them all."""
        return [f for f in (self.file_id, self.pending_file_id, self.stale_file_id) if f]


@dataclass(frozen=True, slots=True)
class SyncableItem:
    """An item whose text a sink copies."""

    id: int
    collection: str
    source: str
    sha256: str | None  # of the original file (None for some child items)
    parent_id: int | None


_COLUMNS = ("id, item_id, collection, source, sha256, file_id, state, pending_file_id, "
            "stale_file_id")


def _row(values: Any) -> SinkFile:
    return SinkFile(int(values[0]), None if values[1] is None else int(values[1]),
                    str(values[2]), str(values[3]), values[4], values[5],
                    SinkFileState(values[6]), values[7], values[8])


class SinkFiles:
    """One sink's store's rows (``sink`` names the kind, ``store_id`` the store)."""

    def __init__(self, db: CatalogDatabase, sink: str, store_id: str) -> None:
        self.db = db
        self.sink = sink
        self.store_id = store_id

    # -- reading -------------------------------------------------------------------

    def unfinished(self, limit: int = 500) -> list[SinkFile]:
        """Rows a killed sync left with a pending or stale file (at most ``limit``)."""
        return self._select("(pending_file_id IS NOT NULL OR stale_file_id IS NOT NULL)",
                            (), limit)

    def gone(self, collection: str | None, limit: int = 500) -> list[SinkFile]:
        """Rows of items deleted, or settled without text, whose files are still in the
        store (at most ``limit``; ``collection``: only that collection's)."""
        marks = ", ".join("?" * len(_LOST))
        where = ("(item_id IS NULL OR NOT EXISTS (SELECT 1 FROM items i WHERE i.id = "
                 f"sink_files.item_id AND i.status NOT IN ({marks})))")
        params: tuple[object, ...] = _LOST
        if collection is not None:
            where += " AND collection = ?"
            params += (collection,)
        return self._select(where, params, limit)

    def of_items(self, item_ids: Sequence[int]) -> dict[int, SinkFile]:
        """The rows of ``item_ids`` that exist, by item id."""
        if not item_ids:
            return {}
        marks = ", ".join("?" * len(item_ids))
        rows = self._select(f"item_id IN ({marks})", tuple(item_ids), len(item_ids))
        return {r.item_id: r for r in rows if r.item_id is not None}

    def syncable(self, after: int, collection: str | None, limit: int) -> list[SyncableItem]:
        """Items with their text in the index, ``id > after``, in id order (keyset pages:
        the driver holds one page, however many items there are)."""
        marks = ", ".join("?" * len(_SYNCABLE))
        sql = (f"SELECT id, collection, source, sha256, parent_id FROM items WHERE id > ? "
               f"AND status IN ({marks})")
        params: tuple[object, ...] = (after, *_SYNCABLE)
        if collection is not None:
            sql += " AND collection = ?"
            params += (collection,)
        rows = self.db.conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [SyncableItem(int(r[0]), str(r[1]), str(r[2]), r[3],
                             None if r[4] is None else int(r[4])) for r in rows]

    def text(self, item_id: int) -> str:
        """The item's extracted text: its chunks in order, a blank line between."""
        rows = self.db.conn.execute("SELECT text FROM chunks WHERE item_id = ? ORDER BY seq",
                                    (item_id,)).fetchall()
        return "\n\n".join(str(r[0]) for r in rows)

    def count(self) -> int:
        """Rows of this store holding a file."""
        row = self.db.conn.execute(
            "SELECT count(*) FROM sink_files WHERE sink = ? AND store_id = ? AND file_id "
            "IS NOT NULL", (self.sink, self.store_id)).fetchone()
        return int(row[0])

    # -- writing -------------------------------------------------------------------

    def record_upload(self, item: SyncableItem, file_id: str, sha256: str) -> None:
        """Name the file just uploaded for ``item`` before it goes to the store: a sync
        killed from here on knows to remove it."""
        def write(txn: Transaction) -> None:
            txn.execute(
                "INSERT INTO sink_files (sink, store_id, item_id, collection, source, "
                "state, pending_file_id, pending_sha256, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (sink, store_id, item_id) DO UPDATE SET "
                "collection = excluded.collection, source = excluded.source, "
                "state = excluded.state, pending_file_id = excluded.pending_file_id, "
                "pending_sha256 = excluded.pending_sha256, updated_at = excluded.updated_at",
                (self.sink, self.store_id, item.id, item.collection, item.source,
                 SinkFileState.UPLOADING.value, file_id, sha256, time.time()))

        self.db.transact(write)

    def settle(self, attached: Sequence[int], refused: Sequence[tuple[int, str]]) -> None:
        """After a batch: ``attached`` items' pending files become their files (the
        versions they replace become stale), ``refused`` ones (item id, reason) are
        ``failed`` and their pending files stale. One transaction: all or nothing."""
        now = time.time()

        def write(txn: Transaction) -> None:
            key = "sink = ? AND store_id = ? AND item_id = ?"
            for item_id in attached:
                txn.execute(
                    "UPDATE sink_files SET stale_file_id = file_id, file_id = "
                    "pending_file_id, sha256 = pending_sha256, pending_file_id = NULL, "
                    "pending_sha256 = NULL, state = ?, error = NULL, updated_at = ? "
                    f"WHERE {key} AND pending_file_id IS NOT NULL",
                    (SinkFileState.SYNCED.value, now, self.sink, self.store_id, item_id))
            for item_id, reason in refused:
                # The older version, if any, stays in the store: stale text beats none.
                txn.execute(
                    "UPDATE sink_files SET stale_file_id = pending_file_id, pending_file_id "
                    "= NULL, pending_sha256 = NULL, state = ?, error = ?, updated_at = ? "
                    f"WHERE {key} AND pending_file_id IS NOT NULL",
                    (SinkFileState.FAILED.value, reason[:2000], now, self.sink,
                     self.store_id, item_id))

        self.db.transact(write)

    def drop_pending(self, row_id: int) -> None:
        """Forget a pending file once it was removed; the row's older file (it has one:
        else the caller forgets the row) is what the store holds."""
        self._update(row_id, "pending_file_id = NULL, pending_sha256 = NULL, state = "
                     f"'{SinkFileState.SYNCED.value}'")

    def drop_stale(self, row_id: int) -> None:
        """Forget a stale file once it was removed."""
        self._update(row_id, "stale_file_id = NULL")

    def forget(self, row_id: int) -> None:
        """Delete a row whose files were all removed."""
        self.db.transact(lambda txn: txn.execute("DELETE FROM sink_files WHERE id = ?",
                                                 (row_id,)))

    def _update(self, row_id: int, assignments: str) -> None:
        self.db.transact(lambda txn: txn.execute(
            f"UPDATE sink_files SET {assignments}, updated_at = ? WHERE id = ?",
            (time.time(), row_id)))

    def _select(self, where: str, params: tuple[object, ...], limit: int) -> list[SinkFile]:
        rows = self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM sink_files WHERE sink = ? AND store_id = ? AND {where} "
            "ORDER BY id LIMIT ?", (self.sink, self.store_id, *params, limit)).fetchall()
        return [_row(r) for r in rows]

"""The catalog: discovery upserts, leases, settlements and counts, on SQLite or PostgreSQL.

The SQL is shared; where the dialects differ the method branches on ``db.backend``. On
PostgreSQL several ingest processes may work on one catalog at once: claims skip rows
another transaction has locked (``FOR UPDATE SKIP LOCKED``), so no item is leased twice,
and a write that loses a deadlock to another process is retried.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gristmill.catalog.backend import CatalogDatabase, Transaction
from gristmill.catalog.item import ErrorType, Item, Status
from gristmill.catalog.leases import owner_is_dead

__all__ = ["Catalog", "DiscoveryCounts", "FileFacts"]


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What discovery learnt about one path: either stat facts or why it is skipped.

    A remote object (an ``s3://`` URL) also has a ``change_token`` (its ETag): equal to
    the catalog's, with the same size, the object is unchanged and is not downloaded.
    Its sha256 is learnt only when a worker downloads it.
    """

    source: str
    size: int = 0
    mtime_ns: int = 0
    skip_reason: str | None = None
    change_token: str | None = None


@dataclass(slots=True)
class DiscoveryCounts:
    """How a discovery pass changed the catalog."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    outdated: int = 0  # done by an older extractor version, or skipped as unsupported

    @property
    def seen(self) -> int:
        """Items found in the source this pass."""
        return self.new + self.changed + self.unchanged + self.skipped

    def __iadd__(self, other: DiscoveryCounts) -> DiscoveryCounts:
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.skipped += other.skipped
        self.removed += other.removed
        self.outdated += other.outdated
        return self


# An item with the same bytes whose chunks are stored, best first: indexed with the model
# (``?``) before merely extracted. A CASE, not a boolean: NULLs sort first in
# PostgreSQL's descending order.
_TWIN = ("SELECT t.id FROM items t WHERE t.sha256 = {sha256} "
         "AND t.status IN ('extracted', 'indexed') AND t.chunk_count > 0 "
         "ORDER BY CASE WHEN t.status = 'indexed' AND t.embed_model = ? THEN 0 ELSE 1 END "
         "LIMIT 1")


Hasher = Callable[[str], str]
T = TypeVar("T")


class Catalog:
    """Items in the catalog database; every write is one explicit transaction."""

    def __init__(self, db: CatalogDatabase) -> None:
        self.db = db
        self._new_since_analyze = 0

    def transact(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in a transaction; on PostgreSQL, again when it lost a deadlock or
        a serialization conflict to another process, or the server was away (its writes
        were rolled back): see :meth:`CatalogDatabase.transact`."""
        return self.db.transact(work)

    # -- discovery ---------------------------------------------------------------

    def record_discovered(
        self,
        collection: str,
        root: str,
        batch: Sequence[FileFacts],
        run_id: int,
        hasher: Hasher,
    ) -> DiscoveryCounts:
        """Upsert one batch of discovered paths; hash only new or changed files.

        Unchanged files (same size and mtime) cost one lookup and are never re-read,
        which is what makes a no-change re-run of thousands of files take seconds.
        """
        counts = DiscoveryCounts()
        conn = self.db.conn
        existing: dict[str, tuple[int, int, int, str | None, str | None, str, str | None]] = {}
        for start in range(0, len(batch), 500):
            part = [f.source for f in batch[start:start + 500]]
            marks = ",".join("?" * len(part))
            for row in conn.execute(
                f"SELECT source, id, size, mtime_ns, sha256, change_token, status, "
                f"error_type FROM items WHERE collection = ? AND source IN ({marks})",
                [collection, *part]
            ):
                existing[row[0]] = row[1:]
        now = time.time()
        writes: list[tuple[str, tuple[object, ...]]] = []
        # Hash outside the write transaction: reading files can be slow and the
        # transaction holds SQLite's single write lock.
        for facts in batch:
            old = existing.get(facts.source)
            if facts.skip_reason is not None:
                counts.skipped += 1
                if old is None:
                    writes.append((_INSERT, (collection, facts.source, root, None, None, None,
                                             Status.SKIPPED.value, facts.skip_reason,
                                             ErrorType.NOT_A_REGULAR_FILE.value, run_id, now,
                                             now, run_id, run_id)))
                else:
                    writes.append((_SET_PROBLEM, (Status.SKIPPED.value, facts.skip_reason,
                                                  ErrorType.NOT_A_REGULAR_FILE.value, run_id,
                                                  run_id, now, old[0])))
                    writes.append((_DROP_CHUNKS, (old[0],)))  # no stale text in search
                    writes.append((_DROP_CHILDREN, (old[0],)))
                    writes += _drop_audio(old[0])
                continue
            if facts.change_token is not None:
                writes += _remote(counts, collection, root, facts, old, run_id, now)
                continue
            if old is not None and old[1] == facts.size and old[2] == facts.mtime_ns:
                counts.unchanged += 1
                writes.append(_seen_or_retried(old, run_id, now))
                continue
            try:
                digest = hasher(facts.source)
            except OSError as exc:
                counts.skipped += 1  # counted as seen; its status is `failed`
                reason = f"cannot read: {exc.strerror or exc}"
                # No size/mtime (as _SET_PROBLEM does): the next pass must re-read it,
                # not call it unchanged; chmod fixes a file without touching its mtime.
                if old is None:
                    writes.append((_INSERT, (collection, facts.source, root, None, None,
                                             None, Status.FAILED.value, reason,
                                             ErrorType.UNREADABLE.value, run_id, now, now,
                                             run_id, run_id)))
                else:
                    writes.append((_SET_PROBLEM, (Status.FAILED.value, reason,
                                                  ErrorType.UNREADABLE.value, run_id, run_id,
                                                  now, old[0])))
                    writes.append((_DROP_CHUNKS, (old[0],)))
                    writes.append((_DROP_CHILDREN, (old[0],)))
                    writes += _drop_audio(old[0])
                continue
            if old is None:
                counts.new += 1
                writes.append((_INSERT, (collection, facts.source, root, facts.size,
                                         facts.mtime_ns, digest, Status.PENDING.value, None,
                                         None, run_id, now, now, run_id, run_id)))
            elif old[3] == digest:
                counts.unchanged += 1  # touched, same bytes: keep the work already done
                writes.append((_TOUCH, (facts.size, facts.mtime_ns, run_id, run_id, now,
                                        old[0])))
                if _failed_transient(old):
                    writes.append((_RETRY, (run_id, run_id, now, old[0])))
            else:
                counts.changed += 1
                writes.append((_CHANGED, (facts.size, facts.mtime_ns, digest, now, old[0],
                                          digest)))
                # Also when another process recorded these bytes first: then only this.
                writes.append((_TOUCH, (facts.size, facts.mtime_ns, run_id, run_id, now,
                                        old[0])))

        def write(txn: Transaction) -> None:
            # Runs of one statement go as one executemany: on PostgreSQL, one pipelined
            # round trip instead of one per file.
            for sql, run in itertools.groupby(writes, key=lambda write: write[0]):
                txn.executemany(sql, [params for _, params in run])

        self.transact(write)
        self._note_growth(counts.new + counts.changed)
        return counts

    def _note_growth(self, new: int) -> None:
        """On PostgreSQL, refresh the planner's statistics of ``items`` when it has grown
        by half since they were taken (and by at least 1,000 rows).

        Autovacuum analyzes a table at most once a minute, and not before 10 % of it
        changed: a run that fills an empty catalog would have every claim planned for
        a table of a few rows, by the wrong index, sorting every pending item (7 ms a
        claim half-way through 10,000 new files). PostgreSQL's own advice after a bulk
        load is to ANALYZE; this does it as the load goes, a few times per run.
        """
        if self.db.backend != "postgresql" or new == 0:
            return
        self._new_since_analyze += new
        if self._new_since_analyze < 1000:
            return
        row = self.db.conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass").fetchone()
        known = max(float(row[0]), 0.0) if row else 0.0  # -1: never analyzed
        if self._new_since_analyze >= known / 2:
            self.db.conn.execute("ANALYZE items")
            self._new_since_analyze = 0

    def requeue_outdated(
        self, collection: str, roots: Sequence[str], versions: dict[str, int],
        reads: Callable[[str], bool],
    ) -> int:
        """Send back to ``pending`` the items under ``roots`` whose extractor has a newer
        version than the one that produced them, and the items skipped as an unsupported
        type that some extractor now reads. Their chunks stay searchable until the new
        extraction replaces them. Returns how many were re-queued."""
        marks = ",".join("?" * len(roots))
        ids: list[int] = []
        if versions:
            table = ",".join(["(?, ?)"] * len(versions))
            ids += [row[0] for row in self.db.conn.execute(
                f"""WITH current (name, version) AS (VALUES {table})
                    SELECT i.id FROM items i JOIN current c ON c.name = i.extractor
                    WHERE i.collection = ? AND i.root IN ({marks})
                      AND i.extractor_version < c.version
                      AND i.status IN ('extracted', 'indexed', 'skipped', 'failed')""",
                [*(x for pair in versions.items() for x in pair), collection, *roots])]
        ids += [item_id for item_id, source in self.db.conn.execute(
            f"SELECT id, source FROM items WHERE collection = ? AND root IN ({marks}) "
            f"AND status = 'skipped' AND extractor IS NULL AND error_type = ?",
            (collection, *roots, ErrorType.UNSUPPORTED.value)) if reads(source)]

        def requeue(txn: Transaction, part: list[int]) -> None:
            txn.execute(
                f"UPDATE items SET status = 'pending', attempts = 0, crashes = 0, "
                f"not_before = NULL, error = NULL, error_type = NULL, updated_at = ? "
                f"WHERE id IN ({','.join('?' * len(part))})", (time.time(), *part))

        for start in range(0, len(ids), 500):
            self.transact(functools.partial(requeue, part=ids[start:start + 500]))
        return len(ids)

    def remove_unseen(
        self, collection: str, root: str, run_id: int, in_scope: Callable[[str], bool]
    ) -> int:
        """Delete items (and their chunks) under ``root`` that this run did not see.

        Only called after a complete discovery pass; ``in_scope`` keeps items that the
        current include/exclude patterns leave out of the pass (they were not looked for).
        Child items are never seen by discovery: they go with their container.
        """
        # Older runs only: a run that started later (another process walking the same
        # folder) marks what it sees with its higher id, and those files are there.
        gone = [
            item_id
            for item_id, source in self.db.conn.execute(
                "SELECT id, source FROM items WHERE collection = ? AND root = ? "
                "AND parent_id IS NULL AND (seen_run IS NULL OR seen_run < ?)",
                (collection, root, run_id))
            if in_scope(source)
        ]

        def delete(txn: Transaction, part: list[int]) -> int:
            # Checked again as it is deleted: another run may have seen it meanwhile.
            unseen = (f"id IN ({','.join('?' * len(part))}) "
                      f"AND (seen_run IS NULL OR seen_run < ?)")
            txn.execute(f"DELETE FROM chunks WHERE item_id IN (SELECT id FROM items "
                        f"WHERE {unseen})", (*part, run_id))
            return txn.execute(f"DELETE FROM items WHERE {unseen}", (*part, run_id)).rowcount

        removed = 0
        for start in range(0, len(gone), 500):
            removed += self.transact(functools.partial(delete, part=gone[start:start + 500]))
        return removed

    # -- sources in git work trees ---------------------------------------------------

    def source_head(self, collection: str, root: str) -> tuple[str, str] | None:
        """``(commit, scope)`` a git source root was last discovered at, if any."""
        row = self.db.conn.execute(
            "SELECT head, scope FROM source_heads WHERE collection = ? AND root = ?",
            (collection, root)).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def set_source_head(self, collection: str, root: str, head: str | None,
                        scope: str) -> None:
        """Record the commit a complete discovery of ``root`` saw (None forgets it: the
        next run lists every file)."""
        def write(txn: Transaction) -> None:
            txn.execute("DELETE FROM source_heads WHERE collection = ? AND root = ?",
                        (collection, root))
            if head is not None:
                txn.execute("INSERT INTO source_heads (collection, root, head, scope, "
                            "updated_at) VALUES (?, ?, ?, ?, ?)",
                            (collection, root, head, scope, time.time()))
        self.transact(write)

    def mark_root_seen(self, collection: str, root: str, run_id: int) -> int:
        """Mark every item discovered under ``root`` as seen by run ``run_id`` (what a
        diff since the last run does not name is still there); returns how many."""
        return int(self.transact(lambda txn: txn.execute(
            f"UPDATE items SET seen_run = {_NEWER_RUN} WHERE collection = ? AND root = ? "
            "AND parent_id IS NULL", (run_id, run_id, collection, root)).rowcount))

    def rename_source(self, collection: str, old: str, new: str) -> bool:
        """Give the item at ``old`` (and its children) the path ``new``, keeping its text
        and vectors; False when there is no such item or ``new`` is taken."""
        def rename(txn: Transaction) -> bool:
            taken = txn.execute("SELECT 1 FROM items WHERE collection = ? AND source = ?",
                                (collection, new)).fetchone()
            if taken:
                return False
            moved = txn.execute(
                "UPDATE items SET source = ?, updated_at = ? WHERE collection = ? "
                "AND source = ? AND parent_id IS NULL", (new, time.time(), collection, old))
            if not moved.rowcount:
                return False
            # Children are named container!/member: they move with their container.
            txn.execute(
                "UPDATE items SET source = ? || substr(source, ?) WHERE collection = ? "
                "AND substr(source, 1, ?) = ?",
                (new, len(old) + 1, collection, len(old) + 1, f"{old}!"))
            return True
        return bool(self.transact(rename))

    def record_commit(self, collection: str, root: str, run_id: int, commit: str,
                      dirty: Sequence[str]) -> None:
        """Note that the items run ``run_id`` saw under ``root`` hold ``commit``'s
        version of their file, except the ``dirty`` sources (uncommitted changes)."""
        def write(txn: Transaction) -> None:
            txn.execute("UPDATE items SET git_commit = ? WHERE collection = ? AND root = ? "
                        "AND parent_id IS NULL AND seen_run >= ?",
                        (commit, collection, root, run_id))
            for start in range(0, len(dirty), 500):
                part = dirty[start:start + 500]
                txn.execute(f"UPDATE items SET git_commit = NULL WHERE collection = ? "
                            f"AND source IN ({','.join('?' * len(part))})",
                            (collection, *part))
        self.transact(write)

    def known_stats(self, collection: str, sources: Sequence[str]
                    ) -> dict[str, tuple[int | None, int | str | None]]:
        """``(size, mtime_ns)`` recorded for each of ``sources`` the catalog holds (what
        a dry run compares a walk with); ``(size, change_token)`` for a remote object."""
        known: dict[str, tuple[int | None, int | str | None]] = {}
        for start in range(0, len(sources), 500):
            part = sources[start:start + 500]
            for source, size, mtime_ns, token in self.db.conn.execute(
                    f"SELECT source, size, mtime_ns, change_token FROM items "
                    f"WHERE collection = ? AND source IN ({','.join('?' * len(part))})",
                    (collection, *part)):
                known[source] = (size, mtime_ns if token is None else token)
        return known

    def top_level_sources(self, collection: str, after: str, below: str,
                          limit: int) -> list[str]:
        """Sources of the items found by discovery (not attachments or members) with
        ``after < source < below``, in order, at most ``limit``: one page of a folder's
        items."""
        return [row[0] for row in self.db.conn.execute(
            "SELECT source FROM items WHERE collection = ? AND parent_id IS NULL "
            "AND source > ? AND source < ? ORDER BY source LIMIT ?",
            (collection, after, below, limit))]

    def remove_sources(self, collection: str, sources: Sequence[str]) -> int:
        """Delete the items found by discovery with these sources, with their chunks and
        their children; returns how many were deleted."""
        def delete(txn: Transaction, part: Sequence[str]) -> int:
            ids = [row[0] for row in txn.execute(
                f"SELECT id FROM items WHERE collection = ? AND parent_id IS NULL "
                f"AND source IN ({','.join('?' * len(part))})", (collection, *part))]
            if not ids:
                return 0
            id_marks = ",".join("?" * len(ids))
            # Children and their chunks go by ON DELETE CASCADE; the FTS rows by trigger.
            txn.execute(f"DELETE FROM chunks WHERE item_id IN ({id_marks})", ids)
            txn.execute(f"DELETE FROM items WHERE id IN ({id_marks})", ids)
            return len(ids)

        removed = 0
        for start in range(0, len(sources), 500):
            removed += self.transact(
                functools.partial(delete, part=sources[start:start + 500]))
        return removed

    # -- leases ------------------------------------------------------------------

    def claim(
        self, owner: str, collection: str, roots: Sequence[str], limit: int,
        lease_seconds: float, *, run_id: int | None = None, twins_for: str | None = None,
    ) -> list[Item]:
        """Lease up to ``limit`` pending items of these roots to ``owner`` (only items
        seen by discovery run ``run_id``, when given). With ``twins_for`` (an embedding
        model), each item's :attr:`~Item.twin` is looked up in the same statement, as
        :meth:`twin` would: one round trip per claim, not one more per item."""
        if limit <= 0:
            return []
        now = time.time()
        marks = ",".join("?" * len(roots))
        seen, seen_params = _seen_by(run_id)
        # SQLite has one writer at a time; on PostgreSQL, rows another process is
        # claiming right now are locked, and skipped instead of waited for or shared.
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.db.backend == "postgresql" else ""
        # On PostgreSQL the twins come back with the claim (through items_sha256).
        # SQLite plans that correlated subquery as a scan of the table, and a query
        # of its own costs it no round trip: it asks below. Claimed items are pending,
        # never extracted or indexed, so none is its own twin.
        inline = twins_for is not None and self.db.backend == "postgresql"
        twin = f"({_TWIN.format(sha256='items.sha256')})" if inline else "NULL"
        rows = self.transact(lambda txn: txn.execute(
            f"""UPDATE items SET status = 'processing', lease_owner = ?,
                    lease_expires = ?, updated_at = ?
                WHERE id IN (
                    SELECT id FROM items
                    WHERE status = 'pending' AND collection = ? AND root IN ({marks})
                      AND (not_before IS NULL OR not_before <= ?){seen}
                    ORDER BY id LIMIT ?{skip_locked})
                RETURNING id, collection, source, size, sha256, attempts, crashes,
                          parent_id, {twin}, mtime_ns""",
            (owner, now + lease_seconds, now, collection, *roots, now, *seen_params,
             limit, *([twins_for] if inline else [])),
        ).fetchall())
        items = [self._located(_claimed(row)) for row in sorted(rows)]
        if twins_for is not None and not inline:
            items = [dataclasses.replace(item, twin=self.twin(item.sha256, twins_for))
                     if item.sha256 else item for item in items]
        return items

    def _located(self, item: Item) -> Item:
        """``item`` with the file holding it and the member names down to it (children)."""
        if item.parent_id is None:
            return item
        chain = self.db.conn.execute(
            """WITH RECURSIVE up (id, parent_id, member, source, sha256, level) AS (
                   SELECT id, parent_id, member, source, sha256, 0 FROM items WHERE id = ?
                   UNION ALL
                   SELECT i.id, i.parent_id, i.member, i.source, i.sha256, up.level + 1
                   FROM items i JOIN up ON i.id = up.parent_id)
               SELECT source, member, sha256 FROM up ORDER BY level DESC""",
            (item.id,)).fetchall()
        return dataclasses.replace(item, path=chain[0][0], path_sha256=chain[0][2],
                                   members=tuple(member for _, member, _ in chain[1:]))

    @staticmethod
    def replace_children(txn: Transaction, parent: Item,
                         children: Sequence[tuple[str, int | None, str | None]],
                         run_id: int | None) -> None:
        """Drop the children ``parent`` had (their own children and chunks with them)
        and record these: ``(name, size, problem)`` each, ``pending`` unless a problem
        makes it ``failed`` at once."""
        txn.execute(_DROP_CHILDREN, (parent.id,))
        if not children:
            return
        now = time.time()
        # The casts type parameters that PostgreSQL cannot infer in a SELECT list.
        txn.executemany(
            """INSERT INTO items (collection, source, root, size, status, error, error_type,
                                  parent_id, member, seen_run, created_at, updated_at)
               SELECT collection, CAST(? AS TEXT), root, CAST(? AS BIGINT), CAST(? AS TEXT),
                      CAST(? AS TEXT), CAST(? AS TEXT), id, CAST(? AS TEXT),
                      CAST(? AS BIGINT), CAST(? AS DOUBLE PRECISION),
                      CAST(? AS DOUBLE PRECISION)
               FROM items WHERE id = ?
               ON CONFLICT (collection, source) DO NOTHING""",
            [(f"{parent.source}!/{name}", size,
              Status.FAILED.value if problem else Status.PENDING.value, problem,
              ErrorType.EXTRACTION_ERROR.value if problem else None, name, run_id, now, now,
              parent.id)
             for name, size, problem in children])

    @staticmethod
    def copy_children(txn: Transaction, original: int, copy: Item, run_id: int | None, *,
                      done: Status, embed_model: str | None = None) -> list[tuple[int, int]]:
        """Give ``copy`` (an item with the same bytes as item ``original``) a copy of every
        descendant of ``original`` (attachments, members, theirs), in place of its own.

        A descendant the original has extracted becomes ``done`` (with ``embed_model``);
        a skipped or failed one keeps its reason; one still pending, or in process
        elsewhere, is ``pending``, for this run to extract. Returns ``(descendant, its
        copy)`` for each copied as ``done``: the caller copies their chunks (the catalog
        owns none) and promotes them.
        """
        txn.execute(_DROP_CHILDREN, (copy.id,))
        # One statement, so one consistent view of a tree another process may be settling.
        rows = txn.execute(
            """WITH RECURSIVE down (id, level) AS (
                   SELECT id, 1 FROM items WHERE parent_id = ?
                   UNION ALL
                   SELECT i.id, down.level + 1 FROM items i JOIN down ON i.parent_id = down.id)
               SELECT i.id, i.parent_id, i.member, i.size, i.sha256, i.status, i.error,
                      i.error_type, i.extractor, i.extractor_version, i.embed_model, i.pages,
                      i.chunk_count, i.attempts, i.crashes
               FROM down JOIN items i ON i.id = down.id ORDER BY down.level, i.id""",
            (original,)).fetchall()
        now = time.time()
        copies = {original: (copy.id, copy.source)}  # a parent's copy, before its children
        extracted: list[tuple[int, int]] = []
        for (item_id, parent_id, member, size, sha256, status, error, error_type, extractor,
             version, model, pages, chunk_count, attempts, crashes) in rows:
            parent = copies.get(parent_id)
            if parent is None:  # under a descendant that could not be copied
                continue
            if status in (Status.EXTRACTED.value, Status.INDEXED.value):
                fields = (sha256, done.value, None, None, extractor, version, embed_model,
                          pages, chunk_count, attempts, crashes)
            elif status in (Status.SKIPPED.value, Status.FAILED.value):
                fields = (sha256, status, error, error_type, extractor, version, model,
                          pages, chunk_count, attempts, crashes)
            else:  # its outcome is not known yet: find it out here
                fields = (None, Status.PENDING.value, None, None, None, None, None, None,
                          None, 0, 0)
            # The casts type parameters that PostgreSQL cannot infer in a SELECT list.
            row = txn.execute(
                """INSERT INTO items (collection, source, root, size, sha256, status, error,
                                      error_type, extractor, extractor_version, embed_model,
                                      pages, chunk_count, attempts, crashes, parent_id,
                                      member, seen_run, created_at, updated_at)
                   SELECT collection, CAST(? AS TEXT), root, CAST(? AS BIGINT),
                          CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT),
                          CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT),
                          CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS INTEGER),
                          CAST(? AS INTEGER), id, CAST(? AS TEXT), CAST(? AS BIGINT),
                          CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION)
                   FROM items WHERE id = ?
                   ON CONFLICT (collection, source) DO NOTHING RETURNING id""",
                (f"{parent[1]}!/{member}", size, *fields, member, run_id, now, now,
                 parent[0])).fetchone()
            if row is None:
                continue
            copies[item_id] = (int(row[0]), f"{parent[1]}!/{member}")
            if fields[1] == done.value:
                extracted.append((item_id, int(row[0])))
        return extracted

    def renew_leases(self, owner: str, lease_seconds: float) -> None:
        """Push back the expiry of every lease ``owner`` holds (its heartbeat)."""
        self.transact(lambda txn: txn.execute(
            "UPDATE items SET lease_expires = ? WHERE lease_owner = ? "
            "AND status = 'processing'", (time.time() + lease_seconds, owner)))

    def release(self, owner: str, item_ids: Iterable[int]) -> None:
        """Give back to ``pending`` the items ``owner`` still holds among ``item_ids``
        (claimed, their outcome never written)."""
        rows = [(item_id, owner) for item_id in item_ids]
        if rows:
            self.transact(lambda txn: txn.executemany(
                "UPDATE items SET status = 'pending', lease_owner = NULL, "
                "lease_expires = NULL WHERE id = ? AND lease_owner = ? "
                "AND status = 'processing'", rows))

    def reap_expired(self) -> int:
        """Return to ``pending`` every processing item whose lease expired or whose owner
        process on this host is gone (so a re-run after ``kill -9`` needs no wait)."""
        host = socket.gethostname()
        now = time.time()
        stale = [
            (item_id, owner or "", -1.0 if expires is None else expires)
            for item_id, owner, expires in self.db.conn.execute(
                "SELECT id, lease_owner, lease_expires FROM items WHERE status = 'processing'")
            if expires is None or expires < now or owner is None or owner_is_dead(owner, host)
        ]
        # Only if the lease is still the one judged stale: meanwhile its item may have
        # been settled and claimed again, or its live owner may have renewed it.
        def release(txn: Transaction, part: list[tuple[int, str, float]]) -> None:
            txn.executemany(
                "UPDATE items SET status = 'pending', lease_owner = NULL, "
                "lease_expires = NULL WHERE id = ? AND status = 'processing' "
                "AND coalesce(lease_owner, '') = ? AND coalesce(lease_expires, -1.0) = ?",
                part)

        for start in range(0, len(stale), 500):
            self.transact(functools.partial(release, part=stale[start:start + 500]))
        return len(stale)

    def has_pending(
        self, collection: str, roots: Sequence[str], *, run_id: int | None = None,
    ) -> tuple[bool, float | None]:
        """Whether pending items remain (seen by run ``run_id``, when given), and the
        earliest ``not_before`` among them."""
        marks = ",".join("?" * len(roots))
        seen, seen_params = _seen_by(run_id)
        count, earliest = self.db.conn.execute(
            f"SELECT count(*), min(coalesce(not_before, 0)) FROM items "
            f"WHERE status = 'pending' AND collection = ? AND root IN ({marks}){seen}",
            (collection, *roots, *seen_params)).fetchone()
        return count > 0, earliest

    # -- settling (called inside the batcher's transaction) ----------------------

    @staticmethod
    def settle(
        txn: Transaction, item_id: int, owner: str, status: Status, *,
        claimed_sha256: str | None = None, **fields: object,
    ) -> bool:
        """Set an item's status and fields if ``owner`` still holds its lease (and, with
        ``claimed_sha256``, if the file's recorded bytes are still those it was claimed
        with: a watch may record a new save of an item in flight).

        Returns False when the lease was lost (reaped and re-claimed elsewhere) or the
        file changed: the caller must then drop the result, so nothing is written twice
        and no older result overwrites a newer one.
        """
        columns = {"status": status.value, "updated_at": time.time(),
                   "lease_owner": None, "lease_expires": None, **fields}
        for name, value in columns.items():
            if isinstance(value, str) and "\x00" in value:
                # A reason quoting a hostile file's bytes: PostgreSQL text cannot hold NUL.
                columns[name] = value.replace("\x00", "")
        assignments = ", ".join(f"{name} = ?" for name in columns)
        same_bytes, same_params = ("", ()) if claimed_sha256 is None else (
            " AND sha256 = ?", (claimed_sha256,))
        cursor = txn.execute(
            f"UPDATE items SET {assignments} WHERE id = ? AND lease_owner = ? "
            f"AND status = 'processing'{same_bytes}",
            (*columns.values(), item_id, owner, *same_params))
        return cursor.rowcount == 1

    @staticmethod
    def promote(txn: Transaction, model: str, item_ids: Iterable[int] | None = None) -> int:
        """Mark ``extracted`` items whose every chunk has a ``model`` vector ``indexed``."""
        sql = """UPDATE items SET status = 'indexed', embed_model = :model, updated_at = :now
                 WHERE status = 'extracted' {only}
                   AND NOT EXISTS (
                     SELECT 1 FROM chunks c WHERE c.item_id = items.id AND NOT EXISTS (
                       SELECT 1 FROM embeddings e
                       WHERE e.model = :model AND e.text_hash = c.text_hash))"""
        params: dict[str, object] = {"model": model, "now": time.time()}
        if item_ids is None:
            return txn.execute(sql.format(only=""), params).rowcount
        ids = sorted(set(item_ids))
        total = 0
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            only = f"AND id IN ({','.join(str(int(i)) for i in part)})"
            total += txn.execute(sql.format(only=only), params).rowcount
        return total

    def demote_for_model(self, model: str) -> int:
        """Send items indexed without ``model`` vectors back to ``extracted``."""
        return self.transact(lambda txn: txn.execute(
            "UPDATE items SET status = 'extracted' WHERE status = 'indexed' "
            "AND coalesce(chunk_count, 0) > 0 AND coalesce(embed_model, '') != ?",
            (model,)).rowcount)

    @staticmethod
    def twin_extraction(txn: Transaction, twin: int, sha256: str | None
                        ) -> dict[str, object] | None:
        """``pages``, ``extractor`` and ``extractor_version`` of item ``twin`` if it still
        holds these bytes, extracted (None: it vanished or changed since the claim)."""
        row = txn.execute(
            "SELECT pages, extractor, extractor_version FROM items WHERE id = ? "
            "AND sha256 = ? AND status IN ('extracted', 'indexed')", (twin, sha256)).fetchone()
        return None if row is None else {
            "pages": row[0], "extractor": row[1], "extractor_version": row[2]}

    @classmethod
    def copy_twin(cls, txn: Transaction, original: int, copy: Item, run_id: int | None, *,
                  chunk_count: int, done: Status,
                  embed_model: str | None = None) -> list[tuple[int, int]]:
        """Record that ``copy`` now holds the ``chunk_count`` chunks copied from item
        ``original`` (same bytes), and copy ``original``'s descendants under it (see
        :meth:`copy_children`, whose pairs it returns)."""
        txn.execute("UPDATE items SET chunk_count = ? WHERE id = ?", (chunk_count, copy.id))
        return cls.copy_children(txn, original, copy, run_id, done=done,
                                 embed_model=embed_model)

    def twin(self, sha256: str, model: str) -> int | None:
        """An item with these exact bytes whose chunks are already stored, if any."""
        row = self.db.conn.execute(_TWIN.format(sha256="?"), (sha256, model)).fetchone()
        return None if row is None else int(row[0])

    # -- reading -----------------------------------------------------------------

    def ping(self) -> None:
        """One round trip to the database (a liveness check): raises the database's
        error when it cannot be reached."""
        self.db.conn.execute("SELECT 1").fetchone()

    def counts(self, collection: str | None = None,
               roots: Sequence[str] | None = None) -> dict[str, int]:
        """Items by status (every status present, zeros included), of one collection
        (and of these roots in it) when given."""
        counts = {status.value: 0 for status in Status}
        sql = "SELECT status, count(*) FROM items"
        params: tuple[object, ...] = ()
        if collection is not None:
            sql += " WHERE collection = ?"
            params = (collection,)
            if roots is not None:
                sql += f" AND root IN ({','.join('?' * len(roots))})"
                params = (collection, *roots)
        for status, n in self.db.conn.execute(sql + " GROUP BY status", params):
            counts[status] = n
        return counts

    def member_count(self, collection: str | None = None) -> int:
        """Items that are attachments or archive members (inside another item): the
        counts by status include them, a walk of the files does not."""
        sql = "SELECT count(*) FROM items WHERE parent_id IS NOT NULL"
        params: tuple[object, ...] = ()
        if collection is not None:
            sql += " AND collection = ?"
            params = (collection,)
        return int(self.db.conn.execute(sql, params).fetchone()[0])

    def collections(self) -> list[str]:
        """Names of every collection with at least one item."""
        return [row[0] for row in self.db.conn.execute(
            "SELECT DISTINCT collection FROM items ORDER BY collection")]

    def problems(self, collection: str | None = None, job: int | None = None
                 ) -> Iterator[tuple[str, str, str]]:
        """``(status, source, reason)`` of every failed or skipped item (of one
        collection, or seen by one job's runs)."""
        sql = ("SELECT status, source, coalesce(error, 'no reason recorded') FROM items "
               "WHERE status IN ('failed', 'skipped')")
        params: list[object] = []
        if collection is not None:
            sql += " AND collection = ?"
            params.append(collection)
        if job is not None:
            sql += " AND seen_run IN (SELECT id FROM runs WHERE job_id = ?)"
            params.append(job)
        yield from self.db.conn.execute(sql + " ORDER BY id", params)

    def reset_failed(self, collection: str | None = None) -> int:
        """Re-queue failed items, forgetting their attempts and crashes."""
        return self._requeue(Status.FAILED, collection)

    def reset_skipped(self, collection: str | None = None) -> int:
        """Re-queue skipped files (not what discovery skipped as not a regular file):
        after installing a tool a format needs, for instance LibreOffice."""
        return self._requeue(Status.SKIPPED, collection)

    def _requeue(self, status: Status, collection: str | None) -> int:
        # Items without a sha256 (or, for a remote object not downloaded yet, a change
        # token) are what discovery itself skipped (not regular files): nothing an
        # extractor could read, so never re-queued.
        sql = ("UPDATE items SET status = 'pending', attempts = 0, crashes = 0, "
               "not_before = NULL, error = NULL, error_type = NULL "
               "WHERE status = ? AND (sha256 IS NOT NULL OR parent_id IS NOT NULL "
               "OR change_token IS NOT NULL)")
        params: tuple[object, ...] = (status.value,)
        if collection is not None:
            sql += " AND collection = ?"
            params += (collection,)
        return self.transact(lambda txn: txn.execute(sql, params).rowcount)


# Two processes may walk the same folder at once. A run marks an item seen with its id
# unless a later run already did (`seen_run` never goes down, so the later run's removal
# pass keeps it); an item the other process inserted first is only marked; bytes the
# other process already recorded as changed are not reset a second time (its runner
# may hold the item's lease by now).
_NEWER_RUN = "CASE WHEN seen_run > ? THEN seen_run ELSE ? END"
_INSERT = (
    "INSERT INTO items (collection, source, root, size, mtime_ns, sha256, status, error, "
    "error_type, seen_run, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (collection, source) DO UPDATE SET seen_run = "
    "CASE WHEN items.seen_run > ? THEN items.seen_run ELSE ? END"
)
_INSERT_REMOTE = (
    "INSERT INTO items (collection, source, root, size, mtime_ns, change_token, status, "
    "seen_run, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) "
    "ON CONFLICT (collection, source) DO UPDATE SET seen_run = "
    "CASE WHEN items.seen_run > ? THEN items.seen_run ELSE ? END"
)
# A changed object's sha256 is unknown until a worker downloads it: NULL until then.
_CHANGED_REMOTE = (
    "UPDATE items SET size = ?, mtime_ns = ?, change_token = ?, sha256 = NULL, "
    "updated_at = ?, status = 'pending', attempts = 0, crashes = 0, not_before = NULL, "
    "error = NULL, error_type = NULL, lease_owner = NULL, lease_expires = NULL "
    "WHERE id = ? AND coalesce(change_token, '') != ?"
)
_RETRY = (
    f"UPDATE items SET status = 'pending', attempts = 0, not_before = NULL, "
    f"seen_run = {_NEWER_RUN}, updated_at = ? WHERE id = ? AND status = 'failed'"
)
_SEEN = f"UPDATE items SET seen_run = {_NEWER_RUN} WHERE id = ?"
_TOUCH = (f"UPDATE items SET size = ?, mtime_ns = ?, seen_run = {_NEWER_RUN}, updated_at = ? "
          f"WHERE id = ?")
_CHANGED = (
    "UPDATE items SET size = ?, mtime_ns = ?, sha256 = ?, updated_at = ?, "
    "status = 'pending', attempts = 0, crashes = 0, not_before = NULL, error = NULL, "
    "error_type = NULL, lease_owner = NULL, lease_expires = NULL "
    "WHERE id = ? AND coalesce(sha256, '') != ?"
)
_DROP_CHUNKS = "DELETE FROM chunks WHERE item_id = ?"
_DROP_CHILDREN = "DELETE FROM items WHERE parent_id = ?"  # cascades to theirs and chunks
# A recording that is no longer a readable file has no events (its clip files are left
# to the scan's sweep of its user's clip folder).
_DROP_EVENTS = "DELETE FROM audio_events WHERE item_id = ?"
_DROP_RECORDING = "DELETE FROM audio_recordings WHERE item_id = ?"
_SET_PROBLEM = (
    f"UPDATE items SET status = ?, error = ?, error_type = ?, seen_run = {_NEWER_RUN}, "
    "updated_at = ?, "
    "sha256 = NULL, size = NULL, mtime_ns = NULL, lease_owner = NULL, lease_expires = NULL "
    "WHERE id = ?"
)


def _remote(counts: DiscoveryCounts, collection: str, root: str, facts: FileFacts,
            old: tuple[int, int, int, str | None, str | None, str, str | None] | None,
            run_id: int, now: float) -> list[tuple[str, tuple[object, ...]]]:
    """The writes for one listed remote object, judged by its change token alone: its
    bytes are not read here (a worker downloads and hashes a new or changed one)."""
    if old is None:
        counts.new += 1
        return [(_INSERT_REMOTE, (collection, facts.source, root, facts.size, facts.mtime_ns,
                                  facts.change_token, run_id, now, now, run_id, run_id))]
    if old[1] == facts.size and old[4] == facts.change_token:
        counts.unchanged += 1
        return [_seen_or_retried(old, run_id, now)]
    counts.changed += 1
    return [(_CHANGED_REMOTE, (facts.size, facts.mtime_ns, facts.change_token, now, old[0],
                               facts.change_token)),
            (_SEEN, (run_id, run_id, old[0]))]


def _seen_or_retried(old: Sequence[Any], run_id: int,
                     now: float) -> tuple[str, tuple[object, ...]]:
    """The write for an unchanged item: seen by this run; pending again if it failed as
    transient (its source, or the store of originals, was away or busy through every
    attempt: try again now)."""
    if _failed_transient(old):
        return (_RETRY, (run_id, run_id, now, old[0]))
    return (_SEEN, (run_id, run_id, old[0]))


def _failed_transient(old: Sequence[Any]) -> bool:
    """Whether an item's row (as discovery reads it) failed through all its attempts."""
    return bool(old[5] == Status.FAILED.value and old[6] == ErrorType.TRANSIENT.value)


def _drop_audio(item_id: int) -> list[tuple[str, tuple[object, ...]]]:
    """The writes that forget an item's sound events and scan."""
    return [(_DROP_EVENTS, (item_id,)), (_DROP_RECORDING, (item_id,))]


def _claimed(row: Sequence[Any]) -> Item:
    """The :class:`Item` of one row that :meth:`Catalog.claim` returns."""
    (item_id, collection, source, size, sha256, attempts, crashes, parent_id, twin,
     mtime_ns) = row
    return Item(item_id, collection, source, size, sha256, attempts, crashes, parent_id,
                twin, mtime_ns=mtime_ns)


def _seen_by(run_id: int | None) -> tuple[str, tuple[int, ...]]:
    """SQL that keeps items the discovery of ``run_id`` (or of a later run, walking the
    same files in another process) has seen (none: no filter), and child items, which
    discovery never sees (their container was seen to make them)."""
    return (("", ()) if run_id is None
            else (" AND (seen_run >= ? OR parent_id IS NOT NULL)", (run_id,)))


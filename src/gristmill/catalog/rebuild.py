"""Which items a rebuild (``gristmill rebuild``) still has to do: the queries of a
rebuild job, over the ``items`` and ``runs`` tables.

A rebuild job re-extracts every top-level item of a collection from its original in the
store of originals. It walks no source, so the marker that discovery sets, ``seen_run``,
is set here instead: each run of the job marks the items it is to rebuild with its run
id, and the runner claims exactly those (``Catalog.claim``'s ``run_id`` filter). An item
whose ``seen_run`` is a run of this very job has been taken on by it: settled (rebuilt,
or failed or skipped while rebuilt) it is not redone by a later run of the job; still
pending or in process (a run killed or paused meanwhile) it is marked again for the new
run. Every other item is requeued. Children (attachments, archive members) are not
requeued: the rebuild of their container replaces them.
"""

from __future__ import annotations

import time

from gristmill.catalog.backend import CatalogDatabase, Transaction
from gristmill.catalog.originals import NOT_KEPT as _NEVER_KEPT

__all__ = ["RebuildQueue"]

# Skipped items whose original was never kept in the store (see the worker's `_keeps`):
# nothing to rebuild them from, so they are left as they are.
NOT_KEPT = tuple(sorted(_NEVER_KEPT))

# Top-level items of a collection that a rebuild takes on: those with a recorded
# sha256 (the original's name in the store), except skipped ones never kept.
_ELIGIBLE = (f"collection = ? AND parent_id IS NULL AND sha256 IS NOT NULL "
             f"AND NOT (status = 'skipped' AND coalesce(error_type, '') IN "
             f"({', '.join('?' * len(NOT_KEPT))}))")
_OF_JOB = "seen_run IN (SELECT id FROM runs WHERE job_id = ?)"
# `seen_run` never goes down: a later run (of another job) keeps its own mark.
_MARK = "seen_run = CASE WHEN seen_run > ? THEN seen_run ELSE ? END"


class RebuildQueue:
    """The items a rebuild job works on; see the module docstring."""

    def __init__(self, db: CatalogDatabase) -> None:
        self.db = db

    def roots(self, collection: str) -> list[str]:
        """The source roots of the collection's top-level items, sorted: a rebuild
        job's ``sources`` (the same collection gives the same spec, so running the
        rebuild again continues its job)."""
        return sorted(str(row[0]) for row in self.db.conn.execute(
            "SELECT DISTINCT root FROM items WHERE collection = ? AND parent_id IS NULL",
            (collection,)))

    def requeue(self, collection: str, job_id: int, run_id: int) -> int:
        """Mark for run ``run_id`` of rebuild job ``job_id`` the collection's top-level
        items that the job has not rebuilt yet, sending those it never took on back to
        ``pending`` (their chunks stay searchable until replaced); returns how many
        this run is to rebuild. One transaction: a kill leaves every item marked or none."""
        def write(txn: Transaction) -> int:
            # Taken on by an earlier run of this job and not finished (its run was
            # killed or paused): this run takes it over, its attempts kept. In process
            # (the caller has reaped dead leases first: a live driver holds it): marked,
            # so that this run claims it should it come back to `pending`.
            taken_over = txn.execute(
                f"UPDATE items SET {_MARK} WHERE {_ELIGIBLE} AND (status = 'processing' "
                f"OR (status = 'pending' AND {_OF_JOB}))",
                (run_id, run_id, collection, *NOT_KEPT, job_id)).rowcount
            # Never taken on by this job: to rebuild from the start. Those just marked
            # above are of this job now, so none is counted twice.
            return int(taken_over) + int(txn.execute(
                f"UPDATE items SET status = 'pending', attempts = 0, crashes = 0, "
                f"not_before = NULL, error = NULL, error_type = NULL, lease_owner = NULL, "
                f"lease_expires = NULL, updated_at = ?, {_MARK} "
                f"WHERE {_ELIGIBLE} AND status != 'processing' "
                f"AND (seen_run IS NULL OR NOT {_OF_JOB})",
                (time.time(), run_id, run_id, collection, *NOT_KEPT, job_id)).rowcount)

        return int(self.db.transact(write))

    def repositories(self, collection: str) -> list[str]:
        """The roots of the collection that are git work trees (an item there records
        the commit it was read at): XML and HTML under them are source code, in a
        rebuild as in the ingest that read them."""
        return sorted(str(row[0]) for row in self.db.conn.execute(
            "SELECT DISTINCT root FROM items WHERE collection = ? AND parent_id IS NULL "
            "AND git_commit IS NOT NULL", (collection,)))

    def holds_recordings(self, collection: str) -> bool:
        """Whether the collection is an audio scan's (its items are recordings with
        sound events, which a rebuild would extract as documents)."""
        return self.db.conn.execute(
            "SELECT 1 FROM audio_recordings r JOIN items i ON i.id = r.item_id "
            "WHERE i.collection = ? LIMIT 1", (collection,)).fetchone() is not None

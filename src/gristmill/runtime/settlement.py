"""Settlement: how a run's outcomes become committed rows.

The runner turns each finished item into a :class:`Settle`, each batch of computed
vectors into a :class:`Vectors` and the end of its embedding into a :class:`Sweep`, and
hands them to a :class:`Settlement`. Its batcher gathers them; each flush writes them in
one transaction, so an item's chunks, children, events and status commit together or
not at all. What follows a commit (deleting clip files no event names any more,
forgetting vectors the backlog query can now see, counting what finished) happens after
it, never before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gristmill.batching import Batcher, BatcherStats
from gristmill.catalog import Catalog, ErrorType, Item, Status, Transaction
from gristmill.catalog.audio import AudioStore, ScannedRecording
from gristmill.config import Settings
from gristmill.index import StoredChunk
from gristmill.runtime.progress import Progress

if TYPE_CHECKING:
    from gristmill.index import Index

__all__ = ["Op", "Settle", "Settlement", "Sweep", "Vectors"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Settle:
    """Commit one item's outcome (and its chunks) if we still hold its lease."""

    item: Item
    status: Status
    fields: dict[str, object]
    chunks: list[StoredChunk] = field(default_factory=list)
    copy_from: int | None = None
    promote_model: str | None = None
    children: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    #: In an audio scan: what the recording held (None: nothing, as it failed).
    recording: ScannedRecording | None = None


@dataclass(slots=True)
class Vectors:
    """Store a batch of vectors and promote the items that were waiting on them."""

    model: str
    hashes: list[str]
    vectors: np.ndarray
    item_ids: set[int]


@dataclass(slots=True)
class Sweep:
    """Promote every extracted item whose vectors are all present."""

    model: str


Op = Settle | Vectors | Sweep


class Settlement:
    """One run's write path: operations buffered, each flush one transaction.

    It also keeps what a crash-safe stop needs: the items this run leased whose outcome
    is not committed yet (:meth:`release_unfinished` gives them back).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        index: Index,
        progress: Progress,
        *,
        owner: str,
        run_id: int | None,
        with_embedder: bool,
        audio: bool,
    ) -> None:
        """Args:
        progress: where settled items and vector lookups are counted.
        owner: the lease owner this run claims as; a result whose lease it lost
            is dropped.
        run_id: the run children and twin copies are recorded for.
        with_embedder: whether items wait for vectors (then lookups are counted).
        audio: an audio scan: each recording's events are stored with its status.
        """
        self._settings = settings
        self._catalog = catalog
        self._index = index
        self._progress = progress
        self._owner = owner
        self._run_id = run_id
        self._with_embedder = with_embedder
        # An audio scan stores each recording's events with its status; clip files its
        # new events no longer name are deleted once that is committed.
        self._audio_store = AudioStore(catalog.db) if audio else None
        self._stale_clips: list[str] = []
        # Items this run leased whose outcome is not committed yet: in flight, or in a
        # batch still to be written (or whose write failed: the disk filled up).
        self._held: set[int] = set()
        # Vectors computed but not yet written (the batcher holds them), by text hash:
        # a later chunk with the same text joins that write instead of being embedded
        # again (the backlog query cannot see a vector before it is committed).
        self._unwritten: dict[str, Vectors] = {}
        #: Whether items were settled since the runner last looked (an idle sweep).
        self.settled = False
        #: Whether anything was written since the runner last reported progress.
        self.written = True
        self._batcher: Batcher[Op] = Batcher(
            self._write, on_dead=self._dead, max_rows=settings.flush_ops,
            max_delay=settings.flush_seconds, weigh=_weigh,
            outage_seconds=settings.store_retry_seconds)

    @property
    def stats(self) -> BatcherStats:
        """The batcher's figures (flushes, rows, latencies), for the run's record."""
        return self._batcher.stats

    def hold(self, item_ids: Iterable[int]) -> None:
        """Note items just leased: their leases are ours until their outcome commits."""
        self._held.update(item_ids)

    def unwritten(self, text_hash: str) -> Vectors | None:
        """The computed vectors, not yet committed, that hold ``text_hash``'s vector."""
        return self._unwritten.get(text_hash)

    def add(self, op: Op) -> None:
        """Buffer ``op`` (written with the next flush: at once if the buffer is full)."""
        if isinstance(op, Vectors):
            # Before the add: a full buffer writes (and forgets) them inside it.
            self._unwritten.update(dict.fromkeys(op.hashes, op))
        self._batcher.add(op)

    def flush(self) -> None:
        """Write everything buffered; returns once it is committed (or dead-lettered)."""
        self._batcher.flush()

    def flush_if_due(self) -> None:
        """Flush when the oldest buffered operation has waited ``flush_seconds``."""
        self._batcher.flush_if_due()

    def release_unfinished(self, in_flight: Iterable[int]) -> None:
        """Give back the leases of items whose outcome was not committed: ``in_flight``,
        and those in a batch whose write failed."""
        ids = sorted(self._held | set(in_flight))
        if not ids:
            return
        self._catalog.release(self._owner, ids)
        self._held.clear()

    # -- writing (the batcher's sink; runs on the driver thread) ------------------

    def _write(self, ops: Sequence[Op]) -> None:
        self._stale_clips = []  # of this write only: a failed one is written again
        with self._catalog.db.transaction() as txn:
            for op in ops:
                if isinstance(op, Settle):
                    self._apply_settle(txn, op)
                elif isinstance(op, Vectors):
                    self._index.store_vectors(txn, op.model, op.hashes, op.vectors)
                    self._catalog.promote(txn, op.model, op.item_ids)
                else:
                    self._catalog.promote(txn, op.model)
        self._held.difference_update(op.item.id for op in ops if isinstance(op, Settle))
        # After the commit, never before: a crash in between leaves a file no event
        # names (the scan's sweep deletes it), never an event naming a deleted file.
        self._delete_clips(self._stale_clips)
        self._forget_vectors(ops)
        self.settled = self.settled or any(isinstance(op, Settle) for op in ops)
        self.written = True
        self._count_done(ops)

    def _apply_settle(self, txn: Transaction, op: Settle) -> None:
        fields = dict(op.fields)
        if op.copy_from is not None:
            twin = self._catalog.twin_extraction(txn, op.copy_from, op.item.sha256)
            if twin is None:  # the twin vanished or changed since the claim: extract
                op.status = Status.PENDING
            else:
                fields.update(twin)
        # A watch records a new save of an item in flight (back to `pending`, new
        # sha256) and this runner may claim it again before this result is written:
        # the lease check alone (it knows the owner, not the claim) would let this
        # older result through. A child's bytes are learnt by its extraction.
        claimed = op.item.sha256 if op.item.parent_id is None else None
        if not self._catalog.settle(txn, op.item.id, self._owner, op.status,
                                    claimed_sha256=claimed, **fields):
            log.info("item %s: lease lost or file changed before its result was written; "
                     "dropped", op.item.source)
            return
        settled = [op.item.id]
        if op.copy_from is not None and op.status is not Status.PENDING:
            settled += self._copy_twin(txn, op, op.copy_from)
        elif op.status in (Status.EXTRACTED, Status.INDEXED, Status.SKIPPED, Status.FAILED):
            self._index.replace_chunks(txn, op.item.id, op.item.collection, op.chunks)
            if self._with_embedder:
                self._progress.vector_lookups += len(op.chunks)
            # With its new outcome, an item's children are what this extraction found:
            # none, unless it is a container (a changed archive loses its old members).
            self._catalog.replace_children(txn, op.item, op.children, self._run_id)
            if self._audio_store is not None:
                # A recording's events are replaced with its status (none, when it failed).
                self._stale_clips += self._audio_store.replace(txn, op.item.id, op.recording)
        if op.promote_model is not None:
            self._catalog.promote(txn, op.promote_model, settled)

    def _copy_twin(self, txn: Transaction, op: Settle, twin: int) -> list[int]:
        """Give a twin the chunks of the item with its bytes, and that item's attachments
        and members with theirs (their own files are in these same bytes); returns the
        ids of the descendants copied as extracted."""
        count = self._index.copy_chunks(txn, twin, op.item.id, op.item.collection)
        if self._with_embedder:
            self._progress.vector_lookups += count
        model = op.fields.get("embed_model")
        copied = self._catalog.copy_twin(
            txn, twin, op.item, self._run_id, chunk_count=count, done=op.status,
            embed_model=model if isinstance(model, str) else None)
        for original, copy in copied:
            self._index.copy_chunks(txn, original, copy, op.item.collection)
        return [copy for _, copy in copied]

    def _delete_clips(self, paths: Sequence[str]) -> None:
        """Delete clip files no event names any more (only inside the home's clips)."""
        clips = os.path.join(os.path.abspath(self._settings.home), "clips") + os.sep
        for path in paths:
            if not os.path.abspath(path).startswith(clips):
                continue  # not a clip this knowledge base made: never delete it
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # left for the next sweep of its user's clips
                log.warning("cannot delete the old clip %s: %s", path, exc)

    def _forget_vectors(self, ops: Sequence[Op]) -> None:
        """Vectors written (or dead): from now on the backlog query sees them (or their
        chunks are in it again)."""
        for op in ops:
            if isinstance(op, Vectors):
                for h in op.hashes:
                    if self._unwritten.get(h) is op:
                        del self._unwritten[h]

    def _dead(self, op: Op, exc: Exception) -> None:
        """A single operation failed to write: record the item as failed, alone."""
        self._forget_vectors([op])
        if isinstance(op, Settle) and op.status is not Status.FAILED:
            reason = f"could not store the result: {type(exc).__name__}: {exc}"[:300]
            self._batcher.add(Settle(op.item, Status.FAILED,
                                     {"error": reason, "error_type": ErrorType.STORE}))

    def _count_done(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, Settle) and op.status is not Status.PENDING:
                self._progress.done += 1  # extraction settled by this run
            if isinstance(op, Settle) and op.status is Status.SKIPPED:
                self._progress.skipped += 1
            elif isinstance(op, Settle) and op.status is Status.FAILED:
                self._progress.failed += 1


def _weigh(op: Op) -> int:
    """Rows an operation writes, so a flush comes after ``flush_ops`` rows, not ops."""
    if isinstance(op, Settle):
        if op.recording is not None:
            return 1 + len(op.recording.events)
        return 1 + len(op.chunks)
    if isinstance(op, Vectors):
        return len(op.hashes)
    return 1

"""The runner: claim items under leases, keep a bounded window in flight, settle results.

One driver thread owns the database. It claims at most ``window`` items, hands them to
the executor, and turns each finished future into an operation for the run's
:class:`~gristmill.runtime.settlement.Settlement`, which commits an item's chunks and its
status in one transaction. The embedding stage runs beside it, fed from the index's
backlog of chunks without vectors.

Crash safety rests on ordering: an item is leased (committed) before a worker sees it, and
its result becomes visible only when the batch holding it commits. A driver killed in
between leaves a lease that :meth:`Catalog.reap_expired` frees on the next run.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pebble import ProcessExpired

from gristmill.audio.recording import stored_recording
from gristmill.catalog import Catalog, ErrorType, Item, Status
from gristmill.catalog.jobs import JobState, JobStore
from gristmill.catalog.rebuild import RebuildQueue
from gristmill.config import Settings
from gristmill.embed import Embedder
from gristmill.errors import ConfigError, CredentialError, EmbedderUnavailable, StoreError
from gristmill.index import StoredChunk
from gristmill.runtime.embed_stage import EmbedStage, EmbedWork
from gristmill.runtime.executors.base import Executor
from gristmill.runtime.executors.local import HARD_TIMEOUT_FACTOR, LocalExecutor
from gristmill.runtime.options import RunOptions, RunOutcome
from gristmill.runtime.progress import Progress, tree_rss
from gristmill.runtime.rates import RecentRate
from gristmill.runtime.settlement import Settle, Settlement, Sweep, Vectors
from gristmill.runtime.signals import stop_on_signals
from gristmill.runtime.worker import RECYCLE_EXIT_CODE, Outcome, WorkOptions, WorkResult

if TYPE_CHECKING:
    from gristmill.index import Index

__all__ = ["Runner"]

log = logging.getLogger(__name__)

_TICK = 0.2  # seconds the loop waits for a future before doing its other chores
_OVERDUE_EVERY = 1.0  # seconds between looks for stuck workers
_JOB_CHECK_EVERY = 0.5  # seconds between looks at the job's state (pause, cancel)
_PROGRESS_EVERY = 0.5
_STATS_EVERY = 2.0  # seconds between records of the batcher's figures for /metrics
_RETRY_BASE_DELAY = 2.0
_FOLLOW_IDLE = 1.0  # seconds a following run sleeps when idle, unless woken


@dataclass(slots=True)
class _Chores:
    """When the loop last did each of its periodic chores (``time.monotonic()``)."""

    renewed: float
    reported: float
    recorded: float
    recorded_flushes: int = 0


class Runner:
    """Drives one ingest (or embed-only) run to completion; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        index: Index,
        embedder: Embedder | None,
        options: RunOptions,
        *,
        jobs: JobStore | None = None,
        discovering: Callable[[], bool] = lambda: False,
        on_progress: Callable[[Progress], None] | None = None,
        executor: Callable[[], Executor] | None = None,
    ) -> None:
        """Args:
        options: what the run works on (collection, roots, its job and run) and how.
        jobs: polled for pause and cancel requests of ``options.job_id``; heartbeats
            and the run's figures go there. None: nothing is polled or recorded.
        discovering: True while discovery may still add items to the scope.
        executor: builds the workers when extraction starts (default: a local
            process pool).
        """
        self.settings = settings
        self.catalog = catalog
        self.index = index
        self.embedder = embedder
        self.options = options
        self.embed = options.embed and embedder is not None  # False: vectors left for later
        self.model = embedder.model_id if embedder is not None else "none"
        self.collection = options.collection
        self.roots = list(options.roots)
        self.owner = options.owner
        self.job_id = options.job_id
        self.extract = options.extract
        self.discovering = discovering  # True while discovery may still add items
        # Follow mode (a watch): while discovering, an idle run sleeps until wake().
        self.follow = options.follow
        self._wake = threading.Event()
        self.on_progress = on_progress
        self._make_executor = executor
        self.audio = options.audio
        self.progress = Progress(embedding=self.embed, audio=options.audio is not None,
                                 keeps_originals=settings.store is not None)
        # Each phase's pace over the recent past (see gristmill.runtime.rates).
        self._extract_pace = RecentRate()
        self._embed_pace = RecentRate()
        self._backlog_at = float("-inf")  # when the embedding backlog was last counted
        self._stop = threading.Event()
        self._in_flight: dict[Future[WorkResult], Item] = {}
        self._embedding: dict[str, set[int]] = {}  # text hash -> items waiting on it
        self._embed_cursor = 0
        self._embed_failed: set[str] = set()
        self._started = time.monotonic()
        # Claims are limited to what this run's discovery has seen (None: embed-only).
        self._run_id = options.run_id
        # Results, vectors and sweeps go there; each of its flushes is one transaction.
        self._settlement = Settlement(
            settings, catalog, index, self.progress, owner=self.owner,
            run_id=self._run_id, with_embedder=embedder is not None,
            audio=options.audio is not None)
        # Polled for pause and cancel requests; heartbeats go there. Only with a job.
        self.jobs = jobs if options.job_id is not None else None
        #: How the run ended.
        self.outcome = RunOutcome.STOPPED
        self._pausing = False
        #: Why this run paused its job by itself (a remote embedder refused its
        #: credential, or stayed unavailable through its retries), if it did.
        self.pause_reason: str | None = None

    # -- public ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to stop: no new claims; results already in hand are committed."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """New items may be claimable: end a following run's idle sleep now."""
        self._wake.set()

    def run(self) -> Progress:
        """Run until every item in scope is settled and embedded, or ``stop()`` (a
        following run goes on until ``stop()``, a pause or a cancel)."""
        self.catalog.reap_expired()
        if self.embedder is not None and self.extract:
            self.catalog.demote_for_model(self.model)
        self._report()  # the baseline: items already finished before this run
        executor = self._executor() if self.extract else None
        stage = EmbedStage(self.embedder) if self.embed and self.embedder else None
        restore = stop_on_signals(self.stop)
        failed = True
        try:
            self._loop(executor, stage)
            failed = False
        finally:
            restore()
            # Order matters: commit what finished, then stop workers, then give back the
            # leases of what did not finish so the next run can take them at once. After
            # a database failure (a full disk, a server away too long) each step is still
            # tried; its error, most likely the same, is logged, not raised in its place.
            try:
                with _quiet_after(failed):
                    self._settlement.flush()
            finally:
                _close(executor, stage)
            with _quiet_after(failed):
                self._release_unfinished()
            self.progress.finished = self.outcome == RunOutcome.FINISHED
            with _quiet_after(failed):
                self._report(force=True)
                self._record_stats()  # with the run's final figures
        return self.progress

    def _record_stats(self) -> None:
        """Store the batcher's figures and the two phases' progress in the run's row,
        where the API (events, metrics) and `jobs list` read them."""
        if self.jobs is None or not self._run_id:
            return
        self.progress.elapsed = time.monotonic() - self._started
        self.jobs.record_stats(self._run_id, self._settlement.stats.summary(),
                               progress=self.progress.to_dict())

    def _executor(self) -> Executor:
        if self._make_executor is not None:
            return self._make_executor()
        # A rebuild reads no source: its roots are not looked at (for git work trees).
        work = WorkOptions.from_settings(
            self.settings, () if self.options.rebuild else self.options.roots)
        if self.audio is not None:
            work = dataclasses.replace(work, audio=self.audio)
        if self.options.rebuild:
            # The roots that were git work trees, as the catalog knows them: the
            # sources themselves may be gone.
            work = dataclasses.replace(work, rebuild=True, repositories=tuple(
                RebuildQueue(self.catalog.db).repositories(self.collection)))
        return LocalExecutor(self.settings, work)

    # -- the loop ----------------------------------------------------------------

    def _loop(self, executor: Executor | None, stage: EmbedStage | None) -> None:
        next_overdue = next_job_check = time.monotonic()
        chores = _Chores(next_overdue, next_overdue, next_overdue)
        while not self._stop.is_set():
            if (self.jobs is not None and self.job_id is not None
                    and time.monotonic() >= next_job_check):
                self._obey(self.jobs.state(self.job_id, self._run_id))
                next_job_check = time.monotonic() + _JOB_CHECK_EVERY
                if self._stop.is_set():
                    return
            if self._pausing and not self._in_flight:
                self._settlement.flush()
                self.outcome = RunOutcome.PAUSED  # in-flight items are done; nothing held
                return
            claimed = self._fill_window(executor) if executor is not None else 0
            if stage is not None:
                self._feed(stage)
            if executor is not None and self._in_flight and time.monotonic() > next_overdue:
                executor.overdue()
                next_overdue = time.monotonic() + _OVERDUE_EVERY
            if self._in_flight:
                finished, _ = wait(list(self._in_flight), timeout=_TICK,
                                   return_when=FIRST_COMPLETED)
                for future in finished:
                    self._settle(future, executor)
            elif stage is not None and stage.busy:
                time.sleep(0.05)
            if stage is not None:
                for work in stage.results():
                    self._collect(work)
            self._settlement.flush_if_due()
            self._do_chores(chores)
            if self._in_flight or claimed:
                continue
            if self.progress.searchable_at is None:
                self._note_searchable(executor is not None)
            if (stage is None or not stage.busy) and self._finished(executor is not None, stage):
                self.outcome = RunOutcome.FINISHED
                return

    def _do_chores(self, chores: _Chores) -> None:
        """Renew the leases (and beat the run's heartbeat), report progress and record
        the batcher's figures, each when its interval has passed."""
        now = time.monotonic()
        if now - chores.renewed > self.settings.lease_seconds / 3:
            self.catalog.renew_leases(self.owner, self.settings.lease_seconds)
            if self.jobs is not None and self.job_id is not None and self._run_id:
                self.jobs.heartbeat(self.job_id, self._run_id)
            chores.renewed = now
        # An idle following run has nothing new to count (its counts scan the scope).
        if now - chores.reported > _PROGRESS_EVERY and (
                self._settlement.written or not self.follow):
            self._report()
            self._settlement.written = False
            chores.reported = now
        if self.jobs is not None and self._run_id and (
                now - chores.recorded > _STATS_EVERY
                or (chores.recorded_flushes == 0 and self._settlement.stats.flushes)):
            self._record_stats()
            chores.recorded_flushes, chores.recorded = self._settlement.stats.flushes, now

    def _finished(self, extracting: bool, stage: EmbedStage | None) -> bool:
        """True when nothing is left to claim, to embed or to write."""
        self._settlement.flush()
        if extracting and self.discovering():
            if self.follow:
                self._idle(stage)
            else:
                self._stop.wait(_TICK / 5)  # the next batch of files is on its way
            return False
        if extracting:
            pending, earliest = self.catalog.has_pending(self.collection, self.roots,
                                                         run_id=self._run_id)
            if pending:
                # Only items waiting out a retry backoff remain: sleep toward them.
                wait_for = max(0.0, (earliest or 0) - time.time())
                self._stop.wait(min(wait_for, 1.0))
                return False
        if stage is not None:
            backlog = self.index.pending_chunks(self.model, 0, len(self._embed_failed) + 1)
            if any(row.text_hash not in self._embed_failed for row in backlog):
                self._embed_cursor = 0  # sweep the backlog again from the start
                return False
            self._settlement.add(Sweep(self.model))
            self._settlement.flush()
        return True

    def _idle(self, stage: EmbedStage | None) -> None:
        """Follow mode with nothing to claim: catch up on embedding, then sleep until
        :meth:`wake` (or a second, to look at the job and at retries coming due)."""
        if stage is not None and self._settlement.settled:
            self._settlement.settled = False
            # Chunk ids are reused once the newest chunks are replaced (a file saved
            # twice), so the cursor may have passed chunks that still need vectors.
            backlog = self.index.pending_chunks(self.model, 0, len(self._embed_failed) + 1)
            fresh = [row for row in backlog if row.text_hash not in self._embed_failed]
            if fresh:
                self._embed_cursor = min(self._embed_cursor, fresh[0].chunk_id - 1)
                return
            self._settlement.add(Sweep(self.model))
            self._settlement.flush()
        self._wake.wait(_FOLLOW_IDLE)
        self._wake.clear()

    def _note_searchable(self, extracting: bool) -> None:
        """Record when extraction finished: everything is keyword-searchable from then."""
        if extracting and (self.discovering() or self.catalog.has_pending(
                self.collection, self.roots, run_id=self._run_id)[0]):
            return
        self._settlement.flush()
        self.progress.searchable_at = time.monotonic() - self._started

    def _pause_for(self, error: BaseException) -> None:
        """Finish what is in flight, claim nothing more, and end the run paused, with
        ``error`` as the reason (``jobs show``, the job's events, the dashboard)."""
        if self.pause_reason is None:
            log.error("job %s: pausing: %s", self.job_id, error)
            self.pause_reason = str(error)
        self._pausing = True

    def _obey(self, state: JobState) -> None:
        """Act on a pause or cancel request written into the job by another process."""
        if state in (JobState.CANCELLING, JobState.CANCELLED):
            self.outcome = RunOutcome.CANCELLED
            self._stop.set()  # run() then kills the workers and gives back the leases
        elif state != JobState.RUNNING and not self._pausing:
            # Paused; queued again by a resume (which waits for this run to end);
            # superseded by a newer run: each means finish what is in flight, claim
            # nothing more, and leave the job to whoever holds it.
            log.info("job %s: %s; finishing %d items in flight", self.job_id,
                     "pause requested" if state == JobState.PAUSED else state,
                     len(self._in_flight))
            self._pausing = True

    def _fill_window(self, executor: Executor) -> int:
        if self._pausing:
            return 0
        room = (self.settings.window or 1) - len(self._in_flight)
        # Claimed as soon as one slot is free, not in groups: waiting for half the window
        # to free saved a claim commit per few items (2 % of the CPU on 300 PDFs) but made
        # `watch` 2.5-4x slower to index 10,000 saves (bench_watch.py).
        if room <= 0:
            return 0
        # No twin copying in an audio scan: a copy of another recording's events would
        # name that recording's clips. Identical recordings are scanned each. Nor in a
        # rebuild: the twin may be an item it has not rebuilt yet.
        copies = self.audio is None and not self.options.rebuild
        items = self.catalog.claim(self.owner, self.collection, self.roots, room,
                                   self.settings.lease_seconds, run_id=self._run_id,
                                   twins_for=self.model if copies else None)
        self._settlement.hold(item.id for item in items)
        for item in items:
            twin = item.twin
            if twin is not None and twin != item.id:
                # Identical bytes were already extracted: reuse those chunks.
                self._settlement.add(Settle(item, self._extracted_status(),
                                          self._embed_fields(), copy_from=twin,
                                          promote_model=self._promote_model()))
                continue
            # The lease is committed before the worker sees the item (claim's transaction).
            # With the size and mtime its sha256 was recorded with: the worker tells when
            # the bytes it read are another version (see worker._extract_guarded).
            expected = None if item.parent_id is not None or item.mtime_ns is None \
                else (item.size, item.mtime_ns)
            # Passed only where they are used (an audio scan's clips; the store checks
            # the original it keeps against its sha256).
            extra: dict[str, Any] = {}
            if self.audio is not None:
                extra["item_id"] = item.id
            if self.options.rebuild:
                # The original the item (or the file holding it) is read from, and no
                # source file to compare with.
                expected = None
                extra["sha256"] = item.sha256 if item.parent_id is None \
                    else item.path_sha256
            elif self.settings.store is not None and item.parent_id is None:
                extra["sha256"] = item.sha256
            future = executor.submit(item.disk_path, item.members, expected, **extra)
            self._in_flight[future] = item
        self.progress.in_flight = len(self._in_flight)
        return len(items)

    # -- settling extraction results ----------------------------------------------

    def _settle(self, future: Future[WorkResult], executor: Executor | None) -> None:
        item = self._in_flight.pop(future)
        self.progress.in_flight = len(self._in_flight)
        try:
            result = future.result()
        except FutureTimeout:
            hard = self.settings.item_timeout * HARD_TIMEOUT_FACTOR
            self._crashed(item, f"timed out after {hard:.0f} s")
            return
        except ProcessExpired as exc:
            if executor is not None and executor.timed_out(future):
                self._crashed(item, f"timed out: no progress for "
                              f"{self.settings.item_timeout:.0f} s (item_timeout)")
            elif exc.exitcode == RECYCLE_EXIT_CODE:
                self._requeue(item, {})  # the worker retired over its RSS limit
            else:
                self._crashed(item, _death_reason(exc.exitcode))
            return
        except Exception as exc:  # e.g. a result that cannot be unpickled
            log.exception("item %s: worker error", item.source)
            self._fail(item, f"worker error: {type(exc).__name__}: {exc}"[:300],
                       ErrorType.WORKER)
            return
        learnt: dict[str, object] = {"size": result.size, "sha256": result.sha256} \
            if result.sha256 else {}
        if result.mtime_ns is not None:
            learnt["mtime_ns"] = result.mtime_ns  # the version read, not the one hashed
        if result.stored is not None:
            self.progress.originals_stored += result.stored
            self.progress.originals_present += not result.stored
        if result.outcome == Outcome.EXTRACTED and self.audio is not None:
            self._settle_recording(item, result, learnt)
        elif result.outcome == Outcome.MISCONFIGURED:
            # Not this recording's fault: it waits, pending, for the settings to be fixed.
            self._requeue(item, {})
            self._pause_for(ConfigError(result.error or "the run's settings are wrong"))
        elif result.outcome == Outcome.EXTRACTED:
            chunks = [StoredChunk(c.seq, c.text, c.text_hash, c.page, c.heading,
                                  language=c.language, kind=c.kind, entity=c.entity,
                                  parent=c.parent, lines=c.lines, terms=c.terms)
                      for c in result.chunks]
            self._settlement.add(Settle(
                item, self._extracted_status(),
                {"pages": result.pages, "chunk_count": len(chunks), "error": None,
                 "error_type": None, "extractor": result.extractor,
                 "extractor_version": result.extractor_version, **self._embed_fields(),
                 **learnt},
                chunks=chunks, promote_model=self._promote_model(),
                children=result.children))
            self.progress.pages += result.pages or 0
            self.progress.chunks += len(chunks)
        elif result.outcome == Outcome.RETRY:
            self._retry(item, result.error or "temporary error")
        elif result.outcome == Outcome.CHANGED:
            # Nothing of a torn read is kept: read it again a little later. Counted as
            # an attempt, so a file rewritten without end fails with this reason.
            self._retry(item, "the file kept changing while it was being read")
        else:
            status = Status.SKIPPED if result.outcome == Outcome.SKIPPED else Status.FAILED
            self._settlement.add(Settle(item, status, {
                "error": result.error, "error_type": result.error_type,
                "extractor": result.extractor, "extractor_version": result.extractor_version,
                "pages": result.pages, "chunk_count": 0, **learnt}, chunks=[]))
            self._note(status, item, result.error)

    def _settle_recording(self, item: Item, result: WorkResult,
                          learnt: dict[str, object]) -> None:
        """An audio scan's result: the recording is `indexed` (no chunks, no vectors)
        with its events, committed together."""
        assert self.audio is not None
        recording = stored_recording(self.audio, result)
        note = (result.audio or {}).get("note")
        self._settlement.add(Settle(
            item, Status.INDEXED,
            {"pages": None, "chunk_count": 0, "error": note if isinstance(note, str) else None,
             "error_type": None, "extractor": result.extractor,
             "extractor_version": result.extractor_version, "embed_model": "none",
             **learnt}, recording=recording))
        self.progress.audio_seconds += recording.duration or 0.0
        self.progress.events += len(recording.events)

    def _crashed(self, item: Item, reason: str) -> None:
        crashes = item.crashes + 1
        log.warning("item %s: %s (crash %d of %d)", item.source, reason, crashes,
                    self.settings.max_crashes)
        if crashes >= self.settings.max_crashes:
            self._fail(item, f"quarantined: {reason} ({crashes} times)", ErrorType.CRASH,
                       crashes=crashes)
        else:
            self._requeue(item, {"crashes": crashes})

    def _retry(self, item: Item, reason: str) -> None:
        attempts = item.attempts + 1
        if attempts >= self.settings.max_attempts:
            self._fail(item, f"gave up after {attempts} attempts: {reason}",
                       ErrorType.TRANSIENT, attempts=attempts)
            return
        delay = _RETRY_BASE_DELAY * 2 ** (attempts - 1) * (0.5 + random.random())
        self.progress.retried += 1
        self._requeue(item, {"attempts": attempts, "not_before": time.time() + delay,
                             "error": reason})

    def _requeue(self, item: Item, fields: dict[str, object]) -> None:
        self._settlement.add(Settle(item, Status.PENDING, fields))

    def _fail(self, item: Item, reason: str, kind: ErrorType, **fields: object) -> None:
        self._settlement.add(Settle(item, Status.FAILED, {"error": reason, "error_type": kind,
                                                        "chunk_count": 0, **fields}))
        self._note(Status.FAILED, item, reason)

    def _note(self, status: Status, item: Item, reason: str | None) -> None:
        if status is Status.FAILED:
            self.progress.recent_failures = [
                *self.progress.recent_failures[-4:], f"{item.source}: {reason}"]

    def _extracted_status(self) -> Status:
        # Keyword-only knowledge bases have nothing more to do after extraction.
        return Status.EXTRACTED if self.embedder is not None else Status.INDEXED

    def _embed_fields(self) -> dict[str, object]:
        return {"embed_model": None if self.embedder is not None else "none"}

    def _promote_model(self) -> str | None:
        return self.model if self.embedder is not None else None

    # -- embedding ---------------------------------------------------------------

    def _feed(self, stage: EmbedStage) -> None:
        batch = self.settings.embed_batch
        while stage.has_room and not self._pausing:
            rows = self.index.pending_chunks(self.model, self._embed_cursor, batch)
            if not rows:
                return
            self._embed_cursor = rows[-1].chunk_id
            work = EmbedWork(hashes=[], texts=[], item_ids=set())
            for row in rows:
                if row.text_hash in self._embed_failed:
                    continue
                waiting = self._embedding.get(row.text_hash)
                if waiting is not None:
                    waiting.add(row.item_id)  # already on its way: just wait for it
                    continue
                computed = self._settlement.unwritten(row.text_hash)
                if computed is not None:
                    computed.item_ids.add(row.item_id)  # promoted by the write to come
                    continue
                self._embedding[row.text_hash] = {row.item_id}
                work.hashes.append(row.text_hash)
                work.texts.append(row.text)
            if work.texts:
                stage.submit(work)

    def _collect(self, work: EmbedWork) -> None:
        waiting: set[int] = set()
        for h in work.hashes:
            waiting |= self._embedding.pop(h, set())
        if isinstance(work.error, (CredentialError, EmbedderUnavailable)):
            # Not this text's fault: the job pauses, its texts stay without vectors (and
            # keyword-searchable), and a resume embeds them once the cause is fixed.
            self._pause_for(work.error)
            return
        if work.error is not None or work.vectors is None:
            # Those chunks stay keyword-searchable without vectors; their items stay
            # `extracted` and the next run tries again.
            self._embed_failed.update(work.hashes)
            return
        self._settlement.add(Vectors(self.model, work.hashes, work.vectors, waiting))
        self.progress.chunks_embedded += len(work.hashes)

    def _release_unfinished(self) -> None:
        """Give back the leases of items whose outcome was not committed: in flight, or
        in a batch whose write failed."""
        in_flight = [item.id for item in self._in_flight.values()]
        self._in_flight.clear()
        self._settlement.release_unfinished(in_flight)

    # -- reporting ---------------------------------------------------------------

    def _scope_counts(self) -> dict[str, int]:
        """Items by status among those this run is responsible for."""
        if self.extract:
            return self.catalog.counts(self.collection, self.roots)
        return self.catalog.counts()  # the embedding stage alone serves every collection

    def _report(self, force: bool = False) -> None:
        counts = self._scope_counts()
        now = time.monotonic()
        # Recomputed each time: discovery keeps adding items while the run goes on. Only
        # items this run extracts count: an unchanged file is neither done nor to do.
        left = counts["pending"] + counts["processing"] if self.extract else 0
        self.progress.total = self.progress.done + left
        self.progress.indexed = counts["indexed"]
        self.progress.extracted = counts["extracted"]
        self.progress.elapsed = now - self._started
        self.progress.stopping = self._stop.is_set()
        self.progress.rss_bytes = tree_rss()
        self.progress.extract_rate = self._extract_pace.update(self.progress.done, now)
        if self.embed:
            # A count over the backlog's chunks: every few seconds, not at every report.
            if force or now - self._backlog_at >= _STATS_EVERY:
                self.progress.embed_backlog = self.index.embedding_backlog(self.model)
                self._backlog_at = now
            self.progress.embed_rate = self._embed_pace.update(self.progress.chunks_embedded,
                                                               now)
        if self.on_progress is not None:
            self.on_progress(self.progress)


def _close(executor: Executor | None, stage: EmbedStage | None) -> None:
    """Stop the workers and the embedding thread, each even if the other fails: the
    process must not exit while that thread is inside onnxruntime, which then aborts it
    ("terminate called without an active exception")."""
    try:
        if executor is not None:
            executor.shutdown(kill=True)
    finally:
        if stage is not None:
            stage.close()


@contextmanager
def _quiet_after(failed: bool) -> Iterator[None]:
    """After the run failed, a database error of a clean-up step is logged, not raised:
    the first error is the one to report."""
    try:
        yield
    except StoreError as exc:
        if not failed:
            raise
        log.warning("while stopping after an error: %s", exc)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"worker died (exit code {exitcode})"

"""The runner: claim items under leases, keep a bounded window in flight, settle results.

One driver thread owns the database. It claims at most ``window`` items, hands them to
the executor, and turns each finished future into an :class:`_Settle` operation for the
batcher, which commits an item's chunks and its status in one transaction. The embedding
stage runs beside it, fed from the index's backlog of chunks without vectors.

Crash safety rests on ordering: an item is leased (committed) before a worker sees it, and
its result becomes visible only when the batch holding it commits. A driver killed in
between leaves a lease that :meth:`Catalog.reap_expired` frees on the next run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import psutil
from pebble import ProcessExpired

from gristmill.audio.recording import stored_recording
from gristmill.batching import Batcher
from gristmill.catalog import Catalog, ErrorType, Item, Status, Transaction
from gristmill.catalog.audio import AudioStore, ScannedRecording
from gristmill.catalog.jobs import JobState, JobStore
from gristmill.config import Settings
from gristmill.embed import Embedder
from gristmill.errors import ConfigError, CredentialError, EmbedderUnavailable, StoreError
from gristmill.index import StoredChunk
from gristmill.runtime.embed_stage import EmbedStage, EmbedWork
from gristmill.runtime.executors.base import Executor
from gristmill.runtime.executors.local import HARD_TIMEOUT_FACTOR, LocalExecutor
from gristmill.runtime.options import RunOptions, RunOutcome
from gristmill.runtime.rates import RecentRate, eta, texts_left
from gristmill.runtime.worker import RECYCLE_EXIT_CODE, Outcome, WorkOptions, WorkResult

if TYPE_CHECKING:
    from gristmill.index import Index

__all__ = ["Progress", "Runner", "cache_figures", "tree_rss"]

log = logging.getLogger(__name__)

_TICK = 0.2  # seconds the loop waits for a future before doing its other chores
_OVERDUE_EVERY = 1.0  # seconds between looks for stuck workers
_JOB_CHECK_EVERY = 0.5  # seconds between looks at the job's state (pause, cancel)
_PROGRESS_EVERY = 0.5
_STATS_EVERY = 2.0  # seconds between records of the batcher's figures for /metrics
_RETRY_BASE_DELAY = 2.0
_FOLLOW_IDLE = 1.0  # seconds a following run sleeps when idle, unless woken


def cache_figures(hits: int, misses: int) -> dict[str, float]:
    """The embedding cache's ``hits``, ``misses`` and ``hit_rate`` (0 with no lookup)."""
    lookups = hits + misses
    return {"hits": hits, "misses": misses,
            "hit_rate": round(hits / lookups, 4) if lookups else 0.0}


def tree_rss(process: psutil.Process | None = None) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    process = process or psutil.Process()
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


@dataclass(slots=True)
class Progress:
    """A snapshot of a run, for terminals, logs, ``--json`` and the job's SSE events.

    Two phases, each with its own pace (see :mod:`gristmill.runtime.rates`):
    *extraction* (``done`` of ``total`` items this run, at ``extract_rate``) and
    *embedding* (``chunks_embedded`` texts embedded this run, ``embed_backlog`` texts
    still without vectors, at ``embed_rate``). Items found unchanged are in neither.
    """

    total: int = 0  # items this run extracts: done + still to do (grows with discovery)
    done: int = 0  # items whose extraction this run settled (extracted, indexed, ...)
    extracted: int = 0  # items in scope that wait for their vectors
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    in_flight: int = 0
    pages: int = 0
    chunks: int = 0
    #: Distinct chunk texts embedded by this run: each is one new vector stored
    #: (identical texts are embedded once; cached vectors are reused, not counted).
    chunks_embedded: int = 0
    #: Chunks this run gave an item while embedding: each needs a vector, found in the
    #: embedding cache (a hit) or computed (a miss: ``chunks_embedded``).
    vector_lookups: int = 0
    #: Distinct chunk texts of extracted items still without a vector (all collections).
    embed_backlog: int = 0
    extract_rate: float = 0.0  # items per second, recent (not since the start)
    embed_rate: float = 0.0  # texts embedded per second, recent
    embedding: bool = False  # whether this run computes vectors
    #: Whether this run scans recordings for sound events (an audio scan): then
    #: ``done`` and ``total`` count recordings, and these count what they held.
    audio: bool = False
    audio_seconds: float = 0.0  # of the recordings this run scanned
    events: int = 0  # found by this run
    rss_bytes: int = 0
    elapsed: float = 0.0
    searchable_at: float | None = None
    finished: bool = False
    stopping: bool = False
    recent_failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Items extracted per second, over the recent past."""
        return self.extract_rate

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio scanned per second of the run (``100``: 100x real time)."""
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cache_hits(self) -> int:
        """Chunks whose vector was already stored (another file, an earlier run, or an
        identical text of this run): the lookups that cost no embedding. Texts embedded
        for items of an interrupted earlier run are misses with no lookup of this run,
        so the difference is floored at 0."""
        return max(0, self.vector_lookups - self.chunks_embedded)

    @property
    def extract_eta(self) -> float | None:
        """Seconds until every item is extracted (keyword-searchable), if known."""
        return eta(self.total - self.done, self.extract_rate)

    @property
    def embed_eta(self) -> float | None:
        """Seconds until every text has its vector, if known: the backlog plus what the
        items still to extract will add, at the recent embedding rate."""
        if not self.embedding:
            return None
        return eta(texts_left(self.embed_backlog, self.total - self.done, self.chunks,
                              self.done), self.embed_rate)

    @property
    def eta(self) -> float | None:
        """Seconds until the run is done (both phases), if known."""
        extract = self.extract_eta
        if not self.embedding or extract is None:
            return extract
        embed = self.embed_eta
        return None if embed is None else max(extract, embed)

    def to_dict(self) -> dict[str, object]:
        """The two phases, JSON-ready (``ingest --json``, the job's SSE events)."""
        def seconds(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            # Milliseconds, not tenths: a job's rate is its runs' items over their stored
            # elapsed time, and a run over a handful of files takes under 0.05 s.
            "elapsed": round(self.elapsed, 3),
            "extract": {"done": self.done, "total": self.total, "failed": self.failed,
                        "skipped": self.skipped, "pages": self.pages, "chunks": self.chunks,
                        "rate": round(self.extract_rate, 3),
                        "eta": seconds(self.extract_eta)},
            "embed": {"texts_embedded": self.chunks_embedded,
                      "texts_waiting": self.embed_backlog,
                      "rate": round(self.embed_rate, 3), "eta": seconds(self.embed_eta),
                      "cache": cache_figures(self.cache_hits, self.chunks_embedded)}
            if self.embedding else None,
            "keyword_searchable_after": seconds(self.searchable_at),
            "eta": seconds(self.eta),
            **({"audio": {"recordings": self.done, "total": self.total,
                          "audio_seconds": round(self.audio_seconds, 3),
                          "events": self.events,
                          "realtime_factor": round(self.realtime_factor, 1)}}
               if self.audio else {}),
        }


@dataclass(slots=True)
class _Settle:
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
class _Vectors:
    """Store a batch of vectors and promote the items that were waiting on them."""

    model: str
    hashes: list[str]
    vectors: np.ndarray
    item_ids: set[int]


@dataclass(slots=True)
class _Sweep:
    """Promote every extracted item whose vectors are all present."""

    model: str


_Op = _Settle | _Vectors | _Sweep


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
        self._settled = False  # results written since the last idle embedding sweep
        self._written = True  # anything written since the last progress report
        self.on_progress = on_progress
        self._make_executor = executor
        # An audio scan stores each recording's events with its status; clip files its
        # new events no longer name are deleted once that is committed.
        self.audio = options.audio
        self._audio_store = AudioStore(catalog.db) if options.audio is not None else None
        self._stale_clips: list[str] = []
        self.progress = Progress(embedding=self.embed, audio=options.audio is not None)
        # Each phase's pace over the recent past (see gristmill.runtime.rates).
        self._extract_pace = RecentRate()
        self._embed_pace = RecentRate()
        self._backlog_at = float("-inf")  # when the embedding backlog was last counted
        self._stop = threading.Event()
        self._in_flight: dict[Future[WorkResult], Item] = {}
        # Items this run leased whose outcome is not committed yet: in flight, or in a
        # batch still to be written (or whose write failed: the disk filled up).
        self._held: set[int] = set()
        self._embedding: dict[str, set[int]] = {}  # text hash -> items waiting on it
        self._embed_cursor = 0
        self._embed_failed: set[str] = set()
        # Vectors computed but not yet written (the batcher holds them), by text hash:
        # a later chunk with the same text joins that write instead of being embedded
        # again (the backlog query cannot see a vector before it is committed).
        self._unwritten: dict[str, _Vectors] = {}
        self._batcher: Batcher[_Op] = Batcher(
            self._write, on_dead=self._dead, max_rows=settings.flush_ops,
            max_delay=settings.flush_seconds, weigh=_weigh,
            outage_seconds=settings.store_retry_seconds)
        self._started = time.monotonic()
        # Claims are limited to what this run's discovery has seen (None: embed-only).
        self._run_id = options.run_id
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
        restore = _install_signal_handlers(self.stop)
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
                    self._batcher.flush()
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
        self.jobs.record_stats(self._run_id, self._batcher.stats.summary(),
                               progress=self.progress.to_dict())

    def _executor(self) -> Executor:
        if self._make_executor is not None:
            return self._make_executor()
        work = WorkOptions.from_settings(self.settings, self.options.roots)
        if self.audio is not None:
            work = dataclasses.replace(work, audio=self.audio)
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
                self._batcher.flush()
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
            self._batcher.flush_if_due()
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
        if now - chores.reported > _PROGRESS_EVERY and (self._written or not self.follow):
            self._report()
            self._written = False
            chores.reported = now
        if self.jobs is not None and self._run_id and (
                now - chores.recorded > _STATS_EVERY
                or (chores.recorded_flushes == 0 and self._batcher.stats.flushes)):
            self._record_stats()
            chores.recorded_flushes, chores.recorded = self._batcher.stats.flushes, now

    def _finished(self, extracting: bool, stage: EmbedStage | None) -> bool:
        """True when nothing is left to claim, to embed or to write."""
        self._batcher.flush()
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
            self._batcher.add(_Sweep(self.model))
            self._batcher.flush()
        return True

    def _idle(self, stage: EmbedStage | None) -> None:
        """Follow mode with nothing to claim: catch up on embedding, then sleep until
        :meth:`wake` (or a second, to look at the job and at retries coming due)."""
        if stage is not None and self._settled:
            self._settled = False
            # Chunk ids are reused once the newest chunks are replaced (a file saved
            # twice), so the cursor may have passed chunks that still need vectors.
            backlog = self.index.pending_chunks(self.model, 0, len(self._embed_failed) + 1)
            fresh = [row for row in backlog if row.text_hash not in self._embed_failed]
            if fresh:
                self._embed_cursor = min(self._embed_cursor, fresh[0].chunk_id - 1)
                return
            self._batcher.add(_Sweep(self.model))
            self._batcher.flush()
        self._wake.wait(_FOLLOW_IDLE)
        self._wake.clear()

    def _note_searchable(self, extracting: bool) -> None:
        """Record when extraction finished: everything is keyword-searchable from then."""
        if extracting and (self.discovering() or self.catalog.has_pending(
                self.collection, self.roots, run_id=self._run_id)[0]):
            return
        self._batcher.flush()
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
        # name that recording's clips. Identical recordings are scanned each.
        items = self.catalog.claim(self.owner, self.collection, self.roots, room,
                                   self.settings.lease_seconds, run_id=self._run_id,
                                   twins_for=self.model if self.audio is None else None)
        self._held.update(item.id for item in items)
        for item in items:
            twin = item.twin
            if twin is not None and twin != item.id:
                # Identical bytes were already extracted: reuse those chunks.
                self._batcher.add(_Settle(item, self._extracted_status(),
                                          self._embed_fields(), copy_from=twin,
                                          promote_model=self._promote_model()))
                continue
            # The lease is committed before the worker sees the item (claim's transaction).
            # With the size and mtime its sha256 was recorded with: the worker tells when
            # the bytes it read are another version (see worker._extract_guarded).
            expected = None if item.parent_id is not None or item.mtime_ns is None \
                else (item.size, item.mtime_ns)
            future = (executor.submit(item.disk_path, item.members, expected)
                      if self.audio is None else
                      executor.submit(item.disk_path, item.members, expected, item_id=item.id))
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
            self._batcher.add(_Settle(
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
            self._batcher.add(_Settle(item, status, {
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
        self._batcher.add(_Settle(
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
        self._batcher.add(_Settle(item, Status.PENDING, fields))

    def _fail(self, item: Item, reason: str, kind: ErrorType, **fields: object) -> None:
        self._batcher.add(_Settle(item, Status.FAILED, {"error": reason, "error_type": kind,
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
                computed = self._unwritten.get(row.text_hash)
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
        vectors = _Vectors(self.model, work.hashes, work.vectors, waiting)
        self._unwritten.update(dict.fromkeys(work.hashes, vectors))
        self._batcher.add(vectors)
        self.progress.chunks_embedded += len(work.hashes)

    # -- writing (the batcher's sink; runs on the driver thread) ------------------

    def _write(self, ops: Sequence[_Op]) -> None:
        self._stale_clips = []  # of this write only: a failed one is written again
        with self.catalog.db.transaction() as txn:
            for op in ops:
                if isinstance(op, _Settle):
                    self._apply_settle(txn, op)
                elif isinstance(op, _Vectors):
                    self.index.store_vectors(txn, op.model, op.hashes, op.vectors)
                    self.catalog.promote(txn, op.model, op.item_ids)
                else:
                    self.catalog.promote(txn, op.model)
        self._held.difference_update(op.item.id for op in ops if isinstance(op, _Settle))
        # After the commit, never before: a crash in between leaves a file no event
        # names (the scan's sweep deletes it), never an event naming a deleted file.
        self._delete_clips(self._stale_clips)
        self._forget_vectors(ops)
        self._settled = self._settled or any(isinstance(op, _Settle) for op in ops)
        self._written = True
        self._count_done(ops)

    def _apply_settle(self, txn: Transaction, op: _Settle) -> None:
        fields = dict(op.fields)
        if op.copy_from is not None:
            twin = self.catalog.twin_extraction(txn, op.copy_from, op.item.sha256)
            if twin is None:  # the twin vanished or changed since the claim: extract
                op.status = Status.PENDING
            else:
                fields.update(twin)
        # A watch records a new save of an item in flight (back to `pending`, new
        # sha256) and this runner may claim it again before this result is written:
        # the lease check alone (it knows the owner, not the claim) would let this
        # older result through. A child's bytes are learnt by its extraction.
        claimed = op.item.sha256 if op.item.parent_id is None else None
        if not self.catalog.settle(txn, op.item.id, self.owner, op.status,
                                   claimed_sha256=claimed, **fields):
            log.info("item %s: lease lost or file changed before its result was written; "
                     "dropped", op.item.source)
            return
        settled = [op.item.id]
        if op.copy_from is not None and op.status is not Status.PENDING:
            settled += self._copy_twin(txn, op, op.copy_from)
        elif op.status in (Status.EXTRACTED, Status.INDEXED, Status.SKIPPED, Status.FAILED):
            self.index.replace_chunks(txn, op.item.id, op.item.collection, op.chunks)
            if self.embedder is not None:
                self.progress.vector_lookups += len(op.chunks)
            # With its new outcome, an item's children are what this extraction found:
            # none, unless it is a container (a changed archive loses its old members).
            self.catalog.replace_children(txn, op.item, op.children, self._run_id)
            if self._audio_store is not None:
                # A recording's events are replaced with its status (none, when it failed).
                self._stale_clips += self._audio_store.replace(txn, op.item.id, op.recording)
        if op.promote_model is not None:
            self.catalog.promote(txn, op.promote_model, settled)

    def _copy_twin(self, txn: Transaction, op: _Settle, twin: int) -> list[int]:
        """Give a twin the chunks of the item with its bytes, and that item's attachments
        and members with theirs (their own files are in these same bytes); returns the
        ids of the descendants copied as extracted."""
        count = self.index.copy_chunks(txn, twin, op.item.id, op.item.collection)
        if self.embedder is not None:
            self.progress.vector_lookups += count
        model = op.fields.get("embed_model")
        copied = self.catalog.copy_twin(
            txn, twin, op.item, self._run_id, chunk_count=count, done=op.status,
            embed_model=model if isinstance(model, str) else None)
        for original, copy in copied:
            self.index.copy_chunks(txn, original, copy, op.item.collection)
        return [copy for _, copy in copied]

    def _delete_clips(self, paths: Sequence[str]) -> None:
        """Delete clip files no event names any more (only inside the home's clips)."""
        clips = os.path.join(os.path.abspath(self.settings.home), "clips") + os.sep
        for path in paths:
            if not os.path.abspath(path).startswith(clips):
                continue  # not a clip this knowledge base made: never delete it
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # left for the next sweep of its user's clips
                log.warning("cannot delete the old clip %s: %s", path, exc)

    def _forget_vectors(self, ops: Sequence[_Op]) -> None:
        """Vectors written (or dead): from now on the backlog query sees them (or their
        chunks are in it again)."""
        for op in ops:
            if isinstance(op, _Vectors):
                for h in op.hashes:
                    if self._unwritten.get(h) is op:
                        del self._unwritten[h]

    def _dead(self, op: _Op, exc: Exception) -> None:
        """A single operation failed to write: record the item as failed, alone."""
        self._forget_vectors([op])
        if isinstance(op, _Settle) and op.status is not Status.FAILED:
            reason = f"could not store the result: {type(exc).__name__}: {exc}"[:300]
            self._batcher.add(_Settle(op.item, Status.FAILED,
                                      {"error": reason, "error_type": ErrorType.STORE}))

    def _count_done(self, ops: Sequence[_Op]) -> None:
        for op in ops:
            if isinstance(op, _Settle) and op.status is not Status.PENDING:
                self.progress.done += 1  # extraction settled by this run
            if isinstance(op, _Settle) and op.status is Status.SKIPPED:
                self.progress.skipped += 1
            elif isinstance(op, _Settle) and op.status is Status.FAILED:
                self.progress.failed += 1

    def _release_unfinished(self) -> None:
        """Give back the leases of items whose outcome was not committed: in flight, or
        in a batch whose write failed."""
        ids = sorted(self._held | {item.id for item in self._in_flight.values()})
        self._in_flight.clear()
        if not ids:
            return
        self.catalog.release(self.owner, ids)
        self._held.clear()

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


def _weigh(op: _Op) -> int:
    if isinstance(op, _Settle):
        if op.recording is not None:
            return 1 + len(op.recording.events)
        return 1 + len(op.chunks)
    if isinstance(op, _Vectors):
        return len(op.hashes)
    return 1


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"worker died (exit code {exitcode})"


def _install_signal_handlers(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGINT/SIGTERM ask the run to stop cleanly; a second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    hits = {"n": 0}

    def handler(signum: int, _frame: object) -> None:
        hits["n"] += 1
        if signum == signal.SIGINT and hits["n"] > 1:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        log.warning("received %s: finishing in-flight work and stopping", name)
        # Said at once on stderr, terminal or not (a live view also shows it): stopping
        # waits for the items in flight, seconds to minutes, and silence reads as a hang.
        again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
        try:
            sys.stderr.write(f"stopping on {name}: finishing in-flight items{again}\n")
            sys.stderr.flush()
        except (OSError, RuntimeError, ValueError):
            pass  # stderr closed, or busy with a line of its own (a reentrant write)
        stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore

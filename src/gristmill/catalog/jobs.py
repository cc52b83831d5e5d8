"""Jobs: every ingest is a persistent job that can be watched, paused, resumed, cancelled.

A job records what to ingest (collection, sources, patterns) and how it went. Each time
a driver works on it is a *run*, with its own id: discovery marks the items it sees with
the run id, so a resumed job walks its sources afresh and still notices removed files.
The job's counters are its items' (those seen by any of its runs, and their children).

States: (``queued`` ->) ``running`` -> ``succeeded`` | ``failed`` | ``paused`` |
``cancelling`` -> ``cancelled``. A job the HTTP API creates starts ``queued``: the
process started to run it claims it (``running``) as any resume does. Pausing and
cancelling are requests other processes write into the row; the driver polls its job's
state every half second and obeys: on ``paused`` it claims nothing new, lets in-flight
items finish and exits; on ``cancelling`` it stops within seconds (workers killed,
leases given back) and records ``cancelled``. A ``running`` (or
``queued``) job whose driver is gone (dead process on this host, or a heartbeat older
than the lease) is shown as ``interrupted``; ``queued``, ``paused``, ``interrupted`` and
``failed`` jobs can be claimed by a new driver, one at a time.

A job's state is owned by the run that holds it. The row names that run
(``jobs.run_id``); :meth:`JobStore.finish` and :meth:`JobStore.heartbeat` change the row
only while it still names their run, and :meth:`JobStore.state` tells a run that has
been replaced that it is ``superseded``: such a driver stops claiming, lets what it has
in flight finish under its own leases, and exits without touching the row.

A resume arriving while the previous driver is still draining (the row says ``paused``,
or ``queued`` again, but that driver has items in flight) does not start a second driver
beside it: :meth:`JobStore.claim_for_resume` waits until the previous run has ended (or
its driver is gone) before it claims the job. The draining driver reads ``queued`` like
``paused`` and, at its end, leaves a ``queued`` state alone, so the resume is never
lost; the new run then finds every item the old one finished, and takes over the rest.

Running the same ingest again (an equal :class:`JobSpec`) continues the newest paused or
interrupted job with that spec (:meth:`JobStore.find_unfinished`) instead of creating a
job beside it. Each run's driver records its progress with its batcher's figures; a
job's ``rate`` is the items its runs extracted per second of their work, so a run that
found every file unchanged has none.
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gristmill.catalog.backend import CatalogDatabase, Transaction
from gristmill.catalog.item import Status
from gristmill.catalog.leases import owner_is_dead
from gristmill.errors import JobNotFound, JobStateConflict

__all__ = ["FINAL_STATES", "SUPERSEDED", "Job", "JobSpec", "JobState", "JobStore",
           "Problem"]

log = logging.getLogger(__name__)


class JobState(enum.StrEnum):
    """Where a job is in its life (the module docstring draws the transitions).

    A ``StrEnum``, like every stored state: states are written into messages ("job 7 is
    paused"), and a ``StrEnum`` formats as its value there as in JSON and in the
    database.
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Shown for a queued, running or cancelling job whose driver is gone (and stored
    #: by a run that a signal stopped).
    INTERRUPTED = "interrupted"
    #: Never stored: what :meth:`JobStore.state` tells a run that no longer holds its job.
    SUPERSEDED = "superseded"


#: States a job does not leave (except by an explicit resume of a ``failed`` one).
FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
_RESUMABLE = frozenset({JobState.QUEUED, JobState.PAUSED, JobState.INTERRUPTED,
                        JobState.FAILED})
#: Stored states that mean "a driver holds this job": shown ``interrupted`` once it is gone.
_DRIVEN = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING})
#: What :meth:`JobStore.state` tells a run that no longer holds its job.
SUPERSEDED = JobState.SUPERSEDED
_CLAIM_POLL = 0.2  # seconds between looks at a previous run that is still draining
_PROGRESS = "progress"  # the key of a run's progress in its stats record


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a job ingests: enough to run it again from any terminal.

    ``kind`` is ``"ingest"`` (extract, chunk, embed), ``"audio"`` (scan recordings for
    sound events) or ``"rebuild"`` (extract, chunk, embed a collection's items again
    from the store of originals; ``sources`` are its items' roots, which it does not
    read); an audio job's ``audio`` holds its scan's settings as plain JSON
    values (whose recordings, the model, the detection settings: see
    ``gristmill.audio.recording.AudioOptions``). Specs stored before these fields were
    load as ingest jobs.
    """

    collection: str
    sources: tuple[str, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_files: int | None = None
    kind: str = "ingest"
    audio: dict[str, Any] | None = None


@dataclass(slots=True)
class Job:
    """A job as ``gristmill jobs show`` reports it."""

    id: int
    spec: JobSpec
    state: JobState
    started_at: float
    finished_at: float | None
    heartbeat_at: float | None
    items: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    chunks: int = 0
    bytes: int = 0
    runs: int = 0
    #: Items its runs extracted (not those found unchanged), and the seconds its runs
    #: worked (not the time it spent paused); None for runs recorded before these were.
    processed: int | None = None
    worked: float | None = None
    #: The latest run's two phases (see ``Progress.to_dict``), None before its first
    #: record.
    phases: dict[str, Any] | None = None
    #: Why it stopped, when its own run paused it (an embedding credential refused) or
    #: it failed to start; None while it runs.
    reason: str | None = None

    @property
    def done(self) -> int:
        """Items that ended indexed, skipped or failed."""
        return sum(self.items.get(s, 0) for s in Status.done())

    @property
    def rate(self) -> float:
        """Items extracted per second while its runs worked: a run that found every
        file unchanged processed nothing and has no rate."""
        if self.processed is not None and self.worked is not None:
            return self.processed / self.worked if self.worked > 0 else 0.0
        end = self.finished_at or time.time()
        return self.done / max(end - self.started_at, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API."""
        spec = asdict(self.spec)
        if spec["audio"] is None:
            del spec["audio"]  # an ingest job has no scan settings to show
        return {"id": self.id, **spec, "state": self.state,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "heartbeat_at": self.heartbeat_at, "items": self.items, "done": self.done,
                "pages": self.pages, "chunks": self.chunks, "bytes": self.bytes,
                "rate": round(self.rate, 3), "runs": self.runs,
                "processed": self.processed, "phases": self.phases,
                **({"reason": self.reason} if self.reason else {})}


@dataclass(frozen=True, slots=True)
class Problem:
    """An item of a job that failed or was skipped; ``cursor`` orders them."""

    job: int
    item_id: int
    source: str
    status: str
    error: str
    error_type: str | None
    at: float

    @property
    def cursor(self) -> tuple[float, int]:
        """Position in the job's problem feed: (time recorded, item id)."""
        return (self.at, self.item_id)

    def to_dict(self) -> dict[str, Any]:
        """For the API's ``failure`` events."""
        return asdict(self)


class JobStore:
    """The ``jobs`` and ``runs`` tables."""

    def __init__(self, db: CatalogDatabase, stale_after: float = 120.0) -> None:
        """Args:
        stale_after: seconds without a heartbeat after which a running job on another
            host counts as interrupted (on this host a dead driver is seen at once).
        """
        self.db = db
        self.stale_after = stale_after
        self._lock_row = " FOR UPDATE" if db.backend == "postgresql" else ""

    def create(self, spec: JobSpec, owner: str, *,
               state: JobState = JobState.RUNNING) -> int:
        """Record a new job; returns its id.

        ``state=JobState.QUEUED`` records a job that another process will claim and run (see
        :meth:`claim_for_resume`); ``owner`` is then whoever answers for it until then,
        so a queued job whose would-be driver died shows as ``interrupted``.
        """
        if state not in (JobState.RUNNING, JobState.QUEUED):
            raise ValueError(f"a new job is running or queued, not {state!r}")
        now = time.time()
        with self.db.transaction() as txn:
            row = txn.execute(
                "INSERT INTO jobs (collection, sources, spec, state, owner, started_at, "
                "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (spec.collection, json.dumps(list(spec.sources)), json.dumps(asdict(spec)),
                 state, owner, now, now)).fetchone()
        return int(row[0])

    def hand_over(self, job_id: int, owner: str) -> None:
        """Make ``owner`` (the process started to run it) answer for a queued job.

        A no-op once the job left ``queued``: its driver may claim it first.
        """
        with self.db.transaction() as txn:
            txn.execute("UPDATE jobs SET owner = ?, heartbeat_at = ? WHERE id = ? AND "
                        "state = 'queued'", (owner, time.time(), job_id))

    def fail_queued(self, job_id: int, reason: str) -> bool:
        """Record that a queued job could not start (its source is gone, ...); whether
        it was still queued."""
        now = time.time()
        with self.db.transaction() as txn:
            cursor = txn.execute(
                "UPDATE jobs SET state = 'failed', finished_at = ?, summary = ? "
                "WHERE id = ? AND state = 'queued'",
                (now, json.dumps({"error": reason}), job_id))
        return cursor.rowcount > 0

    def start_run(self, job_id: int, owner: str) -> int:
        """A new run of ``job_id`` by ``owner`` (its driver), which holds the job from
        now on (an earlier run is superseded); returns the run id."""
        now = time.time()

        def start(txn: Transaction) -> int:
            row = txn.execute("INSERT INTO runs (job_id, started_at, owner, heartbeat_at) "
                              "VALUES (?, ?, ?, ?) RETURNING id",
                              (job_id, now, owner, now)).fetchone()
            txn.execute("UPDATE jobs SET owner = ?, heartbeat_at = ?, run_id = ? WHERE id = ?",
                        (owner, now, row[0], job_id))
            return int(row[0])

        # transact, not transaction: the driver's own writes wait out a database restart
        # (store_retry_seconds), retried whole, like its batcher's.
        return self.db.transact(start)

    def heartbeat(self, job_id: int, run_id: int) -> None:
        """Note that run ``run_id``'s driver is alive (the job's row only while that run
        holds it)."""
        now = time.time()

        def beat(txn: Transaction) -> None:
            txn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
            txn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND run_id = ?",
                        (now, job_id, run_id))

        self.db.transact(beat)

    def record_stats(self, run_id: int, stats: dict[str, float],
                     progress: dict[str, Any] | None = None) -> None:
        """Store a run's batcher figures (see :meth:`BatcherStats.summary`) and its
        progress (see ``Progress.to_dict``)."""
        record: dict[str, Any] = {**stats, _PROGRESS: progress} if progress else stats
        self.db.transact(lambda txn: txn.execute(
            "UPDATE runs SET stats = ? WHERE id = ?", (json.dumps(record), run_id)))

    def run_stats(self, job_id: int) -> dict[str, float]:
        """The latest run's batcher figures, or ``{}`` before its first record."""
        row = self.db.conn.execute(
            "SELECT stats FROM runs WHERE job_id = ? ORDER BY id DESC LIMIT 1",
            (job_id,)).fetchone()
        stats: dict[str, float] = json.loads(row[0]) if row and row[0] else {}
        stats.pop(_PROGRESS, None)
        return stats

    def embedding_cache(self) -> tuple[int, int]:
        """``(hits, misses)`` of the embedding cache over every run, as each run last
        recorded them (see ``Progress.cache_hits``)."""
        hits = misses = 0
        for (stats,) in self.db.conn.execute(
                "SELECT stats FROM runs WHERE stats IS NOT NULL"):
            embed = (json.loads(stats).get(_PROGRESS) or {}).get("embed") or {}
            cache = embed.get("cache") or {}
            hits += int(cache.get("hits", 0))
            misses += int(cache.get("misses", 0))
        return hits, misses

    def find_unfinished(self, spec: JobSpec) -> int | None:
        """The newest paused or interrupted job with exactly this spec, if any: running
        the same ingest again continues it rather than starting a job beside it."""
        for job in self._read("WHERE j.collection = ? AND j.state IN "
                              "('paused', 'running', 'queued')", (spec.collection,)):
            if job.spec == spec and job.state in (JobState.PAUSED, JobState.INTERRUPTED):
                return job.id
        return None

    def state(self, job_id: int, run_id: int | None = None) -> JobState:
        """The state as stored (what the driver polls); :data:`SUPERSEDED` when
        ``run_id`` is given and another run holds the job now."""
        row = self.db.conn.execute("SELECT state, run_id FROM jobs WHERE id = ?",
                                   (job_id,)).fetchone()
        if row is None:
            return JobState.CANCELLED
        if run_id is not None and row[1] != run_id:
            return JobState.SUPERSEDED
        return JobState(row[0])

    def finish(self, job_id: int, state: JobState | str, summary: dict[str, object], *,
               run_id: int) -> JobState:
        """Record how run ``run_id`` ended; returns the job's state afterwards.

        A cancel requested meanwhile wins. The row is left alone when another run holds
        the job, or when it was queued again (a resume waits for this run to end) or
        failed (that resume could not start) while this run drained.
        """
        now = time.time()
        wanted = JobState(state)  # a caller's plain string is checked here
        job = Job(job_id, JobSpec("", ()), wanted, now, None, None)
        self._count(job)
        summary = {**summary, "counters": {"items": job.items, "pages": job.pages,
                                           "chunks": job.chunks, "bytes": job.bytes,
                                           "runs": job.runs}}
        def end(txn: Transaction) -> JobState:
            # The job's row first (locked on PostgreSQL), then the run's: the order a
            # claim reads them in.
            current = txn.execute(f"SELECT state, run_id FROM jobs WHERE id = ?"
                                  f"{self._lock_row}", (job_id,)).fetchone()
            txn.execute("UPDATE runs SET ended_at = ? WHERE id = ?", (now, run_id))
            if current is None:
                return JobState.CANCELLED
            stored, holder = JobState(current[0]), current[1]
            if holder != run_id:
                return stored  # superseded: the row is its successor's
            cancelled = stored in (JobState.CANCELLING, JobState.CANCELLED)
            ended = JobState.CANCELLED if cancelled else wanted
            if stored not in (JobState.RUNNING, JobState.PAUSED, JobState.CANCELLING,
                              JobState.CANCELLED):
                return stored
            txn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, heartbeat_at = ?, summary = ? "
                "WHERE id = ?", (ended, now if ended in FINAL_STATES else None, now,
                                 json.dumps(summary), job_id))
            return ended

        return self.db.transact(end)

    # -- steering from any process -------------------------------------------------

    def pause(self, job_id: int) -> Job:
        """Ask a running job to pause (its driver drains and exits).

        Raises:
            JobNotFound: no such job.
            JobStateConflict: it is not running.
        """
        job = self.get(job_id)
        if job.state != JobState.RUNNING:
            raise JobStateConflict(job_id, job.state, f"job {job_id} is {job.state}: only a "
                                   "running job can be paused")
        self._set(job_id, JobState.PAUSED, only_from=JobState.RUNNING)
        return self.get(job_id)

    def cancel(self, job_id: int) -> Job:
        """Cancel a job: a running one stops within seconds, a queued, paused or
        interrupted one is cancelled at once.

        Raises:
            JobNotFound: no such job.
            JobStateConflict: it has ended (succeeded, failed or cancelled).
        """
        with self.db.transaction() as txn:
            # Decided and written in one transaction: a driver claiming the job meanwhile
            # would otherwise run on under a row that says cancelled.
            state = self._stored_state(txn, job_id)
            if state in FINAL_STATES:
                raise JobStateConflict(job_id, state, f"job {job_id} is already {state}")
            if state == JobState.RUNNING:
                txn.execute("UPDATE jobs SET state = 'cancelling' WHERE id = ?", (job_id,))
            elif state != JobState.CANCELLING:  # queued, paused, interrupted: no driver
                txn.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?",
                            (time.time(), job_id))
        return self.get(job_id)

    def claim_for_resume(self, job_id: int, owner: str) -> JobSpec:
        """Mark a queued, paused, interrupted or failed job running under ``owner``,
        who then starts its run (:meth:`start_run`).

        While the job's previous driver is still finishing its in-flight items, this
        waits for it to end: two drivers never work on one job at once.

        Raises:
            JobNotFound: no such job.
            JobStateConflict: it is running (another driver claimed it), succeeded or
                cancelled.
        """
        waited = False
        while True:
            draining = self._claim(job_id, owner)
            if draining is None:
                return self.get(job_id).spec
            if not waited:
                log.info("job %s: waiting for its previous driver (%s) to finish the items "
                         "it has in flight", job_id, draining)
                waited = True
            # A queued job's would-be driver answers for it while it waits, so the job
            # does not look interrupted meanwhile.
            self.hand_over(job_id, owner)
            time.sleep(_CLAIM_POLL)

    def _claim(self, job_id: int, owner: str) -> str | None:
        """Claim the job; or, while its previous run's driver is alive, that driver."""
        with self.db.transaction() as txn:
            # Checked and claimed in one transaction, so of two processes claiming the
            # same queued job (the API's runner, a `jobs resume`) exactly one wins.
            state = self._stored_state(txn, job_id)
            if state not in _RESUMABLE:
                raise JobStateConflict(job_id, state, f"job {job_id} is {state}: only a "
                                       "paused, interrupted or failed job can be resumed "
                                       "(or a queued one started)")
            previous = txn.execute(
                "SELECT r.owner, r.heartbeat_at, r.ended_at FROM jobs j JOIN runs r "
                "ON r.id = j.run_id WHERE j.id = ?", (job_id,)).fetchone()
            if previous is not None and previous[2] is None and not self._driver_gone(
                    previous[0], previous[1], socket.gethostname()):
                return str(previous[0])
            # run_id NULL: the previous run, should it still be alive after all (a
            # heartbeat gone stale), is superseded from this commit on.
            txn.execute("UPDATE jobs SET state = 'running', owner = ?, finished_at = NULL, "
                        "heartbeat_at = ?, run_id = NULL WHERE id = ?",
                        (owner, time.time(), job_id))
        return None

    def requeue(self, job_id: int, owner: str) -> Job:
        """Queue a paused, interrupted or failed job again, for a process to claim (what
        a resume over HTTP does); ``owner`` answers for it until then.

        Raises:
            JobNotFound: no such job.
            JobStateConflict: it is queued, running, succeeded or cancelled.
        """
        with self.db.transaction() as txn:
            state = self._stored_state(txn, job_id)
            if state not in _RESUMABLE - {JobState.QUEUED}:
                raise JobStateConflict(job_id, state, f"job {job_id} is {state}: only a "
                                       "paused, interrupted or failed job can be resumed")
            txn.execute("UPDATE jobs SET state = 'queued', owner = ?, finished_at = NULL, "
                        "heartbeat_at = ? WHERE id = ?", (owner, time.time(), job_id))
        return self.get(job_id)

    def _stored_state(self, txn: Transaction, job_id: int) -> JobState:
        """The state as :meth:`get` shows it, read inside ``txn`` (and, on PostgreSQL,
        locked until it ends: SQLite's ``BEGIN IMMEDIATE`` already keeps other writers out,
        PostgreSQL's default isolation would let two claimers read the same state)."""
        row = txn.execute(f"SELECT state, owner, heartbeat_at FROM jobs WHERE id = ?"
                          f"{self._lock_row}", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        state, owner, heartbeat = row
        if state in _DRIVEN and self._driver_gone(owner, heartbeat, socket.gethostname()):
            return JobState.INTERRUPTED
        return JobState(state)

    def _set(self, job_id: int, state: JobState, only_from: JobState) -> None:
        with self.db.transaction() as txn:
            txn.execute("UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                        (state, job_id, only_from))

    # -- reading -------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """One job with its counters.

        Raises:
            JobNotFound: no such job.
        """
        jobs = self._read("WHERE j.id = ?", (job_id,))
        if not jobs:
            raise JobNotFound(job_id)
        return jobs[0]

    def recent(self, state: str | None = None, limit: int = 50) -> list[Job]:
        """The latest jobs, newest first, optionally only those in ``state``."""
        jobs = self._read("", (), limit=limit if state is None else 10_000)
        if state is not None:
            jobs = [job for job in jobs if job.state == state][:limit]
        return jobs

    def _read(self, where: str, params: tuple[object, ...], limit: int = 50) -> list[Job]:
        rows = self.db.conn.execute(
            f"SELECT j.id, j.collection, j.sources, j.spec, j.state, j.owner, j.started_at, "
            f"j.finished_at, j.heartbeat_at, j.summary FROM jobs j {where} "
            f"ORDER BY j.id DESC LIMIT ?",
            (*params, limit)).fetchall()
        host = socket.gethostname()
        jobs = []
        for (job_id, collection, sources, spec, state, owner, started, finished,
             heartbeat, summary) in rows:
            if spec:
                fields = json.loads(spec)
                job_spec = JobSpec(fields["collection"], tuple(fields["sources"]),
                                   tuple(fields.get("include", ())),
                                   tuple(fields.get("exclude", ())), fields.get("max_files"),
                                   fields.get("kind") or "ingest", fields.get("audio"))
            else:  # a job recorded before specs were
                job_spec = JobSpec(collection, tuple(json.loads(sources)))
            shown = JobState(state)
            if shown in _DRIVEN and self._driver_gone(owner, heartbeat, host):
                shown = JobState.INTERRUPTED
            job = Job(job_id, job_spec, shown, started, finished, heartbeat)
            recorded = json.loads(summary or "{}")
            if shown not in _DRIVEN and shown != JobState.QUEUED:
                job.reason = recorded.get("reason") or recorded.get("error")
            counted = recorded.get("counters")
            if shown in FINAL_STATES and counted:
                # Frozen when it ended: later jobs over the same files re-mark the items.
                job.items, job.pages, job.chunks, job.bytes, job.runs = (
                    counted["items"], counted["pages"], counted["chunks"], counted["bytes"],
                    counted["runs"])
            else:
                self._count(job)
            self._pace(job)
            jobs.append(job)
        return jobs

    def problems(self, job_id: int, after: tuple[float, int] = (0.0, 0),
                 limit: int = 500) -> list[Problem]:
        """The job's failed and skipped items recorded after ``after`` (a
        :attr:`Problem.cursor`), oldest first. A resumed job's new run lists its
        earlier problems again (discovery marks them anew)."""
        at, item_id = after
        rows = self.db.conn.execute(
            "SELECT id, source, status, coalesce(error, ''), error_type, updated_at "
            "FROM items WHERE status IN ('failed', 'skipped') "
            "AND updated_at >= ? AND NOT (updated_at = ? AND id <= ?) "
            "AND seen_run IN (SELECT id FROM runs WHERE job_id = ?) "
            "ORDER BY updated_at, id LIMIT ?",
            (at, at, item_id, job_id, limit)).fetchall()
        return [Problem(job_id, row[0], row[1], row[2], row[3], row[4], row[5])
                for row in rows]

    def _driver_gone(self, owner: str | None, heartbeat: float | None, host: str) -> bool:
        if owner and owner_is_dead(owner, host):
            return True
        return heartbeat is None or time.time() - heartbeat > self.stale_after

    def _count(self, job: Job) -> None:
        runs = "SELECT id FROM runs WHERE job_id = ?"
        scope = f"(seen_run IN ({runs}))"
        for status, n, pages, chunks, size in self.db.conn.execute(
                f"SELECT status, count(*), sum(coalesce(pages, 0)), "
                f"sum(coalesce(chunk_count, 0)), sum(coalesce(size, 0)) FROM items "
                f"WHERE {scope} GROUP BY status", (job.id,)):
            # int(): PostgreSQL sums a BIGINT column as numeric (a Decimal).
            job.items[status] = int(n)
            job.pages += int(pages)
            job.chunks += int(chunks)
            job.bytes += int(size)
        job.runs = self.db.conn.execute("SELECT count(*) FROM runs WHERE job_id = ?",
                                        (job.id,)).fetchone()[0]

    def _pace(self, job: Job) -> None:
        """What its runs extracted, in how long, and the latest run's phases, from the
        progress each run's driver records with its stats."""
        processed, worked = 0, 0.0
        for (stats,) in self.db.conn.execute(
                "SELECT stats FROM runs WHERE job_id = ? ORDER BY id", (job.id,)):
            progress = json.loads(stats).get(_PROGRESS) if stats else None
            if not progress:
                continue
            processed += int(progress["extract"]["done"])
            worked += float(progress["elapsed"] or 0.0)
            job.phases = progress
        if job.phases is not None:
            job.processed, job.worked = processed, worked

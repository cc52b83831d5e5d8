"""Jobs: every ingest is a persistent job that can be watched, paused, resumed, cancelled.

A job records what to ingest (collection, sources, patterns) and how it went. Each time
a driver works on it is a *run*, with its own id: discovery marks the items it sees with
the run id, so a resumed job walks its sources afresh and still notices removed files.
The job's counters are its items' (those seen by any of its runs, and their children).

States: ``running`` -> ``succeeded`` | ``failed`` | ``paused`` | ``cancelling`` ->
``cancelled``. Pausing and cancelling are requests other processes write into the row;
the driver polls its job's state every half second and obeys: on ``paused`` it claims
nothing new, lets in-flight items finish and exits; on ``cancelling`` it stops within
seconds (workers killed, leases given back) and records ``cancelled``. A ``running`` job
whose driver is gone (dead process on this host, or a heartbeat older than the lease)
is shown as ``interrupted``; ``paused`` and ``interrupted`` jobs can be resumed.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gristmill.catalog.database import Database
from gristmill.catalog.sqlite import owner_is_dead
from gristmill.errors import ConfigError

__all__ = ["FINAL_STATES", "Job", "JobSpec", "JobStore"]

#: States a job does not leave (except by an explicit resume of a ``failed`` one).
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
_RESUMABLE = frozenset({"paused", "interrupted", "failed"})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a job ingests: enough to run it again from any terminal."""

    collection: str
    sources: tuple[str, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_files: int | None = None


@dataclass(slots=True)
class Job:
    """A job as ``gristmill jobs show`` reports it."""

    id: int
    spec: JobSpec
    state: str
    started_at: float
    finished_at: float | None
    heartbeat_at: float | None
    items: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    chunks: int = 0
    bytes: int = 0
    runs: int = 0

    @property
    def done(self) -> int:
        """Items that ended indexed, skipped or failed."""
        return sum(self.items.get(s, 0) for s in ("indexed", "skipped", "failed"))

    @property
    def rate(self) -> float:
        """Items finished per second over the job's life so far."""
        end = self.finished_at or time.time()
        return self.done / max(end - self.started_at, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API."""
        return {"id": self.id, **asdict(self.spec), "state": self.state,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "heartbeat_at": self.heartbeat_at, "items": self.items, "done": self.done,
                "pages": self.pages, "chunks": self.chunks, "bytes": self.bytes,
                "rate": round(self.rate, 3), "runs": self.runs}


class JobStore:
    """The ``jobs`` and ``runs`` tables."""

    def __init__(self, db: Database, stale_after: float = 120.0) -> None:
        """Args:
        stale_after: seconds without a heartbeat after which a running job on another
            host counts as interrupted (on this host a dead driver is seen at once).
        """
        self.db = db
        self.stale_after = stale_after

    def create(self, spec: JobSpec, owner: str) -> int:
        """Record a new running job; returns its id."""
        now = time.time()
        with self.db.transaction() as txn:
            cursor = txn.execute(
                "INSERT INTO jobs (collection, sources, spec, state, owner, started_at, "
                "heartbeat_at) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (spec.collection, json.dumps(list(spec.sources)), json.dumps(asdict(spec)),
                 owner, now, now))
        return int(cursor.lastrowid or 0)

    def start_run(self, job_id: int, owner: str) -> int:
        """A new run of ``job_id`` by ``owner`` (its driver); returns the run id."""
        now = time.time()
        with self.db.transaction() as txn:
            txn.execute("UPDATE jobs SET owner = ?, heartbeat_at = ? WHERE id = ?",
                        (owner, now, job_id))
            cursor = txn.execute("INSERT INTO runs (job_id, started_at) VALUES (?, ?)",
                                 (job_id, now))
        return int(cursor.lastrowid or 0)

    def heartbeat(self, job_id: int) -> None:
        """Note that the job's driver is alive."""
        with self.db.transaction() as txn:
            txn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (time.time(), job_id))

    def state(self, job_id: int) -> str:
        """The state as stored (what the driver polls)."""
        row = self.db.conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(row[0]) if row else "cancelled"

    def finish(self, job_id: int, state: str, summary: dict[str, object]) -> str:
        """Record how a run ended; a cancel requested meanwhile wins. Returns the state."""
        now = time.time()
        job = Job(job_id, JobSpec("", ()), state, now, None, None)
        self._count(job)
        summary = {**summary, "counters": {"items": job.items, "pages": job.pages,
                                           "chunks": job.chunks, "bytes": job.bytes,
                                           "runs": job.runs}}
        with self.db.transaction() as txn:
            current = txn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if current and current[0] == "cancelling":
                state = "cancelled"
            txn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, heartbeat_at = ?, summary = ? "
                "WHERE id = ?", (state, now if state in FINAL_STATES else None, now,
                                 json.dumps(summary), job_id))
        return state

    # -- steering from any process -------------------------------------------------

    def pause(self, job_id: int) -> Job:
        """Ask a running job to pause (its driver drains and exits)."""
        job = self.get(job_id)
        if job.state != "running":
            raise ConfigError(f"job {job_id} is {job.state}: only a running job can be paused")
        self._set(job_id, "paused", only_from="running")
        return self.get(job_id)

    def cancel(self, job_id: int) -> Job:
        """Cancel a job: a running one stops within seconds, a paused or interrupted one
        is cancelled at once."""
        job = self.get(job_id)
        if job.state in FINAL_STATES:
            raise ConfigError(f"job {job_id} is already {job.state}")
        if job.state == "running":
            self._set(job_id, "cancelling", only_from="running")
        else:  # paused, interrupted: no driver to tell
            with self.db.transaction() as txn:
                txn.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?",
                            (time.time(), job_id))
        return self.get(job_id)

    def claim_for_resume(self, job_id: int, owner: str) -> JobSpec:
        """Mark a paused, interrupted or failed job running again under ``owner``."""
        job = self.get(job_id)
        if job.state not in _RESUMABLE:
            raise ConfigError(f"job {job_id} is {job.state}: only a paused, interrupted or "
                              "failed job can be resumed")
        with self.db.transaction() as txn:
            txn.execute("UPDATE jobs SET state = 'running', owner = ?, finished_at = NULL, "
                        "heartbeat_at = ? WHERE id = ?", (owner, time.time(), job_id))
        return job.spec

    def _set(self, job_id: int, state: str, only_from: str) -> None:
        with self.db.transaction() as txn:
            txn.execute("UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                        (state, job_id, only_from))

    # -- reading -------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """One job with its counters.

        Raises:
            ConfigError: no such job.
        """
        jobs = self._read("WHERE j.id = ?", (job_id,))
        if not jobs:
            raise ConfigError(f"no job {job_id}: `gristmill jobs list` shows the jobs")
        return jobs[0]

    def list(self, state: str | None = None, limit: int = 50) -> list[Job]:
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
                                   tuple(fields.get("exclude", ())), fields.get("max_files"))
            else:  # a job recorded before specs were
                job_spec = JobSpec(collection, tuple(json.loads(sources)))
            if state in ("running", "cancelling") and self._driver_gone(owner, heartbeat, host):
                state = "interrupted"
            job = Job(job_id, job_spec, state, started, finished, heartbeat)
            counted = json.loads(summary or "{}").get("counters")
            if state in FINAL_STATES and counted:
                # Frozen when it ended: later jobs over the same files re-mark the items.
                job.items, job.pages, job.chunks, job.bytes, job.runs = (
                    counted["items"], counted["pages"], counted["chunks"], counted["bytes"],
                    counted["runs"])
            else:
                self._count(job)
            jobs.append(job)
        return jobs

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
            job.items[status] = n
            job.pages += pages
            job.chunks += chunks
            job.bytes += size
        job.runs = self.db.conn.execute("SELECT count(*) FROM runs WHERE job_id = ?",
                                        (job.id,)).fetchone()[0]

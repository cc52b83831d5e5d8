"""The job store: runs with fresh ids, counters frozen at the end, interrupted drivers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backends import open_catalog
from gristmill.catalog import SqliteDatabase
from gristmill.catalog.jobs import JobSpec, JobStore
from gristmill.catalog.migrations.sqlite import MIGRATIONS

SPEC = JobSpec("default", ("/data",), ("*.pdf",), (), 10)


def test_a_job_keeps_its_spec_and_each_run_gets_a_new_id(tmp_path: Path) -> None:
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "host:1:1.00")
    first, second = jobs.start_run(job_id, "me"), jobs.start_run(job_id, "me")
    assert second > first
    job = jobs.get(job_id)
    assert job.spec == SPEC and job.runs == 2


def test_counters_are_frozen_when_a_job_ends(tmp_path: Path) -> None:
    """Items a later job re-marks do not leave the earlier, finished job's figures."""
    db = open_catalog(tmp_path / "g.db")
    jobs = JobStore(db)
    job_id = jobs.create(SPEC, "me")
    run = jobs.start_run(job_id, "me")
    with db.transaction() as txn:
        txn.execute("INSERT INTO items (collection, source, root, status, size, chunk_count, "
                    "seen_run, created_at, updated_at) VALUES ('default', '/data/a', '/data', "
                    "'indexed', 10, 3, ?, 0, 0)", (run,))
    assert jobs.finish(job_id, "succeeded", {}, run_id=run) == "succeeded"
    later = jobs.start_run(jobs.create(SPEC, "me"), "me")
    db.conn.execute("UPDATE items SET seen_run = ?", (later,))
    job = jobs.get(job_id)
    assert (job.items, job.chunks, job.bytes) == ({"indexed": 1}, 3, 10)


def test_a_running_job_whose_driver_died_is_interrupted(tmp_path: Path) -> None:
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    import socket

    job_id = jobs.create(SPEC, f"{socket.gethostname()}:999999:1.00")  # no such process
    assert jobs.get(job_id).state == "interrupted"
    assert [j.id for j in jobs.recent("interrupted")] == [job_id]


@pytest.mark.sqlite_only("upgrades a catalog written before SQLite migration 004")
def test_run_ids_continue_after_the_jobs_of_an_older_schema(tmp_path: Path) -> None:
    """Items of a pre-runs catalog carry job ids as their run marks; the migration makes
    each old job its own run, so no new run id can collide with them."""
    path = tmp_path / "g.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:3]:
        conn.execute("BEGIN")
        step(conn)
        conn.execute("COMMIT")
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO jobs (id, collection, sources, state, started_at) "
                 "VALUES (41, 'default', '[\"/data\"]', 'succeeded', 0)")
    conn.close()
    jobs = JobStore(SqliteDatabase(path))
    assert jobs.get(41).spec == JobSpec("default", ("/data",))
    assert jobs.start_run(jobs.create(SPEC, "me"), "me") > 41


def test_a_run_of_a_few_milliseconds_still_has_a_rate(tmp_path: Path) -> None:
    """A job over a handful of small files can finish in 40 ms: its rate is its items
    over that time, not 0 because the stored elapsed time was rounded to a tenth."""
    from gristmill.runtime.progress import Progress

    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "me")
    run = jobs.start_run(job_id, "me")
    jobs.record_stats(run, {}, progress=Progress(done=5, elapsed=0.04).to_dict())
    assert jobs.get(job_id).rate == pytest.approx(125.0)

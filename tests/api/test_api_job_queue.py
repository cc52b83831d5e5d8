"""The queued state the API's jobs start in: claimed exactly once, never stuck."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from backends import open_catalog
from gristmill.catalog.jobs import JobSpec, JobStore
from gristmill.errors import ConfigError

SPEC = JobSpec("default", ("/data",))
DEAD = f"{socket.gethostname()}:999999:1.00"  # no such process


def test_a_queued_job_is_claimed_by_exactly_one_driver(tmp_path: Path) -> None:
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "api", state="queued")
    assert jobs.get(job_id).state == "queued"
    assert jobs.claim_for_resume(job_id, "first") == SPEC
    with pytest.raises(ConfigError, match="is running"):
        jobs.claim_for_resume(job_id, "second")


def test_a_queued_job_whose_process_died_is_interrupted_and_resumable(tmp_path: Path) -> None:
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "api", state="queued")
    jobs.hand_over(job_id, DEAD)
    assert jobs.get(job_id).state == "interrupted"
    assert jobs.requeue(job_id, "api").state == "queued"


def test_hand_over_leaves_a_claimed_job_alone(tmp_path: Path) -> None:
    """The started process may claim the job before the server records it as owner."""
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "api", state="queued")
    jobs.claim_for_resume(job_id, "me-the-driver")
    jobs.hand_over(job_id, DEAD)
    assert jobs.db.conn.execute("SELECT owner FROM jobs").fetchone()[0] == "me-the-driver"


def test_queued_jobs_cancel_at_once_and_cannot_be_paused_or_requeued(tmp_path: Path) -> None:
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "api", state="queued")
    with pytest.raises(ConfigError, match="only a running job can be paused"):
        jobs.pause(job_id)
    with pytest.raises(ConfigError, match="is queued"):
        jobs.requeue(job_id, "api")
    assert jobs.cancel(job_id).state == "cancelled"
    with pytest.raises(ConfigError, match="is cancelled"):
        jobs.claim_for_resume(job_id, "late")


def test_a_queued_job_that_cannot_start_is_failed(tmp_path: Path) -> None:
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    job_id = jobs.create(SPEC, "api", state="queued")
    assert jobs.fail_queued(job_id, "/data does not exist")
    assert jobs.get(job_id).state == "failed"
    assert not jobs.fail_queued(job_id, "again")  # only ever from queued


def test_a_new_job_is_running_or_queued(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="running or queued"):
        JobStore(open_catalog(tmp_path / "g.db")).create(SPEC, "api", state="paused")

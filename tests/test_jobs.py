"""Jobs steered from another terminal: pause, resume, cancel, and resume after kill -9,
with real `gristmill` processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from subprocess import Popen

import psutil
import pytest

from backends import query
from corpus import build
from gate import Gate, wait_for_pause_seen
from process_tools import env_for, gristmill, gristmill_json, start

ADMITTED = 10  # items a steered job finishes before the test steers it


def _running_job(env: dict[str, str], proc: Popen[str], gate: Gate,
                 timeout: float = 120) -> int:
    """The id of the job ``proc`` is running, once the ``ADMITTED`` items let through
    the gate are done (the others wait there: the job cannot end before it is steered,
    however fast the machine)."""
    gate.admit(ADMITTED)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ingest ended before it could be steered"
        listed = gristmill("jobs", "list", "--state", "running", "--json", env=env)
        jobs = json.loads(listed.stdout) if listed.returncode == 0 else []  # no KB yet
        if jobs and jobs[0]["done"] >= ADMITTED:
            return int(jobs[0]["id"])
        time.sleep(0.1)
    raise AssertionError("no running job with progress")


def _chunks(home: Path) -> list[tuple[str, int, str]]:
    return query(home, "SELECT i.source, c.seq, c.text FROM chunks c JOIN items i "
                 "ON i.id = c.item_id ORDER BY 1, 2")


def _leases(home: Path) -> int:
    return query(home, "SELECT count(*) FROM items WHERE status = 'processing'")[0][0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jobs") / "corpus"
    build(folder, 400, pdf_pages=6)
    return folder


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> list[tuple[str, int, str]]:
    home = tmp_path_factory.mktemp("ref")
    assert gristmill("ingest", str(corpus), env=env_for(home, workers="2")).returncode == 0
    return _chunks(home)


@pytest.mark.slow
def test_pause_drains_and_resume_finishes_without_redoing(
        corpus: Path, reference: list[tuple[str, int, str]], tmp_path: Path) -> None:
    """`jobs pause` from another process: the ingest finishes what is in flight and
    exits, holding no worker and no claim; `jobs resume` completes the job and the
    knowledge base equals an uninterrupted run's."""
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(tmp_path / "home", workers="2"))
    proc = start("ingest", str(corpus), env=env)
    job_id = _running_job(env, proc, gate)
    paused = gristmill("jobs", "pause", str(job_id), env=env)
    assert paused.returncode == 0 and "pausing" in paused.stdout
    wait_for_pause_seen(tmp_path / "home", job_id)
    gate.open()  # the items in flight finish; nothing new is claimed
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"Job {job_id} is paused" in out
    assert not psutil.pid_exists(proc.pid)
    job = gristmill_json("jobs", "show", str(job_id), env=env)
    assert job["state"] == "paused"
    assert 0 < job["done"] < 400  # stopped part way
    assert _leases(tmp_path / "home") == 0
    done_before = job["done"]

    resumed = gristmill_json("jobs", "resume", str(job_id), env=env)
    assert resumed["state"] == "succeeded" and resumed["job_id"] == job_id
    job = gristmill_json("jobs", "show", str(job_id), env=env)
    assert job["state"] == "succeeded" and job["runs"] == 2
    assert job["done"] == 400 > done_before
    assert _chunks(tmp_path / "home") == reference


@pytest.mark.slow
def test_cancel_stops_within_seconds_and_leaves_the_catalog_consistent(
        corpus: Path, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(tmp_path / "home", workers="2"))
    proc = start("ingest", str(corpus), env=env)
    job_id = _running_job(env, proc, gate)
    # The items in flight stay held at the gate: the run can only end by killing them.
    assert gristmill("jobs", "cancel", str(job_id), env=env).returncode == 0
    asked = time.monotonic()
    out, _err = proc.communicate(timeout=60)
    assert time.monotonic() - asked < 10
    assert f"Job {job_id} was cancelled" in out
    assert gristmill_json("jobs", "show", str(job_id), env=env)["state"] == "cancelled"
    assert _leases(tmp_path / "home") == 0
    refused = gristmill("jobs", "resume", str(job_id), env=env)
    assert refused.returncode == 2 and "only a paused, interrupted or failed" in refused.stderr
    # What it did not finish is picked up by the next ingest of the same folder.
    gate.open()
    again = gristmill_json("ingest", str(corpus), env=env)
    assert again["items"]["pending"] == 0 and again["state"] == "succeeded"


@pytest.mark.slow
def test_a_killed_driver_shows_as_interrupted_and_resumes(
        corpus: Path, reference: list[tuple[str, int, str]], tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(tmp_path / "home", workers="2"))
    proc = start("ingest", str(corpus), env=env)
    job_id = _running_job(env, proc, gate)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    [job] = gristmill_json("jobs", "list", env=env)
    assert (job["id"], job["state"]) == (job_id, "interrupted")
    assert gristmill_json("jobs", "list", "--state", "interrupted", env=env)[0]["id"] == job_id
    gate.open()
    resumed = gristmill_json("jobs", "resume", str(job_id), env=env)
    assert resumed["state"] == "succeeded"
    assert _chunks(tmp_path / "home") == reference


def test_steering_a_job_that_cannot_be_steered_says_why(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a small file")
    env = env_for(tmp_path / "home")
    done = gristmill_json("ingest", str(src), env=env)
    job_id = str(done["job_id"])
    for command, message in (("pause", "only a running job can be paused"),
                             ("cancel", "is already succeeded"),
                             ("resume", "only a paused, interrupted or failed")):
        refused = gristmill("jobs", command, job_id, env=env)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    missing = gristmill("jobs", "show", "999", env=env)
    assert missing.returncode == 2 and "no job 999" in missing.stderr
    [job] = gristmill_json("jobs", "list", env=env)
    assert job["items"] == {"indexed": 1} and job["state"] == "succeeded"


@pytest.mark.slow
def test_status_shows_a_running_jobs_batcher(corpus: Path, tmp_path: Path) -> None:
    """While an ingest runs, `status` (text and JSON, from another process) shows its
    job and the figures its write batcher last recorded: rows written, flush and
    commit latency; once it ends, no job is listed as running."""
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(tmp_path / "home", workers="1"))
    proc = start("ingest", str(corpus), env=env)
    job_id = _running_job(env, proc, gate)
    deadline = time.monotonic() + 60
    while True:
        running = gristmill_json("status", env=env)["running"]
        assert proc.poll() is None, "the ingest ended before its batcher was seen"
        if running and running[0]["batcher"].get("rows", 0) > 0:
            break
        assert time.monotonic() < deadline, running
        time.sleep(0.2)
    job = running[0]
    assert job["job"] == job_id and job["done"] > 0
    stats = job["batcher"]
    assert stats["flushes"] >= 1 and stats["dead"] == 0
    assert 0 < stats["latency_p99"] < 60 and stats["flush_p99"] >= stats["flush_p50"]
    text = gristmill("status", env=env).stdout
    assert f"job {job_id} running" in text and "commit p99" in text
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert gristmill_json("status", env=env)["running"] == []

"""A job's state belongs to the run that holds it: pause then resume over HTTP never
loses the resume nor runs two drivers at once, a superseded run's writes are ignored,
and a job paused while embedding exits cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.http_server import (
    TOKEN,
    Server,
    job_processes,
    start_server,
    wait_for,
    wait_for_exit,
)
from backends import open_catalog, query
from corpus import build
from gate import Gate, wait_for_pause_seen
from gristmill.catalog import lease_owner_token
from gristmill.catalog.jobs import SUPERSEDED, JobSpec, JobStore
from gristmill.runtime.embed_stage import EmbedStage, EmbedWork
from process_tools import env_for, gristmill, gristmill_json, start

SPEC = JobSpec("default", ("/data",))
N_FILES = 40


# -- the job store: a run owns its job's state -----------------------------------------


def test_a_superseded_runs_finish_and_heartbeat_leave_the_job_alone(tmp_path: Path) -> None:
    """Once a newer run holds the job, the older run's finish, heartbeat and state poll
    neither change the row nor read its state as theirs."""
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    me = lease_owner_token()
    job_id = jobs.create(SPEC, me)
    old = jobs.start_run(job_id, me)
    new = jobs.start_run(job_id, me)
    jobs.db.conn.execute("UPDATE jobs SET heartbeat_at = 1.0 WHERE id = ?", (job_id,))
    jobs.heartbeat(job_id, old)
    assert jobs.state(job_id, old) == SUPERSEDED and jobs.state(job_id, new) == "running"
    assert jobs.finish(job_id, "paused", {}, run_id=old) == "running"
    row = "SELECT state, finished_at, heartbeat_at, summary FROM jobs"
    assert jobs.db.conn.execute(row).fetchone() == ("running", None, 1.0, None)
    jobs.heartbeat(job_id, new)
    assert jobs.db.conn.execute(row).fetchone()[2] > 1.0
    assert jobs.finish(job_id, "succeeded", {}, run_id=new) == "succeeded"


def test_a_resume_waits_for_the_draining_driver_and_is_not_lost(tmp_path: Path) -> None:
    """Paused and queued again while its driver still drains: the new claim waits for
    that run to end, whose finish leaves the queued state for it."""
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    me = lease_owner_token()  # alive: this process drives the old run
    job_id = jobs.create(SPEC, me)
    old = jobs.start_run(job_id, me)
    jobs.pause(job_id)
    jobs.requeue(job_id, "api")
    claimed = threading.Event()
    claimer = threading.Thread(target=lambda: (
        JobStore(open_catalog(tmp_path / "g.db")).claim_for_resume(job_id, me),
        claimed.set()))
    claimer.start()
    try:
        assert not claimed.wait(1.0), "claimed while the previous driver was draining"
        assert jobs.state(job_id, old) == "queued"  # the old driver reads: drain
        assert jobs.finish(job_id, "paused", {}, run_id=old) == "queued"
        assert claimed.wait(30), "the resume did not claim the job once the old run ended"
    finally:
        claimer.join(30)
    assert jobs.get(job_id).state == "running"
    assert jobs.state(job_id, old) == SUPERSEDED


def test_a_cancel_while_a_paused_job_drains_stays_cancelled(tmp_path: Path) -> None:
    """Cancelling a paused job whose driver is still draining: the driver's end does
    not write `paused` over the cancel."""
    jobs = JobStore(open_catalog(tmp_path / "g.db"))
    me = lease_owner_token()
    job_id = jobs.create(SPEC, me)
    run = jobs.start_run(job_id, me)
    jobs.pause(job_id)
    assert jobs.cancel(job_id).state == "cancelled"
    assert jobs.state(job_id, run) == "cancelled"
    assert jobs.finish(job_id, "paused", {}, run_id=run) == "cancelled"
    assert jobs.get(job_id).state == "cancelled"


# -- the race over HTTP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle") / "root"
    build(root / "corpus", N_FILES, pdf_pages=2)
    return root


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path / "gate")


@pytest.fixture
def server(corpus: Path, gate: Gate, tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "home"
    env = gate.env(env_for(home, workers="2", source_roots=str(corpus),
                           api_token=TOKEN))
    running = start_server(env, home, tmp_path / "serve.log")
    yield running
    gate.open()  # a failed test's job process may still wait at the gate
    running.stop()
    wait_for_exit(home, timeout=60)


def _started_with_items_in_flight(server: Server, gate: Gate, corpus: Path) -> int:
    """A job whose first items are done and whose window is full, held at the gate."""
    created = server.client.post("/api/v1/jobs", json={"source": str(corpus / "corpus")})
    assert created.status_code == 202, created.text
    job_id = int(created.json()["id"])
    gate.admit(3)
    deadline = time.monotonic() + 120
    while True:
        job = server.client.get(f"/api/v1/jobs/{job_id}").json()
        if job["done"] >= 3 and job["items"].get("processing", 0) > 0:
            return job_id
        assert time.monotonic() < deadline, f"the job made no progress: {job}"
        time.sleep(0.05)


def _new_driver_waits_or_claimed(server: Server, job_id: int, timeout: float = 60) -> None:
    """Return once the resumed job's new process waits for the old one to drain (what
    it must do) or has claimed the job beside it (the race): the old driver's in-flight
    items are still held at the gate either way."""
    deadline = time.monotonic() + timeout
    log = server.home / "logs" / "gristmill.log"
    while f"job {job_id}: waiting for its previous driver" not in log.read_text():
        if server.client.get(f"/api/v1/jobs/{job_id}").json()["runs"] > 1:
            return
        assert time.monotonic() < deadline, "the resumed job's process never started"
        time.sleep(0.05)


def _ends_succeeded_with_every_item_read_once(server: Server, gate: Gate, corpus: Path,
                                              job_id: int) -> None:
    gate.open()
    job = wait_for(server.client, job_id, "succeeded", "paused", "failed", timeout=180)
    assert job["state"] == "succeeded", job
    assert job["items"] == {"indexed": N_FILES} and job["runs"] == 2
    passed = gate.passed()
    files = sorted(str(p) for p in (corpus / "corpus").rglob("*") if p.is_file())
    assert sorted(passed) == files, "an item was read twice, or never"
    wait_for_exit(server.home, timeout=60)
    assert query(server.home, "SELECT count(*) FROM items WHERE status <> 'indexed'") == [(0,)]


@pytest.mark.slow
def test_pause_then_resume_half_a_second_later_finishes_every_item_once(
        server: Server, gate: Gate, corpus: Path) -> None:
    """POST pause, then resume 0.5 s later (both 202): the job ends succeeded with every
    item indexed, each read exactly once."""
    job_id = _started_with_items_in_flight(server, gate, corpus)
    paused = server.client.post(f"/api/v1/jobs/{job_id}/pause")
    assert paused.status_code == 202, paused.text
    time.sleep(0.5)  # the race the issue measured; the outcome must not depend on it
    resumed = server.client.post(f"/api/v1/jobs/{job_id}/resume")
    assert resumed.status_code == 202, resumed.text
    _new_driver_waits_or_claimed(server, job_id)
    _ends_succeeded_with_every_item_read_once(server, gate, corpus, job_id)


@pytest.mark.slow
def test_resume_once_the_driver_saw_the_pause_waits_for_it_to_drain(
        server: Server, gate: Gate, corpus: Path) -> None:
    """Resume after the driver took the pause but while its items are still in flight:
    the new process waits (the job stays queued, one driver works), then finishes."""
    job_id = _started_with_items_in_flight(server, gate, corpus)
    assert server.client.post(f"/api/v1/jobs/{job_id}/pause").status_code == 202
    wait_for_pause_seen(server.home, job_id)
    assert server.client.post(f"/api/v1/jobs/{job_id}/resume").status_code == 202
    _new_driver_waits_or_claimed(server, job_id)
    assert len(job_processes(server.home)) == 2  # the old one drains, the new one waits
    job = server.client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["state"] == "queued" and job["runs"] == 1, job
    _ends_succeeded_with_every_item_read_once(server, gate, corpus, job_id)


# -- stopping while embedding ------------------------------------------------------------


def _extracted(home: Path) -> int:
    rows = query(home, "SELECT count(*) FROM items WHERE status IN ('extracted', "
                 "'indexed')", missing_ok=True)
    return int(rows[0][0]) if rows else 0


class _HeldEmbedder:
    """Blocks in ``embed`` until released; counts the batches it embedded."""

    model_id = "held"
    dim = 2

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.entered.set()
        self.release.wait(30)
        self.batches += 1
        return np.ones((len(texts), 2), dtype=np.float32)


def test_closing_the_embed_stage_drops_queued_work_and_ends_its_thread() -> None:
    """close() finishes only the batch being embedded, drops the queued ones, and
    returns with the thread ended (a process never exits inside the model)."""
    embedder = _HeldEmbedder()
    stage = EmbedStage(embedder, depth=2)  # type: ignore[arg-type]
    stage.submit(EmbedWork(["a"], ["text a"], {1}))
    assert embedder.entered.wait(10)
    assert stage.submit(EmbedWork(["b"], ["text b"], {2}))
    assert stage.submit(EmbedWork(["c"], ["text c"], {3}))
    closer = threading.Thread(target=stage.close)
    closer.start()
    time.sleep(0.2)
    embedder.release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert not stage._thread.is_alive()
    assert embedder.batches == 1


@pytest.mark.slow
def test_a_job_paused_while_embedding_exits_without_aborting(tmp_path: Path) -> None:
    """A job with the bundled model, paused while its embedding stage has work, drains
    and exits 0 with no `terminate called` from onnxruntime."""
    gate = Gate(tmp_path / "gate")
    build(tmp_path / "corpus", 60, pdf_pages=2)
    home = tmp_path / "home"
    env = gate.env(env_for(home, embedder="minilm", workers="2", embed_batch="16"))
    proc = start("ingest", str(tmp_path / "corpus"), env=env)
    try:
        gate.admit(20)
        deadline = time.monotonic() + 180
        while _extracted(home) < 10:  # their chunks are the embedding stage's work
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        [job] = gristmill_json("jobs", "list", env=env)
        assert gristmill("jobs", "pause", str(job["id"]), env=env).returncode == 0
        wait_for_pause_seen(home, job["id"])
        gate.open()
        out, err = proc.communicate(timeout=300)
    finally:
        gate.open()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "terminate called" not in err
    assert f"Job {job['id']} is paused" in out

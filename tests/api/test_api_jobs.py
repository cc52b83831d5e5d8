"""The HTTP API over real sockets: a `gristmill serve` subprocess, jobs in processes of
their own, steered and watched with httpx."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from http_server import (
    TOKEN,
    Server,
    events,
    job_processes,
    start_server,
    wait_for,
    wait_for_exit,
    wait_for_progress,
)

from backends import ON_POSTGRES
from corpus import build, marker
from gate import Gate, wait_for_pause_seen
from process_tools import env_for, gristmill

N_FILES = 600  # a job of several seconds even on a quiet machine, so it can be steered


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one source root, holding the corpus; beside it a folder outside every root."""
    base = tmp_path_factory.mktemp("api")
    build(base / "root" / "corpus", N_FILES, pdf_pages=4)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text("zqsecret must never be ingested")
    return base / "root"


def _env(home: Path, roots: Path | None, token: str | None = TOKEN) -> dict[str, str]:
    settings = {"workers": "1"}  # one worker: jobs last long enough to be steered
    if roots is not None:
        settings["source_roots"] = str(roots)
    if token is not None:
        settings["api_token"] = token
    return env_for(home, **settings)


def _cleanup(server: Server) -> None:
    server.stop()
    for proc in job_processes(server.home):  # only ever a failed test's leftover
        proc.kill()
    psutil.wait_procs(job_processes(server.home), timeout=10)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """In front of every extraction of the server's jobs; open unless a test closes it
    to steer a job at a point of its choosing."""
    gate = Gate(tmp_path / "gate")
    gate.open()
    yield gate
    gate.open()  # a failed test's job must not wait at it for ever


@pytest.fixture
def server(roots: Path, gate: Gate, tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "home"
    running = start_server(gate.env(_env(home, roots)), home, tmp_path / "serve.log")
    yield running
    _cleanup(running)


def _held(server: Server, gate: Gate, source: str, admitted: int = 3) -> int:
    """A job that has finished ``admitted`` items and waits at the gate for the rest."""
    gate.close()
    job_id = int(_create(server, source)["id"])  # type: ignore[call-overload]
    gate.admit(admitted)
    wait_for_progress(server.client, job_id, timeout=120)
    return job_id


def _create(server: Server, source: str | list[str], **body: object) -> dict[str, object]:
    response = server.client.post("/api/v1/jobs", json={"source": source, **body})
    assert response.status_code == 202, response.text
    return response.json()


@pytest.mark.slow
def test_a_job_streams_progress_and_ends_with_its_final_state(
        server: Server, gate: Gate, roots: Path) -> None:
    """POST queues a job run outside the server; its event stream has increasing ids,
    progress while it runs and a final `state` event, then closes; reconnecting with
    Last-Event-ID continues the numbering."""
    gate.close()
    created = _create(server, str(roots / "corpus"), collection="papers")
    assert created["state"] == "queued" and created["collection"] == "papers"
    job_id = int(created["id"])  # type: ignore[call-overload]

    seen = []
    for event in events(server.client, job_id):
        seen.append(event)
        # One item at a time until the stream has shown progress, then all of them:
        # the job cannot end before its client has watched it move.
        if event["event"] == "progress":
            gate.open()
        elif event["data"].get("state") in ("queued", "running"):
            gate.admit(1)
    ids = [event["id"] for event in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] == 1
    kinds = [event["event"] for event in seen]
    assert kinds[0] == "state" and "progress" in kinds
    assert set(kinds) <= {"state", "progress", "heartbeat"}
    done = [event["data"]["done"] for event in seen if event["event"] == "progress"]
    assert done == sorted(done)
    last = seen[-1]
    assert last["event"] == "state" and last["data"]["state"] == "succeeded"
    assert last["data"]["items"] == {"indexed": N_FILES}

    again = list(events(server.client, job_id, last_event_id=seen[-1]["raw_id"]))
    assert [(e["id"], e["event"]) for e in again] == [(ids[-1] + 1, "state")]

    # The job ran in a `gristmill jobs run` process of its own, which wrote its summary.
    wait_for_exit(server.home, timeout=15)  # it records the end, then shuts its pool
    log = (server.home / "logs" / f"job-{job_id}.log").read_text()
    assert f"{N_FILES} indexed" in log

    hits = server.client.get("/api/v1/search", params={"q": marker(7), "k": 3,
                                                       "mode": "keyword"})
    assert hits.status_code == 200 and hits.json()[0]["source"].endswith("doc7.html")
    health = server.client.get("/api/v1/health").json()
    assert health["catalog"]["items"]["indexed"] == N_FILES
    assert health["catalog"]["backend"] == ("postgresql" if ON_POSTGRES else "sqlite")
    assert health["catalog"]["bytes"] > 0
    assert health["embedder"]["name"] == "none" and health["index"]["chunks"] > 0
    assert health["index"]["vector_engine"] in ("client-scan", "pgvector")
    listed = server.client.get("/api/v1/jobs", params={"state": "succeeded"}).json()
    assert [job["id"] for job in listed] == [job_id]

    metrics = server.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert f'gristmill_items{{status="indexed"}} {float(N_FILES)}' in lines
    assert 'gristmill_jobs{state="succeeded"} 1.0' in lines
    assert any(line.startswith("gristmill_chunks ") and float(line.split()[1]) > 0
               for line in lines)
    assert any(line.startswith("gristmill_server_rss_bytes ") for line in lines)
    assert httpx.get(f"{server.url}/metrics").status_code == 401  # the token guards it
    assert server.client.get("/api/v1/errors").json() == []


@pytest.mark.slow
def test_pause_over_http_then_resume_finishes_every_item(
        server: Server, gate: Gate, roots: Path) -> None:
    """A job paused mid-way drains and its process exits; resuming it over HTTP starts a
    new process that finishes the rest."""
    job_id = _held(server, gate, str(roots / "corpus"))
    running = server.client.get("/metrics").text.splitlines()
    assert any(line.startswith(f'gristmill_job_items_done{{job="{job_id}"}} ')
               for line in running)
    assert any(line.startswith(f'gristmill_job_items_waiting{{job="{job_id}"}} ')
               for line in running)
    paused = server.client.post(f"/api/v1/jobs/{job_id}/pause")
    assert paused.status_code == 202 and paused.json()["state"] == "paused"
    wait_for_pause_seen(server.home, job_id)
    gate.open()  # the items in flight finish; nothing new is claimed
    wait_for_exit(server.home)
    job = server.client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["state"] == "paused" and 0 < job["done"] < N_FILES
    assert job["items"].get("processing", 0) == 0  # in-flight items finished, none held

    refused = server.client.post(f"/api/v1/jobs/{job_id}/pause")
    assert refused.status_code == 409 and "only a running job" in refused.json()["detail"]
    resumed = server.client.post(f"/api/v1/jobs/{job_id}/resume")
    assert resumed.status_code == 202 and resumed.json()["state"] in ("queued", "running")
    final = list(events(server.client, job_id))[-1]["data"]
    assert final["state"] == "succeeded" and final["runs"] == 2
    assert final["items"] == {"indexed": N_FILES}


@pytest.mark.slow
def test_delete_cancels_a_running_job(server: Server, gate: Gate, roots: Path) -> None:
    """DELETE stops a running job within seconds; cancelling it again is refused."""
    job_id = _held(server, gate, str(roots / "corpus"))
    # Its items in flight stay held at the gate: the job can only end by killing them.
    cancelled = server.client.delete(f"/api/v1/jobs/{job_id}")
    assert cancelled.status_code == 202
    assert cancelled.json()["state"] in ("cancelling", "cancelled")
    job = wait_for(server.client, job_id, "cancelled", timeout=30)
    assert job["done"] < N_FILES
    wait_for_exit(server.home, timeout=10)
    again = server.client.delete(f"/api/v1/jobs/{job_id}")
    assert again.status_code == 409 and again.json() == {
        "detail": f"job {job_id} is already cancelled"}
    assert server.client.delete("/api/v1/jobs/999").status_code == 404


def test_requests_without_the_right_token_are_refused(server: Server) -> None:
    """With a token configured, every /api route needs `Authorization: Bearer <token>`."""
    bare = server.client.get("/api/v1/health", headers={"Authorization": ""})
    assert bare.status_code == 401 and "bearer token" in bare.json()["detail"]
    assert bare.headers["www-authenticate"] == "Bearer"
    for header in ("Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        response = server.client.get("/api/v1/jobs", headers={"Authorization": header})
        assert response.status_code == 401, header
    refused = server.client.post("/api/v1/jobs", json={"source": "/"},
                                 headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert server.client.get("/api/v1/health").status_code == 200
    missing = server.client.get("/api/v1/jobs/424242")
    assert missing.status_code == 404 and "no job 424242" in missing.json()["detail"]
    # Every error has the same shape: {"detail": "<one sentence>"}.
    typo = server.client.post("/api/v1/jobs", json={"source": "/x", "colection": "a"})
    assert typo.status_code == 422 and typo.json() == {
        "detail": "colection: Extra inputs are not permitted"}
    assert server.client.get("/api/v1/nope").json() == {"detail": "Not Found"}


def test_sources_outside_the_roots_are_refused(server: Server, roots: Path) -> None:
    """A `..` climb or a symlink inside the root pointing outside is a 403; nothing is
    queued for either."""
    outside = roots.parent / "outside"
    (roots / "escape").symlink_to(outside, target_is_directory=True)
    try:
        for source in (f"{roots}/../outside", str(roots / "escape"),
                       str(roots / "escape" / "secret.txt"), "/etc"):
            refused = server.client.post("/api/v1/jobs", json={"source": source})
            assert refused.status_code == 403, source
            assert "outside the configured source roots" in refused.json()["detail"]
        mixed = server.client.post("/api/v1/jobs", json={
            "source": [str(roots / "corpus"), f"{roots}/corpus/../../outside"]})
        assert mixed.status_code == 403
        relative = server.client.post("/api/v1/jobs", json={"source": "corpus"})
        assert relative.status_code == 400 and "absolute" in relative.json()["detail"]
        missing = server.client.post("/api/v1/jobs", json={"source": str(roots / "nope")})
        assert missing.status_code == 400 and "does not exist" in missing.json()["detail"]
        assert server.client.get("/api/v1/jobs").json() == []
    finally:
        (roots / "escape").unlink()


def test_without_source_roots_every_source_is_refused(tmp_path: Path, roots: Path) -> None:
    """No GRISTMILL_SOURCE_ROOTS: the API ingests nothing and says what to set."""
    home = tmp_path / "home"
    bare = start_server(_env(home, None), home, tmp_path / "serve.log")
    try:
        refused = bare.client.post("/api/v1/jobs", json={"source": str(roots / "corpus")})
        assert refused.status_code == 403
        assert "GRISTMILL_SOURCE_ROOTS" in refused.json()["detail"]
    finally:
        _cleanup(bare)


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    """Binding a non-loopback address needs a token; exit status 2 and why."""
    env = _env(tmp_path / "home", None, token=None)
    refused = gristmill("serve", "--host", "0.0.0.0", "--port", "0", env=env, timeout=30)
    assert refused.returncode == 2
    assert "without a token" in refused.stderr and "GRISTMILL_API_TOKEN" in refused.stderr


@pytest.mark.slow
def test_a_job_survives_a_restart_of_the_server(
        roots: Path, gate: Gate, tmp_path: Path) -> None:
    """Killing the server leaves the job's process running; a new server shows it
    finishing."""
    home = tmp_path / "home"
    env = gate.env(_env(home, roots))
    first = start_server(env, home, tmp_path / "serve.log")
    try:
        job_id = _held(first, gate, str(roots / "corpus"))
    finally:
        first.stop(signal.SIGKILL)
    [runner] = job_processes(home)  # held at the gate: it cannot have ended
    assert runner.is_running() and runner.pid != first.proc.pid

    second = start_server(env, home, tmp_path / "serve.log")
    gate.open()
    try:
        job = second.client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] in ("running", "succeeded")
        final = list(events(second.client, job_id))[-1]["data"]
        assert final["state"] == "succeeded" and final["items"] == {"indexed": N_FILES}
        assert final["runs"] == 1  # the same run carried on; nothing was restarted
    finally:
        _cleanup(second)
    assert not os.path.exists(home / "gristmill.db-journal")

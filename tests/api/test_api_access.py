"""What a caller may do and how much: token scopes (from the environment and from
gristmill.toml), body and query size caps, the search rate limit, the open liveness
route; and what a job's event stream tells about items that failed."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_server import TOKEN, Server, events, job_processes, start_server, wait_for

from gate import Gate
from process_tools import env_for

READ_TOKEN = "read-only-test-token"
ADMIN_TOKEN = "second-admin-test-token"


def _toml(folder: Path, rate: str = "5 per 5 seconds") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in (READ_TOKEN, ADMIN_TOKEN)}
    (folder / "gristmill.toml").write_text(
        f'search_rate_limit = "{rate}"\n'
        "max_request_kb = 4\n"
        "max_query_chars = 200\n\n"
        f'[[api_tokens]]\nname = "grafana"\nsha256 = "{digest[READ_TOKEN]}"\n'
        'scope = "read"\n\n'
        f'[[api_tokens]]\nname = "ops"\nsha256 = "{digest[ADMIN_TOKEN]}"\nscope = "admin"\n')
    return folder


def _sources(root: Path) -> Path:
    """Text files, three PDFs that are not PDFs, and two files of a type nothing reads."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for i in range(40):
        (corpus / f"note{i}.txt").write_text(f"note {i} about quillfeather number {i}\n" * 20)
    for i in range(3):
        (corpus / f"broken{i}.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * (i + 1))
    for i in range(2):
        (corpus / f"blob{i}.bin").write_bytes(bytes(range(256)) * 8)
    return corpus


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    """In front of the extractions of the server's jobs; open unless a test closes it."""
    opened = Gate(tmp_path / "gate")
    opened.open()
    return opened


@pytest.fixture
def server(tmp_path: Path, gate: Gate) -> Iterator[Server]:
    roots = tmp_path / "root"
    _sources(roots)
    home = tmp_path / "home"
    env = gate.env(env_for(home, workers="1", source_roots=str(roots), api_token=TOKEN))
    running = start_server(env, home, tmp_path / "serve.log", cwd=_toml(tmp_path / "cwd"))
    yield running
    running.stop()
    for proc in job_processes(home):
        proc.kill()


def _as(server: Server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["Content-Type"] = "application/json"  # what the API asks of state changes
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def test_read_tokens_read_and_only_admin_tokens_steer(server: Server, tmp_path: Path) -> None:
    """A token from gristmill.toml with scope read may list, search and scrape, and gets
    403 (with the reason) on every route that starts or steers a job; the config file's
    admin token and GRISTMILL_API_TOKEN may do both; anything else is a 401."""
    source = str(tmp_path / "root" / "corpus")
    with _as(server, READ_TOKEN) as reader, _as(server, ADMIN_TOKEN) as admin:
        for path in ("/api/v1/jobs", "/api/v1/health", "/api/v1/errors", "/metrics"):
            assert reader.get(path).status_code == 200, path
        assert reader.get("/api/v1/search", params={"q": "x"}).status_code == 200
        refused = reader.post("/api/v1/jobs", json={"source": source})
        assert refused.status_code == 403
        assert "'grafana' is read-only" in refused.json()["detail"]
        assert reader.get("/api/v1/jobs").json() == []  # nothing was queued
        assert reader.get("/api/v1/token").json() == {"name": "grafana", "scope": "read"}
        assert admin.get("/api/v1/token").json() == {"name": "ops", "scope": "admin"}

        created = admin.post("/api/v1/jobs", json={"source": source})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        for method, path in (("POST", f"/api/v1/jobs/{job_id}/pause"),
                             ("POST", f"/api/v1/jobs/{job_id}/resume"),
                             ("DELETE", f"/api/v1/jobs/{job_id}")):
            assert reader.request(method, path).status_code == 403, path
        assert server.client.delete(f"/api/v1/jobs/{job_id}").status_code == 202
        wait_for(server.client, job_id, "cancelled")

    for token in (None, "wrong", READ_TOKEN + "x"):
        with _as(server, token) as stranger:
            answer = stranger.get("/api/v1/jobs")
            assert answer.status_code == 401, token
            assert answer.headers["WWW-Authenticate"] == "Bearer"
    # The liveness route needs no token and tells nothing.
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_search_is_rate_limited_per_token_with_retry_after(server: Server) -> None:
    """Over the configured rate (5 per 5 seconds here: a window no loaded machine
    outlasts with 8 searches) a client gets 429 and Retry-After; another token keeps its
    own budget; after the window the first may search again."""
    with _as(server, READ_TOKEN) as reader, _as(server, ADMIN_TOKEN) as admin:
        codes = [reader.get("/api/v1/search", params={"q": "quillfeather"}).status_code
                 for _ in range(8)]
        assert codes.count(200) == 5 and codes[5:] == [429, 429, 429], codes
        limited = reader.get("/api/v1/search", params={"q": "quillfeather"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "too many searches" in limited.json()["detail"]
        assert admin.get("/api/v1/search", params={"q": "x"}).status_code == 200
        time.sleep(5.2)
        assert reader.get("/api/v1/search", params={"q": "x"}).status_code == 200


def test_oversized_queries_and_bodies_are_refused(server: Server, tmp_path: Path) -> None:
    """A query over max_query_chars is a 422; a body over max_request_kb is a 413 whether
    it declares its length or streams it chunked, and the server keeps serving."""
    too_long = server.client.get("/api/v1/search", params={"q": "a" * 201})
    assert too_long.status_code == 422 and too_long.json()["detail"].startswith("query.q")

    big = {"source": str(tmp_path / "root" / "corpus"), "include": ["*.txt"] * 1000}
    declared = server.client.post("/api/v1/jobs", json=big)
    assert declared.status_code == 413 and "max_request_kb" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield b'{"source": "/x", "include": ['
        for _ in range(2000):
            yield b'"*.txt",'
        yield b'"*.md"]}'

    streamed = server.client.post("/api/v1/jobs", content=chunks(),
                                  headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "max_request_kb" in streamed.json()["detail"]
    assert server.client.get("/api/v1/jobs").json() == []  # neither was queued
    assert server.client.get("/healthz").status_code == 200


@pytest.mark.slow
def test_event_stream_reports_each_failed_and_skipped_item_once(
        server: Server, tmp_path: Path) -> None:
    """`failure` events name every item that failed or was skipped, with its reason,
    before the final state; a client reconnecting with the last id gets none again,
    and one reconnecting from the middle gets exactly the rest."""
    source = str(tmp_path / "root" / "corpus")
    job_id = server.client.post("/api/v1/jobs", json={"source": source}).json()["id"]
    seen = list(events(server.client, job_id))
    failures = [e["data"] for e in seen if e["event"] == "failure"]
    by_name = {Path(f["source"]).name: f for f in failures}
    assert sorted(by_name) == ["blob0.bin", "blob1.bin", "broken0.pdf", "broken1.pdf",
                               "broken2.pdf"]
    assert len(failures) == 5  # each once
    assert all(by_name[f"broken{i}.pdf"]["status"] == "failed" for i in range(3))
    assert all(by_name[f"blob{i}.bin"]["status"] == "skipped" for i in range(2))
    assert all(f["error"] and f["job"] == job_id for f in failures)
    final = seen[-1]
    assert final["event"] == "state" and final["data"]["state"] == "succeeded"
    assert final["data"]["items"] == {"indexed": 40, "failed": 3, "skipped": 2}

    grouped = server.client.get("/api/v1/errors", params={"job": job_id}).json()
    assert sum(group["count"] for group in grouped) == 5
    assert server.client.get("/api/v1/errors", params={"job": job_id + 1}).json() == []

    again = list(events(server.client, job_id, last_event_id=seen[-1]["raw_id"]))
    assert [e["event"] for e in again] == ["state"]
    first_failure = next(i for i, e in enumerate(seen) if e["event"] == "failure")
    rest = list(events(server.client, job_id, last_event_id=seen[first_failure]["raw_id"]))
    assert [e["data"]["item_id"] for e in rest if e["event"] == "failure"] == [
        f["item_id"] for f in failures[1:]]


@pytest.mark.slow
def test_many_watchers_share_one_poller_and_metrics_show_the_batcher(
        server: Server, gate: Gate, tmp_path: Path) -> None:
    """Thirty clients follow one running job: the server polls it once for all of them
    (health counts one watched job), every client sees the same final state, and while
    it runs /metrics carries the job's batcher figures."""
    corpus = tmp_path / "root" / "many"
    corpus.mkdir()
    for i in range(1500):
        (corpus / f"n{i}.txt").write_text(f"note {i} " * 200)
    gate.close()  # the job runs until the test has seen what it checks, at any speed
    gate.admit(300)
    job_id = server.client.post("/api/v1/jobs", json={"source": str(corpus)}).json()["id"]

    host = server.url.removeprefix("http://")
    address = (host.split(":")[0], int(host.split(":")[1]))
    streams = []
    for _ in range(30):  # raw sockets: 30 httpx clients would each want a thread
        sock = socket.create_connection(address)
        sock.sendall(f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        streams.append(sock)
    wait_for(server.client, job_id, "running", "succeeded")
    deadline = time.monotonic() + 120
    rows_seen = 0.0
    while rows_seen == 0:
        assert time.monotonic() < deadline, \
            "a running job's batcher figures never reached /metrics"
        health = server.client.get("/api/v1/health").json()
        job = server.client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] == "running", job
        assert health["jobs"]["watched"] == 1
        for line in server.client.get("/metrics").text.splitlines():
            if line.startswith(f'gristmill_batch_rows{{job="{job_id}"}} '):
                rows_seen = max(rows_seen, float(line.split()[1]))
        time.sleep(0.2)
    gate.open()
    wait_for(server.client, job_id, "succeeded", timeout=120)
    for sock in streams:
        sock.settimeout(30)
        received = b""
        while b'"state": "succeeded"' not in received:
            part = sock.recv(65536)
            assert part, received[-500:]
            received += part
        sock.close()

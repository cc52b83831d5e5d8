"""The API against a hostile web page, hostile input and hostile clients: cross-site and
DNS-rebinding requests, garbage `Last-Event-ID`s, ids and strings no database can hold,
the schema routes, security headers, the cap on running jobs, half-open connections.

In-process over ``httpx.ASGITransport`` (the app's lifespan running), and over real
sockets against a `gristmill serve` subprocess where the server itself is the subject.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from fastapi import FastAPI
from http_server import TOKEN, job_processes, start_server, wait_for

from gristmill.api import create_app
from gristmill.api.events import parse_event_id
from gristmill.catalog.jobs import JobSpec
from gristmill.catalog.leases import lease_owner_token
from gristmill.config import Settings
from gristmill.knowledge_base import KnowledgeBase
from process_tools import env_for

ORIGIN = "http://127.0.0.1:8000"
CHROMIUM = Path("/usr/bin/chromium")
JSON = {"Content-Type": "application/json"}
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A source root holding one small folder of notes."""
    notes = tmp_path / "root" / "notes"
    notes.mkdir(parents=True)
    (notes / "a.txt").write_text("a note about quillfeather\n")
    return tmp_path / "root"


def _settings(tmp_path: Path, root: Path, **overrides: Any) -> Settings:
    return Settings.load(home=tmp_path / "home", embedder="none", source_roots=[root],
                         **overrides)


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with its lifespan running, and a client addressing it as 127.0.0.1:8000."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client, app


@asynccontextmanager
async def _with_job(settings: Settings, state: str) -> AsyncIterator[tuple[
        httpx.AsyncClient, int]]:
    """The app, and a job row driven by this (live) test process: ``running``, or
    ``succeeded`` when ``state`` says so."""
    kb = KnowledgeBase(settings)
    try:
        root = settings.source_roots[0]
        job_id = kb.jobs.create(JobSpec("default", (str(root / "notes"),)),
                                lease_owner_token(), state="running")
        run_id = kb.jobs.start_run(job_id, lease_owner_token())
        if state == "succeeded":
            kb.jobs.finish(job_id, "succeeded", {}, run_id=run_id)
        async with _serving(settings) as (client, _):
            yield client, job_id
    finally:
        kb.close()


def _server_settings(env: dict[str, str]) -> Settings:
    """The settings of a `gristmill serve` started with ``env``: its catalog."""
    return Settings.load(home=Path(env["GRISTMILL_HOME"]), embedder="none",
                         database_url=env.get("GRISTMILL_DATABASE_URL"))


def _state(settings: Settings, job_id: int) -> str:
    kb = KnowledgeBase(settings)
    try:
        return kb.jobs.get(job_id).state
    finally:
        kb.close()


# -- 6: cross-site requests and DNS rebinding ----------------------------------------------


@pytest.mark.anyio
async def test_cross_site_shaped_requests_cannot_steer_a_token_less_server(
        tmp_path: Path, root: Path) -> None:
    """Without a token, what a foreign page can send (text/plain or form bodies, no
    content type, a foreign Origin or Sec-Fetch-Site) is refused on every state-changing
    route and changes nothing; the same request as JSON from this origin works."""
    settings = _settings(tmp_path, root)
    async with _with_job(settings, "running") as (client, job_id):
        forged = [
            ("POST", f"/api/v1/jobs/{job_id}/pause", {"Content-Type": "text/plain"}, 415),
            ("POST", f"/api/v1/jobs/{job_id}/pause",
             {"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ("POST", f"/api/v1/jobs/{job_id}/pause", {}, 415),
            ("DELETE", f"/api/v1/jobs/{job_id}", {}, 415),
            ("POST", f"/api/v1/jobs/{job_id}/resume", {"Content-Type": "text/plain"}, 415),
            ("POST", f"/api/v1/jobs/{job_id}/pause",
             {**JSON, "Origin": "http://evil.example"}, 403),
            ("POST", f"/api/v1/jobs/{job_id}/pause", {**JSON, "Origin": "null"}, 403),
            # Another port of the same host is another origin (a dev server's page).
            ("POST", f"/api/v1/jobs/{job_id}/pause",
             {**JSON, "Origin": "http://127.0.0.1:3000"}, 403),
            ("POST", f"/api/v1/jobs/{job_id}/pause", {**JSON, "Sec-Fetch-Site": "cross-site"},
             403),
            ("POST", f"/api/v1/jobs/{job_id}/pause", {**JSON, "Sec-Fetch-Site": "same-site"},
             403),
        ]
        for method, path, headers, status in forged:
            answer = await client.request(method, path, headers=headers, content=b"{}")
            assert answer.status_code == status, (method, path, headers, answer.text)
            assert set(answer.json()) == {"detail"}  # the API's one error shape
        assert _state(settings, job_id) == "running"
        created = await client.post("/api/v1/jobs", content=f'{{"source": "{root}/notes"}}',
                                    headers={"Content-Type": "text/plain"})
        assert created.status_code == 415
        assert "application/json" in created.json()["detail"]
        assert (await client.get("/api/v1/jobs")).json() == [
            (await client.get(f"/api/v1/jobs/{job_id}")).json()]  # nothing was queued

        paused = await client.post(f"/api/v1/jobs/{job_id}/pause", headers={
            **JSON, "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
        assert paused.status_code == 202 and paused.json()["state"] == "paused"


@pytest.mark.anyio
async def test_a_foreign_host_name_is_refused_unless_allowed(tmp_path: Path,
                                                              root: Path) -> None:
    """A request naming another host (DNS rebinding) gets 421 on every route, the
    dashboard and liveness included; loopback names and IP addresses are served, and a
    name in allowed_hosts is, with its Origin trusted."""
    async with _serving(_settings(tmp_path, root)) as (client, _):
        for path in ("/", "/healthz", "/api/v1/jobs", "/static/dashboard.js"):
            refused = await client.get(path, headers={"Host": "rebind.evil.example:8000"})
            assert refused.status_code == 421, path
            assert "allowed_hosts" in refused.json()["detail"]
        for host in ("localhost:8000", "LOCALHOST", "127.0.0.1", "[::1]:8000",
                     "gristmill.localhost:8000", "10.1.2.3:8000", "localhost."):
            assert (await client.get("/healthz", headers={"Host": host})).status_code == 200
    settings = _settings(tmp_path, root, allowed_hosts="kb.example.com")
    async with _serving(settings) as (client, _):
        named = {"Host": "kb.example.com", "Origin": "https://kb.example.com", **JSON}
        assert (await client.get("/healthz", headers=named)).status_code == 200
        assert (await client.post("/api/v1/jobs/7/pause", headers=named)).status_code == 404
        assert (await client.get("/", headers={"Host": "evil.example"})).status_code == 421


@pytest.mark.anyio
async def test_with_tokens_any_host_name_is_served_unless_names_are_listed(
        tmp_path: Path, root: Path) -> None:
    """With a token configured, a server reached by its own name (http://box:8000, a
    Prometheus scrape) answers, since the token is the defence; listing allowed_hosts
    brings the Host check back."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with _serving(_settings(tmp_path, root, api_token=TOKEN)) as (client, _):
        for path in ("/healthz", "/api/v1/jobs"):
            answer = await client.get(path, headers={"Host": "box:8000", **bearer})
            assert answer.status_code == 200, path
        assert (await client.get("/api/v1/jobs", headers={"Host": "box"})).status_code == 401
    settings = _settings(tmp_path, root, api_token=TOKEN, allowed_hosts="kb.example.com")
    async with _serving(settings) as (client, _):
        assert (await client.get("/healthz", headers={"Host": "box"})).status_code == 421
        named = await client.get("/healthz", headers={"Host": "kb.example.com"})
        assert named.status_code == 200


def test_cross_site_requests_over_a_real_socket(tmp_path: Path, root: Path) -> None:
    """Against a real token-less `gristmill serve`: a text/plain POST, a foreign Origin and
    a rebinding Host are refused as they would come from a browser; JSON passes."""
    home = tmp_path / "home"
    server = start_server(env_for(home, source_roots=str(root)), home,
                          tmp_path / "serve.log", token=None)
    try:
        address = server.url.removeprefix("http://")
        host, port = address.split(":")

        def raw(request: str) -> tuple[int, str]:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(request.encode())
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.decode().partition("\r\n\r\n")
            return int(head.split()[1]), body

        pause = "POST /api/v1/jobs/1/pause HTTP/1.1\r\nConnection: close\r\n"
        status, body = raw(f"{pause}Host: {address}\r\nContent-Type: text/plain\r\n"
                           "Content-Length: 2\r\n\r\n{}")
        assert status == 415 and "application/json" in body
        status, _ = raw(f"{pause}Host: {address}\r\nContent-Type: application/json\r\n"
                        "Origin: http://evil.example\r\nContent-Length: 2\r\n\r\n{}")
        assert status == 403
        status, body = raw("GET /api/v1/jobs HTTP/1.1\r\nConnection: close\r\n"
                           f"Host: evil.example:{port}\r\n\r\n")
        assert status == 421 and "evil.example" in body
        status, body = raw(f"{pause}Host: {address}\r\nContent-Type: application/json\r\n"
                           f"Origin: http://{address}\r\nContent-Length: 2\r\n\r\n{{}}")
        assert status == 404 and "no job 1" in body  # through the guard, to the route
    finally:
        server.stop()


@pytest.mark.slow
def test_the_dashboard_steers_under_its_policy_and_a_foreign_page_cannot(
        tmp_path: Path, root: Path) -> None:
    """In Chromium, against a token-less server: a page from another origin that fires a
    no-preflight POST at the API changes nothing; the dashboard, under its
    Content-Security-Policy with no violation, pauses and cancels the job (bodyless POST
    and DELETE from its own origin)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    home = tmp_path / "home"
    env = env_for(home, source_roots=str(root))
    server = start_server(env, home, tmp_path / "serve.log", token=None)
    kb = KnowledgeBase(_server_settings(env))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "index.html").write_text("<!doctype html><title>x</title>")
    files = functools.partial(http.server.SimpleHTTPRequestHandler,
                              directory=str(tmp_path / "elsewhere"))
    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), files)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        job_id = kb.jobs.create(JobSpec("default", (str(root / "notes"),)),
                                lease_owner_token(), state="running")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=["--no-sandbox"])
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.add_init_script(
                "window.violations = []; document.addEventListener('securitypolicyviolation',"
                " (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));")

            # A page of another origin on this machine (a dev server's, say): what a
            # hostile page can send without a preflight.
            page.goto(f"http://127.0.0.1:{elsewhere.server_address[1]}/")
            # Sent; its answer is withheld from the page (Cross-Origin-Resource-Policy).
            page.evaluate("""url => fetch(url, {method: 'POST', mode: 'no-cors',
                headers: {'Content-Type': 'text/plain'}, body: '{}'}).catch(() => null)""",
                          f"{server.url}/api/v1/jobs/{job_id}/pause")
            assert kb.jobs.get(job_id).state == "running"

            page.goto(server.url)
            card = page.locator(f'#jobs li[data-job-id="{job_id}"]')
            sync_api.expect(card).to_have_attribute("data-state", "running")
            card.get_by_role("button", name="Pause").click()
            sync_api.expect(card).to_have_attribute("data-state", "paused")
            card.get_by_role("button", name="Cancel").click()
            sync_api.expect(card).to_have_attribute("data-state", "cancelled")
            assert page.evaluate("window.violations") == []
            browser.close()
        assert not [text for text in console if "Content Security Policy" in text], console
        assert kb.jobs.get(job_id).state == "cancelled"
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
        kb.close()
        server.stop()
    log = (tmp_path / "serve.log").read_text()
    assert f'"POST /api/v1/jobs/{job_id}/pause HTTP/1.1" 403' in log  # the foreign page


# -- 11: schema routes and security headers ------------------------------------------------


@pytest.mark.anyio
async def test_schema_routes_are_off_by_default_and_behind_the_token_when_on(
        tmp_path: Path, root: Path) -> None:
    """/docs, /redoc and /openapi.json answer 404 by default; with openapi_schema on,
    /openapi.json needs the token like any GET route, and /docs (CDN assets) stays off."""
    async with _serving(_settings(tmp_path, root)) as (client, _):
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert (await client.get(path)).status_code == 404, path
    settings = _settings(tmp_path, root, openapi_schema=True, api_token=TOKEN)
    async with _serving(settings) as (client, _):
        assert (await client.get("/openapi.json")).status_code == 401
        schema = await client.get("/openapi.json",
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        assert schema.status_code == 200 and "/api/v1/jobs" in schema.json()["paths"]
        for path in ("/docs", "/redoc"):
            assert (await client.get(path)).status_code == 404, path


@pytest.mark.anyio
async def test_every_response_carries_the_security_headers(tmp_path: Path,
                                                            root: Path) -> None:
    """The dashboard, its scripts, API answers, errors and refusals all say: same-origin
    content only, no framing, no sniffing, no referrer."""
    async with _serving(_settings(tmp_path, root)) as (client, _):
        answers = [
            await client.get("/"),
            await client.get("/static/dashboard.js"),
            await client.get("/api/v1/jobs"),
            await client.get("/api/v1/jobs/5"),  # 404
            await client.get("/healthz"),
            await client.get("/nowhere"),
            await client.post("/api/v1/jobs/1/pause"),  # 415 from the guard
            await client.get("/", headers={"Host": "evil.example"}),  # 421
        ]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.url, name)
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


# -- 7: Last-Event-ID -------------------------------------------------------------------------


BAD_EVENT_IDS = ["1:nan/0", "1:-inf/0", "1:NaN/1", "1:inf/0", "1:1e999/0", "-3:0.0/0",
                 "1:0.0/99999999999999999999", "1:-5.0/0", "x:y/z", "1:0.0/", "\t", "1:0x1p3/0"]


def test_garbage_event_ids_read_as_none() -> None:
    """A Last-Event-ID that is not exactly what the server writes counts as absent;
    the ids the server writes parse back."""
    for value in BAD_EVENT_IDS:
        assert parse_event_id(value) == (0, (0.0, 0)), value
    assert parse_event_id("3:1795454664.6468306/131") == (3, (1795454664.6468306, 131))
    assert parse_event_id("7") == (7, (0.0, 0))


@pytest.mark.anyio
async def test_a_finished_jobs_stream_ends_whatever_the_last_event_id(
        tmp_path: Path, root: Path) -> None:
    """The event stream of a finished job ends with its state, for a garbage
    Last-Event-ID (nan, inf, negative, overlong) as for none."""
    settings = _settings(tmp_path, root)
    async with _with_job(settings, "succeeded") as (client, job_id):
        for value in [None, *BAD_EVENT_IDS]:
            headers = {"Last-Event-ID": value} if value else {}
            with anyio.fail_after(30):  # a stream that heartbeats for ever fails here
                answer = await client.get(f"/api/v1/jobs/{job_id}/events", headers=headers)
            assert answer.status_code == 200, value
            assert "event: state" in answer.text and '"succeeded"' in answer.text, value
            assert "event: heartbeat" not in answer.text, value


# -- 8: no 500 for values no path or database can hold -----------------------------------------


@pytest.mark.anyio
async def test_ids_and_strings_no_database_can_hold_are_refused_not_crashed(
        tmp_path: Path, root: Path) -> None:
    """Job ids beyond 64 bits or below 1 in every path and query, and NUL characters or
    lone surrogates in every string a request carries, get a 4xx naming the field,
    never a 500."""
    settings = _settings(tmp_path, root)
    async with _with_job(settings, "running") as (client, job_id):
        huge = str(2**63)
        for bad in (huge, str(2**64 + 5), "-1", "0"):
            for method, path in (("GET", f"/api/v1/jobs/{bad}"),
                                 ("GET", f"/api/v1/jobs/{bad}/events"),
                                 ("POST", f"/api/v1/jobs/{bad}/pause"),
                                 ("POST", f"/api/v1/jobs/{bad}/resume"),
                                 ("DELETE", f"/api/v1/jobs/{bad}"),
                                 ("GET", f"/api/v1/errors?job={bad}")):
                answer = await client.request(method, path, headers=JSON)
                assert answer.status_code in (404, 422), (path, answer.text)
                assert "job" in answer.json()["detail"]
        assert (await client.get(f"/api/v1/jobs/{2**63 - 1}")).status_code == 404

        notes = f"{root}/notes"
        bodies = {
            "source.0": f'{{"source": "{notes}\\u0000"}}',
            "source.0 ": f'{{"source": ["{notes}/\\ud800"]}}',
            "collection": f'{{"source": "{notes}", "collection": "a\\u0000b"}}',
            "collection ": f'{{"source": "{notes}", "collection": "\\udcff"}}',
            "include.0": f'{{"source": "{notes}", "include": ["*\\u0000"]}}',
            "exclude.0": f'{{"source": "{notes}", "exclude": ["\\ud83d"]}}',
            "max_files": f'{{"source": "{notes}", "max_files": {2**64}}}',
        }
        for field, body in bodies.items():
            answer = await client.post("/api/v1/jobs", content=body, headers=JSON)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["detail"].startswith(field.strip()), answer.text
        nul = await client.post("/api/v1/jobs", content=bodies["source.0"], headers=JSON)
        assert "NUL" in nul.json()["detail"]
        for path in ("/api/v1/search?q=a%00b", "/api/v1/search?q=a&collection=%00",
                     "/api/v1/errors?collection=x%00", "/api/v1/jobs?state=running%00"):
            answer = await client.get(path)
            assert answer.status_code == 422 and "NUL" in answer.json()["detail"], path
        listed = (await client.get("/api/v1/jobs")).json()
        assert [job["id"] for job in listed] == [job_id]  # nothing was queued


# -- 11: at most max_running_jobs job processes ------------------------------------------------


@pytest.mark.slow
def test_twenty_jobs_run_at_most_two_at_a_time(tmp_path: Path, root: Path) -> None:
    """Twenty POSTs queue twenty jobs; never more than max_running_jobs (2) job
    processes are alive, nor runs in progress, at once, and every job ends succeeded."""
    home = tmp_path / "home"
    env = env_for(home, source_roots=str(root), api_token=TOKEN, workers="1",
                  max_running_jobs="2")
    server = start_server(env, home, tmp_path / "serve.log")
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            alive = job_processes(home)
            # A job process's own child between fork and exec (its fork server, a
            # Tesseract) still shows its parent's command line: count top-level ones.
            pids = {proc.pid for proc in alive}
            peak = max(peak, sum(1 for proc in alive if _ppid(proc) not in pids))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        ids = []
        for i in range(20):
            created = server.client.post("/api/v1/jobs", json={
                "source": str(root / "notes"), "collection": f"c{i}"})
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
        for job_id in ids:
            assert wait_for(server.client, job_id, "succeeded", "failed",
                            timeout=600)["state"] == "succeeded"
    finally:
        stop.set()
        sampler.join()
        server.stop()
        for proc in job_processes(home):  # only ever a failed test's leftover
            proc.kill()
        psutil.wait_procs(job_processes(home), timeout=10)
    assert peak <= 2, peak
    # Exactly, from the catalog: each run lies inside its process's life.
    kb = KnowledgeBase(_server_settings(env))
    try:
        spans = kb.db.conn.execute(
            "SELECT r.started_at, j.finished_at FROM runs r JOIN jobs j ON j.id = r.job_id"
        ).fetchall()
    finally:
        kb.close()
    assert len(spans) == 20
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
                   key=lambda edge: (edge[0], edge[1]))
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    assert most <= 2, spans


# -- 11: half-open connections ---------------------------------------------------------------


def test_half_open_connections_are_closed_after_the_timeout(tmp_path: Path,
                                                             root: Path) -> None:
    """Connections that send nothing, half a request head, or a head and half a body
    fill the connection limit (a request meanwhile gets 503) and are each closed
    http_request_timeout after they opened, unanswered; then the server answers again."""
    home = tmp_path / "home"
    timeout = 4.0
    env = env_for(home, source_roots=str(root), http_request_timeout=str(timeout),
                  http_max_connections="10")
    server = start_server(env, home, tmp_path / "serve.log", token=None)
    try:
        host, port = server.url.removeprefix("http://").split(":")
        address = (host, int(port))
        half_body = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 1000\r\n\r\n{\"sou")
        half_head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1"
        held: list[tuple[socket.socket, float]] = []

        def hold(data: bytes) -> None:
            sock = socket.create_connection(address, timeout=60)
            held.append((sock, time.monotonic()))
            sock.sendall(data)

        def probe() -> int:
            with socket.create_connection(address, timeout=60) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Connection: close\r\n\r\n")
                return int(sock.recv(65536).split()[1])

        for data in (half_body, half_body, half_head, half_head):
            hold(data)
        # Under the limit, the half bodies reached the app, which waits for the rest.
        assert probe() == 200
        for _ in range(8):
            hold(b"")
        status = probe()
        if time.monotonic() < held[0][1] + timeout:  # all twelve were surely still open
            assert status == 503

        for sock, opened in held:
            try:
                assert sock.recv(65536) == b""  # closed by the server, with no answer
            except ConnectionResetError:
                pass
            closed_after = time.monotonic() - opened
            assert closed_after >= timeout - 0.05, closed_after  # by the timeout
            sock.close()
        assert probe() == 200
    finally:
        server.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "no whole request within 4.0 s" in log


def test_an_event_stream_outlives_the_request_timeout(tmp_path: Path, root: Path) -> None:
    """A response in progress (a job's event stream) is never cut by the request
    timeout: it keeps sending heartbeats."""
    home = tmp_path / "home"
    env = env_for(home, source_roots=str(root), http_request_timeout="1")
    server = start_server(env, home, tmp_path / "serve.log", token=None)
    kb = KnowledgeBase(_server_settings(env))
    try:
        job_id = kb.jobs.create(JobSpec("default", (str(root / "notes"),)),
                                lease_owner_token(), state="running")
        kinds = []
        with server.client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kinds.append(line.split(":", 1)[1].strip())
                if "heartbeat" in kinds:
                    break  # 5 s in: well past the 1 s request timeout
        assert kinds[0] == "state" and "heartbeat" in kinds
    finally:
        kb.close()
        server.stop()


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None

"""The OpenAI-compatible embedder against a real HTTP server on loopback.

The server (http.server in a thread, on an ephemeral 127.0.0.1 port) answers in the
OpenAI embeddings shape with real vectors from the bundled MiniLM, and each test scripts
what it answers first: 429 with Retry-After, 500, a slow answer, 401 after a key rotation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from gristmill.config import Settings
from gristmill.embed import make_embedder
from gristmill.embed.credentials import ApiKey
from gristmill.embed.minilm import MiniLM
from gristmill.embed.openai import OpenAIEmbedder
from gristmill.embed.remote import RateBudget, retry_after_seconds
from gristmill.errors import ConfigError, CredentialError, EmbedderUnavailable

TEXTS = [f"sentence number {i} about {topic}" for i, topic in enumerate(
    ["cats", "invoices", "java methods", "the weather", "sourdough bread", "tax law",
     "graph theory", "jazz", "rivers", "compilers"] * 3)]


@dataclass
class Call:
    """One request the server saw."""

    auth: str | None
    api_key: str | None
    query: dict[str, list[str]]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    """The server's state: what it saw, which keys it takes, what it answers next."""

    model: MiniLM
    calls: list[Call] = field(default_factory=list)
    keys: set[str] | None = None  # None: no key needed
    # Answers to give before the normal one, first to last: (status, headers) or a
    # float (sleep that long, then answer normally).
    script: list[tuple[int, dict[str, str]] | float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.calls.append(call)
            step = self.script.pop(0) if self.script else None
        if isinstance(step, tuple):
            return step[0], step[1], json.dumps({"error": {"message": "scripted"}}).encode()
        if isinstance(step, float):
            time.sleep(step)
        given = call.api_key or (call.auth or "").removeprefix("Bearer ")
        if self.keys is not None and given not in self.keys:
            return 401, {}, json.dumps({"error": {"message": "invalid api key"}}).encode()
        inputs = call.body["input"]
        vectors = self.model.embed(inputs)
        if "dimensions" in call.body:  # like text-embedding-3: cut, not re-normalised
            vectors = vectors[:, :call.body["dimensions"]] * 3.0
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)]
        data.reverse()  # the API does not promise the order of `data`
        body = {"object": "list", "data": data, "model": call.body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        return 200, {}, json.dumps(body).encode()


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            call = Call(self.headers.get("Authorization"), self.headers.get("api-key"),
                        parse_qs(parts.query), body)
            if parts.path != "/v1/embeddings":
                status, headers, payload = 404, {}, b'{"error": "no such route"}'
            else:
                status, headers, payload = state.answer(call)
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left: that is the test's point

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


@pytest.fixture(scope="module")
def expected(minilm: MiniLM) -> np.ndarray:
    return minilm.embed(TEXTS)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment must not carry loopback requests anywhere else.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(minilm: MiniLM) -> Iterator[tuple[FakeOpenAI, str]]:
    state = FakeOpenAI(minilm)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def make(server: tuple[FakeOpenAI, str]) -> Iterator[Callable[..., OpenAIEmbedder]]:
    made: list[OpenAIEmbedder] = []

    def build(**options: Any) -> OpenAIEmbedder:
        options.setdefault("key", ApiKey(env="GRISTMILL_TEST_NO_SUCH_VARIABLE"))
        options.setdefault("backoff", 0.05)
        embedder = OpenAIEmbedder(server[1], "minilm-test", **options)
        made.append(embedder)
        return embedder

    yield build
    for embedder in made:
        embedder.close()


def assert_same_vectors(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    cosines = (got * want).sum(axis=1)
    assert cosines.min() > 0.999


def test_vectors_match_minilm_in_order_across_concurrent_requests(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        expected: np.ndarray) -> None:
    """30 texts in requests of 4, four at a time, come back as MiniLM's vectors in order."""
    state, url = server
    embedder = make(concurrency=4, request_inputs=4)
    vectors = embedder.embed(TEXTS)
    assert_same_vectors(vectors, expected)
    assert len(state.calls) == 8  # ceil(30 / 4)
    assert all(len(c.body["input"]) <= 4 for c in state.calls)
    assert embedder.dim == 384 and len(state.calls) == 8  # learnt, no probe needed
    assert embedder.model_id == f"openai:{urlsplit(url).netloc}/minilm-test"


def test_dim_is_learnt_with_one_probe_before_anything_is_embedded(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder]) -> None:
    """Asking for dim first costs one short request, then never again."""
    state, _ = server
    embedder = make()
    assert (embedder.dim, embedder.dim, len(state.calls)) == (384, 384, 1)


def test_dimensions_are_sent_named_in_the_model_id_and_vectors_renormalised(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder]) -> None:
    """embed_dimensions goes to the server; its raw, cut vectors come back unit length."""
    state, _ = server
    embedder = make(dimensions=128)
    vectors = embedder.embed(TEXTS[:3])
    assert state.calls[0].body["dimensions"] == 128
    assert vectors.shape == (3, 128) and embedder.dim == 128
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.model_id.endswith("/minilm-test@128")


def test_429_with_retry_after_is_waited_out_then_succeeds(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        expected: np.ndarray) -> None:
    """Two 429s with Retry-After: 1 make the call wait at least 2 s, then it succeeds."""
    state, _ = server
    state.script = [(429, {"Retry-After": "1"}), (429, {"Retry-After": "1"})]
    embedder = make()
    started = time.monotonic()
    vectors = embedder.embed(TEXTS[:5])
    assert time.monotonic() - started >= 2.0
    assert len(state.calls) == 3
    assert_same_vectors(vectors, expected[:5])


def test_500_is_retried(server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
                        expected: np.ndarray) -> None:
    """A 500 then a 200: the caller sees only the vectors."""
    state, _ = server
    state.script = [(500, {})]
    assert_same_vectors(make().embed(TEXTS[:2]), expected[:2])
    assert len(state.calls) == 2


def test_a_slow_answer_times_out_and_is_retried(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        expected: np.ndarray) -> None:
    """An answer slower than the timeout is abandoned and the request sent again."""
    state, _ = server
    state.script = [1.5]
    embedder = make(timeout=0.5)
    assert_same_vectors(embedder.embed(TEXTS[:2]), expected[:2])
    assert len(state.calls) == 2


def test_retries_run_out_with_what_the_server_answered(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder]) -> None:
    """429 and 500 forever end in EmbedderUnavailable quoting the answer, never in
    CredentialError; max_retries bounds the requests."""
    state, _ = server
    state.script = [(429, {"Retry-After": "0"})] * 3
    with pytest.raises(EmbedderUnavailable, match=r"HTTP 429.*scripted"):
        make(max_retries=2).embed(TEXTS[:1])
    assert len(state.calls) == 3
    state.script = [(503, {})] * 2
    with pytest.raises(EmbedderUnavailable, match="HTTP 503") as caught:
        make(max_retries=1).embed(TEXTS[:1])
    assert not isinstance(caught.value, CredentialError)
    assert len(state.calls) == 5


def test_a_rotated_key_file_is_read_again_after_a_401(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        tmp_path: Path, expected: np.ndarray) -> None:
    """The key file is rewritten and the old key revoked: the 401 makes the embedder read
    the file again and the same call succeeds with the new key."""
    state, _ = server
    key_file = tmp_path / "key"
    key_file.write_text("key-1\n")
    state.keys = {"key-1"}
    embedder = make(key=ApiKey(file=key_file))
    embedder.embed(TEXTS[:1])
    key_file.write_text("key-2\n")
    state.keys = {"key-2"}
    assert_same_vectors(embedder.embed(TEXTS[1:3]), expected[1:3])
    assert [c.auth for c in state.calls] == ["Bearer key-1", "Bearer key-1", "Bearer key-2"]


def test_a_key_refused_twice_raises_credential_error_naming_the_file(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        tmp_path: Path) -> None:
    """401 forever: one fresh read, one retry, then CredentialError saying what to fix."""
    state, _ = server
    key_file = tmp_path / "key"
    key_file.write_text("revoked")
    state.keys = {"the-real-key"}
    with pytest.raises(CredentialError, match=f"{key_file}.*HTTP 401.*write a valid key"):
        make(key=ApiKey(file=key_file)).embed(TEXTS[:1])
    assert len(state.calls) == 2


def test_an_environment_key_is_read_again_after_a_401(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in an environment variable that changes mid-job is picked up on a 401."""
    state, _ = server
    monkeypatch.setenv("GRISTMILL_TEST_KEY", "old")
    state.keys = {"old"}
    embedder = make(key=ApiKey(env="GRISTMILL_TEST_KEY"))
    embedder.embed(TEXTS[:1])
    monkeypatch.setenv("GRISTMILL_TEST_KEY", "new")
    state.keys = {"new"}
    embedder.embed(TEXTS[:1])
    assert [c.auth for c in state.calls] == ["Bearer old", "Bearer old", "Bearer new"]


def test_token_command_is_cached_and_run_again_only_after_a_401(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        tmp_path: Path) -> None:
    """The command runs once for many requests, and once more when the token expires."""
    state, _ = server
    runs, token = tmp_path / "runs", tmp_path / "token"
    token.write_text("t1")
    state.keys = {"t1"}
    embedder = make(key=ApiKey(command=f"echo run >> {runs}; cat {token}"),
                    request_inputs=2, concurrency=2)
    embedder.embed(TEXTS[:6])
    assert runs.read_text().count("run") == 1
    token.write_text("t2")
    state.keys = {"t2"}
    embedder.embed(TEXTS[:2])
    assert runs.read_text().count("run") == 2
    assert state.calls[-1].auth == "Bearer t2"


def test_a_failing_token_command_raises_credential_error(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder]) -> None:
    """A command that fails says so, with its last error line, before any request."""
    state, _ = server
    with pytest.raises(CredentialError, match=r"status 3 .session expired"):
        make(key=ApiKey(command="echo 'session expired' >&2; exit 3")).embed(TEXTS[:1])
    assert state.calls == []


def test_azure_style_key_header_and_api_version(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """key_header="api-key" sends the bare key in `api-key`; api_version goes in the query."""
    state, _ = server
    monkeypatch.setenv("GRISTMILL_TEST_AZURE_KEY", "azure-key")
    state.keys = {"azure-key"}
    make(key=ApiKey(env="GRISTMILL_TEST_AZURE_KEY"), key_header="api-key",
         api_version="2024-10-21").embed(TEXTS[:1])
    call = state.calls[0]
    assert (call.api_key, call.auth, call.query) == (
        "azure-key", None, {"api-version": ["2024-10-21"]})


def test_a_rejected_request_is_a_config_error_and_not_retried(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder]) -> None:
    """A 400 (unknown model) is the settings' fault: one request, a ConfigError."""
    state, _ = server
    state.script = [(400, {})]
    with pytest.raises(ConfigError, match=r"HTTP 400.*check embed_url, embed_model"):
        make().embed(TEXTS[:1])
    assert len(state.calls) == 1


def test_the_request_budget_makes_calls_wait(
        server: tuple[FakeOpenAI, str], make: Callable[..., OpenAIEmbedder]) -> None:
    """Two requests per 2 s window: the third of four requests waits for the window."""
    state, _ = server
    embedder = make(budget=RateBudget(requests=2, period=2), request_inputs=1,
                    concurrency=1)
    started = time.monotonic()
    embedder.embed(TEXTS[:4])
    assert time.monotonic() - started >= 1.9
    assert len(state.calls) == 4


def test_the_token_budget_makes_calls_wait() -> None:
    """A token budget spent by one request holds the next until the window moves."""
    budget = RateBudget(tokens=100, period=1)
    assert budget.acquire(80) < 0.1
    assert budget.acquire(80) >= 0.5


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After as delta-seconds or an HTTP date; unreadable means none."""
    assert retry_after_seconds("3") == 3.0
    now = 1_700_000_000.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:25 GMT", now=now) == pytest.approx(5.0)
    assert retry_after_seconds("soon") is None


def test_make_embedder_builds_it_from_settings(server: tuple[FakeOpenAI, str]) -> None:
    """embedder = openai with embed_url and embed_model gives a working OpenAIEmbedder;
    without embed_url it is a ConfigError naming the setting."""
    _, url = server
    embedder = make_embedder(Settings(embedder="openai", embed_url=url,
                                      embed_model="minilm-test", embed_dimensions=64,
                                      embed_api_key_env="GRISTMILL_TEST_NO_SUCH_VARIABLE"))
    assert isinstance(embedder, OpenAIEmbedder)
    try:
        assert embedder.embed(["hello"]).shape == (1, 64)
    finally:
        embedder.close()
    with pytest.raises(ConfigError, match="GRISTMILL_EMBED_URL"):
        make_embedder(Settings(embedder="openai", embed_model="m"))


def test_a_refused_credential_pauses_the_job_and_a_resume_finishes_it(
        server: tuple[FakeOpenAI, str], tmp_path: Path) -> None:
    """A job whose embedding key is refused (also after re-reading it) pauses with the
    reason, its items keyword-searchable; once the key file holds a good key, running
    the same ingest again resumes it: every vector stored, nothing extracted twice."""
    from gristmill.knowledge_base import KnowledgeBase

    state, url = server
    state.keys = {"new-key"}
    key = tmp_path / "key"
    key.write_text("old-key\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS[:6]):
        (docs / f"{i}.txt").write_text(text)
    settings = {"embedder": "openai", "embed_url": url, "embed_model": "minilm-test",
                "embed_api_key_file": key, "workers": 1}
    with KnowledgeBase.open(tmp_path / "home", **settings) as kb:
        report = kb.ingest([docs])
        assert report.state == "paused"
        assert report.reason is not None and str(key) in report.reason
        [job] = kb.jobs.recent(limit=1)
        assert job.reason == report.reason and job.to_dict()["reason"] == report.reason
        assert report.items["extracted"] == 6 and kb.search("sourdough", mode="keyword")
        key.write_text("new-key\n")
        resumed = kb.ingest([docs])
        assert (resumed.state, resumed.job_id, resumed.processed) == (
            "succeeded", report.job_id, 0)
        assert resumed.items["indexed"] == 6
        assert kb.status()["embedding_cache"]["misses"] == 6
        [job] = kb.jobs.recent(limit=1)
        assert job.reason is None

"""A local stand-in for the OpenAI Files and Vector Stores API, over a real socket.

It implements the endpoints ``gristmill sync openai`` uses, as the API reference
documents them:

- ``POST /v1/files`` (multipart, ``purpose``), ``DELETE /v1/files/{id}``;
- ``POST /v1/vector_stores``, ``GET /v1/vector_stores/{id}``;
- ``POST /v1/vector_stores/{id}/file_batches`` (``file_ids``, or ``files`` with
  ``attributes``), ``GET .../file_batches/{batch_id}`` and ``.../{batch_id}/files``;
- ``GET /v1/vector_stores/{id}/files``, ``DELETE /v1/vector_stores/{id}/files/{file_id}``;

with the documented JSON objects, list pages (``limit``, ``order``, ``after``,
``has_more``, ``first_id``, ``last_id``, ``filter``) and error shape
(``{"error": {"message", "type", "param", "code"}}``). A batch is ``in_progress`` when
created and ``completed`` when next read; a file whose extension file search cannot read
ends ``failed`` with ``last_error.code = "unsupported_file"``, as on the real service.

Tests script what it answers first (a 429 with ``Retry-After``), slow it down
(``delay``), and look at what it holds.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY = "sk-test-key"
# File search's supported extensions (a subset of the documented list).
SUPPORTED = (".txt", ".md", ".pdf", ".docx", ".pptx", ".html", ".json", ".py", ".java")


@dataclass
class FakeOpenAI:
    """What the server holds and saw."""

    url: str = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: store id -> its vector store files, in the order they were added.
    store_files: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Answers given before the normal ones: (status, headers).
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0  # seconds every request waits first
    page_cap: int = 100  # the most a list page holds (the API's is 100)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def held(self, store: str) -> list[dict[str, Any]]:
        """The vector store files of ``store``, oldest first."""
        with self.lock:
            return list(self.store_files[store].values())

    def count(self, method: str, prefix: str) -> int:
        """Requests seen of ``method`` on paths starting with ``prefix``."""
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))


def _error(status: int, message: str, kind: str = "invalid_request_error",
           code: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request on stderr would bury the test's own output

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with fake.lock:
            fake.requests.append((method, parts.path))
            scripted = fake.script.pop(0) if fake.script else None
        if fake.delay:
            time.sleep(fake.delay)
        if scripted is not None:
            status, headers = scripted
            self._send(status, _error(status, "Rate limit reached", "requests",
                                      "rate_limit_exceeded")[1], headers)
            return
        if self.headers.get("authorization") != f"Bearer {KEY}":
            self._send(*_error(401, "Incorrect API key provided", code="invalid_api_key"))
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with fake.lock:
            status, answer = _route(fake, method, parts.path.removeprefix("/v1"), query,
                                    body, self.headers.get("content-type", ""))
        self._send(status, answer)

    def _send(self, status: int, answer: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI


def _route(fake: FakeOpenAI, method: str, path: str, query: dict[str, str], body: bytes,
           content_type: str) -> tuple[int, dict[str, Any]]:
    parts = [p for p in path.split("/") if p]
    if parts == ["files"] and method == "POST":
        return _upload(fake, body, content_type)
    if len(parts) == 2 and parts[0] == "files" and method == "DELETE":
        if fake.files.pop(parts[1], None) is None:
            return _error(404, f"No such File object: {parts[1]}")
        fake.contents.pop(parts[1], None)
        return 200, {"id": parts[1], "object": "file", "deleted": True}
    if parts == ["vector_stores"] and method == "POST":
        return _create_store(fake, json.loads(body or b"{}"))
    if len(parts) < 2 or parts[0] != "vector_stores":
        return _error(404, f"Invalid URL ({method} {path})")
    store = parts[1]
    if store not in fake.stores:
        return _error(404, f"No vector store found with id '{store}'.")
    rest = parts[2:]
    if not rest and method == "GET":
        return 200, fake.stores[store]
    if rest == ["file_batches"] and method == "POST":
        return _create_batch(fake, store, json.loads(body or b"{}"))
    if len(rest) >= 2 and rest[0] == "file_batches" and method == "GET":
        batch = fake.batches.get(rest[1])
        if batch is None or batch["vector_store_id"] != store:
            return _error(404, f"No file batch found with id '{rest[1]}'.")
        _finish(fake, batch)
        if len(rest) == 2:
            return 200, _public(batch)
        if rest[2:] == ["files"]:
            wanted = set(batch["_file_ids"])
            held = [f for f in fake.store_files[store].values() if f["id"] in wanted]
            return 200, _page(held, query, fake.page_cap)
    if rest == ["files"] and method == "GET":
        return 200, _page(list(fake.store_files[store].values()), query, fake.page_cap)
    if len(rest) == 2 and rest[0] == "files" and method == "DELETE":
        if fake.store_files[store].pop(rest[1], None) is None:
            return _error(404, f"No file found with id '{rest[1]}' in vector store "
                          f"'{store}'.")
        return 200, {"id": rest[1], "object": "vector_store.file.deleted", "deleted": True}
    return _error(404, f"Invalid URL ({method} {path})")


def _upload(fake: FakeOpenAI, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    if not content_type.startswith("multipart/form-data"):
        return _error(400, "Expected multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"content-type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    if "purpose" not in fields or "file" not in fields:
        return _error(400, "Missing required parameter: 'purpose' and 'file'.")
    purpose = fields["purpose"][1].decode()
    filename, content = fields["file"]
    file_id = fake.new_id("file-")
    fake.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content),
                           "created_at": int(time.time()), "filename": filename or "file",
                           "purpose": purpose}
    fake.contents[file_id] = content
    return 200, fake.files[file_id]


def _create_store(fake: FakeOpenAI, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    store = fake.new_id("vs_")
    fake.stores[store] = {
        "id": store, "object": "vector_store", "created_at": int(time.time()),
        "name": body.get("name"), "usage_bytes": 0,
        "file_counts": {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0,
                        "total": 0},
        "status": "completed", "expires_after": None, "expires_at": None,
        "last_active_at": int(time.time()), "metadata": body.get("metadata") or {}}
    fake.store_files[store] = {}
    return 200, fake.stores[store]


def _create_batch(fake: FakeOpenAI, store: str, body: dict[str, Any]
                  ) -> tuple[int, dict[str, Any]]:
    if ("files" in body) == ("file_ids" in body):
        return _error(400, "Provide exactly one of 'file_ids' and 'files'.")
    entries = body.get("files") or [{"file_id": f, "attributes": body.get("attributes")}
                                    for f in body["file_ids"]]
    if not 1 <= len(entries) <= 2000:
        return _error(400, "A batch holds 1 to 2000 files.")
    for entry in entries:
        if entry["file_id"] not in fake.files:
            return _error(404, f"No file found with id '{entry['file_id']}'.")
    batch_id = fake.new_id("vsfb_")
    for entry in entries:
        fake.store_files[store][entry["file_id"]] = {
            "id": entry["file_id"], "object": "vector_store.file", "usage_bytes": 0,
            "created_at": int(time.time()), "vector_store_id": store,
            "status": "in_progress", "last_error": None,
            "attributes": entry.get("attributes") or {},
            "chunking_strategy": {"type": "static", "static": {
                "max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}}
    fake.batches[batch_id] = {
        "id": batch_id, "object": "vector_store.files_batch",
        "created_at": int(time.time()), "vector_store_id": store, "status": "in_progress",
        "file_counts": {"in_progress": len(entries), "completed": 0, "failed": 0,
                        "cancelled": 0, "total": len(entries)},
        "_file_ids": [e["file_id"] for e in entries]}
    return 200, _public(fake.batches[batch_id])


def _finish(fake: FakeOpenAI, batch: dict[str, Any]) -> None:
    """Process a batch's files (on its first read after creation)."""
    if batch["status"] != "in_progress":
        return
    counts = batch["file_counts"]
    for file_id in batch["_file_ids"]:
        held = fake.store_files[batch["vector_store_id"]].get(file_id)
        if held is None or held["status"] != "in_progress":
            continue
        name = fake.files.get(file_id, {}).get("filename", "")
        if name.lower().endswith(SUPPORTED):
            held["status"] = "completed"
            held["usage_bytes"] = len(fake.contents.get(file_id, b""))
            counts["completed"] += 1
        else:
            held["status"] = "failed"
            held["last_error"] = {"code": "unsupported_file",
                                  "message": f"The file type of {name} is not supported."}
            counts["failed"] += 1
        counts["in_progress"] -= 1
    batch["status"] = "completed"


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _page(rows: list[dict[str, Any]], query: dict[str, str], cap: int) -> dict[str, Any]:
    """A list page as the API pages: ``order`` (default desc), ``after``/``before``
    cursors, ``limit`` (1-100, default 20), ``filter`` by status."""
    if "filter" in query:
        rows = [r for r in rows if r["status"] == query["filter"]]
    if query.get("order", "desc") == "desc":
        rows = rows[::-1]
    ids = [r["id"] for r in rows]
    if "after" in query and query["after"] in ids:
        rows = rows[ids.index(query["after"]) + 1:]
    if "before" in query and query["before"] in ids:
        rows = rows[:ids.index(query["before"])]
    limit = min(max(int(query.get("limit", 20)), 1), 100, cap)
    data = rows[:limit]
    return {"object": "list", "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(rows) > limit}


@contextmanager
def serving() -> Iterator[FakeOpenAI]:
    """The fake on an ephemeral 127.0.0.1 port (``fake.url`` is its ``/v1``), stopped
    after."""
    fake = FakeOpenAI()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

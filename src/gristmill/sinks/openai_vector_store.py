"""An OpenAI vector store as a sink: ``gristmill sync openai``.

Each item whose text is indexed becomes one file in the store (its extracted text, or
with ``original=True`` the file itself), with ``item_id``, ``source`` and ``collection``
as attributes. The sync is idempotent and resumable through ``sink_files``
(:mod:`gristmill.catalog.sinks`): an unchanged item (same sha256 of what would be
uploaded) is not uploaded again, a changed one gets a new file that replaces the old one,
a deleted one (or one that lost its text) is removed from the store and from Files.

The call chain reads ``sync_openai -> _Sync.run -> _recover, _remove_gone, _sync_page
-> _attach``; every HTTP call goes through :class:`VectorStoreApi`, which retries 429,
5xx, timeouts and dropped connections with backoff (at least the server's Retry-After)
and keeps to a requests-per-minute budget: the pieces the remote embedders use
(:mod:`gristmill.embed.remote`, :mod:`gristmill.embed.credentials`).

Endpoints used (any OpenAI-compatible base URL): ``POST /files``, ``POST
/vector_stores``, ``GET /vector_stores/{id}``, ``POST /vector_stores/{id}/file_batches``, ``GET
/vector_stores/{id}/file_batches/{batch}`` and ``.../files``, ``GET
/vector_stores/{id}/files``, ``DELETE /vector_stores/{id}/files/{file}``, ``DELETE
/files/{file}``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gristmill.catalog.backend import CatalogDatabase
from gristmill.catalog.sinks import SinkFiles, SinkFileState, SyncableItem
from gristmill.config import Settings
from gristmill.embed.credentials import ApiKey
from gristmill.embed.remote import RateBudget, Retryable, RetryPolicy, retry_after_seconds
from gristmill.errors import ConfigError, CredentialError, GristmillError

__all__ = ["SinkRejected", "SinkUnavailable", "SyncReport", "VectorStoreApi", "sync_openai"]

SINK = "openai"
_REFUSED = (401, 403)
_TIMEOUT = 300.0  # an upload of a large original takes a while
_PAGE = 100  # list pages (the API's maximum)
# How long a file batch may stay in progress before the sync gives up (resumable: its
# files are pending in the catalog, removed and uploaded again next time).
_BATCH_WAIT = 3600.0
_ATTRIBUTE_CHARS = 512  # the API's longest attribute value
_KEEP_NAME = (".txt", ".md")


class SinkUnavailable(GristmillError):
    """A sink's service kept failing (429, 5xx, timeouts) after its retries, or a file
    batch never finished: run the sync again later; it resumes."""

    http_status = 503


class SinkRejected(ConfigError):
    """The service refused a request (4xx): for an upload, that item's problem (the
    sync goes on); otherwise the settings' (a wrong store id or base URL)."""

    http_status = 400
    exit_code = 2

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# An upload refused with these is the file's problem (too large, a type the store cannot
# read), not the sync's: the item fails, the others go on.
_FILE_REFUSED = (400, 413, 415, 422)


@dataclass
class SyncReport:
    """What a sync did: counts of items, and why those that failed did."""

    vector_store: str
    uploaded: int = 0  # new in the store
    replaced: int = 0  # changed: a new file replaced the old
    deleted: int = 0  # gone from the knowledge base (or without text): removed
    unchanged: int = 0
    failed: int = 0
    seconds: float = 0.0
    #: (source, reason) of each failed item, first 100.
    failures: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` shape."""
        return {"vector_store": self.vector_store, "uploaded": self.uploaded,
                "replaced": self.replaced, "deleted": self.deleted,
                "unchanged": self.unchanged, "failed": self.failed}

    def _fail(self, source: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < 100:
            self.failures.append((source, reason))


class VectorStoreApi:
    """The OpenAI Files and Vector Stores endpoints a sync uses.

    Args:
        base_url: ``https://api.openai.com/v1`` or any compatible server's.
        key_env: the environment variable holding the API key (none set: no key sent).
        budget: requests per minute.
        max_retries: retries after a 429, 5xx, timeout or connection error.
        backoff: the first retry waits up to this many seconds (then doubling).
    """

    def __init__(self, base_url: str, *, key_env: str = "OPENAI_API_KEY",
                 budget: RateBudget | None = None, max_retries: int = 6,
                 backoff: float = 0.5, timeout: float = _TIMEOUT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"sink_openai_base_url {base_url!r} is not an http(s) URL: "
                              "write it as https://HOST/v1 (GRISTMILL_SINK_OPENAI_BASE_URL)")
        self._base = base_url.rstrip("/")
        self._key_env = key_env
        self._key = ApiKey(env=key_env)
        self._budget = budget if budget is not None else RateBudget()
        self._retries = RetryPolicy(max_retries, self._base, backoff=backoff,
                                    unavailable=SinkUnavailable,
                                    setting="GRISTMILL_SINK_OPENAI_MAX_RETRIES")
        self._client = httpx.Client(timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> VectorStoreApi:
        """The API the ``sink_openai_*`` settings describe."""
        return cls(settings.sink_openai_base_url,
                   key_env=settings.sink_openai_api_key_env,
                   budget=RateBudget(settings.sink_openai_rpm),
                   max_retries=settings.sink_openai_max_retries)

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def create_store(self, name: str) -> str:
        """Create a vector store named ``name``; its id."""
        return str(self._call("POST", "/vector_stores", json={"name": name})["id"])

    def check_store(self, store: str) -> None:
        """Make sure ``store`` exists, before anything is uploaded for it.

        Raises:
            ConfigError: there is no such vector store (for this key).
        """
        if self._call("GET", f"/vector_stores/{store}", missing_ok=True) is None:
            raise ConfigError(f"there is no vector store {store} at {self._base} (for "
                              "this key): check --vector-store, or make one with --create")

    def upload(self, name: str, content: bytes | Path) -> str:
        """Upload a file (``purpose=assistants``); its id. A file is streamed from disk.

        Raises:
            ConfigError: the service refused it (``status`` 400, 413, 415 or 422: this
                file's problem, too large or of a type it cannot read).
        """
        return str(self._call("POST", "/files", upload=(name, content))["id"])

    def attach(self, store: str, files: Sequence[tuple[str, dict[str, Any]]]
               ) -> dict[str, Any]:
        """Start a file batch adding ``files`` (file id, attributes) to ``store``."""
        body = {"files": [{"file_id": f, "attributes": a} for f, a in files]}
        answer: dict[str, Any] = self._call("POST", f"/vector_stores/{store}/file_batches",
                                            json=body)
        return answer

    def batch(self, store: str, batch_id: str) -> dict[str, Any]:
        """A file batch as it is now (``status``: in_progress, completed, cancelled,
        failed)."""
        answer: dict[str, Any] = self._call(
            "GET", f"/vector_stores/{store}/file_batches/{batch_id}")
        return answer

    def batch_files(self, store: str, batch_id: str) -> Iterator[dict[str, Any]]:
        """The vector store files of a batch, with their ``status`` and ``last_error``."""
        return self._pages(f"/vector_stores/{store}/file_batches/{batch_id}/files")

    def store_files(self, store: str) -> Iterator[dict[str, Any]]:
        """Every file in ``store`` (vector store file objects, with ``attributes``),
        page by page."""
        return self._pages(f"/vector_stores/{store}/files")

    def detach(self, store: str, file_id: str) -> bool:
        """Remove a file from ``store``; False if it was not there."""
        return self._call("DELETE", f"/vector_stores/{store}/files/{file_id}",
                          missing_ok=True) is not None

    def delete_file(self, file_id: str) -> bool:
        """Delete an uploaded file; False if there was none."""
        return self._call("DELETE", f"/files/{file_id}", missing_ok=True) is not None

    def remove(self, store: str, file_id: str) -> None:
        """Take a file out of ``store`` and delete it (either may be gone already)."""
        self.detach(store, file_id)
        self.delete_file(file_id)

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": _PAGE, "order": "asc"}
        while True:
            page = self._call("GET", path, params=params)
            yield from page.get("data", [])
            if not page.get("has_more") or not page.get("last_id"):
                return
            params["after"] = page["last_id"]

    def _call(self, method: str, path: str, *, json: Any = None,
              params: dict[str, Any] | None = None,
              upload: tuple[str, bytes | Path] | None = None,
              missing_ok: bool = False) -> Any:
        url = self._base + path

        def attempt() -> Any:
            # Each try spends budget: a retried request is a request to the server.
            self._budget.acquire(0)
            response = self._send_with_key(method, url, json, params, upload)
            if response.status_code == 404 and missing_ok:
                return None
            if response.status_code >= 400:
                raise SinkRejected(f"{method} {url} was refused ({_answer(response)}): check "
                                "the vector store id and sink_openai_base_url",
                                response.status_code)
            try:
                return response.json()
            except ValueError:
                raise SinkRejected(f"{url} did not answer JSON ({response.text[:200]!r}): "
                                "check sink_openai_base_url", response.status_code) from None

        return self._retries.call(attempt)

    def _send_with_key(self, method: str, url: str, json: Any,
                       params: dict[str, Any] | None,
                       upload: tuple[str, bytes | Path] | None) -> httpx.Response:
        generation, key = self._key.current()
        response = self._send(method, url, json, params, upload, key)
        if response.status_code in _REFUSED:
            # The key may have rotated: read it again and try once more. A second
            # refusal is the credential's fault, not a passing one.
            _, key = self._key.refresh(generation)
            response = self._send(method, url, json, params, upload, key)
            if response.status_code in _REFUSED:
                raise CredentialError(
                    f"the key in ${self._key_env}", f"was refused by {url} "
                    f"({_answer(response)}), also after it was read again",
                    f"set {self._key_env} to a valid key (GRISTMILL_SINK_OPENAI_API_KEY_ENV "
                    "names the variable), then run the sync again")
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(_answer(response),
                            retry_after_seconds(response.headers.get("retry-after")))
        return response

    def _send(self, method: str, url: str, json: Any, params: dict[str, Any] | None,
              upload: tuple[str, bytes | Path] | None, key: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        try:
            if upload is None:
                return self._client.request(method, url, json=json, params=params,
                                            headers=headers)
            name, content = upload
            if isinstance(content, bytes):
                return self._client.post(url, headers=headers, data={"purpose": "assistants"},
                                         files={"file": (name, content)})
            # Opened afresh on each try: a retry sends the whole file again.
            with content.open("rb") as stream:
                return self._client.post(url, headers=headers, data={"purpose": "assistants"},
                                         files={"file": (name, stream)})
        except httpx.TimeoutException as exc:
            raise Retryable(f"no answer within the timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None


def sync_openai(db: CatalogDatabase, settings: Settings, *, vector_store: str | None = None,
                create: str | None = None, collection: str | None = None,
                original: bool = False, progress: Callable[[str], None] | None = None,
                api: VectorStoreApi | None = None) -> SyncReport:
    """Make the vector store hold exactly the knowledge base's indexed items, one file
    each: upload new ones, replace changed ones, remove deleted ones.

    Args:
        db: the catalog.
        settings: its ``sink_openai_*`` settings say where and how.
        vector_store: the id of the store to sync (``vs_...``).
        create: or the name of a store to create first (its id is in the report, and
            given to ``progress`` at once: sync to that id from then on).
        collection: only this collection's items.
        original: upload each item's original file (not its extracted text) where it
            is a file on this machine.
        progress: called with a line after each batch.
        api: the API to use (default: from ``settings``; closed after).

    Raises:
        ConfigError: neither or both of ``vector_store`` and ``create``, or the service
            refused a request (a wrong store id).
        CredentialError: the service refused the key.
        SinkUnavailable: it kept failing; run the sync again later (it resumes).
    """
    if (vector_store is None) == (create is None):
        raise ConfigError("name the vector store to sync: --vector-store ID, or "
                          "--create NAME for a new one")
    own = api is None
    client = api if api is not None else VectorStoreApi.from_settings(settings)
    say = progress if progress is not None else (lambda line: None)
    try:
        if vector_store is None:
            assert create is not None
            vector_store = client.create_store(create)
            say(f"created vector store {vector_store} ({create}): sync with "
                f"--vector-store {vector_store} from now on")
        else:
            client.check_store(vector_store)
        return _Sync(client, SinkFiles(db, SINK, vector_store), collection, original,
                     settings.sink_openai_batch_files, say).run()
    finally:
        if own:
            client.close()


class _Sync:
    """One sync of one store."""

    def __init__(self, api: VectorStoreApi, rows: SinkFiles, collection: str | None,
                 original: bool, batch_files: int, say: Callable[[str], None]) -> None:
        self.api = api
        self.rows = rows
        self.store = rows.store_id
        self.collection = collection
        self.original = original
        self.batch_files = batch_files
        self.say = say
        self.report = SyncReport(rows.store_id)

    def run(self) -> SyncReport:
        started = time.monotonic()
        self._recover()
        self._remove_gone()
        after = 0
        done = 0
        while page := self.rows.syncable(after, self.collection, self.batch_files):
            self._sync_page(page)
            after = page[-1].id
            done += len(page)
            r = self.report
            self.say(f"{done:,} items: {r.uploaded} uploaded, {r.replaced} replaced, "
                     f"{r.unchanged} unchanged, {r.failed} failed")
        self.report.seconds = time.monotonic() - started
        return self.report

    def _recover(self) -> None:
        """Remove the files a killed sync left pending or stale. A pending file's batch
        may or may not have run: removing it (its item is uploaded again below) is what
        guarantees one file per item."""
        while unfinished := self.rows.unfinished():
            for row in unfinished:
                if row.stale_file_id:
                    self.api.remove(self.store, row.stale_file_id)
                    self.rows.drop_stale(row.row_id)
                if row.pending_file_id:
                    self.api.remove(self.store, row.pending_file_id)
                    if row.file_id is None:
                        self.rows.forget(row.row_id)
                    else:
                        self.rows.drop_pending(row.row_id)

    def _remove_gone(self) -> None:
        while gone := self.rows.gone(self.collection):
            for row in gone:
                # Files first, the row after: a kill in between finds the row again,
                # and removing a file already gone is a 404 taken as done.
                for file_id in row.remote_files:
                    self.api.remove(self.store, file_id)
                self.rows.forget(row.row_id)
                if row.file_id is not None:
                    self.report.deleted += 1

    def _sync_page(self, page: Sequence[SyncableItem]) -> None:
        known = self.rows.of_items([item.id for item in page])
        batch: list[tuple[SyncableItem, str, dict[str, Any]]] = []
        replacing: set[int] = set()
        for item in page:
            row = known.get(item.id)
            content = self._content(item)
            if isinstance(content, str):
                self.report._fail(item.source, content)
                continue
            name, body, sha = content
            if row is not None and row.state == SinkFileState.SYNCED and row.sha256 == sha:
                self.report.unchanged += 1
                continue
            try:
                file_id = self.api.upload(name, body)
            except SinkRejected as exc:
                if exc.status not in _FILE_REFUSED:
                    raise
                self.report._fail(item.source, f"the upload was refused: {exc}")
                continue
            # Recorded before the store hears of it: from here on a kill leaves a file
            # the next sync knows to remove.
            self.rows.record_upload(item, file_id, sha)
            batch.append((item, file_id, _attributes(item)))
            if row is not None and row.file_id is not None:
                replacing.add(item.id)
        if not batch:
            return
        attached, refused = self._attach(batch)
        self.rows.settle(attached, refused)
        for item_id in attached:
            if item_id in replacing:
                self.report.replaced += 1
            else:
                self.report.uploaded += 1
        sources = {item.id: item.source for item, _, _ in batch}
        for item_id, reason in refused:
            self.report._fail(sources[item_id], reason)
        # Only now, with the new files committed, do the old versions go.
        for row in self.rows.of_items(list(sources)).values():
            if row.stale_file_id:
                self.api.remove(self.store, row.stale_file_id)
                self.rows.drop_stale(row.row_id)

    def _attach(self, batch: Sequence[tuple[SyncableItem, str, dict[str, Any]]]
                ) -> tuple[list[int], list[tuple[int, str]]]:
        """Add the uploaded files as one file batch, wait for it: the items whose files
        the store took, and those it refused (with why)."""
        answer = self.api.attach(self.store, [(f, a) for _, f, a in batch])
        deadline = time.monotonic() + _BATCH_WAIT
        wait = 0.1
        while answer.get("status") == "in_progress":
            if time.monotonic() > deadline:
                raise SinkUnavailable(
                    f"file batch {answer.get('id')} of {self.store} is still in progress "
                    f"after {_BATCH_WAIT:.0f} s; run the sync again later (it resumes)")
            time.sleep(wait)
            wait = min(wait * 2, 5.0)
            answer = self.api.batch(self.store, str(answer["id"]))
        statuses = {str(f["id"]): f for f in self.api.batch_files(self.store,
                                                                    str(answer["id"]))}
        attached: list[int] = []
        refused: list[tuple[int, str]] = []
        for item, file_id, _ in batch:
            found = statuses.get(file_id)
            if found is not None and found.get("status") == "completed":
                attached.append(item.id)
                continue
            error = (found or {}).get("last_error") or {}
            reason = (f"the vector store refused it ({error.get('code', 'error')}: "
                      f"{error.get('message', '')})" if error else
                      f"the file batch ended {answer.get('status')} without it")
            refused.append((item.id, reason))
        return attached, refused

    def _content(self, item: SyncableItem) -> tuple[str, bytes | Path, str] | str:
        """(file name, what to upload, its sha256), or why there is nothing to."""
        if self.original and item.parent_id is None:
            path = Path(item.source)
            if path.is_file():
                return self._original(item, path)
        text = self.rows.text(item.id)
        if not text.strip():
            return "it has no text"
        body = text.encode("utf-8")
        name = _base_name(item.source)
        if not name.lower().endswith(_KEEP_NAME):
            name += ".txt"  # the store reads a file by its extension
        return name, body, hashlib.sha256(body).hexdigest()

    @staticmethod
    def _original(item: SyncableItem, path: Path) -> tuple[str, Path, str] | str:
        # The catalog's sha256 says what was indexed; a file changed since would put
        # other content in the store than in the index.
        digest = hashlib.sha256()
        try:
            with path.open("rb") as stream:
                while block := stream.read(1 << 20):
                    digest.update(block)
        except OSError as exc:
            return f"its original cannot be read ({exc.strerror or exc})"
        if item.sha256 is not None and digest.hexdigest() != item.sha256:
            return "its original changed since it was ingested: ingest again, then sync"
        return path.name, path, digest.hexdigest()


def _attributes(item: SyncableItem) -> dict[str, Any]:
    return {"item_id": item.id, "source": item.source[:_ATTRIBUTE_CHARS],
            "collection": item.collection[:_ATTRIBUTE_CHARS]}


def _base_name(source: str) -> str:
    """The last part of a path, a URL or a member name (``mail.eml!/a.pdf`` -> ``a.pdf``)."""
    return re.split(r"[/\\!]", source.rstrip("/"))[-1] or "item"


def _answer(response: httpx.Response) -> str:
    """The status and the start of the body: what the server said, for a message."""
    text = " ".join(response.text.split())[:300]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


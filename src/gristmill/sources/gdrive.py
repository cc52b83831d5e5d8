"""Google Drive as a source: list a folder, a shared drive or My Drive; download; follow changes.

A root is ``gdrive://<folderId>``, ``gdrive://<sharedDriveId>`` or ``gdrive://my-drive``;
each file is named ``gdrive://<fileId>/<path>``, the path (segments percent-encoded) being
where it sits under the root, so a name stays unique when two files share a title.

The Drive v3 API is reached through ``google-api-python-client`` over an
:class:`google_auth_httplib2.AuthorizedHttp`, which adds the access token to each request
and fetches a new one before it expires, or when the server answers 401: a job that lists
for hours outlives any one token.

Retries are ours (tenacity), not the library's ``num_retries``: the library sleeps up to
``2**n`` seconds with no ceiling and ignores ``Retry-After``, and its last failure is a raw
``HttpError``. Here the wait is full-jitter exponential with a cap, never shorter than the
server's ``Retry-After``, and what is left after the last try is one of gristmill's errors
(:class:`~gristmill.errors.SourceError` for a listing, an item error for a download).
"""

from __future__ import annotations

import io
import json
import logging
import operator
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar, cast
from urllib.parse import quote

import httplib2
from google.auth.credentials import Credentials
from google.auth.exceptions import RefreshError, TransportError
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseDownload
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from gristmill.errors import (
    ConfigError,
    CredentialError,
    ExtractionError,
    LimitExceeded,
    SourceError,
    TransientError,
    Unsupported,
)

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["DriveChange", "DriveChanges", "DriveClient", "DriveFile", "DriveOptions",
           "ExportFormat", "load_credentials", "parse_root"]

log = logging.getLogger(__name__)

T = TypeVar("T")

ExportFormat = Literal["office", "pdf"]

SCHEME = "gdrive://"
MY_DRIVE = "my-drive"
# Read-only: gristmill never writes to a user's Drive.
SCOPES = ("https://www.googleapis.com/auth/drive.readonly",)
GOOGLE_ENDPOINT = "https://www.googleapis.com/drive/v3/"

_FOLDER = "application/vnd.google-apps.folder"
_SHORTCUT = "application/vnd.google-apps.shortcut"
_GOOGLE_TYPES = "application/vnd.google-apps."
_PDF = "application/pdf"
# What each Docs Editors type is exported as ("office"); with "pdf" all of them are PDF.
_OFFICE_EXPORTS = {
    "application/vnd.google-apps.document":
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    "application/vnd.google-apps.spreadsheet":
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
    "application/vnd.google-apps.presentation":
        ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
    "application/vnd.google-apps.drawing": (_PDF, ".pdf"),
}
_FILE_FIELDS = ("id, name, mimeType, md5Checksum, version, modifiedTime, size, parents, "
                "trashed, driveId, shortcutDetails(targetId, targetMimeType)")
_LIST_FIELDS = f"nextPageToken, files({_FILE_FIELDS})"
_CHANGE_FIELDS = (f"nextPageToken, newStartPageToken, "
                  f"changes(changeType, fileId, removed, time, file({_FILE_FIELDS}))")
# The reasons Drive gives a 403 that is a quota, not a refusal (Drive's "Resolve errors").
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
# A Retry-After beyond this is a quota reset hours away: capped, so the retries run out
# and the run says so instead of hanging silently.
_MAX_RETRY_AFTER = 300.0
# Folders whose name and parents are remembered while changes are placed under the root.
_FOLDER_CACHE = 4096
# Deeper than any real tree: a parents chain this long is a loop.
_MAX_DEPTH = 256

# HttpRequest's send method, called by name in this one place: the layer check
# (tests/test_layers.py) takes a call of that method name for SQL, and this one is HTTP.
_send: Callable[[Any], Any] = operator.methodcaller("execute")


@dataclass(frozen=True, slots=True)
class DriveFile:
    """One file under a root: what is listed, and what :meth:`DriveClient.download` reads."""

    id: str
    name: str
    mime_type: str
    #: Where it sits under the root, segments percent-encoded; an exported Docs Editors
    #: file ends with its export's extension (``Plan.docx``), so it is extracted as one.
    path: str
    size: int | None = None
    md5: str | None = None
    version: str | None = None
    modified: str | None = None
    #: The format it is exported as (Docs Editors files), else None (downloaded as is).
    export_mime: str | None = None

    @property
    def url(self) -> str:
        """The item's name: ``gdrive://<fileId>/<path>``."""
        return f"{SCHEME}{self.id}/{self.path}"

    @property
    def change_token(self) -> str:
        """Changes when the content does: the MD5 where Drive keeps one, else the version.

        A Docs Editors file has no MD5; its version moves on every edit (and on some
        metadata changes, a re-export the price of never missing an edit). The export
        format is part of the token, so changing the setting re-exports.
        """
        if self.md5:
            return f"md5:{self.md5}"
        token = f"v:{self.version or ''}:{self.modified or ''}"
        return f"{token}:{self.export_mime}" if self.export_mime else token


@dataclass(frozen=True, slots=True)
class DriveChange:
    """One file that changed since a page token: ``file`` is None when it is gone.

    Gone means deleted, trashed, no longer shared, moved out of the root, or never in it
    (the feed covers the whole drive; Drive cannot say where a file was before): the
    caller drops the items named ``gdrive://<file_id>/...`` if it has any (for a folder,
    the items listed under it).
    """

    file_id: str
    file: DriveFile | None
    folder: bool = False


@dataclass(frozen=True, slots=True)
class DriveChanges:
    """One page of the changes feed.

    Commit the page's changes first, then save ``token``: it is where the next read
    starts (the next page's, or, when ``complete``, the token for future changes).
    """

    changes: list[DriveChange]
    token: str
    complete: bool


@dataclass(frozen=True, slots=True)
class DriveOptions:
    """The ``gdrive_*`` settings a client is built from, named as in
    :class:`~gristmill.config.Settings`: small, hashable and picklable, so a worker
    process gets them with its task (its environment may predate the caller's)."""

    gdrive_credentials_file: Path | None
    gdrive_token_uri: str | None
    gdrive_api_endpoint: str | None
    gdrive_export_format: ExportFormat
    gdrive_page_size: int
    gdrive_max_retries: int
    gdrive_retry_backoff: float
    gdrive_chunk_mb: int
    gdrive_timeout: float

    @classmethod
    def of(cls, settings: Settings | DriveOptions) -> DriveOptions:
        """The options ``settings`` hold."""
        if isinstance(settings, DriveOptions):
            return settings
        return cls(settings.gdrive_credentials_file, settings.gdrive_token_uri,
                   settings.gdrive_api_endpoint, settings.gdrive_export_format,
                   settings.gdrive_page_size, settings.gdrive_max_retries,
                   settings.gdrive_retry_backoff, settings.gdrive_chunk_mb,
                   settings.gdrive_timeout)


def parse_root(url: str) -> str:
    """The folder or shared drive id of a ``gdrive://`` root (``my-drive`` for My Drive).

    Raises:
        ConfigError: not a ``gdrive://`` URL with an id.
    """
    if not url.startswith(SCHEME):
        raise ConfigError(f"{url!r} is not a Google Drive root: write gdrive://<folderId>, "
                          "gdrive://<sharedDriveId> or gdrive://my-drive")
    ident = url[len(SCHEME):].strip("/")
    if not ident or "/" in ident:
        raise ConfigError(f"{url!r} names no single folder: write gdrive://<folderId>, "
                          "gdrive://<sharedDriveId> or gdrive://my-drive (copy the id "
                          "from the folder's address in the browser)")
    return ident


def load_credentials(path: Path, token_uri: str | None = None) -> Credentials:
    """Service-account or authorized-user (OAuth) credentials from their JSON file.

    ``token_uri`` replaces the token endpoint (Google's, else the file's): google-auth
    ignores an authorized-user file's own, so a private endpoint must be set here.

    Raises:
        ConfigError: the file is missing, unreadable or of another kind.
    """
    # Imported here: each pulls in its own crypto, and only one kind is ever used.
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    hint = ("set gdrive_credentials_file (GRISTMILL_GDRIVE_CREDENTIALS_FILE) to a "
            "service-account key or an authorized-user JSON file")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read Google credentials {path}: {exc}; {hint}") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            robot = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(SCOPES))
            robot = robot.with_token_uri(token_uri) if token_uri else robot
            return cast(Credentials, robot)
        if kind == "authorized_user":
            user = user_credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
                info, scopes=list(SCOPES))
            user = user.with_token_uri(token_uri) if token_uri else user
            return cast(Credentials, user)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"Google credentials {path} are incomplete ({exc}); {hint}") from None
    raise ConfigError(f"Google credentials {path} are of type {kind!r}, not "
                      f"'service_account' or 'authorized_user'; {hint}")


def _reason(error: HttpError) -> str:
    """The first ``errors[].reason`` of a Drive error body ('' when there is none)."""
    try:
        body = json.loads(error.content.decode("utf-8"))
        return str(body["error"]["errors"][0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _retryable(error: BaseException) -> bool:
    if isinstance(error, HttpError):
        status = error.resp.status
        return status == 429 or status >= 500 or (
            status == 403 and _reason(error) in _RATE_REASONS)
    if isinstance(error, RefreshError):
        return bool(error.retryable)  # the token endpoint's 5xx, not a refused grant
    # A dropped connection or a timeout, to the API or to the token endpoint.
    return isinstance(error, OSError | httplib2.HttpLib2Error | TransportError)


def _retry_after(error: BaseException | None) -> float:
    if not isinstance(error, HttpError):
        return 0.0
    try:
        return min(max(float(error.resp.get("retry-after", 0)), 0.0), _MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return 0.0  # an HTTP-date Retry-After: plain backoff is as good


def _describe(error: BaseException) -> str:
    if isinstance(error, HttpError):
        reason = _reason(error)
        return f"HTTP {error.resp.status}" + (f" {reason}" if reason else "")
    return f"{type(error).__name__}: {error}"


@dataclass
class _Folders:
    """Folder names and parents, remembered (boundedly) to place changed files under the root."""

    known: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    def remember(self, ident: str, name: str, parents: list[str]) -> None:
        if len(self.known) >= _FOLDER_CACHE:
            self.known.clear()  # cheaper than LRU bookkeeping; refilled on demand
        self.known[ident] = (name, parents)

    def forget(self, ident: str) -> None:
        self.known.pop(ident, None)


class DriveClient:
    """Lists, downloads and follows the changes of one Drive root.

    Not thread-safe (httplib2 is not): one client per thread. Close it (or use it as a
    context manager) to close its connections.

    Args:
        credentials: from :func:`load_credentials`.
        root: the folder id, shared drive id or ``my-drive``.
        api_endpoint: the API's base URL (``.../drive/v3/``); Google's by default.
        export_format: ``office`` (DOCX/XLSX/PPTX) or ``pdf`` for Docs Editors files.
        page_size: files per ``files.list`` / ``changes.list`` page (1-1000).
        max_retries: retries of a request Drive refused for quota, 5xx or a dropped
            connection.
        backoff: the first retry waits up to this many seconds (doubling, full jitter,
            up to ``max_backoff``).
        chunk_bytes: bytes per ranged download request.
        timeout: seconds a request may take.
    """

    def __init__(self, credentials: Credentials, root: str, *,
                 api_endpoint: str | None = None, export_format: ExportFormat = "office",
                 page_size: int = 1000, max_retries: int = 6, backoff: float = 1.0,
                 max_backoff: float = 60.0, chunk_bytes: int = 10 * 2**20,
                 timeout: float = 60.0) -> None:
        self.root = root
        self._export_format = export_format
        self._page_size = page_size
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._chunk = chunk_bytes
        self._http = AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
        # static_discovery: the v3 document bundled with the library, so building the
        # client never fetches it (and an endpoint other than Google's needs none).
        options = {"api_endpoint": api_endpoint or GOOGLE_ENDPOINT}
        self._service = build("drive", "v3", http=self._http, static_discovery=True,
                              client_options=options, cache_discovery=False)
        self._root_id: str | None = None
        self._drive_id: str | None = None
        self._folders = _Folders()

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._service.close()
        self._http.close()

    def __enter__(self) -> DriveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_settings(cls, settings: Settings | DriveOptions, root_url: str) -> DriveClient:
        """A client for ``root_url`` configured by the ``gdrive_*`` settings."""
        if settings.gdrive_credentials_file is None:
            raise ConfigError("no Google credentials: set gdrive_credentials_file "
                              "(GRISTMILL_GDRIVE_CREDENTIALS_FILE) to a service-account key "
                              "or an authorized-user JSON file")
        credentials = load_credentials(Path(settings.gdrive_credentials_file),
                                       settings.gdrive_token_uri)
        return cls(credentials,
                   parse_root(root_url), api_endpoint=settings.gdrive_api_endpoint,
                   export_format=settings.gdrive_export_format,
                   page_size=settings.gdrive_page_size,
                   max_retries=settings.gdrive_max_retries,
                   backoff=settings.gdrive_retry_backoff,
                   chunk_bytes=settings.gdrive_chunk_mb * 2**20,
                   timeout=settings.gdrive_timeout)

    # -- requests ------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        ceiling = min(self._max_backoff, self._backoff * 2 ** (state.attempt_number - 1))
        error = state.outcome.exception() if state.outcome is not None else None
        return max(random.uniform(0, ceiling), _retry_after(error))

    def _call(self, request: Callable[[], T]) -> T:
        """``request()``, retried on quota, 5xx and connection failures.

        Raises the last failure as it came (the caller translates it), and
        :class:`CredentialError` when the credentials are refused.
        """
        retrying = Retrying(stop=stop_after_attempt(self._max_retries + 1), wait=self._wait,
                            retry=retry_if_exception(_retryable), reraise=True)
        try:
            return retrying(request)
        except RefreshError as exc:
            if exc.retryable:
                # The token endpoint is down: as passing as a dropped connection.
                raise TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
            raise CredentialError(
                "the Google Drive credentials (gdrive_credentials_file)",
                f"were refused by Google's token endpoint ({exc})",
                "renew the service-account key or the authorized-user file, then run again",
            ) from None

    def _source_call(self, request: Any, what: str) -> Any:
        """A listing request: any failure left after the retries ends the listing."""
        try:
            return self._call(lambda: _send(request))
        except (HttpError, OSError, httplib2.HttpLib2Error, TransportError) as exc:
            again = (" (still, after the retries): run again later" if _retryable(exc)
                     else ": check that the credentials can read it")
            raise SourceError(f"Google Drive failed to {what} of {SCHEME}{self.root}: "
                              f"{_describe(exc)}{again}") from None

    def _drives(self) -> dict[str, Any]:
        """The parameters that make a request see shared drives (the root's, when it is one)."""
        extra: dict[str, Any] = {"supportsAllDrives": True}
        if self._drive_id:
            extra.update(includeItemsFromAllDrives=True, corpora="drive",
                         driveId=self._drive_id)
        return extra

    def _resolve_root(self) -> str:
        if self._root_id is None:
            ident = "root" if self.root == MY_DRIVE else self.root
            meta = self._source_call(self._service.files().get(
                fileId=ident, fields=_FILE_FIELDS, supportsAllDrives=True), "read the root")
            if meta.get("mimeType") != _FOLDER:
                raise SourceError(f"{SCHEME}{self.root} is a file, not a folder or a drive: "
                                  "name the folder that holds it")
            self._root_id = str(meta["id"])
            self._drive_id = meta.get("driveId")
        return self._root_id

    # -- listing -------------------------------------------------------------------------

    def _children(self, folder: str) -> Iterator[dict[str, Any]]:
        """A folder's files, page by page (only one page in memory)."""
        token: str | None = None
        while True:
            page = self._source_call(self._service.files().list(
                q=f"'{folder}' in parents and trashed = false", pageSize=self._page_size,
                pageToken=token, fields=_LIST_FIELDS, spaces="drive", **self._drives()),
                "list a folder")
            yield from page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                return

    def _entry(self, meta: dict[str, Any], path: str) -> DriveFile:
        mime = str(meta.get("mimeType", ""))
        export: str | None = None
        if mime in _OFFICE_EXPORTS:
            export, suffix = (_PDF, ".pdf") if self._export_format == "pdf" \
                else _OFFICE_EXPORTS[mime]
            path += suffix
        size = meta.get("size")
        return DriveFile(id=str(meta["id"]), name=str(meta.get("name", "")), mime_type=mime,
                         path=path, size=int(size) if size is not None else None,
                         md5=meta.get("md5Checksum"), version=meta.get("version"),
                         modified=meta.get("modifiedTime"), export_mime=export)

    def _target(self, ident: str) -> dict[str, Any] | None:
        """A shortcut's target, or None when it is gone, trashed or not shared with us."""
        try:
            meta: dict[str, Any] = self._call(lambda: _send(self._service.files().get(
                fileId=ident, fields=_FILE_FIELDS, supportsAllDrives=True)))
        except HttpError as exc:
            if exc.resp.status in (403, 404):
                log.info("shortcut target %s is not readable (%s): left out",
                         ident, _describe(exc))
                return None
            raise
        return None if meta.get("trashed") else meta

    def walk(self, start: str | None = None, prefix: str = "") -> Iterator[DriveFile]:
        """Every file under the root (or the folder ``start``), folder by folder, streamed.

        Memory holds one page and the queue (and set) of folder ids, never the listing.
        A shortcut to a file yields the target under the shortcut's path; a shortcut to
        a folder is walked once: a folder already walked is not walked again, which is
        what stops a shortcut loop.
        """
        first = start or self._resolve_root()
        queue: deque[tuple[str, str]] = deque([(first, prefix)])
        walked = {first}
        while queue:
            folder, base = queue.popleft()
            for meta in self._children(folder):
                path = base + quote(str(meta.get("name", "")), safe="")
                mime = meta.get("mimeType")
                if mime == _FOLDER:
                    self._folders.remember(meta["id"], meta.get("name", ""),
                                           meta.get("parents", []))
                    target: str | None = meta["id"]
                elif mime == _SHORTCUT:
                    details = meta.get("shortcutDetails") or {}
                    target = details.get("targetId")
                    if target in walked:
                        continue  # the loop ends here, before asking Drive anything
                    # The target is looked up first: one gone or not shared with us is
                    # left out, not a failure of the whole listing.
                    found = self._target(target) if target else None
                    if found is None or found.get("mimeType") == _SHORTCUT:
                        continue
                    if found.get("mimeType") != _FOLDER:
                        yield self._entry(found, path)
                        continue
                else:
                    yield self._entry(meta, path)
                    continue
                if target and target not in walked:
                    walked.add(target)
                    queue.append((target, path + "/"))

    # -- download ------------------------------------------------------------------------

    def file(self, url: str) -> DriveFile:
        """The file an item named ``gdrive://<fileId>/<path>`` is, as Drive has it now.

        Raises:
            ExtractionError: gone, or no longer shared.
            TransientError: Drive kept failing after the retries.
        """
        ident, _, path = url.removeprefix(SCHEME).partition("/")
        try:
            meta = self._call(lambda: _send(self._service.files().get(
                fileId=ident, fields=_FILE_FIELDS, supportsAllDrives=True)))
        except HttpError as exc:
            raise self._item_error(exc, url) from None
        except (OSError, httplib2.HttpLib2Error, TransportError) as exc:
            raise TransientError(f"Google Drive failed: {_describe(exc)}; retried on the "
                                 "next attempt", path=url) from None
        return replace(self._entry(meta, ""), path=path)

    def chunks(self, file: DriveFile, *, max_bytes: int | None = None) -> Iterator[bytes]:
        """The file's bytes (its export, for Docs Editors files), one ranged request each.

        Raises:
            Unsupported: a Google type with no export (Forms, Sites, Maps).
            LimitExceeded: larger than ``max_bytes``, or than Drive exports (10 MB).
            ExtractionError: gone, or Drive refuses to serve it (not shared, blocked).
            TransientError: Drive kept failing (quota, 5xx) after the retries.
        """
        if file.export_mime is None and file.mime_type.startswith(_GOOGLE_TYPES):
            raise Unsupported(f"Google Drive cannot export {file.mime_type} files",
                              path=file.url)
        if max_bytes is not None and file.size is not None and file.size > max_bytes:
            raise LimitExceeded(f"{file.size} bytes, over the {max_bytes} byte limit "
                                "(max_file_mb)", path=file.url)
        files = self._service.files()
        request = (files.export_media(fileId=file.id, mimeType=file.export_mime)
                   if file.export_mime else
                   files.get_media(fileId=file.id, supportsAllDrives=True))
        buffer = io.BytesIO()
        downloader = MediaIoBaseDownload(buffer, request, chunksize=self._chunk)
        done = False
        total = 0
        while not done:
            try:
                # A failed chunk leaves the downloader where it was: the retry asks for
                # the same range again.
                _, done = self._call(downloader.next_chunk)
            except HttpError as exc:
                raise self._item_error(exc, file.url) from None
            except (OSError, httplib2.HttpLib2Error, TransportError) as exc:
                raise TransientError(f"Google Drive download failed: {_describe(exc)}; "
                                     "retried on the next attempt", path=file.url) from None
            block = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            total += len(block)
            # An export, or a file Drive gave no size for, is checked as it arrives.
            if max_bytes is not None and total > max_bytes:
                raise LimitExceeded(f"larger than the {max_bytes} byte limit (max_file_mb)",
                                    path=file.url)
            yield block

    def download(self, file: DriveFile, out: BinaryIO, *, max_bytes: int | None = None) -> int:
        """Write :meth:`chunks` to ``out``; returns the bytes written (same errors)."""
        written = 0
        for block in self.chunks(file, max_bytes=max_bytes):
            out.write(block)
            written += len(block)
        return written

    @staticmethod
    def _item_error(exc: HttpError, url: str) -> Exception:
        reason = _reason(exc)
        if _retryable(exc):
            return TransientError(f"Google Drive still answers {_describe(exc)} after the "
                                  "retries (quota or outage); retried on the next run",
                                  path=url)
        if reason == "exportSizeLimitExceeded":
            return LimitExceeded("too large for Google Drive to export (its limit is "
                                 "10 MB); set gdrive_export_format or split the document",
                                 path=url)
        if exc.resp.status == 404:
            return ExtractionError("no longer in Google Drive (deleted, or no longer "
                                   "shared); the next run drops it", path=url)
        return ExtractionError(f"Google Drive refused the download: {_describe(exc)}; "
                               "check the file's sharing and download settings",
                               path=url)

    # -- changes -------------------------------------------------------------------------

    def start_token(self) -> str:
        """The token from which :meth:`changes` reports changes: take it before listing."""
        self._resolve_root()
        extra: dict[str, Any] = {"supportsAllDrives": True}
        if self._drive_id:
            extra["driveId"] = self._drive_id
        answer = self._source_call(self._service.changes().getStartPageToken(**extra),
                                   "start the changes feed")
        return str(answer["startPageToken"])

    def changes(self, token: str) -> Iterator[DriveChanges]:
        """The changes since ``token``, page by page; the last page is ``complete``.

        A changed file is placed under the root by following its parents up to it
        (folders remembered, boundedly); one that is not under it, or was trashed,
        deleted or unshared, is a change with no file. A folder that changed (renamed,
        moved in) is walked, so its files come with their new paths.
        """
        self._resolve_root()
        extra: dict[str, Any] = {"supportsAllDrives": True, "includeItemsFromAllDrives": True}
        if self._drive_id:
            extra["driveId"] = self._drive_id
        while True:
            page = self._source_call(self._service.changes().list(
                pageToken=token, pageSize=self._page_size, includeRemoved=True,
                spaces="drive", fields=_CHANGE_FIELDS, **extra), "list changes")
            found: list[DriveChange] = []
            for change in page.get("changes", []):
                if change.get("changeType", "file") == "file":
                    found.extend(self._placed(change))
            final = page.get("newStartPageToken")
            token = str(final or page["nextPageToken"])
            yield DriveChanges(found, token, complete=final is not None)
            if final is not None:
                return

    def _placed(self, change: dict[str, Any]) -> Iterator[DriveChange]:
        file_id = str(change.get("fileId"))
        meta = change.get("file")
        folder = meta is not None and meta.get("mimeType") == _FOLDER
        if folder:
            self._folders.forget(file_id)
        base = None if change.get("removed") or meta is None or meta.get("trashed") \
            else self._path_of(meta.get("parents", []))
        if base is None or meta is None:
            yield DriveChange(file_id, None, folder=folder)
            return
        name = quote(str(meta.get("name", "")), safe="")
        if folder:
            self._folders.remember(file_id, meta.get("name", ""), meta.get("parents", []))
            for inside in self.walk(file_id, base + name + "/"):
                yield DriveChange(inside.id, inside)
        elif meta.get("mimeType") == _SHORTCUT:
            details = meta.get("shortcutDetails") or {}
            target = self._target(details["targetId"]) if details.get("targetId") else None
            if target is not None and target.get("mimeType") not in (_FOLDER, _SHORTCUT):
                yield DriveChange(str(target["id"]), self._entry(target, base + name))
        else:
            yield DriveChange(file_id, self._entry(meta, base + name))

    def _path_of(self, parents: list[str], depth: int = 0) -> str | None:
        """The path under the root of a folder's children ('' at the root), None if outside."""
        root = self._resolve_root()
        for parent in parents:
            if parent == root:
                return ""
            if depth >= _MAX_DEPTH:
                return None
            known = self._folders.known.get(parent)
            if known is None:
                meta = self._target(parent)
                if meta is None:
                    continue
                known = (str(meta.get("name", "")), list(meta.get("parents", [])))
                self._folders.remember(parent, *known)
            above = self._path_of(known[1], depth + 1)
            if above is not None:
                return above + quote(known[0], safe="") + "/"
        return None

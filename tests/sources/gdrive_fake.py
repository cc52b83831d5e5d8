"""A fake Google Drive: the few Drive v3 endpoints gristmill uses, as Google documents them.

There is no Drive emulator, so the suite serves these over real HTTP on 127.0.0.1 (port 0,
one thread), and the real ``google-api-python-client`` talks to it:

- ``files.list``: ``q`` of the form ``'<id>' in parents and trashed = false``,
  ``pageSize`` (1-1000, default 100), ``pageToken``/``nextPageToken``, ``fields``
  (partial responses; an unknown field is a 400), and the shared-drive parameters
  (``supportsAllDrives``, ``includeItemsFromAllDrives``, ``corpora=drive``, ``driveId``);
- ``files.get``: metadata (``root`` is My Drive's alias), and ``alt=media`` with ``Range``
  (206 and ``Content-Range``); a Docs Editors file answers 403 ``fileNotDownloadable``;
- ``files.export``: ``mimeType`` among the type's export formats, 10 MB at most
  (403 ``exportSizeLimitExceeded``);
- ``changes.getStartPageToken`` and ``changes.list`` (``pageToken``, ``nextPageToken``,
  ``newStartPageToken`` on the last page only, ``removed``, ``file``; one entry per file,
  its latest change, the file as it is now);
- the OAuth token endpoint: ``refresh_token`` grants (authorized-user credentials) and
  ``jwt-bearer`` grants (service accounts; the assertion's signature is checked);
- injected failures: the next requests answer 429, 403 ``rateLimitExceeded`` /
  ``userRateLimitExceeded`` or 5xx with Drive's error body;
- held requests: those a test picks wait, unanswered, until it lets them go (a client
  caught mid-request, to be killed there).

Access tokens can be made to run out after N requests (``token_uses``): the API then
answers 401, as Google does for an expired token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.auth import jwt

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
DOC = "application/vnd.google-apps.document"
SHEET = "application/vnd.google-apps.spreadsheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF = "application/pdf"
# What Drive exports each type to (a subset of its about.exportFormats).
EXPORTS = {DOC: {DOCX, PDF, "text/plain"}, SHEET: {XLSX, PDF, "text/csv"}}
EXPORT_LIMIT = 10 * 2**20
SCOPE = "https://www.googleapis.com/auth/drive.readonly"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"

# Every field of a file resource the fake keeps; asking for another is a 400, as on Drive
# (which knows more, but gristmill asks for none of those).
_FILE_FIELDS = {"kind", "id", "name", "mimeType", "md5Checksum", "version", "modifiedTime",
                "size", "parents", "trashed", "driveId", "shortcutDetails"}
_QUERY = re.compile(r"^\s*'([^']+)' in parents(\s+and\s+trashed\s*=\s*false)?\s*$")


@dataclass
class Seen:
    """One request the fake answered."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class _Failure:
    status: int
    reason: str | None
    retry_after: str | None
    when: Callable[[Seen], bool] | None


@dataclass
class FakeDrive:
    """The Drive state and its HTTP server; use as a context manager."""

    token_uses: int | None = None
    expires_in: int = 3600
    service_account_key: str | None = None  # the PEM public key jwt-bearer grants are checked with
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    content: dict[str, bytes] = field(default_factory=dict)
    exports: dict[str, dict[str, bytes]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    token_grants: int = 0
    refresh_tokens: set[str] = field(default_factory=lambda: {"refresh-1"})

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = 0
        self._clock = 0
        self._changes: list[tuple[int, str, bool]] = []  # (change id, file id, removed)
        # Each file's shared drive (None: My Drive), kept after deletion for the feed.
        self._driveof: dict[str, str | None] = {}
        self._tokens: dict[str, int | None] = {}
        self._failures: deque[_Failure] = deque()
        self._holds: list[tuple[Callable[[Seen], bool], threading.Event]] = []
        self.root = self._add({"name": "My Drive", "mimeType": FOLDER, "parents": []},
                              record=False)
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeDrive:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for _, release in self._holds:
            release.set()  # a held handler thread would keep shutdown() waiting
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def endpoint(self) -> str:
        """The API base URL a client is pointed at (``api_endpoint``)."""
        return f"{self.base}/drive/v3/"

    @property
    def token_uri(self) -> str:
        return f"{self.base}/token"

    # -- the Drive's contents ------------------------------------------------------------

    def _now(self) -> str:
        self._clock += 1
        minutes, seconds = divmod(self._clock, 60)
        return f"2026-12-05T{10 + minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}.000Z"

    def _add(self, resource: dict[str, Any], *, record: bool = True,
             ident: str | None = None) -> str:
        with self._lock:
            if ident is None:
                self._ids += 1
                ident = f"1F{self._ids:06d}xyz"
            parents = resource.get("parents", [])
            drive = self.files[parents[0]].get("driveId") if parents else None
            base = {"kind": "drive#file", "id": ident, "trashed": False, "version": "1",
                    "modifiedTime": self._now()}
            if drive:
                base["driveId"] = drive
            self.files[ident] = {**base, **resource}
            self._driveof[ident] = self.files[ident].get("driveId")
            if record:
                self._change(ident, removed=False)
            return ident

    def _change(self, ident: str, *, removed: bool) -> None:
        self._changes.append((len(self._changes) + 1, ident, removed))

    def folder(self, name: str, parent: str | None = None) -> str:
        return self._add({"name": name, "mimeType": FOLDER, "parents": [parent or self.root]})

    def shared_drive(self, name: str) -> str:
        """A shared drive: its id is also the id of its top folder."""
        self._ids += 1
        ident = f"0A{self._ids:06d}drv"
        self._add({"name": name, "mimeType": FOLDER, "parents": [], "driveId": ident},
                  ident=ident, record=False)
        return ident

    def file(self, name: str, data: bytes, parent: str | None = None,
             mime: str = "application/octet-stream") -> str:
        ident = self._add({"name": name, "mimeType": mime, "parents": [parent or self.root],
                           **_binary(data)})
        self.content[ident] = data
        return ident

    def google_file(self, name: str, exports: dict[str, bytes], parent: str | None = None,
                    mime: str = DOC) -> str:
        ident = self._add({"name": name, "mimeType": mime, "parents": [parent or self.root]})
        self.exports[ident] = exports
        return ident

    def shortcut(self, name: str, target: str, parent: str | None = None) -> str:
        return self._add({"name": name, "mimeType": SHORTCUT, "parents": [parent or self.root],
                          "shortcutDetails": {"targetId": target,
                                              "targetMimeType": self.files[target]["mimeType"]}})

    def update(self, ident: str, data: bytes | None = None, *, name: str | None = None,
               parent: str | None = None, exports: dict[str, bytes] | None = None) -> None:
        """Edit a file: new content, a rename or a move; its version moves on."""
        with self._lock:
            resource = self.files[ident]
            if data is not None:
                self.content[ident] = data
                resource.update(_binary(data))
            if exports is not None:
                self.exports[ident] = exports
            if name is not None:
                resource["name"] = name
            if parent is not None:
                resource["parents"] = [parent]
            resource["version"] = str(int(resource["version"]) + 1)
            resource["modifiedTime"] = self._now()
            self._change(ident, removed=False)

    def trash(self, ident: str) -> None:
        with self._lock:
            self.files[ident]["trashed"] = True
            self.files[ident]["version"] = str(int(self.files[ident]["version"]) + 1)
            self._change(ident, removed=False)

    def delete(self, ident: str) -> None:
        """Delete for good (not trash): the changes feed says ``removed``."""
        with self._lock:
            del self.files[ident]
            self.content.pop(ident, None)
            self._change(ident, removed=True)

    # -- behaviour -----------------------------------------------------------------------

    def fail(self, status: int, reason: str | None = None, *, times: int = 1,
             retry_after: str | None = None, when: Callable[[Seen], bool] | None = None
             ) -> None:
        """The next ``times`` API requests (those ``when`` accepts) answer ``status``."""
        for _ in range(times):
            self._failures.append(_Failure(status, reason, retry_after, when))

    def hold(self, when: Callable[[Seen], bool]) -> threading.Event:
        """API requests ``when`` accepts wait, unanswered, until the returned event is set
        (or the fake closes); ``when`` is asked once per request, as it arrives."""
        release = threading.Event()
        with self._lock:
            self._holds.append((when, release))
        return release

    @property
    def start_page_token(self) -> str:
        """What ``changes.getStartPageToken`` answers now (and the feed's last page's
        ``newStartPageToken``)."""
        with self._lock:
            return self._start_page_token()

    def _start_page_token(self) -> str:
        return str(len(self._changes) + 1)

    def calls(self, path: str, **params: str) -> list[Seen]:
        """The API requests made to ``path`` (under /drive/v3/) with these parameters."""
        return [s for s in self.seen if s.path == f"/drive/v3/{path}"
                and all(s.params.get(k) == v for k, v in params.items())]

    # -- answering -----------------------------------------------------------------------

    def answer(self, method: str, url: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path == "/token" and method == "POST":
            return self._token(parse_qs(body.decode()))
        seen = Seen(method, parts.path, params, headers)
        with self._lock:
            self.seen.append(seen)
            failure = next((f for f in self._failures if f.when is None or f.when(seen)), None)
            if failure is not None:
                self._failures.remove(failure)
            held = [release for when, release in self._holds if when(seen)]
        for release in held:
            release.wait()
        if failure is not None:
            extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            messages = {429: "Rate Limit Exceeded", 403: "Rate Limit Exceeded"}
            return _error(failure.status, failure.reason or "backendError",
                          messages.get(failure.status, "Backend Error"), extra)
        if not self._authorised(headers.get("authorization", "")):
            return _error(401, "authError", "Invalid Credentials",
                          {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        route = parts.path.removeprefix("/drive/v3/")
        try:
            with self._lock:
                if route == "files":
                    return _json(self._list(params))
                if route == "changes/startPageToken":
                    return _json(_select({"kind": "drive#startPageToken",
                                          "startPageToken": self._start_page_token()},
                                         params.get("fields")))
                if route == "changes":
                    return _json(self._changes_list(params))
                match = re.fullmatch(r"files/([^/]+)(/export)?", route)
                if match and match.group(2):
                    return self._export(match.group(1), params)
                if match:
                    return self._get(match.group(1), params, headers)
        except _Refused as refused:
            return refused.response
        return _error(404, "notFound", f"no route {parts.path}")

    def _authorised(self, header: str) -> bool:
        token = header.removeprefix("Bearer ").strip()
        with self._lock:
            if token not in self._tokens:
                return False
            left = self._tokens[token]
            if left is None:
                return True
            if left <= 0:
                return False
            self._tokens[token] = left - 1
            return True

    def _token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        grant = form.get("grant_type", [""])[0]
        if grant == "refresh_token":
            if form.get("refresh_token", [""])[0] not in self.refresh_tokens:
                return _json({"error": "invalid_grant",
                              "error_description": "Token has been expired or revoked."}, 400)
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                # google-auth addresses the assertion to Google's endpoint whatever the
                # token_uri, as Google's endpoint expects.
                claims = jwt.decode(form["assertion"][0], certs=self.service_account_key,
                                    audience=GOOGLE_TOKEN_URI)
            except (ValueError, KeyError) as exc:
                return _json({"error": "invalid_grant", "error_description": str(exc)}, 400)
            if SCOPE not in str(claims.get("scope", "")).split():
                return _json({"error": "invalid_scope"}, 400)
        else:
            return _json({"error": "unsupported_grant_type"}, 400)
        with self._lock:
            self.token_grants += 1
            token = f"ya29.fake-{self.token_grants}"
            self._tokens[token] = self.token_uses
        return _json({"access_token": token, "expires_in": self.expires_in,
                      "scope": SCOPE, "token_type": "Bearer"})

    def _visible(self, resource: dict[str, Any], params: dict[str, str]) -> bool:
        # Shared-drive items are seen only by clients that say they support them.
        return "driveId" not in resource or params.get("supportsAllDrives") == "true"

    def _file(self, ident: str, params: dict[str, str]) -> dict[str, Any]:
        resource = self.files.get(self.root if ident == "root" else ident)
        if resource is None or not self._visible(resource, params):
            raise _Refused(_error(404, "notFound", f"File not found: {ident}.",
                                  location="fileId"))
        return resource

    def _list(self, params: dict[str, str]) -> dict[str, Any]:
        match = _QUERY.match(params.get("q", ""))
        if match is None:
            raise _Refused(_error(400, "invalid", "Invalid Value", location="q"))
        size = int(params.get("pageSize", "100"))
        if not 1 <= size <= 1000:
            raise _Refused(_error(400, "invalid", "Invalid Value", location="pageSize"))
        drive = params.get("driveId")
        if drive and (params.get("corpora") != "drive"
                      or params.get("includeItemsFromAllDrives") != "true"):
            raise _Refused(_error(403, "teamDriveIncludeItemsRequired",
                                  "includeItemsFromAllDrives must be true with a driveId"))
        parent = self.root if match.group(1) == "root" else match.group(1)
        everything = params.get("includeItemsFromAllDrives") == "true" and \
            params.get("supportsAllDrives") == "true"
        children = [r for r in self.files.values() if parent in r.get("parents", [])
                    and not (match.group(2) and r["trashed"])
                    and ("driveId" not in r or everything)]
        key = hashlib.sha256(params.get("q", "").encode()).hexdigest()[:8]
        offset = 0
        if params.get("pageToken"):
            try:
                token_key, start = base64.urlsafe_b64decode(params["pageToken"]).decode().split(":")
                offset = int(start)
            except ValueError:
                token_key = ""
            if token_key != key:
                raise _Refused(_error(400, "invalid", "Invalid Value", location="pageToken"))
        page: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                "files": children[offset:offset + size]}
        if offset + size < len(children):
            page["nextPageToken"] = base64.urlsafe_b64encode(
                f"{key}:{offset + size}".encode()).decode()
        return _select(page, params.get("fields") or "kind,incompleteSearch,nextPageToken,"
                       "files(kind,id,name,mimeType)")

    def _get(self, ident: str, params: dict[str, str], headers: dict[str, str]
             ) -> tuple[int, dict[str, str], bytes]:
        resource = self._file(ident, params)
        if params.get("alt") != "media":
            return _json(_select(resource, params.get("fields") or "kind,id,name,mimeType"))
        if resource["mimeType"].startswith("application/vnd.google-apps."):
            return _error(403, "fileNotDownloadable", "Only files with binary content can be "
                          "downloaded. Use Export with Docs Editors files.", location="alt")
        data = self.content[resource["id"]]
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("range", ""))
        if ranged is None:
            return 200, {"Content-Type": resource["mimeType"]}, data
        start = int(ranged.group(1))
        if start >= len(data):
            return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
        end = min(int(ranged.group(2) or len(data) - 1), len(data) - 1)
        return 206, {"Content-Type": resource["mimeType"],
                     "Content-Range": f"bytes {start}-{end}/{len(data)}"}, data[start:end + 1]

    def _export(self, ident: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        resource = self._file(ident, params)
        formats = EXPORTS.get(resource["mimeType"])
        if formats is None:
            return _error(403, "fileNotExportable", "Export only supports Docs Editors files.")
        wanted = params.get("mimeType", "")
        if wanted not in formats:
            return _error(400, "badRequest", "The requested conversion is not supported.",
                          location="mimeType")
        data = self.exports[resource["id"]].get(wanted, b"")
        if len(data) > EXPORT_LIMIT:
            return _error(403, "exportSizeLimitExceeded",
                          "This file is too large to be exported.")
        return 200, {"Content-Type": wanted}, data

    def _changes_list(self, params: dict[str, str]) -> dict[str, Any]:
        if not params.get("pageToken", "").isdigit():
            raise _Refused(_error(400, "required", "Required parameter: pageToken",
                                  location="pageToken"))
        start = int(params["pageToken"])
        size = int(params.get("pageSize", "100"))
        drive = params.get("driveId")
        everything = params.get("includeItemsFromAllDrives") == "true" and \
            params.get("supportsAllDrives") == "true"
        latest: dict[str, tuple[int, bool]] = {}
        for number, ident, removed in self._changes[start - 1:]:
            if (self._driveof[ident] == drive) if drive else (
                    self._driveof[ident] is None or everything):
                latest[ident] = (number, removed)
        ordered = sorted((number, ident, removed) for ident, (number, removed) in latest.items())
        entries = []
        for _, ident, removed in ordered[:size]:
            entry: dict[str, Any] = {"kind": "drive#change", "changeType": "file",
                                     "fileId": ident, "removed": removed, "time": self._now()}
            if not removed and ident in self.files:
                entry["file"] = self.files[ident]
            entries.append(entry)
        page: dict[str, Any] = {"kind": "drive#changeList", "changes": entries}
        if len(ordered) > size:
            page["nextPageToken"] = str(ordered[size][0])
        else:
            page["newStartPageToken"] = self._start_page_token()
        return _select(page, params.get("fields") or "kind,nextPageToken,newStartPageToken,"
                       "changes(kind,changeType,fileId,removed,time,file(kind,id,name,mimeType))")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the kill -9 tests) is no error of the fake's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Refused(Exception):
    def __init__(self, response: tuple[int, dict[str, str], bytes]) -> None:
        self.response = response


def _binary(data: bytes) -> dict[str, Any]:
    return {"md5Checksum": hashlib.md5(data).hexdigest(), "size": str(len(data))}


def _json(body: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


def _error(status: int, reason: str, message: str, headers: dict[str, str] | None = None,
           location: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Drive's error body (``error.errors[].reason``, as the Drive docs show it)."""
    detail: dict[str, Any] = {"domain": "usageLimits" if "Limit" in reason else "global",
                              "reason": reason, "message": message}
    if location:
        detail.update(locationType="parameter", location=location)
    code, kind, body = _json({"error": {"code": status, "message": message, "errors": [detail]}},
                             status)
    return code, {**kind, **(headers or {})}, body


def _parse_fields(text: str) -> dict[str, Any]:
    """``a,b(c,d),e/f`` as ``{"a": None, "b": {"c": None, "d": None}, "e": {"f": None}}``."""
    tree, rest = _fields_list(text.replace(" ", ""))
    if rest:
        raise ValueError(text)
    return tree


def _fields_list(text: str) -> tuple[dict[str, Any], str]:
    tree: dict[str, Any] = {}
    while True:
        name = re.match(r"[A-Za-z0-9_*]+", text)
        if name is None:
            raise ValueError(text)
        text = text[name.end():]
        sub: dict[str, Any] | None = None
        if text.startswith("("):
            sub, text = _fields_list(text[1:])
            if not text.startswith(")"):
                raise ValueError(text)
            text = text[1:]
        elif text.startswith("/"):
            sub, text = _fields_list(text[1:])
        tree[name.group()] = sub
        if not text.startswith(","):
            return tree, text
        text = text[1:]


def _select(value: Any, fields: str | dict[str, Any] | None) -> Any:
    """The partial response ``fields`` asks for; an unknown file field is a 400."""
    if isinstance(fields, str):
        try:
            fields = _parse_fields(fields)
        except ValueError:
            raise _Refused(_error(400, "invalidParameter", f"Invalid field selection {fields}",
                                  location="fields")) from None
    if fields is None or "*" in fields:
        return value
    if isinstance(value, list):
        return [_select(v, fields) for v in value]
    if value.get("kind") == "drive#file":
        unknown = set(fields) - _FILE_FIELDS
        if unknown:
            raise _Refused(_error(400, "invalidParameter",
                                  f"Invalid field selection {sorted(unknown)[0]}",
                                  location="fields"))
    return {k: _select(value[k], sub) for k, sub in fields.items() if k in value}


def _handler(drive: FakeDrive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = drive.answer(self.command, self.path, headers, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests assert on ``drive.seen``, not on a log

    return Handler

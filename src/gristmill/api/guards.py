"""What a request must look like before any route sees it, and the headers every
response carries: the defences against a web page in the user's own browser.

Without a token the API trusts whoever can connect to its loopback address, and a
browser on that machine can connect too. So, for every request:

- **Host** must name this server: a loopback name (``localhost``, ``*.localhost``), an IP
  address, or one of ``allowed_hosts``. A DNS-rebinding page (``evil.example`` made to
  resolve to 127.0.0.1) sends its own name and gets 421. An IP address cannot be rebound,
  so any is accepted. With tokens and no ``allowed_hosts``, any name is served: the
  token is the defence there, and a rebinding page has none.
- A state-changing method (POST, PUT, PATCH, DELETE) must say
  ``Content-Type: application/json`` (415 otherwise), which a cross-site page can only send
  after a CORS preflight this server never grants; and when a browser says where the
  request comes from (``Origin``, ``Sec-Fetch-Site``), that must be this very origin (403).
  Clients other than browsers send neither header and are not affected.
- A request body is at most ``max_request_kb``: one that declares more
  (``Content-Length``) gets 413 before any route runs; one streamed past the limit gets
  413 from the route reading it. This is done here, not by FastAPI's ``max_body_size``:
  its middleware sits outside every other and turns whatever answers a request that
  declared too long a body into a plain-text 413, outside the API's one error shape.
- Every response says: scripts, styles and requests from this origin only
  (``Content-Security-Policy``), never in a frame, no MIME sniffing, no referrer.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BODY_TOO_LARGE", "SECURITY_HEADERS", "RequestGuard", "host_name"]

BODY_TOO_LARGE = ("request body too large for this server (max_request_kb); send a "
                  "smaller request or raise the setting")

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # The dashboard loads only its own files: an injected <script> or a style from
    # another host would not run. data: for the empty favicon index.html declares.
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
     b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),  # what frame-ancestors says, for older browsers
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Other sites may not read our responses through <script> or <img> either.
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without the port, lower case, without a final dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """ASGI middleware enforcing the rules in this module's docstring."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = (),
                 *, tokens: bool = False, max_body_bytes: int | None = None) -> None:
        """Args:
        app: the application behind the guard.
        allowed_hosts: host names served besides loopback names and IP addresses
            (``*`` = any name: for a server behind a proxy that checks names itself).
        tokens: whether requests need a bearer token. Then, with no ``allowed_hosts``,
            any name is served: a rebinding page cannot read the token (the dashboard
            keeps it in its own origin's storage), and a server reached by its host name
            (``http://box:8000``, a Prometheus scrape) must keep working.
        max_body_bytes: the largest request body accepted (None: any).
        """
        self.app = app
        self._max_body = max_body_bytes
        allowed = {host_name(host) for host in allowed_hosts}
        self._any_host = "*" in allowed or (tokens and not allowed)
        self._allowed = allowed - {"*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, detail = refusal
            await _answer(send, status, detail)
            return
        if self._max_body is not None:
            receive = _limited(receive, self._max_body)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in SECURITY_HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)

    def allows_host(self, name: str) -> bool:
        """Whether a request naming host ``name`` (as :func:`host_name` gives it) is ours."""
        return (self._any_host or name in self._allowed or name == "localhost"
                or name.endswith(".localhost") or _is_ip(name))

    def _trusted_origin(self, origin: str, host: str | None) -> bool:
        """Whether the ``Origin`` a browser sent is the origin it sent the request to (or
        one of ``allowed_hosts``: behind a proxy that rewrites ``Host``)."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        # `Origin: null` (a sandboxed frame, a file:// page) has no netloc: never trusted.
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if host is not None and parts.netloc.lower() == host.strip().lower():
            return True
        return host_name(parts.netloc) in self._allowed

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        host = headers.get("host")
        # No Host at all is an HTTP/1.0 client, never a browser: nothing to rebind.
        if host is not None and not self.allows_host(host_name(host)):
            return 421, (f"this server does not answer to the host name {host_name(host)!r}; "
                         "if that is its real name, add it to the allowed_hosts setting")
        declared = headers.get("content-length", "")
        if (self._max_body is not None and declared.isdigit()
                and int(declared) > self._max_body):
            return 413, BODY_TOO_LARGE  # refused unread
        if scope["method"] not in _UNSAFE:
            return None
        origin = headers.get("origin")
        if origin is not None and not self._trusted_origin(origin, host):
            return 403, (f"cross-origin request refused: a page from {origin} may not "
                         "change anything here (open the dashboard on this server instead)")
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return 403, ("cross-site request refused: a page from another site may not "
                         "change anything here")
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return 415, ("send `Content-Type: application/json` with every POST, PUT, "
                         "PATCH and DELETE (even without a body)")
        return None


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive``, failing the route that reads a streamed body once it passes ``limit``
    bytes (413, answered in the API's error shape by its handler)."""
    total = 0

    async def receive_at_most() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise HTTPException(413, BODY_TOO_LARGE)
        return message

    return receive_at_most


async def _answer(send: Send, status: int, detail: str) -> None:
    """The API's one error shape, with the security headers, sent before any route ran."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})

"""How ``gristmill serve`` runs the API: uvicorn, with limits a slow or hostile client
cannot outlast.

uvicorn on its own waits for ever for a request that never completes (its keep-alive
timer only runs between requests, and any byte received stops it), so a few hundred
half-open connections would hold every connection slot for good. Here:

- a whole request (head and body) must arrive within ``http_request_timeout`` seconds of
  the connection opening (or of the previous response), or the connection is closed;
  a response being sent (an event stream) is never cut;
- an idle kept-alive connection is closed after ``http_keepalive_timeout`` seconds;
- at most ``http_max_connections`` connections are open at once (a request beyond that
  gets 503), and a request head is at most :data:`MAX_HEAD_BYTES` (more gets 400).
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from gristmill.config import Settings

__all__ = ["MAX_HEAD_BYTES", "request_deadline_protocol", "serve"]

MAX_HEAD_BYTES = 32 * 1024  # request line and headers: room for a browser's cookies


class _RequestDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request is late."""

    request_timeout = 10.0  # set by request_deadline_protocol()
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        armed = self.cycle  # a request whose head arrives later has a cycle of its own
        self._deadline = self.loop.call_later(self.request_timeout, self._expire, armed)

    def _expire(self, armed: object) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        no_head = cycle is armed and (cycle is None or cycle.response_complete)
        body_due = cycle is not armed and self.conn.their_state is h11.SEND_BODY
        if not (no_head or body_due):
            return  # the request arrived whole: its response takes the time it takes
        # uvicorn's own logger: the line goes where its "concurrency limit" ones go.
        client = "%s:%d" % self.client if self.client else "a client"  # noqa: UP031
        self.logger.info("closing the connection from %s: no whole request within %s s",
                         client, self.request_timeout)
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass  # mid-request: there is nothing to tell the client
        self.transport.close()


def request_deadline_protocol(timeout: float) -> type[H11Protocol]:
    """An h11 protocol class for uvicorn closing a connection whose request (head and
    body) has not arrived ``timeout`` seconds after it opened or after the last response."""
    return type("RequestDeadlineH11", (_RequestDeadlineH11,), {"request_timeout": timeout})


def serve(app: FastAPI, host: str, port: int, settings: Settings) -> None:
    """Serve ``app`` on ``host:port`` until interrupted, with the limits above."""
    uvicorn.run(
        app, host=host, port=port, log_level="info",
        http=request_deadline_protocol(settings.http_request_timeout),
        limit_concurrency=settings.http_max_connections,
        backlog=settings.http_max_connections,
        timeout_keep_alive=settings.http_keepalive_timeout,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        server_header=False,  # no version banner for a scanner
        # A bounded graceful shutdown: open event streams must not keep a restart waiting.
        timeout_graceful_shutdown=3)

"""A loopback TCP proxy that logs the HTTP requests through it and can cut a response short.

It stands between a client and a real server (boto3 and SeaweedFS, say) and forwards
bytes both ways, reading the request heads as they pass (the requests it is meant for
carry no body: GET and HEAD), so a test can see which requests were sent (``Range``,
``If-Match``) and cut the connection of the first one a rule picks after a number of
response bytes: a connection dropped mid-download, as a flaky network drops one, at a
point the test chooses. It can also drop a header from every request (``If-Match``: a
store that ignores it, as some S3-compatible stores do).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    """One request head seen going to the server."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _Cut:
    when: Callable[[Request], bool]
    after: int
    before_cut: Callable[[], None] | None
    done: threading.Event = field(default_factory=threading.Event)


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream`` (requests without a body only), less
    the header ``drop_header``; use as a context manager. ``requests`` logs what the
    client sent."""

    def __init__(self, upstream: tuple[str, int], *, drop_header: str | None = None) -> None:
        self.upstream = upstream
        self._drop = drop_header.lower() if drop_header else None
        self.requests: list[Request] = []
        self._cuts: list[_Cut] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def cut(self, when: Callable[[Request], bool], after: int, *,
            before_cut: Callable[[], None] | None = None) -> threading.Event:
        """Drop the connection of the next request ``when`` accepts once ``after`` bytes
        of its response were passed on, calling ``before_cut`` first; the event is set
        once it was cut."""
        cut = _Cut(when, after, before_cut)
        with self._lock:
            self._cuts.append(cut)
        return cut.done

    def __enter__(self) -> CuttingProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            # One connection's responses, in order: the cut (if any) of each request.
            pending: list[_Cut | None] = []
            ready = threading.Condition()
            self._spawn(self._requests, client, server, pending, ready)
            self._spawn(self._responses, server, client, pending, ready)

    def _requests(self, client: socket.socket, server: socket.socket,
                  pending: list[_Cut | None], ready: threading.Condition) -> None:
        buffered = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(server)
                return
            buffered += data
            while b"\r\n\r\n" in buffered:
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                request = _parse(head)
                with self._lock:
                    self.requests.append(request)
                    cut = next((c for c in self._cuts if c.when(request)), None)
                    if cut is not None:
                        self._cuts.remove(cut)
                with ready:
                    pending.append(cut)
                    ready.notify()
                try:
                    server.sendall(self._forwarded(head))
                except OSError:
                    _close(client)
                    return

    def _forwarded(self, head: bytes) -> bytes:
        lines = head.split(b"\r\n")
        if self._drop is not None:
            lines = [line for line in lines
                     if line.split(b":", 1)[0].strip().lower() != self._drop.encode()]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _responses(self, server: socket.socket, client: socket.socket,
                   pending: list[_Cut | None], ready: threading.Condition) -> None:
        # A connection serves one request at a time (no pipelining from these clients):
        # the response bytes belong to the oldest request whose cut is armed.
        passed = 0
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(client)
                return
            with ready:
                ready.wait_for(lambda: bool(pending), timeout=5)
                cut = pending[-1] if pending else None
            if cut is not None and not cut.done.is_set():
                left = cut.after - passed
                if left <= len(data):
                    with contextlib.suppress(OSError):
                        client.sendall(data[:left])
                    if cut.before_cut is not None:
                        cut.before_cut()
                    _close(client)
                    _close(server)
                    cut.done.set()
                    return
                passed += len(data)
            try:
                client.sendall(data)
            except OSError:
                _close(server)
                return


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)

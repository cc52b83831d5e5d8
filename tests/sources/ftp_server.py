"""A real FTP server (pyftpdlib) on loopback, for the fsspec source's tests.

It serves one folder to one user with a password, on 127.0.0.1 and a free port, from a
thread of the test process, and counts the files it sent (``RETR`` commands): what the
tests read to show that a no-change re-run downloads nothing. It can be stopped and
started again on the same port (an outage in the middle of a run).
"""

from __future__ import annotations

import logging
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # On Python 3.11 pyftpdlib imports the standard library's asyncore, deprecated
    # there (3.12 on, it brings the pyasyncore backport instead).
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

# Its session log (a line per login and transfer) is noise in a test's output.
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)

USER = "miller"
PASSWORD = "s3cret-grain"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FtpServer:
    """One pyftpdlib server over ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.retrieved: list[str] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        """The server's URL with the user and password in it."""
        return f"ftp://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is up."""
        return self._thread is not None

    def start(self) -> None:
        """Serve (again), on the same port."""
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(self.folder), perm="elr")
        retrieved = self.retrieved

        class Counting(FTPHandler):  # type: ignore[misc]
            def ftp_RETR(self, file: str) -> Any:
                retrieved.append(file)
                return super().ftp_RETR(file)

        Counting.authorizer = authorizer
        Counting.passive_ports = None
        server = FTPServer(("127.0.0.1", self.port), Counting)
        self._stop.clear()

        def serve() -> None:
            # Polled, so that the server's own thread closes it (pyftpdlib's loop is not
            # safe to close from another thread).
            try:
                while not self._stop.is_set():
                    server.ioloop.loop(0.01, blocking=False)
            finally:
                server.close_all()

        self._thread = threading.Thread(target=serve, name="ftp-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None

    def retrieved_since(self, count: int) -> list[str]:
        """The files sent after the first ``count`` ones."""
        return self.retrieved[count:]


@contextmanager
def running_ftp(folder: Path) -> Iterator[FtpServer]:
    """An FTP server over ``folder`` for the duration of the context."""
    folder.mkdir(parents=True, exist_ok=True)
    server = FtpServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()

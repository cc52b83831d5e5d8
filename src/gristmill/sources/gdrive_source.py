"""Google Drive behind the common :class:`~gristmill.sources.base.Source` interface.

A thin adapter over :class:`~gristmill.sources.gdrive.DriveClient`: a full listing as
:class:`~gristmill.catalog.FileFacts` (the item name ``gdrive://<fileId>/<path>``, the
change token from the MD5 or version), and an item's bytes spooled to a local file the
extractors read. Items are recorded under their root (the catalog's ``root`` column), not
found by name prefix, so a file named by its own id still belongs to the folder listed.

One client (and so one access token) per thread and configuration: a worker reading
hundreds of items refreshes its token once an hour, not once an item. Per thread, not
per process: the client's HTTP layer (httplib2) is not thread-safe, and a process can
list one root from two threads at once (two runs a library user started side by side,
each walking in its own discovery thread). A client is closed when its thread is gone.
"""

from __future__ import annotations

import contextlib
import io
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import unquote

from gristmill.catalog import FileFacts
from gristmill.sources.base import Spooled, spool
from gristmill.sources.gdrive import (
    MY_DRIVE,
    SCHEME,
    DriveChanges,
    DriveClient,
    DriveFile,
    DriveOptions,
    parse_root,
)
from gristmill.sources.local import Matcher

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["GdriveSource", "facts"]


class _ThreadClients(threading.local):
    """This thread's clients, by root and options."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, DriveOptions], DriveClient] = {}


_per_thread = _ThreadClients()


def _client(options: DriveOptions, root: str) -> DriveClient:
    clients = _per_thread.clients
    client = clients.get((root, options))
    if client is None:
        client = clients[root, options] = DriveClient.from_settings(options,
                                                                    f"{SCHEME}{root}")
        # Its kept-alive connections are closed with the thread (a discovery thread ends
        # with its run), not left to the garbage collector.
        weakref.finalize(threading.current_thread(), client.close)
    return client


def facts(file: DriveFile) -> FileFacts:
    """What discovery records of ``file``: its URL, size, mtime and change token."""
    return FileFacts(source=file.url, size=file.size or 0, mtime_ns=_mtime_ns(file.modified),
                     change_token=file.change_token)


def _mtime_ns(modified: str | None) -> int:
    if not modified:
        return 0
    return int(datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp() * 1e9)


class GdriveSource:
    """A Drive folder, shared drive or My Drive as a source (see the module's docstring).

    Args:
        root: ``gdrive://<folderId>``, ``gdrive://<sharedDriveId>`` or ``gdrive://my-drive``;
            for reading single items (a worker), any ``gdrive://`` URL.
        client: the client to use (its root is the one listed); by default the
            calling thread's ones for ``settings``.
        settings: the ``gdrive_*`` settings; by default the process's (environment,
            ``.env``, ``gristmill.toml``).
    """

    def __init__(self, root: str, *, client: DriveClient | None = None,
                 settings: Settings | DriveOptions | None = None) -> None:
        self._ident = root.removeprefix(SCHEME).strip("/").split("/", 1)[0] or MY_DRIVE
        self.root = f"{SCHEME}{self._ident}"
        self._settings = settings
        self._given = client

    def _client_for(self, root: str) -> DriveClient:
        # The calling thread's client, looked up on each use rather than kept: a source
        # handed to another thread must not take its first thread's client along. Built
        # on first use, so naming a root needs no credentials.
        if self._given is not None:
            return self._given
        if not isinstance(self._settings, DriveOptions):
            if self._settings is None:
                from gristmill.config import Settings

                self._settings = Settings.load()
            self._settings = DriveOptions.of(self._settings)
        return _client(self._settings, root)

    @property
    def _client(self) -> DriveClient:
        # Items are read by id, whatever the root: one reading client per thread (and so
        # one token), not one per item a worker is handed.
        return self._client_for(MY_DRIVE)

    def canonical_root(self) -> str:
        """``gdrive://<id>``, one spelling with or without a trailing ``/``.

        Raises:
            ConfigError: not a single id.
        """
        return f"{SCHEME}{parse_root(self.root)}"

    def entries(self, matcher: Matcher) -> Iterator[FileFacts]:
        """Every file under the root that ``matcher`` admits (matched on its path, the
        names as Drive shows them), streamed folder by folder.

        Raises:
            SourceError: the listing failed after the retries.
            CredentialError: Google refused the credentials.
        """
        for file in self._listing.walk():
            if matcher(unquote(file.path)):
                yield facts(file)

    def start_token(self) -> str:
        """Where the changes feed starts: take it before a full listing, so what changes
        while the listing runs is read again from the feed."""
        return self._listing.start_token()

    def changes(self, token: str) -> Iterator[DriveChanges]:
        """The changes under the root since ``token``, a page at a time (see
        :meth:`DriveClient.changes`)."""
        return self._listing.changes(token)

    @property
    def _listing(self) -> DriveClient:
        return self._client_for(self._ident)

    def open(self, name: str) -> BinaryIO:
        """Item ``name``'s bytes as a stream, fetched a chunk at a time as it is read."""
        return cast(BinaryIO, io.BufferedReader(_Chunks(self._client.chunks(
            self._client.file(name)))))

    @contextlib.contextmanager
    def local_copy(self, name: str, directory: Path, max_bytes: int, *,
                   on_block: Callable[[], None] | None = None) -> Iterator[Spooled]:
        """Item ``name`` downloaded (exported) into a spool file, hashed as it streams,
        deleted when the context ends.

        Raises:
            ItemError: see :meth:`DriveClient.chunks` (gone, too large, quota).
        """
        file = self._client.file(name)
        stream = self._client.chunks(file, max_bytes=max_bytes)
        expected = None if file.export_mime else file.size
        with spool(stream, directory, unquote(file.path), max_bytes, expected_size=expected,
                   on_block=on_block) as spooled:
            yield spooled


class _Chunks(io.RawIOBase):
    """A readable over an iterator of byte blocks."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._block = memoryview(b"")
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._at >= len(self._block):
            block = next(self._blocks, None)
            if block is None:
                return 0
            # A view and an offset: slicing the block itself would copy it on each read.
            self._block, self._at = memoryview(block), 0
        count = min(len(buffer), len(self._block) - self._at)
        buffer[:count] = self._block[self._at:self._at + count]
        self._at += count
        return count


if TYPE_CHECKING:
    from gristmill.sources.base import Source

    def _conforms(source: GdriveSource) -> Source:
        # mypy checks here that the adapter still matches the interface as it evolves.
        return source

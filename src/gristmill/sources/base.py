"""The one interface every source implements: list, change token, open, local copy.

Discovery, leases, resume and deletion are the runner's and the catalog's, written
once; a source only says what it holds and hands over bytes. A listing is an iterator of
:class:`~gristmill.catalog.FileFacts`, read page by page (a folder at a time, a
``list_objects_v2`` page at a time), never the whole of it in memory. Each entry carries
a cheap change token: size and mtime for a file, the ETag for an object. An entry whose
token equals the catalog's is unchanged and is never read again.

Item names are what a user recognises: a path for a local file, a URL
(``s3://bucket/key``, ``gdrive://...``) for a remote object. :func:`is_remote` tells
them apart, and :func:`open_source` builds the source for a root.

Extractors read files by name, some with random access (PDF, zip, Office), so a remote
object is spooled to a temporary file in the home first (:func:`spool`), hashed while
it streams and capped at ``max_file_mb``; the copy is deleted after its extraction.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote

import psutil

from gristmill.catalog import FileFacts
from gristmill.errors import ConfigError, ItemError, LimitExceeded
from gristmill.sources.local import Matcher, walk
from gristmill.sources.roots import open_inside, real_roots

if TYPE_CHECKING:
    from gristmill.config import Settings
    from gristmill.sources.gdrive import DriveOptions

__all__ = ["LocalSource", "ObjectTooLarge", "Source", "Spooled", "canonical_root",
           "is_remote", "item_error", "open_source", "process_alive", "relative_name", "spool",
           "sweep_spool"]

# A URL scheme (two letters at least, so a Windows drive letter is not one).
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]+://", re.IGNORECASE)
_GDRIVE = "gdrive://"


class Source(Protocol):
    """Where items are found and read from."""

    #: The root as the catalog records it (an absolute path, or a URL).
    root: str

    def canonical_root(self) -> str:
        """The root in the one spelling the catalog records it under."""
        ...

    def entries(self, matcher: Matcher) -> Iterator[FileFacts]:
        """Every entry under the root that ``matcher`` admits, streamed, each with its
        change token (``size`` and ``mtime_ns``; ``change_token`` for remote ones)."""
        ...

    def open(self, name: str) -> BinaryIO:
        """The bytes of entry ``name`` (an item's source) as a stream."""
        ...

    def local_copy(self, name: str, directory: Path, max_bytes: int, *,
                   on_block: Callable[[], None] | None = None
                   ) -> contextlib.AbstractContextManager[Spooled]:
        """A file on this machine holding entry ``name``'s bytes, for as long as the
        context lasts (the file itself for a local source; a spooled copy in
        ``directory`` for a remote one, ``on_block`` called as each block arrives: a
        long download is progress, not a stuck worker)."""
        ...


class ObjectTooLarge(Exception):
    """A remote object is larger than ``max_file_mb``: it is skipped without being
    downloaded."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"object is {size / 2**20:.0f} MB, over the {limit / 2**20:.0f} MB "
                         "limit (max_file_mb)")
        self.size = size


@dataclass(frozen=True, slots=True)
class Spooled:
    """A local file holding one entry's bytes, with their size and sha256 (None for a
    local file, which is read in place and hashed by discovery)."""

    path: Path
    size: int
    sha256: str | None = None


def is_remote(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a remote object or prefix (a URL) rather than a path."""
    return isinstance(source, str) and _SCHEME.match(source) is not None


def open_source(root: str, *, skip: Sequence[Path] = (), confine: Sequence[str | Path] = (),
                s3_endpoint_url: str | None = None,
                settings: Settings | DriveOptions | None = None) -> Source:
    """The source ``root`` names: an S3 prefix for ``s3://``, a Google Drive folder for
    ``gdrive://`` (configured by the ``gdrive_*`` of ``settings``; by default the
    process's settings), a path of any other filesystem fsspec knows for another URL
    (``sftp://``, ``ftp://``, ``gcs://``...), else a local folder.

    Raises:
        SourceError: the URL scheme is not one gristmill reads (or its package is not
            installed), or the URL is malformed.
    """
    if not is_remote(root):
        return LocalSource(root, skip=skip, confine=confine)
    # Imported here: their clients are optional extras, and a folder run needs none.
    scheme = root.split("://", 1)[0].lower()
    if scheme == "gdrive":
        from gristmill.sources.gdrive_source import GdriveSource

        return GdriveSource(root, settings=settings)
    if scheme == "s3":
        from gristmill.sources.s3 import S3Source

        return S3Source.for_root(root, endpoint_url=s3_endpoint_url)
    from gristmill.sources.fsspec_source import FsspecSource

    return FsspecSource(root)  # refuses schemes fsspec does not know


def item_error(exc: BaseException, url: str) -> ItemError | ConfigError:
    """What a failure to read the remote object ``url`` means for its item, in the
    terms of its own source: transient (retried, and again on the next run), permanent
    (gone, refused), or the run's configuration (no credentials)."""
    if isinstance(exc, ItemError):
        return exc
    # Imported here, as in open_source: each source's client is an optional extra.
    if url.lower().startswith("s3://"):
        from gristmill.sources.s3 import item_error as s3_error

        return s3_error(exc, url)
    # Drive's client raises ItemErrors itself; what escapes it (a socket error) is
    # judged as for any network filesystem.
    from gristmill.sources.fsspec_source import item_error as fsspec_error

    return fsspec_error(exc, url)


def canonical_root(root: str | os.PathLike[str], *,
                   s3_endpoint_url: str | None = None) -> str:
    """``root`` as the catalog records it: an absolute path for a folder or file, a URL
    in one spelling for a remote prefix (``s3://bucket/docs`` and ``.../docs/`` are one).

    Raises:
        SourceError: a malformed URL, or a bucket that cannot be reached.
    """
    if not is_remote(root):
        return os.path.abspath(os.path.expanduser(str(root)))
    if str(root).lower().startswith(_GDRIVE):
        # Only the id is checked: naming a Drive root needs no credentials or network.
        from gristmill.sources.gdrive import parse_root

        return f"{_GDRIVE}{parse_root(str(root))}"
    # Another filesystem's URL loses any user:password@ here (its source keeps them
    # in memory only): the catalog and every name shown never hold a password.
    return open_source(str(root), s3_endpoint_url=s3_endpoint_url).canonical_root()


def relative_name(source: str, root: str) -> str:
    """``source``'s name below ``root``, with ``/`` separators (what include and exclude
    patterns are matched against); a root that is the entry itself gives its base name."""
    if source.startswith(_GDRIVE):
        # gdrive://<fileId>/<path>: the file's id stands before the path under the
        # root, and patterns see Drive's names, as the listing matched them.
        return unquote(source[len(_GDRIVE):].partition("/")[2])
    if is_remote(root):
        if source == root.rstrip("/"):
            return source.rsplit("/", 1)[-1]
        return source[len(root):].lstrip("/") if source.startswith(root) else source
    if source == root:
        return os.path.basename(source)
    return os.path.relpath(source, root).replace(os.sep, "/")


class LocalSource:
    """A folder (or one file) on this machine: the streaming walk of
    :mod:`gristmill.sources.local`, confined to the source roots when they are set."""

    def __init__(self, root: str, *, skip: Sequence[Path] = (),
                 confine: Sequence[str | Path] = ()) -> None:
        self.root = root
        self._skip = list(skip)
        self._confine = list(confine)

    def canonical_root(self) -> str:
        """The absolute path."""
        return os.path.abspath(os.path.expanduser(self.root))

    def entries(self, matcher: Matcher) -> Iterator[FileFacts]:
        """The walk of the folder (see :func:`~gristmill.sources.local.walk`)."""
        return walk(Path(self.root), matcher, self._skip, self._confine)

    def open(self, name: str) -> BinaryIO:
        """The file, opened as a confined walk would open it."""
        roots = real_roots(self._confine)
        return os.fdopen(open_inside(name, roots), "rb")

    @contextlib.contextmanager
    def local_copy(self, name: str, directory: Path, max_bytes: int, *,
                   on_block: Callable[[], None] | None = None) -> Iterator[Spooled]:
        """The file itself: it is already local, and extractors read it in place."""
        yield Spooled(Path(name), os.stat(name).st_size)


@contextlib.contextmanager
def spool(stream: Iterator[bytes], directory: Path, name: str, max_bytes: int,
          *, expected_size: int | None = None,
          on_block: Callable[[], None] | None = None) -> Iterator[Spooled]:
    """Write ``stream`` to a temporary file named ``name`` (its suffix tells the
    extractor its type) in a fresh folder under ``directory``, hashing it as it goes;
    the folder is removed when the context ends, whatever happens.

    Raises:
        LimitExceeded: the stream is longer than ``max_bytes``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # The folder is named for this process, so a sweep can tell a copy left by a killed
    # worker (its process gone) from one in use.
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=directory))
    try:
        path = folder / (_safe_name(name) or "object")
        digest = hashlib.sha256()
        size = 0
        with path.open("wb") as out:
            for block in stream:
                size += len(block)
                if size > max_bytes:
                    raise LimitExceeded(f"over the {max_bytes / 2**20:.0f} MB limit "
                                        "(max_file_mb)")
                digest.update(block)
                out.write(block)
                if on_block is not None:
                    on_block()
        if expected_size is not None and size != expected_size:
            raise OSError(f"got {size} bytes of {expected_size}")
        yield Spooled(path, size, digest.hexdigest())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_spool(directory: Path) -> None:
    """Remove the copies left in ``directory`` by processes that no longer run (a
    worker killed mid-download)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _safe_name(name: str) -> str:
    """The base name of an object key, safe as a file name (no path, no odd bytes)."""
    base = name.rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "._- ()" else "_" for c in base)[-200:].lstrip(".")

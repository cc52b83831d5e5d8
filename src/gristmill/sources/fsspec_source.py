"""Any filesystem fsspec knows (``sftp://``, ``ftp://``, ``gcs://``, ``abfs://``,
``webdav://``, ``smb://``, ``hdfs://``...) as a source.

fsspec itself is the optional extra ``gristmill[fsspec]``; each protocol needs its own
implementation package as well (``sshfs`` for ``sftp://``, ``gcsfs`` for ``gcs://``,
``adlfs`` for ``abfs://``; ``ftp://`` needs none). ``s3://`` and ``gdrive://`` have
their own sources, and local paths are given as paths (``file://`` is refused: a folder
walk confines what it opens to the source roots, fsspec's local filesystem would not).

The listing is ``fs.walk``: one directory listed at a time, never the whole tree in
memory, hidden files and folders left out as a folder walk leaves them. Items are named
by their URL, ``scheme://host/path/to/file``. The change token is the strongest cheap
fact the filesystem reports in its listing (an ETag, an MD5, a version or generation),
else its size and modification time: an entry whose token equals the catalog's is
unchanged and is never downloaded.

Credentials come from fsspec's own configuration (its config files, or
``FSSPEC_<PROTOCOL>_<KWARG>`` variables such as ``FSSPEC_SFTP_PASSWORD``), or from the
URL itself (``ftp://user:password@host/docs/``). A user and password in the URL are kept
out of every name: the root and the items are recorded without them, and the password
lives only in this process's memory (:func:`credentials`, handed to the workers), so a
job resumed by another process needs the configuration route.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ftplib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import unquote

from gristmill.catalog import FileFacts
from gristmill.errors import ConfigError, ExtractionError, ItemError, SourceError, TransientError
from gristmill.sources.base import ObjectTooLarge, Spooled, spool
from gristmill.sources.local import Matcher

__all__ = ["FsspecSource", "change_token", "credentials", "item_error", "strip_userinfo",
           "use_credentials", "use_environment"]

_T = TypeVar("_T")
_BLOCK = 1 << 20
# Protocols fsspec knows that are not sources: local ones (a path is given as a path,
# so the source roots confine it) and wrappers that need another filesystem inside.
_NOT_SOURCES = frozenset({"file", "local", "memory", "dir", "reference", "blockcache",
                          "filecache", "simplecache", "cached", "zip", "tar", "libarchive",
                          "jlab", "jupyter", "generic", "data"})
_INSTALL = ("pip install 'gristmill[fsspec]' and the filesystem's own package (sshfs for "
            "sftp://, gcsfs for gcs://, adlfs for abfs://)")
# Listing fields that identify an object's content or version, strongest first, as
# fsspec implementations spell them (s3fs, gcsfs, adlfs, webdav4, gdrivefs, HTTP).
_TOKEN_FIELDS = ("ETag", "etag", "e_tag", "md5Checksum", "md5Hash", "md5", "content_md5",
                 "crc32c", "VersionId", "version_id", "generation", "version")
# Where the network errors of fsspec implementations come from (sshfs, sftp, gcsfs,
# adlfs, webdav4, smb): a failure of theirs that is no refusal is a passing one.
_NETWORK_LIBRARIES = frozenset({"aiohttp", "paramiko", "asyncssh", "requests", "httpx",
                                "httpcore", "urllib3", "smbprotocol"})
_MTIME_FIELDS = ("mtime", "modify", "LastModified", "last_modified", "updated", "modified",
                 "modificationTime", "time", "created")

# user and password given in URLs, by "scheme://host[:port]" (see the module docstring).
_credentials: dict[str, tuple[str, str | None]] = {}
_lock = threading.Lock()


def strip_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` part, scheme and host in lower case."""
    scheme, netloc, rest = _split(url)
    return f"{scheme}://{netloc.rpartition('@')[2].lower()}{rest}"


def credentials() -> tuple[tuple[str, str, str | None], ...]:
    """The users and passwords given in URLs to this process, by ``scheme://host``."""
    with _lock:
        return tuple((key, user, password) for key, (user, password) in _credentials.items())


def use_credentials(given: Iterable[tuple[str, str, str | None]]) -> None:
    """Make ``given`` (what :func:`credentials` returned in the driver) this worker's."""
    with _lock:
        for key, user, password in given:
            _credentials[key] = (user, password)


def use_environment(variables: Iterable[tuple[str, str]]) -> None:
    """Make ``variables`` (the driver's ``FSSPEC_*``) this worker's fsspec configuration:
    workers fork from a server started before the caller may have set them, and fsspec
    reads them once, when it is imported."""
    wanted = dict(variables)
    current = {name: value for name, value in os.environ.items()
               if name.startswith("FSSPEC_")}
    if wanted == current:
        return
    for name in current:
        del os.environ[name]
    os.environ.update(wanted)
    from fsspec import config

    config.conf.clear()
    config.set_conf_files(config.conf_dir, config.conf)
    config.set_conf_env(config.conf)
    _filesystems().clear()


def _split(url: str) -> tuple[str, str, str]:
    """``(scheme, netloc, rest)`` of ``url``, ``rest`` as written (``/path``, or empty)."""
    scheme, _, after = url.partition("://")
    netloc, slash, path = after.partition("/")
    return scheme.lower(), netloc, slash + path


def _remember(url: str) -> str:
    """Keep the user and password of ``url`` for its host; the URL without them."""
    scheme, netloc, _ = _split(url)
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        with _lock:
            _credentials[f"{scheme}://{host.lower()}"] = (
                unquote(user), unquote(password) if colon else None)
    return strip_userinfo(url)


def _filesystem_class(scheme: str) -> Any:
    """fsspec's implementation of ``scheme``.

    Raises:
        SourceError: fsspec is missing, does not know the scheme, or its package is not
            installed.
    """
    try:
        import fsspec
    except ImportError:
        raise SourceError(f"{scheme}:// is not a source gristmill reads without fsspec: "
                          f"{_INSTALL}; or give a folder, an s3:// or a gdrive:// URL"
                          ) from None
    if scheme in _NOT_SOURCES or scheme not in fsspec.available_protocols():
        raise SourceError(f"{scheme}:// is not a source gristmill reads: give a folder, an "
                          "s3://bucket/prefix/, a gdrive:// URL, or the URL of a filesystem "
                          f"fsspec knows ({_INSTALL})")
    try:
        return fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as exc:
        raise SourceError(f"reading {scheme}:// needs a package that is not installed: "
                          f"{exc}") from None


class FsspecSource:
    """The files under one URL of an fsspec filesystem (see the module docstring).

    Raises:
        SourceError: the scheme is not one fsspec can read here (see
            :func:`_filesystem_class`).
    """

    def __init__(self, root: str) -> None:
        self.root = _remember(root)
        scheme, netloc, _ = _split(self.root)
        self._scheme = scheme
        self._base = f"{scheme}://{netloc}"
        self._class = _filesystem_class(scheme)
        # The path of the URL's host (or bucket) in the filesystem's own spelling: "/"
        # for a server (ftp, sftp), the bucket for an object store (gcs, abfs).
        self._top = str(self._class._strip_protocol(f"{self._base}/")).rstrip("/")
        self._path = self._fs_path(self.root)

    def _fs_path(self, url: str) -> str:
        """The filesystem's path of ``url`` (a URL under this source's host)."""
        rest = _split(strip_userinfo(url))[2].strip("/")
        return f"{self._top}/{rest}" if rest or not self._top else self._top

    @property
    def _fs(self) -> Any:
        return _filesystem(self._class, self._base)

    def _using(self, use: Callable[[Any], _T]) -> _T:
        """``use(fs)`` with this thread's connection; one kept from earlier that turns
        out broken (the server restarted, or closed it as idle) is replaced, once."""
        kept = _kept(self._class, self._base)
        try:
            return use(self._fs)
        except (FileNotFoundError, PermissionError):
            raise
        except (OSError, EOFError, ftplib.Error):
            _forget(self._class, self._base)
            if not kept:
                raise
        return use(self._fs)

    def canonical_root(self) -> str:
        """``scheme://host/path/`` for a folder, ``scheme://host/path`` for a file, no
        user or password in either.

        Raises:
            SourceError: the URL cannot be read (no such path, refused, unreachable).
        """
        def kind(fs: Any) -> Any:
            fs.invalidate_cache()
            return fs.info(self._path).get("type")

        try:
            found = self._using(kind)
        except FileNotFoundError:
            raise SourceError(f"{self.root} does not exist; check the URL") from None
        except Exception as exc:
            raise _listing_error(exc, self.root, self._base) from exc
        return self.root.rstrip("/") + ("/" if found == "directory" else "")

    def entries(self, matcher: Matcher) -> Iterator[FileFacts]:
        """The files under the root that ``matcher`` admits (matched on the path below
        the root), one directory listing at a time.

        Raises:
            SourceError: a listing failed (a folder left out would lose its items).
        """
        top = self._path.rstrip("/") or "/"

        def look(fs: Any) -> dict[str, Any]:
            fs.invalidate_cache()  # a long-lived process (serve) lists afresh each run
            return cast(dict[str, Any], fs.info(top))

        try:
            info = self._using(look)
            fs = self._fs
            if info.get("type") != "directory":
                yield self._facts(info, self.root.rstrip("/"))
                return
            prefix = self.root.rstrip("/") + "/"
            # on_error="raise": a folder that cannot be listed must fail the walk, not
            # vanish from it (its items would be removed as deleted).
            for folder, dirs, files in fs.walk(top, detail=True, on_error="raise"):
                for name in [name for name in dirs if name.startswith(".")]:
                    del dirs[name]  # pruned in place: walk() does not descend into it
                below = folder[len(top):].strip("/")
                for name, facts in sorted(files.items()):
                    relative = f"{below}/{name}" if below else name
                    if name.startswith(".") or not name or not matcher(relative):
                        continue
                    yield self._facts(facts, prefix + relative)
                fs.invalidate_cache(folder)  # a listing is not kept once it was read
        except FileNotFoundError:
            raise SourceError(f"cannot list {self.root}: it does not exist (any more); "
                              "check the URL") from None
        except SourceError:
            raise
        except Exception as exc:
            _forget(self._class, self._base)
            raise _listing_error(exc, self.root, self._base) from exc

    @staticmethod
    def _facts(info: dict[str, Any], name: str) -> FileFacts:
        size = int(info.get("size") or 0)
        mtime = _mtime_ns(info)
        return FileFacts(name, size=size, mtime_ns=mtime,
                         change_token=change_token(info, size, mtime))

    def open(self, name: str) -> BinaryIO:
        """The file's bytes as a stream, read as it is consumed."""
        path = self._fs_path(name)
        return cast(BinaryIO, self._using(lambda fs: fs.open(path, "rb", block_size=_BLOCK)))

    @contextlib.contextmanager
    def local_copy(self, name: str, directory: Path, max_bytes: int, *,
                   on_block: Callable[[], None] | None = None) -> Iterator[Spooled]:
        """Download file ``name`` into a spool file in ``directory`` (capped and hashed
        as it streams), deleted when the context ends.

        Raises:
            ObjectTooLarge: the file is over ``max_bytes`` (nothing is downloaded).
            Exception: the filesystem's own (see :func:`item_error`).
        """
        path = self._fs_path(name)

        def opened(fs: Any) -> Any:
            # A fresh look: a worker's filesystem outlives runs, and the size it opens
            # the file with must be today's (the listing is its parent's, for FTP).
            fs.invalidate_cache(fs._parent(path))
            return fs.open(path, "rb", block_size=_BLOCK)

        stream = self._using(opened)
        with contextlib.closing(stream):
            size = getattr(stream, "size", None)
            if isinstance(size, int) and size > max_bytes:
                raise ObjectTooLarge(size, max_bytes)
            try:
                with spool(_blocks(stream), directory, path, max_bytes,
                           expected_size=size if isinstance(size, int) else None,
                           on_block=on_block) as copy:
                    yield copy
            except (OSError, EOFError, ftplib.Error):
                # A broken connection stays broken: the next item connects afresh.
                _forget(self._class, self._base)
                raise


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    while block := stream.read(_BLOCK):
        yield block


# One filesystem per protocol, host and thread, built with fsspec's configuration
# applied (skip_instance_cache: a connection is not shared by two threads, is closed
# with its thread, and a broken one is dropped here, not kept by fsspec's own cache).
_local = threading.local()


def _filesystems() -> dict[tuple[str, str, object], Any]:
    if not hasattr(_local, "filesystems"):
        _local.filesystems = {}
    return cast(dict[tuple[str, str, object], Any], _local.filesystems)


def _filesystem(cls: Any, base: str) -> Any:
    with _lock:
        login = _credentials.get(base)
    # The login is part of the key: a URL with another user or password is another
    # connection, never one logged in with earlier credentials.
    key = (cls.__name__, base, login)
    fs = _filesystems().get(key)
    if fs is None:
        options = dict(cls._get_kwargs_from_urls(f"{base}/"))
        if login is not None:
            options["username"] = login[0]
            if login[1] is not None:
                options["password"] = login[1]
        fs = _filesystems()[key] = cls(skip_instance_cache=True, **options)
    return fs


def _kept(cls: Any, base: str) -> bool:
    """Whether this thread holds a connection to ``base`` made earlier."""
    return any(key[:2] == (cls.__name__, base) for key in _filesystems())


def _forget(cls: Any, base: str) -> None:
    for key in [key for key in _filesystems() if key[:2] == (cls.__name__, base)]:
        del _filesystems()[key]


def change_token(info: dict[str, Any], size: int, mtime_ns: int) -> str:
    """What tells one version of a file from another in its listing entry ``info``: an
    ETag, MD5, CRC or version the filesystem reports, else its size and mtime."""
    for field in _TOKEN_FIELDS:
        value = info.get(field)
        if value not in (None, "", b""):
            if isinstance(value, bytes | bytearray):
                value = value.hex()
            return f"{field.lower()}:{str(value).strip(chr(34))}"
    return f"mtime:{size}:{mtime_ns}"


def _mtime_ns(info: dict[str, Any]) -> int:
    """The modification time of ``info`` in nanoseconds (0: none reported), from the
    field and type its filesystem uses (a datetime, epoch seconds or milliseconds, an
    ISO string, FTP's ``YYYYMMDDHHMMSS``)."""
    for field in _MTIME_FIELDS:
        value = info.get(field)
        if value in (None, ""):
            continue
        try:
            return _as_ns(value)
        except (TypeError, ValueError, OverflowError):
            continue
    return 0


def _as_ns(value: Any) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1_000_000_000)
    if isinstance(value, int | float):
        # Seconds, milliseconds (HDFS) or nanoseconds, told apart by magnitude.
        seconds = value / 1e9 if value > 1e17 else value / 1e3 if value > 1e11 else value
        return int(seconds * 1_000_000_000)
    text = str(value).strip()
    if text[:14].isdigit() and len(text) >= 14:  # FTP MLSD: UTC, maybe ".sss"
        stamp = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        fraction = float("0" + text[14:]) if text[14:].startswith(".") else 0.0
        return int((stamp.timestamp() + fraction) * 1_000_000_000)
    return _as_ns(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def item_error(exc: BaseException, url: str) -> ItemError | ConfigError:
    """What a failure to read ``url`` means for its item: permanent (gone, refused),
    transient (network down, a timeout, the server busy: retried, and again on the
    next run), or the run's configuration (the login refused)."""
    if isinstance(exc, ItemError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ExtractionError("the file is no longer there (deleted since it was "
                               "listed); the next run removes its item", path=url)
    if isinstance(exc, PermissionError | IsADirectoryError | NotADirectoryError):
        return ExtractionError(f"cannot read: {exc}"[:300], path=url)
    if isinstance(exc, ftplib.error_perm):
        text = str(exc)
        if text.startswith("530"):
            return ConfigError(f"the FTP server refused the login for {url}: {text}; give "
                               "the user and password in the URL or FSSPEC_FTP_USERNAME "
                               "and FSSPEC_FTP_PASSWORD")
        return ExtractionError(f"the FTP server refused it: {text}"[:300], path=url)
    if _is_login(exc):
        return ConfigError(f"the server refused the credentials for {url}: "
                           f"{type(exc).__name__}: {exc}"[:300])
    if _is_network(exc):
        scheme, host, _ = _split(url)
        return TransientError(f"cannot reach {scheme}://{host}: {type(exc).__name__}: "
                              f"{exc or 'the connection closed'}"[:300], path=url)
    return ExtractionError(f"{type(exc).__name__}: {exc}"[:300], path=url)


def _is_login(exc: BaseException) -> bool:
    """Whether ``exc`` is a network library's refusal of the credentials (paramiko's
    ``AuthenticationException``, asyncssh's ``PermissionDenied``...): the run's
    configuration, not a passing failure."""
    name = type(exc).__name__
    return _is_network(exc) and not isinstance(exc, OSError | EOFError | ftplib.Error) \
        and any(word in name for word in ("Auth", "Credential", "PermissionDenied"))


def _is_network(exc: BaseException) -> bool:
    """Whether ``exc`` says the server is away, slow or busy (not that the file is bad):
    a socket error or timeout, an FTP 4xx or a broken FTP reply, or an error of the
    network libraries fsspec implementations use."""
    if isinstance(exc, OSError | EOFError | TimeoutError | ftplib.Error):
        return True
    modules = {kind.__module__.split(".", 1)[0] for kind in type(exc).__mro__}
    return bool(modules & _NETWORK_LIBRARIES) and not isinstance(exc, ValueError | TypeError)


def _listing_error(exc: BaseException, root: str, base: str) -> SourceError:
    """A failed listing of ``root`` as one sentence saying what to check."""
    if isinstance(exc, ftplib.error_perm) and str(exc).startswith("530"):
        return SourceError(f"cannot list {root}: the server refused the login ({exc}); "
                           "give the user and password in the URL, or in fsspec's "
                           "configuration (FSSPEC_FTP_USERNAME, FSSPEC_FTP_PASSWORD)")
    if isinstance(exc, PermissionError):
        return SourceError(f"cannot list {root}: permission denied ({exc}); check the "
                           "credentials")
    if _is_network(exc):
        return SourceError(f"cannot list {root}: cannot reach {base} ({type(exc).__name__}: "
                           f"{exc}); check that the server is up and run again")
    return SourceError(f"cannot list {root}: {type(exc).__name__}: {exc}")


if TYPE_CHECKING:
    from gristmill.sources.base import Source

    def _conforms(source: FsspecSource) -> Source:
        # mypy checks here that the adapter still matches the interface as it evolves.
        return source

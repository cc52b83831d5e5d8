"""The store of originals: every ingested file kept once, named by its sha256.

The ``store`` setting names it: a folder (a NAS mount) or an ``s3://bucket/prefix/``.
Each original lies at ``<prefix>ab/cd/<sha256>`` (the hash's first two byte pairs as
folders, so no folder holds millions of names), so a knowledge base can be rebuilt or
moved without its sources. A name is a promise about the bytes: an object is only ever
written with bytes that hash to its name, and never rewritten.

* Idempotent: :meth:`ObjectStore.put` first asks whether the object is there (a stat, or
  an S3 ``HEAD``) and writes nothing when it is. The same bytes from another source, or
  another run, cost one such question.
* Never a wrong object: the bytes are hashed as they are written, and a digest that is
  not the name refuses the write (:class:`DigestMismatch`; the source changed while it
  was read). A folder store writes a temporary file beside the objects, syncs it and
  renames it into place: a kill -9 leaves only a temporary file, removed by a later
  put. An S3 store sends a small object in one ``PUT`` with its ``ChecksumSHA256``
  (checked by the server: AWS, SeaweedFS), and a large one as a multipart upload whose
  reader refuses the last bytes when the digest differs, so the upload is aborted and
  never completed; an upload killed mid-way leaves only an incomplete multipart upload,
  invisible to readers (a bucket lifecycle rule, ``AbortIncompleteMultipartUpload``,
  removes them).
* Checked when read back: :meth:`ObjectStore.local_copy` hashes the object as it copies
  it and refuses one whose bytes are not its name.

Failures are translated once, in :func:`store_error`: unreachable or busy is a
:class:`~gristmill.errors.TransientError` (the item is retried: the store must stay
complete); no bucket, no folder, refused credentials or a full disk are a
:class:`~gristmill.errors.ConfigError` saying what to fix.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gristmill.errors import ConfigError, TransientError
from gristmill.sources.base import Spooled, process_alive, spool

__all__ = ["DigestMismatch", "FolderStore", "ObjectStore", "S3Store", "object_key",
           "open_store", "store_error"]

_BLOCK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Up to this size an object goes in one PUT, checked by the server (ChecksumSHA256) and
# held in memory while it is sent; above it, a multipart upload in parts of _PART bytes,
# at most _PARTS_IN_MEMORY of them buffered: memory stays bounded for any size.
_SINGLE = 8 << 20
_PART = 8 << 20
_PARTS_IN_MEMORY = 4
_INCOMING = ".incoming"  # a folder store's temporary files, beside the objects


class DigestMismatch(ValueError):
    """Bytes that do not hash to the sha256 they were to be stored (or were stored)
    under: nothing was written, or the stored copy is damaged."""

    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"the bytes ({size:,}) hash to {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


def object_key(sha256: str) -> str:
    """``ab/cd/<sha256>``: where an original lies below the store's prefix.

    Raises:
        ValueError: ``sha256`` is not 64 lower-case hex digits.
    """
    if not _SHA256.match(sha256):
        raise ValueError(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class ObjectStore(Protocol):
    """Where originals are kept by their sha256 (see the module docstring)."""

    #: The store as the setting names it, for messages.
    location: str

    def key(self, sha256: str) -> str:
        """The object's name: ``ab/cd/<sha256>`` below the prefix."""
        ...

    def has(self, sha256: str) -> bool:
        """Whether the object is there."""
        ...

    def put(self, sha256: str, source: BinaryIO, size: int) -> bool:
        """Store the ``size`` bytes ``source`` holds (read from where it stands) as
        ``sha256``; False when the object was there already (nothing is read or
        written).

        Raises:
            DigestMismatch: the bytes read are not ``sha256``'s (or not ``size`` of
                them): nothing was stored.
        """
        ...

    def local_copy(self, sha256: str, directory: Path, name: str,
                   max_bytes: int) -> contextlib.AbstractContextManager[Spooled]:
        """A file in ``directory`` named like ``name`` (its suffix tells an extractor
        its type) holding the object, checked against its sha256 as it is copied;
        removed when the context ends.

        Raises:
            DigestMismatch: the stored bytes are damaged.
            FileNotFoundError: a folder store has no such object.
        """
        ...


def open_store(setting: str | os.PathLike[str], *,
               s3_endpoint_url: str | None = None) -> ObjectStore:
    """The store the ``store`` setting names: an ``s3://bucket/prefix/`` or a folder.

    Raises:
        ConfigError: a URL of another scheme, or a malformed ``s3://`` URL.
    """
    text = str(setting)
    if "://" not in text:
        return FolderStore(Path(text).expanduser())
    if not text.lower().startswith("s3://"):
        raise ConfigError(f"store {text!r}: give an s3://bucket/prefix/ URL or a folder")
    return S3Store.for_url(text, endpoint_url=s3_endpoint_url)


class FolderStore:
    """Originals in a folder (a NAS mount, a second disk).

    The folder must exist: a store that is not mounted must not fill the empty mount
    point on the local disk instead.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self._swept = False

    def key(self, sha256: str) -> str:
        """``ab/cd/<sha256>``."""
        return object_key(sha256)

    def path(self, sha256: str) -> Path:
        """Where the object lies."""
        return self.root / object_key(sha256)

    def has(self, sha256: str) -> bool:
        """Whether the object's file is there."""
        return self.path(sha256).is_file()

    def put(self, sha256: str, source: BinaryIO, size: int) -> bool:
        """Copy ``source`` into a temporary file while hashing it, sync it, and rename
        it to its name only if the digest is ``sha256`` (see :meth:`ObjectStore.put`).

        Raises:
            FileNotFoundError: the store's folder does not exist.
        """
        final = self.path(sha256)
        if final.is_file():
            return False
        if not self.root.is_dir():
            raise FileNotFoundError(errno.ENOENT, "the store folder does not exist",
                                    str(self.root))
        incoming = self.root / _INCOMING
        incoming.mkdir(exist_ok=True)
        if not self._swept:
            _sweep(incoming)
            self._swept = True
        # Named for this host and process: a later put removes it if the process is gone
        # (a kill -9 mid-copy); a process of another host sharing the folder is not
        # judged by this host's process table.
        temporary = incoming / f"{_HOST}.{os.getpid()}.{uuid.uuid4().hex}.part"
        try:
            with temporary.open("xb") as out:
                _copy_checked(source, out.write, sha256, size)
                out.flush()
                os.fsync(out.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            # Order matters for crash safety: the bytes are on disk (fsync) before the
            # rename gives them their name, and the rename is atomic: a reader sees the
            # whole object or none. Another process storing the same bytes at once
            # renames identical bytes over it.
            os.replace(temporary, final)
            _sync_folder(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return True

    @contextlib.contextmanager
    def local_copy(self, sha256: str, directory: Path, name: str,
                   max_bytes: int) -> Iterator[Spooled]:
        """The object copied into ``directory`` (see :meth:`ObjectStore.local_copy`)."""
        with self.path(sha256).open("rb") as stored, \
                spool(iter(lambda: stored.read(_BLOCK), b""), directory, name,
                      max_bytes) as copy:
            _check(copy, sha256)
            yield copy


class S3Store:
    """Originals under an ``s3://bucket/prefix/`` (AWS S3 or an S3-compatible store),
    with the client, endpoint and credentials of :mod:`gristmill.sources.s3`."""

    def __init__(self, url: str, client: Any) -> None:
        from gristmill.sources.s3 import parse_url

        bucket, prefix = parse_url(url)
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.location = f"s3://{bucket}/{self.prefix}"
        self._client = client

    @classmethod
    def for_url(cls, url: str, *, endpoint_url: str | None = None) -> S3Store:
        """The store at ``url``, with the process's S3 client for ``endpoint_url``.

        Raises:
            ConfigError: ``url`` is not a valid ``s3://bucket/prefix/``.
        """
        from gristmill.errors import SourceError
        from gristmill.sources.s3 import client_for, parse_url

        try:
            parse_url(url)
        except SourceError as exc:
            raise ConfigError(f"store {url!r}: {exc}") from None
        return cls(url, client_for(endpoint_url))

    def key(self, sha256: str) -> str:
        """``<prefix>ab/cd/<sha256>``: the object's key in the bucket."""
        return self.prefix + object_key(sha256)

    def has(self, sha256: str) -> bool:
        """Whether the object is there (one ``HEAD``)."""
        from gristmill.sources.s3 import is_missing

        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except Exception as exc:
            if is_missing(exc):
                return False
            raise
        return True

    def put(self, sha256: str, source: BinaryIO, size: int) -> bool:
        """``HEAD``, then upload when absent (see :meth:`ObjectStore.put` and the module
        docstring): a managed transfer, multipart above 8 MB, in bounded memory."""
        if self.has(sha256):
            return False
        key = self.key(sha256)
        reader = _Checked(source, sha256, size)
        if size <= _SINGLE:
            body = reader.read()  # checked here: a wrong digest raises before any PUT
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                    ChecksumSHA256=checksum)
            return True
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=_SINGLE, multipart_chunksize=_PART,
                                max_concurrency=_PARTS_IN_MEMORY)
        # s3transfer reads a stream that cannot seek part by part, buffering at most
        # this many parts (its default is 10).
        config.max_in_memory_upload_chunks = _PARTS_IN_MEMORY
        # The reader raises on the last part when the digest differs: s3transfer then
        # aborts the multipart upload instead of completing it, so no object appears.
        self._client.upload_fileobj(reader, self.bucket, key, Config=config)
        return True

    @contextlib.contextmanager
    def local_copy(self, sha256: str, directory: Path, name: str,
                   max_bytes: int) -> Iterator[Spooled]:
        """The object downloaded into ``directory`` (with the ranged resume of
        :class:`~gristmill.sources.s3.S3Source`), checked against its sha256."""
        from gristmill.sources.s3 import S3Source

        url = f"s3://{self.bucket}/{self.key(sha256)}"
        source = S3Source(url, self._client)
        with source.local_copy(url, directory, max_bytes, spool_name=name) as copy:
            _check(copy, sha256)
            yield copy


def store_error(exc: BaseException, store: str) -> TransientError | ConfigError:
    """What a failure to use the store means: transient (unreachable, busy, an I/O
    hiccup: the item is retried) or the run's configuration (no bucket or folder,
    refused credentials, a full or read-only disk: the job pauses with what to fix)."""
    if isinstance(exc, TransientError | ConfigError):
        return exc
    if isinstance(exc, OSError) and not _is_network(exc):
        return _folder_error(exc, store)
    from gristmill.sources.s3 import error_code, item_error

    meaning = item_error(exc, store)
    if isinstance(meaning, TransientError):
        return meaning
    if isinstance(meaning, ConfigError):  # no credentials at all
        return ConfigError(f"cannot write originals to the store {store}: {meaning}")
    # What item_error calls permanent for one object is the whole store's trouble here:
    # a missing bucket or refused credentials fail every item alike. (A HEAD in a
    # bucket that does not exist answers 403 on some servers, SeaweedFS among them.)
    code = error_code(exc)
    if code is None:  # not the server's answer: an error of this process, shown as is
        return ConfigError(f"cannot write originals to the store {store}: "
                           f"{type(exc).__name__}: {exc}"[:400])
    if code == "NoSuchBucket":
        return ConfigError(f"the store {store} names a bucket that does not exist at this "
                           "endpoint: create it, or fix `store` (and s3_endpoint_url)")
    return ConfigError(f"the store {store} refused the request ({meaning.reason}): check "
                       "that its bucket exists and that the credentials may read and write "
                       "there (s3:GetObject, s3:PutObject), or fix `store`")


def _folder_error(exc: OSError, store: str) -> TransientError | ConfigError:
    if exc.errno == errno.ENOENT and exc.filename == store:
        return ConfigError(f"the store folder {store} does not exist: create it (or mount "
                           "it), or fix `store`")
    if exc.errno == errno.ENOSPC:
        return ConfigError(f"the store {store} is full: free space there, then resume")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ConfigError(f"cannot write originals to the store {store} "
                           f"({exc.strerror}): fix its permissions, or `store`")
    return TransientError(f"cannot write to the store {store}: {exc}"[:300], path=store)


def _is_network(exc: OSError) -> bool:
    """Whether an OSError is a connection's (urllib3 and botocore raise subclasses)."""
    return isinstance(exc, ConnectionError | TimeoutError) or \
        type(exc).__module__.split(".")[0] in {"urllib3", "botocore"}


class _Checked:
    """Reads ``size`` bytes from ``source`` and hashes them; reading the last of them
    (or an early end) raises :class:`DigestMismatch` unless they are ``sha256``'s.

    It does not seek, so s3transfer reads it once, in order, part by part."""

    def __init__(self, source: BinaryIO, sha256: str, size: int) -> None:
        self._source = source
        self._sha256 = sha256
        self._size = size
        self._read = 0
        self._digest = hashlib.sha256()
        self._verified = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int | None = -1) -> bytes:
        left = self._size - self._read
        if left <= 0:
            self._verify()  # an empty original is checked all the same
            return b""
        block = self._source.read(left if amount is None or amount < 0
                                  else min(amount, left))
        self._read += len(block)
        self._digest.update(block)
        if not block or self._read >= self._size:
            # Bytes past ``size`` are not read: a file appended to meanwhile still has
            # the first ``size`` bytes it was hashed with, and those are what is stored.
            self._verify()
        return block

    def _verify(self) -> None:
        if self._verified:
            return
        actual = self._digest.hexdigest()
        if self._read != self._size or actual != self._sha256:
            raise DigestMismatch(self._sha256, actual, self._read)
        self._verified = True


def _copy_checked(source: BinaryIO, write: Callable[[bytes], object], sha256: str,
                  size: int) -> None:
    reader = _Checked(source, sha256, size)
    while block := reader.read(_BLOCK):
        write(block)


def _check(copy: Spooled, sha256: str) -> None:
    if copy.sha256 != sha256:
        raise DigestMismatch(sha256, copy.sha256 or "", copy.size)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut could otherwise lose it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some network file systems refuse fsync on a folder
    finally:
        os.close(fd)


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:60] or "host"


def _sweep(incoming: Path) -> None:
    """Remove this host's temporary files whose process is gone (killed mid-copy)."""
    for entry in incoming.glob(f"{_HOST}.*.part"):
        pid = entry.name.split(".")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                entry.unlink()

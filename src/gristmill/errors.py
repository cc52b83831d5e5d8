"""The exceptions gristmill raises, split by who has to act.

::

                                                                            HTTP exit
    GristmillError
     ├── ConfigError            a setting or the model is wrong: the user     400    2
     │    │                     fixes the config (or the request)
     │    ├── ModelError        a model (the embedding model, the audio       500    2
     │    │                     model) is missing, fails its checksum or
     │    │                     does not load
     │    ├── HomeUnwritable    the home folder cannot be created or written  500    2
     │    ├── JobNotFound       no job has that id                            404    2
     │    ├── JobStateConflict  the job's state refuses the change (pausing   409    2
     │    │                     a paused job, resuming a running one)
     │    ├── CredentialError   a remote embedder refused its key even after  500    2
     │    │                     re-reading it: fix the credential, resume
     │    ├╌╌ ArchiveRefused    an archive to import is damaged, incomplete   400    2
     │    │                     or from a newer gristmill
     │    └╌╌ SinkRejected      a sink's service refused a request (a wrong   400    2
     │                          store id or base URL, a refused key)
     ├── EmbedderUnavailable    a remote embedder kept failing (429, 5xx,     503    1
     │                          timeouts) after its retries: run again later
     ├╌╌ SinkUnavailable        a sink's service (an OpenAI vector store)     503    1
     │                          kept failing after its retries: sync again
     ├── NoKnowledgeBase        nothing ingested at the home (or database)    500    1
     ├── ScanBusy               another audio scan holds the home's scan      409   75
     │                          lock: wait for it (``--wait``) or run later
     ├── SourceError            a source root cannot be read (missing         500    1
     │                          folder, no permission)
     ├── ItemError              one item cannot be processed; the run goes on
     │    ├── ExtractionError   permanent: corrupt, encrypted, truncated -> item `failed`
     │    │    └── LimitExceeded  over a safety limit (zip bomb, huge page) -> `failed`
     │    ├── Unsupported       no extractor for this type, or no text -> item `skipped`
     │    └── TransientError    may work on a later attempt (I/O hiccup) -> retried
     └── StoreError             the catalog/index database failed             500    1
          ├── StoreBusy         temporary (locked database): retry later      503    1
          │    ├── StoreUnavailable  the server is unreachable or restarting: 503    1
          │    │                     retried for ``store_retry_seconds``, then
          │    │                     the run stops
          │    └╌╌ QueueFull    a BatchWriter's queue stayed full: the        503    1
          │                     database is behind
          ├── StoreFull         the disk holding the database is full: free   507    1
          │                     space, re-run
          ├── StoreCorrupt      permanent: restore from a backup or re-ingest 500    1
          ├╌╌ DeadLettered      the database rejected one batched row: see    500    1
          │                     the dead letters
          └╌╌ WriterClosed      a row was inserted after its BatchWriter was  500    1
                                closed

A dashed branch (╌╌) is a class of another module (:mod:`gristmill.batching`,
:mod:`gristmill.ops.archive`, :mod:`gristmill.sinks`), not of this one.

Each class says how it is answered: :attr:`~GristmillError.http_status` is the status
the HTTP API answers with (one handler for the whole tree, ``api/problems.py``), and
:attr:`~GristmillError.exit_code` what the CLI exits with. A 5xx answer tells the client
:attr:`~GristmillError.public_detail` rather than the message, which may name a path or
a server. Item errors never reach either: the run records them on their item.

Every :class:`ItemError` carries the item's path so the reason can be shown next to it.
Third-party exceptions are translated in one place, :func:`translate_extraction_error`
(for extraction libraries) and :func:`translate_store_error` (for sqlite3 and psycopg).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import zipfile
import zlib
from typing import Any, ClassVar

__all__ = [
    "ConfigError",
    "CredentialError",
    "EmbedderUnavailable",
    "ExtractionError",
    "GristmillError",
    "HomeUnwritable",
    "ItemError",
    "JobNotFound",
    "JobStateConflict",
    "LimitExceeded",
    "ModelError",
    "NoKnowledgeBase",
    "ScanBusy",
    "SourceError",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TransientError",
    "Unsupported",
    "translate_extraction_error",
    "translate_store_error",
]


class GristmillError(Exception):
    """Base class of every error gristmill raises on purpose."""

    #: The status the HTTP API answers with when this error ends a request. Every class
    #: that can reach the API sets its own (a test checks), so none is 500 by accident.
    http_status: ClassVar[int] = 500
    #: What the CLI exits with: 2 for what the user fixes in settings or arguments, 1
    #: for the machine's or the data's failures.
    exit_code: ClassVar[int] = 1
    #: What an API client is told of a 5xx instead of the message, which is for the
    #: server's operator (it may name a path or a server address): the log has that.
    #: Below 500 the message itself is the answer (it is about the request).
    public_detail: ClassVar[str] = "the server failed; the server log has the reason"


class ConfigError(GristmillError):
    """A setting has a bad value or a required resource is not configured."""

    http_status = 400  # a request the settings refuse (vector search without an embedder)
    exit_code = 2


class ModelError(ConfigError):
    """A model cannot be loaded: the embedding model (missing file, wrong checksum) or
    the audio model (not configured, missing, not a YAMNet-style model, no class map)."""

    http_status = 500  # the server's model: nothing the client can change
    public_detail = "a model of the server cannot be loaded; the server log has the reason"


class HomeUnwritable(ConfigError):
    """The home folder cannot be created or written (a file in the way, a read-only or
    immutable folder): the user chooses another."""

    http_status = 500  # the server's home: its operator chooses another
    public_detail = ("the server's home folder cannot be written; the server log has the "
                     "reason")

    def __init__(self, home: str | os.PathLike[str], reason: str | None = None) -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(f"{home} cannot be created or written{because}: choose another "
                         "with --home or GRISTMILL_HOME")
        self.home = home


class JobNotFound(ConfigError):
    """No job has the id asked for."""

    http_status = 404

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job {job_id}: `gristmill jobs list` shows the jobs")
        self.job_id = job_id


class JobStateConflict(ConfigError):
    """The job's state refuses the change asked for (pausing a job that is not running,
    resuming a running one, cancelling an ended one)."""

    http_status = 409

    def __init__(self, job_id: int, state: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class CredentialError(ConfigError):
    """A remote embedder refused its credential (401/403) even after it was fetched
    again: the user renews or corrects it, then resumes the job."""

    http_status = 500  # the server's credential: nothing the client can change
    public_detail = ("the server's embedding service refused its credential; the server "
                     "log has the reason")

    def __init__(self, credential: str, problem: str, fix: str) -> None:
        super().__init__(f"{credential} {problem}: {fix}")
        self.credential = credential
        self.problem = problem


class EmbedderUnavailable(GristmillError):
    """A remote embedder kept answering 429 or 5xx, or kept timing out, after every
    retry: the service is down or over its quota, so the run stops, resumable."""

    http_status = 503
    public_detail = "the embedding service is unavailable right now"


class NoKnowledgeBase(GristmillError):
    """A command that only reads found no knowledge base where the settings point."""

    http_status = 500  # a server pointed at nothing: its operator's to fix

    def __init__(self, where: str, *, database: bool = False) -> None:
        if database:
            hint = ("run `gristmill ingest PATH` to make one there, or check --database "
                    "(GRISTMILL_DATABASE_URL)")
            message = f"no knowledge base in the PostgreSQL database {where}: {hint}"
        else:
            hint = ("run `gristmill ingest PATH` to make one there, or point --home "
                    "(GRISTMILL_HOME) at an existing one")
            message = f"no knowledge base at {where}: {hint}"
        super().__init__(message)
        self.where = where


class ScanBusy(GristmillError):
    """Another audio scan of the same home is running (it holds the home's scan lock):
    two scans at once would only compete for the same recordings."""

    http_status = 409
    exit_code = 75  # EX_TEMPFAIL: a scheduler (cron, systemd) may simply try again later

    def __init__(self, holder: int | None, lock: str) -> None:
        who = f"process {holder}" if holder else "another process"
        super().__init__(f"another audio scan ({who}) is running on this knowledge base "
                         f"(it holds {lock}): run again when it ends, or add --wait to "
                         "start as soon as it does")
        self.holder = holder
        self.lock = lock


class SourceError(GristmillError):
    """A source root (folder, URL) cannot be listed."""

    # The API checks a job's sources before it queues it (api/security.py); one that
    # fails later fails in the job's own process, so none reaches a client as this.
    http_status = 500


class ItemError(GristmillError):
    """One item cannot be processed; the run carries on with the others."""

    http_status = 500  # never reaches the API: the run records it on its item

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


class ExtractionError(ItemError):
    """The item is corrupt, encrypted or otherwise unreadable; retrying will not help."""


class LimitExceeded(ExtractionError):
    """The item exceeds a safety limit (decompressed size, page size, nesting)."""


class Unsupported(ItemError):
    """The item has a type gristmill does not extract, or holds no text."""


class TransientError(ItemError):
    """A temporary failure (I/O error, resource busy); the item is retried with backoff."""


class StoreError(GristmillError):
    """The catalog or index database failed."""

    http_status = 500
    public_detail = "the database failed; the server log has the reason"


class StoreBusy(StoreError):
    """The database is locked by another writer; retry later."""

    # Away (a restart) or busy: it comes back, so the answer says when to ask again
    # (the API adds Retry-After to every 503).
    http_status = 503
    public_detail = "the database is unavailable right now (restarting, unreachable or busy)"


class StoreUnavailable(StoreBusy):
    """The database server cannot be reached, or is shutting down or restarting."""

    http_status = 503


class StoreFull(StoreError):
    """The disk holding the database (this machine's, or the server's) is full."""

    http_status = 507  # Insufficient Storage
    public_detail = ("the database's disk is full; the server's operator must free space "
                     "(see its log)")

    def __init__(self, where: str, free_mb: int) -> None:
        super().__init__(f"disk full in {where}: free {free_mb} MB and re-run")
        self.where = where
        self.free_mb = free_mb


# What to ask a user to free when the database's disk is full: room for the write-ahead
# log to grow and be checkpointed, a tenth of the database beyond it, and never less.
_MIN_FREE_MB = 100


def room_to_free(database_bytes: int) -> int:
    """Megabytes to free on a full disk holding a database of ``database_bytes``."""
    return max(_MIN_FREE_MB, -(-database_bytes // (10 * 2**20)))


class StoreCorrupt(StoreError):
    """The database file is damaged; restore a backup or re-ingest into a new home."""

    http_status = 500


# errno values that describe the machine's state rather than the file's content (a
# full disk included: an extractor's temporary files did not fit, not the item's fault).
_TRANSIENT_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.EIO, errno.ENOMEM, errno.ETIMEDOUT,
     errno.ESTALE, errno.ENFILE, errno.EMFILE, errno.ENOSPC, errno.EDQUOT}
)


def translate_extraction_error(exc: BaseException, path: str | None = None) -> ItemError:
    """Map an exception raised while extracting one item to an :class:`ItemError`.

    Extraction libraries raise their own exception types (``PdfiumError``,
    ``BadZipFile``, ``KeyError`` from a broken OOXML package, ...). Deciding here, once,
    which of them are permanent keeps the retry policy in one place.
    """
    if isinstance(exc, ItemError):
        if exc.path is None:
            exc.path = path
        return exc
    if isinstance(exc, MemoryError):
        return LimitExceeded("needs more memory than the worker limit allows", path=path)
    if isinstance(exc, RecursionError):
        return LimitExceeded("structure nested too deeply to parse", path=path)
    if isinstance(exc, FileNotFoundError):
        return ExtractionError("file disappeared before it could be read", path=path)
    if isinstance(exc, PermissionError):
        return ExtractionError("permission denied", path=path)
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return TransientError(f"I/O error: {exc.strerror or exc}", path=path)
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError):
        return ExtractionError(f"corrupt or truncated archive: {exc}", path=path)
    name = type(exc).__name__
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
    if name == "PdfiumError":
        return ExtractionError(f"unreadable PDF: {message}", path=path)
    return ExtractionError(f"{name}: {message}"[:300], path=path)


def translate_store_error(exc: BaseException, where: str | None = None,
                          free_mb: int = _MIN_FREE_MB) -> StoreError:
    """Map a ``sqlite3`` or ``psycopg`` (and ``psycopg_pool``) exception to a
    :class:`StoreError` subclass.

    ``where`` names the database for a :class:`StoreFull` message (the folder holding
    the SQLite file, the PostgreSQL server), ``free_mb`` how much to ask the user to free.
    """
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return StoreFull(where or "the database's folder", free_mb)
    if not isinstance(exc, sqlite3.Error):
        return _translate_postgres_error(exc, where, free_mb)
    text = str(exc)
    # SQLITE_FULL: a write needed a page the disk (or the file's size limit) had not.
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in text:
        return StoreFull(where or "the database's folder", free_mb)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreBusy(f"database is busy: {text}; another gristmill process may be writing")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text
    ):
        return StoreCorrupt(f"database is damaged: {text}")
    return StoreError(f"database error: {text}")


_SQLITE_FULL = 13
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLSTATEs that say "not now" rather than "not this": deadlock and serialization
# failures, lock and statement timeouts, a server full of connections.
_PG_BUSY = frozenset({"40001", "40P01", "55P03", "55006", "57014", "53300"})
# ... and those that say the server is going away or not up yet (a restart, a failover):
# admin, crash and other shutdowns, "the database system is starting up". Class 08
# (connection exceptions) is matched by its prefix.
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "57P05"})
_PG_FULL = "53100"  # disk_full: "could not extend file ...: No space left on device"
_PG_CORRUPT = frozenset({"XX001", "XX002"})
_PG_CHECK_URL = ("check GRISTMILL_DATABASE_URL (or --database) and that the PostgreSQL "
                 "server is running")


def _translate_postgres_error(exc: BaseException, where: str | None,
                              free_mb: int) -> StoreError:
    # Matched by module, not imported: psycopg costs every worker an import otherwise.
    module = type(exc).__module__
    if module.startswith("psycopg_pool"):  # PoolTimeout, PoolClosed, TooManyRequests
        return StoreBusy(f"no free PostgreSQL connection: {_first_line(exc)}; raise "
                         "pool_size (GRISTMILL_POOL_SIZE) or run fewer processes at once")
    if not module.startswith("psycopg"):
        return StoreError(f"database error: {type(exc).__name__}: {_first_line(exc)}")
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    text = " ".join(str(exc).split())
    if sqlstate is None and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        # Connecting failed (no server answer to carry a SQLSTATE), or the connection
        # broke: unreachable is temporary, a wrong name or password is not.
        if "does not exist" in text:
            return StoreError(f"cannot open the PostgreSQL database: {text}; create it "
                              "(createdb NAME) or correct GRISTMILL_DATABASE_URL "
                              "(or --database)")
        if "authentication" in text or "password" in text:
            return StoreError(f"cannot open the PostgreSQL database: {text}; "
                              f"{_PG_CHECK_URL}")
        return StoreUnavailable(f"cannot reach PostgreSQL: {text}; {_PG_CHECK_URL}")
    if sqlstate in _PG_UNAVAILABLE or (sqlstate or "").startswith("08"):
        return StoreUnavailable(f"PostgreSQL is unavailable: {text}; {_PG_CHECK_URL}")
    if sqlstate in _PG_BUSY:
        return StoreBusy(f"database is busy: {text}")
    if sqlstate == _PG_FULL:
        return StoreFull(where or "the PostgreSQL server's data folder", free_mb)
    if sqlstate in _PG_CORRUPT:
        return StoreCorrupt(f"database is damaged: {text}; restore a backup or re-ingest")
    return StoreError(f"database error: {text}")


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

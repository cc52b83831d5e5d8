"""What runs inside an extraction worker process: extract one item, chunk it, return;
or, in an audio scan, find its sound events (:mod:`gristmill.audio.recording`).

Workers hold no database connection. They return a :class:`WorkResult` and the driver
commits it, so a worker killed at any instant leaves nothing half-written.
"""

from __future__ import annotations

import enum
import errno
import functools
import hashlib
import logging
import os
import resource
import signal
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import psutil

from gristmill.chunking import Chunk, chunk_segments
from gristmill.errors import (
    ConfigError,
    ItemError,
    LimitExceeded,
    TransientError,
    Unsupported,
    translate_extraction_error,
)
from gristmill.extract import Extractor, Limits, Segment, extractor_for, sniff
from gristmill.extract.base import Container, OcrOptions, use_ocr_options
from gristmill.logfile import QuietFileHandler
from gristmill.sources.base import (
    ObjectTooLarge,
    is_remote,
    item_error,
    open_source,
    sweep_spool,
)
from gristmill.sources.git import git_tree
from gristmill.sources.roots import OUTSIDE, OutsideRoots, inside, open_inside, real_roots

if TYPE_CHECKING:  # the settings machinery (pydantic) stays out of worker processes
    from gristmill.audio.events import Event
    from gristmill.audio.recording import AudioOptions
    from gristmill.config import Settings
    from gristmill.sources.gdrive import DriveOptions
    from gristmill.store import ObjectStore

__all__ = ["RECYCLE_EXIT_CODE", "Outcome", "WorkOptions", "WorkResult", "init_worker",
           "process_item"]

log = logging.getLogger(__name__)

#: Exit code of a worker that retires itself because its RSS grew over the limit. The
#: driver re-queues the item it was handed without counting a crash.
RECYCLE_EXIT_CODE = 75

_max_rss_bytes = 0
_self: psutil.Process | None = None  # built once: psutil.Process() reads /proc each time

# This worker's progress file (see LocalExecutor): it holds the token of the item being
# worked on, and its mtime is the last sign of progress. The driver kills a worker whose
# item made no progress for item_timeout seconds.
_beat_path: str | None = None
_last_beat = 0.0
_BEAT_EVERY = 1.0  # seconds between progress marks, at most


@dataclass(frozen=True, slots=True)
class WorkOptions:
    """What a worker needs to know besides the path."""

    chunk_tokens: int
    max_file_bytes: int
    limits: Limits
    ocr: OcrOptions = field(default_factory=OcrOptions)
    #: The source roots as real paths: a file opened outside them is not read (none:
    #: anything may be read).
    roots: tuple[str, ...] = ()
    #: The run's sources that are git work trees, as real paths: XML and HTML under
    #: them are source code (element entities), not documents.
    repositories: tuple[str, ...] = ()
    #: Source files (code, templates, markup in repositories) larger than this are
    #: skipped: hand-written code is rarely over a few hundred KB.
    max_source_bytes: int = 2 * 1024 * 1024
    #: An audio scan's options: each item is a recording scanned for sound events
    #: instead of a document extracted (None: extract).
    audio: AudioOptions | None = None
    #: Where remote objects (``s3://``) are downloaded to, one temporary file each,
    #: deleted after its extraction (None: the system's temporary folder).
    spool_dir: str | None = None
    #: The S3 endpoint (``s3_endpoint_url``; None: boto3's, from the environment).
    s3_endpoint_url: str | None = None
    #: The driver's ``AWS_*`` variables when the run reads remote sources: workers fork
    #: from a long-lived fork server whose environment is that of its start, maybe
    #: before the caller set its credentials or endpoint. Not shown in a repr.
    aws_environment: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: The ``gdrive_*`` settings when the run reads Google Drive (None: it does not).
    gdrive: DriveOptions | None = None
    #: For other filesystems' URLs (``sftp://``, ``ftp://``...): the users and passwords
    #: given in URLs to the driver (``(scheme://host, user, password)``, see
    #: :mod:`gristmill.sources.fsspec_source`) and its ``FSSPEC_*`` variables, which
    #: fsspec reads when it is imported (None: the run reads no such URL). Not shown in
    #: a repr.
    fsspec_credentials: tuple[tuple[str, str, str | None], ...] = field(default=(),
                                                                      repr=False)
    fsspec_environment: tuple[tuple[str, str], ...] | None = field(default=None,
                                                                   repr=False)
    #: The store of originals (the ``store`` setting: a folder or an ``s3://`` prefix):
    #: each top-level item's bytes are kept there by sha256 (None: not kept).
    store: str | None = None
    #: A rebuild: every item is read from its original in the store (by the sha256
    #: the driver passes), never from its source.
    rebuild: bool = False

    @classmethod
    def from_settings(cls, settings: Settings,
                      sources: Sequence[str | Path] = ()) -> WorkOptions:
        """The options the settings imply for a run over ``sources``."""
        # One OCR slot per worker, shared by all of them: a lone scan gets every core,
        # many scans at once still run one Tesseract per core.
        ocr = OcrOptions(engine=settings.ocr_engine, languages=settings.ocr_lang,
                         dpi=settings.ocr_dpi,
                         parallel=settings.workers, slots_dir=settings.home / "run" / "ocr")
        return cls(chunk_tokens=settings.chunk_tokens,
                   max_file_bytes=settings.max_file_mb * 1024 * 1024,
                   max_source_bytes=settings.max_source_kb * 1024,
                   limits=Limits(max_text_chars=settings.max_text_chars,
                                 chunk_tokens=settings.chunk_tokens), ocr=ocr,
                   roots=real_roots(settings.source_roots),
                   repositories=real_roots([source for source in sources
                                            if not is_remote(str(source))
                                            and git_tree(Path(source)) is not None]),
                   spool_dir=str(settings.home / "spool"),
                   s3_endpoint_url=settings.s3_endpoint_url,
                   aws_environment=tuple(sorted(
                       (name, value) for name, value in os.environ.items()
                       if name.startswith("AWS_")))
                   if any(is_remote(str(source)) for source in sources)
                   or is_remote(settings.store or "") else (),
                   gdrive=_drive_options(settings, sources), store=settings.store,
                   **_fsspec_options(sources))


class Outcome(enum.StrEnum):
    """What a worker made of one item; the driver turns it into the item's status."""

    EXTRACTED = "extracted"  # chunks to store: `extracted` (or `indexed` without vectors)
    SKIPPED = "skipped"  # unsupported, empty, outside the roots: `skipped` with a reason
    FAILED = "failed"  # permanent: `failed` with a reason
    RETRY = "retry"  # temporary: pending again after a backoff, counted as an attempt
    CHANGED = "changed"  # the file changed while it was read: nothing of it may be kept
    #: The run's configuration is wrong (the audio model does not load, a class it was
    #: asked for does not exist): nothing is wrong with the item, which goes back to
    #: `pending`, and the job pauses with the reason until the settings are fixed.
    MISCONFIGURED = "misconfigured"


@dataclass(slots=True)
class WorkResult:
    """The outcome of one item, and what the worker learnt of it."""

    outcome: Outcome
    chunks: list[Chunk] = field(default_factory=list)
    pages: int | None = None
    extractor: str | None = None
    extractor_version: int | None = None
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0
    truncated: bool = False
    #: Members of a container item, to become its children: (name, size, problem).
    children: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    #: Size and sha256 of a child's bytes, learnt as it was unpacked; of a file's bytes
    #: (with their mtime) when they are not those discovery hashed.
    size: int | None = None
    sha256: str | None = None
    mtime_ns: int | None = None
    #: An audio scan's events (sorted by start), None for a document.
    events: list[Event] | None = None
    #: An audio scan's recording facts: ``duration`` (s), ``sample_rate``, ``channels``,
    #: ``codec``, ``model_seconds``, ``clips`` (one path or None per event), ``note``.
    audio: dict[str, object] | None = None
    #: The original in the store (:attr:`WorkOptions.store`): True when this attempt
    #: wrote it, False when it was there already, None when it was not kept.
    stored: bool | None = None


def init_worker(log_path: str, max_rss_mb: int, memory_limit_mb: int,
                beats_dir: str | None = None) -> None:
    """Pool initializer: logging, memory limits, progress file, signals left to the driver."""
    global _max_rss_bytes, _self, _beat_path
    _max_rss_bytes = max_rss_mb * 1024 * 1024
    _self = psutil.Process()
    _beat_path = os.path.join(beats_dir, str(os.getpid())) if beats_dir else None
    # Ctrl-C reaches the whole process group; the driver decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_mb > 0:
        # A hard address-space cap turns a decompression bomb into a MemoryError on its
        # own item instead of the kernel's OOM killer taking the machine's other work.
        limit = memory_limit_mb * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) for h in root.handlers):
        handler = QuietFileHandler(log_path, encoding="utf-8")  # a full disk: lines dropped
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def process_item(source: str, options: WorkOptions, token: int = 0,
                 members: tuple[str, ...] = (),
                 expected: tuple[int, int] | None = None, item_id: int = 0,
                 sha256: str | None = None) -> WorkResult:
    """Extract and chunk one file (scan it, in an audio scan). Never raises for a
    problem with the file itself.

    ``token`` names this attempt in the worker's progress file. For a child item,
    ``source`` is the file on disk that holds it and ``members`` the names leading to
    it (an attachment, then a member of that attachment...): each is unpacked in turn
    into a temporary folder, removed afterwards. ``expected`` is the file's size and
    mtime as discovery recorded them with its sha256, which is ``sha256`` (given when
    the original is kept in a store; otherwise hashed again if needed). ``item_id``
    names a recording's clip files. In a rebuild (:attr:`WorkOptions.rebuild`),
    ``sha256`` names the original in the store that is read instead of ``source``.
    """
    if _max_rss_bytes and _self is not None and _self.memory_info().rss > _max_rss_bytes:
        # Retire before starting: memory left behind by earlier items (fragmentation,
        # library caches) goes back to the OS with the process.
        os._exit(RECYCLE_EXIT_CODE)
    _announce(token)
    started = time.perf_counter()
    if options.rebuild:
        result = _extract_kept(source, members, options, sha256, item_id)
        result.seconds = time.perf_counter() - started
        return result
    if is_remote(source):
        result = _extract_remote(source, members, options, expected, item_id)
        result.seconds = time.perf_counter() - started
        return result
    try:
        fd = open_inside(source, options.roots)
    except OutsideRoots:
        result = WorkResult(Outcome.SKIPPED, error=OUTSIDE, error_type="outside source roots")
    except OSError:  # gone or unreadable: the extractor's own error says which
        result = _extract_unguarded(Path(source), members, options, item_id)
    else:
        try:
            result = _extract_guarded(fd, Path(source), members, options, expected,
                                      item_id, sha256)
        finally:
            os.close(fd)
    result.seconds = time.perf_counter() - started
    return result


def _extract_unguarded(path: Path, members: tuple[str, ...], options: WorkOptions,
                       item_id: int = 0, source: str | None = None) -> WorkResult:
    """``source``: where the file ``path`` (a copy) was read from, in a rebuild."""
    if options.audio is not None:
        return _scan(path, options.audio, item_id)
    if members:
        with tempfile.TemporaryDirectory(prefix="gristmill-") as tmp:
            return _extract_member(path, members, Path(tmp), options)
    return _extract(path, options, source=source)


def _extract_guarded(fd: int, path: Path, members: tuple[str, ...], options: WorkOptions,
                     expected: tuple[int, int] | None, item_id: int = 0,
                     sha256: str | None = None) -> WorkResult:
    """Extract the file open as ``fd`` (checked inside the source roots), and make sure
    the bytes extracted are one version of it, and the version the result is recorded
    with.

    Extractors read by name, in their own way (streamed, in pages, twice): a file
    rewritten meanwhile would give text from both versions, recorded under the sha256
    of the first. So its identity and stat are taken at the open and compared after
    extraction; when they differ nothing is kept (``changed``: read it again). When the
    file was already another version at the open than the one discovery hashed, the
    result carries the facts and sha256 of the bytes actually read. (Extractors open
    the file by name again: a name swapped for another file and back within one
    extraction is the one case the identity check cannot see.)

    With a store, a top-level file's original is then kept from the same open file
    (see :func:`_keep_original`).
    """
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        return WorkResult(Outcome.SKIPPED, error="not a regular file any more",
                          error_type="not a regular file")
    result = _extract_unguarded(path, members, options, item_id)
    if _changed_since(fd, path, before):
        return WorkResult(Outcome.CHANGED,
                          error="the file changed while it was being read",
                          error_type="changed")
    if not (members or expected is None
            or expected == (before.st_size, before.st_mtime_ns)):
        sha256 = _hash_fd(fd)
        if _changed_since(fd, path, before):
            return WorkResult(Outcome.CHANGED,
                              error="the file changed while it was being read",
                              error_type="changed")
        result.size, result.sha256 = before.st_size, sha256
        result.mtime_ns = before.st_mtime_ns
    if options.store is None or members or not _keeps(result):
        return result
    # The original is read again from the same open file, and hashed as it is stored:
    # bytes that are not the version extracted (rewritten since) are refused.
    with os.fdopen(os.dup(fd), "rb") as stream:
        if sha256 is None:
            sha256 = _hash_fd(fd)
        stream.seek(0)
        return _keep_original(result, options, sha256, stream, before.st_size)


def _hash_fd(fd: int) -> str:
    """The sha256 of the whole file open as ``fd`` (read from its start)."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, 1 << 20):
        digest.update(block)
    return digest.hexdigest()


# Skipped items whose bytes were not read, or hold nothing gristmill reads: their
# originals are not kept (a folder of videos is not copied into the store).
_NOT_KEPT = frozenset({"too large", "unsupported", "outside source roots",
                       "not a regular file"})


def _keeps(result: WorkResult) -> bool:
    """Whether an item with this result has its original kept: extracted (or scanned),
    failed (a later gristmill may read it), or skipped for holding no text."""
    if result.outcome in (Outcome.EXTRACTED, Outcome.FAILED):
        return True
    return result.outcome == Outcome.SKIPPED and result.error_type not in _NOT_KEPT


def _keep_original(result: WorkResult, options: WorkOptions, sha256: str,
                   stream: BinaryIO, size: int) -> WorkResult:
    """Put the ``size`` bytes of ``stream`` into the store as ``sha256`` and return
    ``result`` (``stored`` set); or, when that fails, what the item becomes instead:
    ``changed`` (the bytes are not ``sha256``'s), ``retry`` (the store is unreachable
    or busy: it must stay complete, so the item is done again), or ``misconfigured``
    (no bucket or folder, refused credentials, a full disk: the job pauses)."""
    # Imported here: a run without a store never loads it (nor boto3).
    from gristmill.store import DigestMismatch, store_error

    assert options.store is not None
    try:
        result.stored = _store(options.store, options.s3_endpoint_url,
                               options.aws_environment).put(sha256, stream, size)
    except DigestMismatch as exc:
        log.info("original of %s not stored: %s", sha256, exc)
        return WorkResult(Outcome.CHANGED, error="the file changed while it was being "
                          "stored", error_type="changed")
    except Exception as exc:
        error = store_error(exc, options.store)
        if isinstance(error, ConfigError):
            log.error("store %s: %s", options.store, error)
            return WorkResult(Outcome.MISCONFIGURED, error=str(error))
        log.info("original of %s not stored: %s", sha256, error.reason, exc_info=True)
        return WorkResult(Outcome.RETRY, error=error.reason, error_type="transient")
    return result


@functools.lru_cache(maxsize=2)
def _store(setting: str, endpoint_url: str | None,
           aws_environment: tuple[tuple[str, str], ...]) -> ObjectStore:
    """The store, opened once per worker process (and AWS environment)."""
    from gristmill.store import open_store

    if is_remote(setting):
        _use_aws_environment(aws_environment)
    return open_store(setting, s3_endpoint_url=endpoint_url)


def _extract_remote(url: str, members: tuple[str, ...], options: WorkOptions,
                    expected: tuple[int, int] | None, item_id: int = 0) -> WorkResult:
    """Download the object ``url`` into a spool file (hashed as it streams), extract it
    (or ``members`` down inside it) there, and delete the copy. ``expected``: its size
    (and mtime) as listed; one over ``max_file_mb`` is not even requested.

    The result carries the size and sha256 of the bytes downloaded: discovery never read
    them. A failure to download is the item's: transient (the store is unreachable or
    busy: retried), permanent (gone, refused), or the run's (no credentials at all).
    """
    _use_aws_environment(options.aws_environment)
    _use_fsspec_options(options)
    if expected is not None and not members and expected[0] > options.max_file_bytes:
        return WorkResult(Outcome.SKIPPED, error_type="too large",
                          error=str(ObjectTooLarge(expected[0], options.max_file_bytes)))
    spool_dir = Path(options.spool_dir or tempfile.gettempdir())
    # Copies left by workers killed mid-download (one listing of a folder that holds a
    # copy per worker at most: cheap next to a download).
    sweep_spool(spool_dir)
    try:
        source = open_source(url, s3_endpoint_url=options.s3_endpoint_url,
                             settings=options.gdrive)
        with source.local_copy(url, spool_dir, options.max_file_bytes,
                               on_block=_beat) as copy:
            result = _extract_unguarded(copy.path, members, options, item_id)
            if result.error:  # the reason names the object, not its temporary copy
                result.error = result.error.replace(str(copy.path), url)
            if options.store is not None and not members and copy.sha256 \
                    and _keeps(result):
                with copy.path.open("rb") as stream:
                    result = _keep_original(result, options, copy.sha256, stream,
                                            copy.size)
    except ObjectTooLarge as exc:
        return WorkResult(Outcome.SKIPPED, error=str(exc), error_type="too large")
    except Exception as exc:
        error = item_error(exc, url)
        if isinstance(error, ConfigError):
            log.error("%s: %s", url, error)
            return WorkResult(Outcome.MISCONFIGURED, error=str(error))
        log.info("item %s: %s", url, error.reason, exc_info=not isinstance(exc, ItemError))
        if isinstance(error, TransientError):
            return WorkResult(Outcome.RETRY, error=error.reason, error_type="transient")
        return WorkResult(Outcome.FAILED, error=error.reason,
                          error_type=type(error).__name__)
    if not members:
        result.size, result.sha256 = copy.size, copy.sha256
    return result


# ErrorType.MISSING_ORIGINAL, spelt out: workers do not import the catalog.
_MISSING = "missing original"


def _extract_kept(source: str, members: tuple[str, ...], options: WorkOptions,
                  sha256: str | None, item_id: int = 0) -> WorkResult:
    """Extract ``source`` (or ``members`` down inside it) from a copy of its original in
    the store (``sha256``), named like ``source`` so that its suffix tells the
    extractor its type; ``source`` itself is never opened. Reasons name ``source``.

    The original not in the store fails the item, saying what to do; the store
    unreachable or busy is retried; no bucket or folder, or refused credentials, are
    the run's (``misconfigured``: the job pauses)."""
    # Imported here: a run without a store never loads it (nor boto3).
    from gristmill.store import DigestMismatch, store_error

    assert options.store is not None, "a rebuild needs the store of originals"
    if sha256 is None:
        return WorkResult(Outcome.FAILED, error_type=_MISSING, error=(
            "no sha256 was recorded for it, so it has no original in the store: ingest "
            "it again from its source"))
    spool_dir = Path(options.spool_dir or tempfile.gettempdir())
    sweep_spool(spool_dir)  # copies left by workers killed mid-copy
    name = source.rstrip("/").rsplit("/", 1)[-1] or "original"
    try:
        store = _store(options.store, options.s3_endpoint_url, options.aws_environment)
        _require_folder(store, options.store)
        with store.local_copy(sha256, spool_dir, name, options.max_file_bytes) as copy:
            result = _extract_unguarded(copy.path, members, options, item_id, source)
            if result.error:  # the reason names the item, not its temporary copy
                result.error = result.error.replace(str(copy.path), source)
        return result
    except ObjectTooLarge as exc:
        return WorkResult(Outcome.SKIPPED, error=str(exc), error_type="too large")
    except LimitExceeded as exc:
        return WorkResult(Outcome.SKIPPED, error=f"the original is {exc.reason}",
                          error_type="too large")
    except DigestMismatch as exc:
        log.error("original %s of %s is damaged: %s", sha256, source, exc)
        return WorkResult(Outcome.FAILED, error_type=_MISSING, error=(
            f"its original in the store ({sha256[:12]}...) is damaged: {exc}; ingest it "
            "again from its source"))
    except Exception as exc:
        if _not_in_store(options, sha256):
            return WorkResult(Outcome.FAILED, error_type=_MISSING, error=(
                f"its original ({sha256[:12]}...) is not in the store {options.store}: it "
                "was ingested before `store` was set (or removed from the store). Where "
                "its source is still there, `gristmill store push` keeps it; then "
                "rebuild"))
        error = store_error(exc, options.store)
        if isinstance(error, ConfigError):
            log.error("store %s: %s", options.store, error)
            return WorkResult(Outcome.MISCONFIGURED, error=str(error))
        log.info("original of %s not read: %s", source, error.reason, exc_info=True)
        return WorkResult(Outcome.RETRY, error=error.reason, error_type="transient")


def _require_folder(store: ObjectStore, setting: str) -> None:
    """Raise the error a folder store's absent folder is (a NAS not mounted): not one
    missing original per item."""
    from gristmill.store import FolderStore

    if isinstance(store, FolderStore) and not store.root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the store folder does not exist", setting)


def _not_in_store(options: WorkOptions, sha256: str) -> bool:
    """Whether the store answers that it has no object ``sha256`` (False when it cannot
    be asked: then the failure to read is the store's, not the item's)."""
    assert options.store is not None
    try:
        store = _store(options.store, options.s3_endpoint_url, options.aws_environment)
        _require_folder(store, options.store)
        return not store.has(sha256)
    except Exception:
        return False


def _drive_options(settings: Settings, sources: Sequence[str | Path]) -> DriveOptions | None:
    """The Drive client's settings, for a run that reads Google Drive."""
    if not any(str(source).startswith("gdrive://") for source in sources):
        return None
    # Imported here: the Google client is an optional extra a folder run never loads.
    from gristmill.sources.gdrive import DriveOptions

    return DriveOptions.of(settings)


def _fsspec_options(sources: Sequence[str | Path]) -> dict[str, Any]:
    """The credentials and ``FSSPEC_*`` variables for a run that reads URLs of other
    filesystems than S3 and Drive (none for any other run)."""
    if not any(is_remote(str(source)) and str(source).split("://", 1)[0].lower()
               not in ("s3", "gdrive") for source in sources):
        return {}
    from gristmill.sources.fsspec_source import credentials

    return {"fsspec_credentials": credentials(),
            "fsspec_environment": tuple(sorted(
                (name, value) for name, value in os.environ.items()
                if name.startswith("FSSPEC_")))}


def _use_fsspec_options(options: WorkOptions) -> None:
    """Make the driver's fsspec credentials and configuration this worker's."""
    if options.fsspec_environment is None:
        return
    from gristmill.sources.fsspec_source import use_credentials, use_environment

    use_credentials(options.fsspec_credentials)
    use_environment(options.fsspec_environment)


def _use_aws_environment(variables: tuple[tuple[str, str], ...]) -> None:
    """Make this worker's ``AWS_*`` variables the driver's (see
    :attr:`WorkOptions.aws_environment`)."""
    wanted = dict(variables)
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        if name not in wanted:
            del os.environ[name]
    os.environ.update(wanted)


def _changed_since(fd: int, path: Path, before: os.stat_result) -> bool:
    """Whether the file open as ``fd`` was written to (or its name now leads to another
    file) since ``before`` was taken. ctime as well as mtime: restoring an mtime by hand
    (``touch -d``, ``rsync -t``) still moves the ctime."""
    now = os.fstat(fd)
    if (now.st_size, now.st_mtime_ns, now.st_ctime_ns) != \
            (before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        return True
    try:
        named = os.stat(path)
    except OSError:
        return True  # gone or moved away: what the extractor opened is not known
    return (named.st_dev, named.st_ino) != (before.st_dev, before.st_ino)


def _extract_member(container: Path, members: tuple[str, ...], tmp: Path,
                    options: WorkOptions) -> WorkResult:
    path = container
    for depth, name in enumerate(members):
        holder = extractor_for(path)
        if not isinstance(holder, Container):  # cannot happen unless extensions changed
            return WorkResult(Outcome.FAILED,
                              error=f"{path.name} is not a container any more",
                              error_type="ExtractionError")
        # Only the member's own base name reaches the disk: no path from the archive.
        target = tmp / str(depth) / (_safe_name(name) or "member")
        target.parent.mkdir()
        try:
            holder.unpack(path, name, target, options.limits)
        except Exception as exc:
            error = translate_extraction_error(exc, str(container))
            log.info("item %s!/%s: %s", container, "!/".join(members), error.reason,
                     exc_info=not isinstance(exc, ItemError))
            return _failure(error, holder.name, holder.version)
        if depth:
            path.unlink()  # the enclosing member is no longer needed
        path = target
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    result = _extract(path, options, depth=len(members))
    result.size, result.sha256 = path.stat().st_size, digest.hexdigest()
    return result


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "._- ()" else "_" for c in base)[-200:].lstrip(".")


def _announce(token: int) -> None:
    """Write the attempt's token to the progress file; its mtime starts the clock."""
    global _last_beat
    if _beat_path is None:
        return
    try:
        fd = os.open(_beat_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, str(token).encode())
        finally:
            os.close(fd)
        _last_beat = time.monotonic()
    except OSError:  # no progress file: the driver's hard timeout still applies
        log.warning("cannot write progress file %s", _beat_path, exc_info=True)


def _beat() -> None:
    """Mark progress (a page done): the item is slow, not stuck."""
    global _last_beat
    now = time.monotonic()
    if _beat_path is None or now - _last_beat < _BEAT_EVERY:
        return
    _last_beat = now
    try:
        os.utime(_beat_path)
    except OSError:
        pass


def _extract(path: Path, options: WorkOptions, depth: int = 0,
             source: str | None = None) -> WorkResult:
    use_ocr_options(options.ocr)
    extractor = _repository_markup(path, options, source) or extractor_for(path) \
        or sniff(path)
    if extractor is None:
        suffix = path.suffix.lower() or "(no extension)"
        return WorkResult(Outcome.SKIPPED, error=f"unsupported file type {suffix}",
                          error_type="unsupported")
    try:
        size = path.stat().st_size
        if size > options.max_file_bytes:
            return WorkResult(
                Outcome.SKIPPED, error=f"file is {size / 2**20:.0f} MB, over the "
                f"{options.max_file_bytes / 2**20:.0f} MB limit (max_file_mb)",
                error_type="too large", extractor=extractor.name)
        if extractor.name in _SOURCE_EXTRACTORS and size > options.max_source_bytes:
            return WorkResult(
                Outcome.SKIPPED, error=f"source file is {size / 2**10:,.0f} KB, over the "
                f"{options.max_source_bytes / 2**10:,.0f} KB limit for source files "
                "(max_source_kb): generated or vendored code, most likely",
                error_type="too large", extractor=extractor.name)
        if size == 0:
            return WorkResult(Outcome.SKIPPED, error="empty file", error_type="empty",
                              extractor=extractor.name)
        capped = _Capped(extractor.extract(path, options.limits), options.limits.max_text_chars)
        empty: Unsupported | None = None
        try:
            chunks = list(chunk_segments(capped, options.chunk_tokens))
        except Unsupported as exc:
            if not isinstance(extractor, Container):
                raise
            chunks, empty = [], exc  # a message with no text may still carry attachments
        children = _children(extractor, path, options.limits, depth)
        if empty is not None and not children:
            raise empty
    except Exception as exc:  # every failure is confined to this item
        error = translate_extraction_error(exc, str(path))
        log.info("item %s: %s", path, error.reason, exc_info=not isinstance(exc, ItemError))
        return _failure(error, extractor.name, extractor.version)
    if not chunks and not children and isinstance(extractor, Container) \
            and depth >= options.limits.max_depth:
        return WorkResult(Outcome.SKIPPED,
                          error=f"nested {depth} containers deep: members of a "
                          f"container this deep are not read (limit {options.limits.max_depth})",
                          error_type="too deep", extractor=extractor.name,
                          extractor_version=extractor.version)
    if not chunks and not children:
        return WorkResult(Outcome.SKIPPED, error="no text found", error_type="empty",
                          extractor=extractor.name, extractor_version=extractor.version,
                          pages=capped.pages)
    return WorkResult(Outcome.EXTRACTED, chunks=chunks, pages=capped.pages,
                      extractor=extractor.name, extractor_version=extractor.version,
                      truncated=capped.truncated, children=children)


def _scan(path: Path, options: AudioOptions, item_id: int) -> WorkResult:
    """Scan one recording for sound events (see :mod:`gristmill.audio.recording`)."""
    # Imported here: a document run never loads PyAV or the audio model's runtime.
    from gristmill.audio.recording import SCANNER, SCANNER_VERSION, scan_recording

    try:
        scan = scan_recording(path, options, item_id, beat=_beat)
    except ConfigError as exc:  # the model or the classes: the job's settings, not the file
        log.error("audio scan of %s: %s", path, exc)
        return WorkResult(Outcome.MISCONFIGURED, error=str(exc), extractor=SCANNER,
                          extractor_version=SCANNER_VERSION)
    except Exception as exc:  # every failure of the file is confined to this item
        error = translate_extraction_error(exc, str(path))
        log.info("item %s: %s", path, error.reason, exc_info=not isinstance(exc, ItemError))
        return _failure(error, SCANNER, SCANNER_VERSION)
    return WorkResult(Outcome.EXTRACTED, extractor=SCANNER, extractor_version=SCANNER_VERSION,
                      events=scan.events,
                      audio={"duration": scan.duration, "sample_rate": scan.sample_rate,
                             "channels": scan.channels, "codec": scan.codec,
                             "model_seconds": scan.model_seconds, "clips": scan.clips,
                             "note": scan.note})


# The extractors that read source code (their files are capped by max_source_kb).
_SOURCE_EXTRACTORS = frozenset({"code", "jsp", "markup"})


def _repository_markup(path: Path, options: WorkOptions,
                       source: str | None = None) -> Extractor | None:
    """The markup extractor for an XML or HTML file inside one of the run's git work
    trees, where a web.xml or a page is source code; ``None`` elsewhere (the document
    extractors read data files and web pages in ordinary folders). ``source``: the
    path a rebuild's copy ``path`` stands for, as recorded (it is not looked at)."""
    if not options.repositories:
        return None
    # Imported here: a run over no repository never loads the markup grammars' module.
    from gristmill.extract.markup import EXTRACTORS, markup_language

    where = source if source is not None else os.path.realpath(path)
    if markup_language(path) is None or not inside(where, options.repositories):
        return None
    return EXTRACTORS[0]


def _children(extractor: object, path: Path, limits: Limits,
              depth: int) -> list[tuple[str, int | None, str | None]]:
    """The members of a container item, checked against the nesting and count limits."""
    if not isinstance(extractor, Container):
        return []
    if depth >= limits.max_depth:
        log.info("item %s: nested %d deep; its members are not expanded", path, depth)
        return []
    children: list[tuple[str, int | None, str | None]] = []
    for member in extractor.members(path, limits):
        if len(children) == limits.max_children:
            raise LimitExceeded(f"holds more than {limits.max_children:,} files, over the "
                                "limit for one container")
        children.append((member.name, member.size, member.problem))
    return children


def _failure(error: ItemError, name: str, version: int) -> WorkResult:
    if isinstance(error, TransientError):
        outcome, kind = Outcome.RETRY, "transient"
    elif isinstance(error, Unsupported):
        outcome, kind = Outcome.SKIPPED, "unsupported"
    else:
        outcome, kind = Outcome.FAILED, type(error).__name__
    return WorkResult(outcome, error=error.reason, error_type=kind, extractor=name,
                      extractor_version=version)


class _Capped(Iterable[Segment]):
    """Passes segments through until ``max_chars`` of text, counting pages on the way."""

    def __init__(self, segments: Iterator[Segment], max_chars: int) -> None:
        self._segments = segments
        self._left = max_chars
        self.pages: int | None = None
        self.truncated = False

    def __iter__(self) -> Iterator[Segment]:
        try:
            for segment in self._segments:
                _beat()
                if segment.page is not None:
                    self.pages = max(self.pages or 0, segment.page)
                if len(segment.text) > self._left:
                    self.truncated = True
                    yield Segment(segment.text[:self._left], segment.page, segment.heading)
                    return
                self._left -= len(segment.text)
                yield segment
        finally:
            # Stopping early must still run the extractor's cleanup (open PDF, zip file).
            close = getattr(self._segments, "close", None)
            if close is not None:
                close()

"""``gristmill store push``: put into the store of originals every original it lacks.

Workers keep an original when they extract it (:mod:`gristmill.store`). Items ingested
before ``store`` was set, and items copied from a twin (no worker read them), are not
there; a push reads them from their sources and puts them, each verified against the
sha256 the catalog recorded: a file that has changed since it was ingested is refused
(the store never holds wrong bytes under a name) and reported, so that an ingest reads
it again (and keeps the new version).

The catalog is read in keyset pages (:func:`~gristmill.catalog.originals.kept_originals`,
which gives each distinct sha256 once), and the store is asked through a small thread
pool with a bounded window of requests in flight: an S3 ``HEAD`` is latency, not work.
Memory does not grow with the number of items. A push is idempotent, so one killed
(even by kill -9) is resumed by running it again: what was stored is found by its
``HEAD`` and not sent again, and a write cut short never became an object (see the
store's own guarantees).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from gristmill.catalog.backend import CatalogDatabase
from gristmill.catalog.originals import KeptOriginal, kept_originals, other_holders
from gristmill.config import Settings
from gristmill.errors import ConfigError
from gristmill.sources.base import is_remote, item_error, open_source, sweep_spool
from gristmill.sources.roots import OUTSIDE, OutsideRoots, inside_url, open_inside, real_roots
from gristmill.store import DigestMismatch, FolderStore, ObjectStore, open_store, store_error

__all__ = ["PushProblem", "PushReport", "push_originals"]

#: What became of one original: already in the store, pushed (or, in a dry run, would
#: be), or not pushed: its source is gone, has other bytes now, or could not be read or
#: stored.
Outcome = Literal["already", "pushed", "missing", "changed", "failed"]

_PAGE = 500  # catalog rows read at a time
_PARALLEL = 8  # threads asking the store (and reading sources) at once
_WINDOW_PER_THREAD = 4  # originals in flight per thread: the pool never waits for work
_SHOWN = 20  # problems listed by source; the counts cover all of them
_PROGRESS_EVERY = 5.0  # seconds between progress lines

_CHANGED = "changed since it was ingested: run gristmill ingest on it (its new bytes " \
    "are then kept)"
_MISSING = "the source is gone: restore it, or run gristmill ingest on its folder so " \
    "that the catalog drops it"


@dataclass(frozen=True, slots=True)
class PushProblem:
    """An original that could not be pushed, and why."""

    source: str
    problem: Outcome  # missing, changed or failed
    reason: str


@dataclass(slots=True)
class PushReport:
    """What a push found and did (in a dry run: what it would do)."""

    store: str
    dry_run: bool = False
    originals: int = 0  # distinct originals (sha256) looked at
    already_stored: int = 0
    pushed: int = 0  # a dry run: that would be pushed
    bytes: int = 0  # of those pushed (a dry run: as the catalog records them)
    missing_source: int = 0
    changed: int = 0
    failed: int = 0
    #: The first problems (:data:`_SHOWN` of them), in catalog order.
    problems: list[PushProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether the store holds every original (after this push; a dry run: already)."""
        return not (self.missing_source or self.changed or self.failed
                    or (self.dry_run and self.pushed))

    def to_dict(self) -> dict[str, Any]:
        """The report as ``--json`` prints it."""
        return {"store": self.store, "dry_run": self.dry_run, "complete": self.complete,
                "originals": self.originals, "already_stored": self.already_stored,
                "pushed": self.pushed, "bytes": self.bytes,
                "missing_source": self.missing_source, "changed": self.changed,
                "failed": self.failed,
                "problems": [{"source": p.source, "problem": p.problem,
                              "reason": p.reason} for p in self.problems],
                "seconds": round(self.seconds, 3)}

    def _count(self, outcome: _Result) -> None:
        self.originals += 1
        if outcome.outcome == "already":
            self.already_stored += 1
        elif outcome.outcome == "pushed":
            self.pushed += 1
            self.bytes += outcome.size
        else:
            if outcome.outcome == "missing":
                self.missing_source += 1
            elif outcome.outcome == "changed":
                self.changed += 1
            else:
                self.failed += 1
            if len(self.problems) < _SHOWN:
                self.problems.append(PushProblem(outcome.source, outcome.outcome,
                                                 outcome.reason))


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: Outcome
    source: str
    size: int = 0
    reason: str = ""


def push_originals(db: CatalogDatabase, settings: Settings, *,
                   collection: str | None = None, dry_run: bool = False,
                   parallel: int = _PARALLEL,
                   progress: Callable[[str], None] | None = None) -> PushReport:
    """Put into the store (the ``store`` setting) the original of every item whose
    original it keeps and lacks (see :mod:`gristmill.catalog.originals`), read from the
    item's source and checked against its recorded sha256. ``dry_run``: only ask the
    store which are there, and count the others. ``progress`` gets a line every few
    seconds.

    An original whose source is gone or has changed is read from another item holding
    the same bytes, when there is one.

    Raises:
        ConfigError: no store is set, or the store cannot be used at all (no bucket or
            folder, refused credentials, a full disk): nothing more is tried.
    """
    if not settings.store:
        raise ConfigError("no store of originals is set: set `store` (in gristmill.toml, "
                          "or GRISTMILL_STORE) to a folder or an s3://bucket/prefix/, "
                          "then run gristmill store push")
    store = open_store(settings.store, s3_endpoint_url=settings.s3_endpoint_url)
    if isinstance(store, FolderStore) and not store.root.is_dir():
        # Asked first: a folder store whose NAS is not mounted answers "absent" to every
        # stat, which a dry run would count as originals to push.
        raise store_error(FileNotFoundError(errno.ENOENT, "no such folder", store.location),
                          store.location)
    reader = _Reader(settings)
    report = PushReport(store.location, dry_run=dry_run)
    started = last_line = time.monotonic()
    window = max(1, parallel) * _WINDOW_PER_THREAD
    # Each future stands for one sha256: the holder being tried, and the first problem
    # met (reported when no other holder's source gives the bytes).
    in_flight: dict[Future[_Result], tuple[KeptOriginal, _Result | None]] = {}

    def task(original: KeptOriginal) -> _Result:
        return _push_one(store, original, reader, dry_run)

    def settle(done: set[Future[_Result]]) -> None:
        for future in done:
            original, first = in_flight.pop(future)
            result = future.result()  # a ConfigError ends the push here
            if result.outcome in ("missing", "changed"):
                others = other_holders(db, original.sha256, after=original.id,
                                       collection=collection, limit=1)
                if others:
                    in_flight[pool.submit(task, others[0])] = (others[0], first or result)
                    continue
            if result.outcome not in ("already", "pushed") and first is not None:
                result = first  # the first holder's problem names the original
            report._count(result)

    with ThreadPoolExecutor(max_workers=max(1, parallel),
                            thread_name_prefix="gristmill-push") as pool:
        try:
            for original in _originals(db, collection):
                while len(in_flight) >= window:
                    settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
                in_flight[pool.submit(task, original)] = (original, None)
                if progress is not None and time.monotonic() - last_line >= _PROGRESS_EVERY:
                    last_line = time.monotonic()
                    progress(_progress_line(report))
            while in_flight:
                settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    report.seconds = time.monotonic() - started
    return report


def _originals(db: CatalogDatabase, collection: str | None) -> Iterator[KeptOriginal]:
    """Every original to look at, one catalog page at a time."""
    after = 0
    while page := kept_originals(db, after=after, collection=collection, limit=_PAGE):
        yield from page
        after = page[-1].id


def _progress_line(report: PushReport) -> str:
    verb = "to push" if report.dry_run else "pushed"
    return (f"{report.originals:,} originals looked at: {report.already_stored:,} already "
            f"in the store, {report.pushed:,} {verb} ({report.bytes / 2**20:,.1f} MB), "
            f"{report.missing_source + report.changed + report.failed:,} not pushed")


class _Reader:
    """Where a push reads sources: inside the source roots, remote objects through a
    spool copy in the home (as a worker reads them)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.roots = real_roots(settings.source_roots)
        self.spool_dir = settings.home / "spool"
        self.max_bytes = settings.max_file_mb * 1024 * 1024
        # Copies left by a push or worker killed mid-download.
        sweep_spool(self.spool_dir)


def _push_one(store: ObjectStore, original: KeptOriginal, reader: _Reader,
              dry_run: bool) -> _Result:
    """Ask the store for ``original``; put it when absent (not in a dry run)."""
    try:
        present = store.has(original.sha256)
    except Exception as exc:
        return _store_failure(exc, store, original)
    if present:
        return _Result("already", original.source)
    if dry_run:
        return _Result("pushed", original.source, original.size or 0)
    if is_remote(original.source):
        return _push_remote(store, original, reader)
    return _push_local(store, original, reader)


def _push_local(store: ObjectStore, original: KeptOriginal, reader: _Reader) -> _Result:
    """Put a file's bytes, read through the descriptor checked inside the roots."""
    try:
        fd = open_inside(original.source, reader.roots)
    except OutsideRoots:
        return _Result("failed", original.source, reason=OUTSIDE)
    except (FileNotFoundError, NotADirectoryError):
        return _Result("missing", original.source, reason=_MISSING)
    except OSError as exc:
        return _Result("failed", original.source,
                       reason=f"cannot read it ({exc.strerror or exc}): fix its "
                       "permissions, then push again")
    with os.fdopen(fd, "rb") as stream:
        facts = os.fstat(fd)
        if not stat.S_ISREG(facts.st_mode):
            return _Result("changed", original.source,
                           reason="not a regular file any more: " + _CHANGED)
        size = facts.st_size if original.size is None else original.size
        return _put(store, original, stream, size)


def _push_remote(store: ObjectStore, original: KeptOriginal, reader: _Reader) -> _Result:
    """Put an object's bytes, downloaded into a spool copy (hashed as it arrives)."""
    url = original.source
    settings = reader.settings
    if settings.source_roots and not inside_url(url, settings.source_roots):
        return _Result("failed", url, reason=OUTSIDE)
    try:
        source = open_source(url, s3_endpoint_url=settings.s3_endpoint_url,
                             settings=settings)
        with source.local_copy(url, reader.spool_dir, reader.max_bytes) as copy:
            if copy.sha256 != original.sha256:
                return _Result("changed", url, reason=_CHANGED)
            with copy.path.open("rb") as stream:
                return _put(store, original, stream, copy.size)
    except ConfigError:
        raise  # the store's, from _put; or no credentials at all: the push ends
    except Exception as exc:
        if isinstance(exc, FileNotFoundError) or _is_missing_object(exc, url):
            return _Result("missing", url, reason=_MISSING)
        error = item_error(exc, url)
        if isinstance(error, ConfigError):
            raise error from exc
        return _Result("failed", url, reason=f"cannot read it: {error}")


def _is_missing_object(exc: BaseException, url: str) -> bool:
    if not url.lower().startswith("s3://"):
        return False
    from gristmill.sources.s3 import is_missing

    return is_missing(exc)


def _put(store: ObjectStore, original: KeptOriginal, stream: BinaryIO,
         size: int) -> _Result:
    """Put ``size`` bytes of ``stream`` as the original's sha256 (refused when they are
    other bytes)."""
    try:
        stored = store.put(original.sha256, stream, size)
    except DigestMismatch:
        return _Result("changed", original.source, reason=_CHANGED)
    except Exception as exc:
        return _store_failure(exc, store, original)
    if not stored:  # put there meanwhile (an ingest running beside this push)
        return _Result("already", original.source)
    return _Result("pushed", original.source, size)


def _store_failure(exc: BaseException, store: ObjectStore,
                   original: KeptOriginal) -> _Result:
    """The store's failure for one original: transient ones are this original's (the
    next push tries it again), any other ends the push (:class:`ConfigError`)."""
    error = store_error(exc, store.location)
    if isinstance(error, ConfigError):
        raise error from exc
    return _Result("failed", original.source,
                   reason=f"{error.reason}: push again once the store answers")


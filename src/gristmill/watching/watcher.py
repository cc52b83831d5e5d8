"""The watcher: a long-lived job that keeps a knowledge base in step with folders.

::

    watchdog thread    events -> EventRouter -> Changes (marks, coalesced per path, bounded)
    feeder thread      1. catch-up: a discovery walk of the folders (what changed while no
                          watch ran, a kill -9 included), exactly as ingest walks them
                       2. settled marks -> Sync -> catalog (items `pending`, or removed),
                          up to ``watch_batch`` paths a transaction; then wakes the runner
    calling thread     Runner in follow mode: claims pending items, extracts them in the
                       same warm worker pool and commits them through the same batcher
                       as ingest, until stopped

The observer is started before the catch-up walk, so a file saved while the walk runs
is either seen by the walk or marked (usually both; applying it twice is harmless).
The catalog is the queue between the feeder and the runner: it is on disk, so a burst
of saves costs rows, not memory, and a kill -9 loses no recorded change.

Stopping (SIGINT, SIGTERM, :meth:`Watcher.stop`): the runner claims nothing more,
commits what workers finished and gives the leases of the rest back; marks not yet
settled are dropped, not recorded. Nothing is lost either way: the next start's catch-up
walk compares the disk with the catalog and finds every one of them. The job ends
``succeeded``; ``gristmill jobs pause`` or ``cancel`` also end a watch (``paused``,
``cancelled``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from watchdog.observers import Observer

from gristmill.catalog import DiscoveryCounts, open_database
from gristmill.catalog.jobs import JobSpec
from gristmill.discovery import Discovery
from gristmill.errors import ConfigError, SourceError
from gristmill.runtime.job_run import JobRun, KnowledgeBaseParts
from gristmill.runtime.progress import Progress
from gristmill.runtime.runner import Runner
from gristmill.sources import Matcher
from gristmill.watching.changes import Changes
from gristmill.watching.events import (
    EVENT_TYPES,
    TEMP_PATTERNS,
    EventRouter,
    OverflowAlarm,
    Scope,
)
from gristmill.watching.sync import Sync

__all__ = ["WatchReport", "Watcher"]

log = logging.getLogger(__name__)

_ROOT_CHECK_EVERY = 1.0  # seconds between checks that the watched roots still exist

#: ``on_change(kind, counts)``: kind is ``caught-up`` (the start-up walk), ``changes``
#: (a batch of settled events) or ``rescan`` (after an overflow).
ChangeCallback = Callable[[str, DiscoveryCounts], None]


@dataclass(slots=True)
class WatchReport:
    """What a watch did, from its start to its stop."""

    job_id: int
    collection: str
    sources: list[str]
    state: str
    caught_up: DiscoveryCounts
    changes: DiscoveryCounts
    rescans: int
    items: dict[str, int]
    chunks: int
    seconds: float
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class Watcher:
    """Watches folders (or files) into one collection; see the module docstring.

    ``run()`` blocks until the watch stops; ``stop()`` may be called from any thread
    (``run()`` in the main thread also stops on SIGINT/SIGTERM). ``ready`` is set once
    the catch-up walk is done and every later change is being followed.
    """

    def __init__(
        self,
        kb: KnowledgeBaseParts,
        sources: Sequence[str | Path],
        *,
        collection: str = "default",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        on_change: ChangeCallback | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        if not collection or not collection.strip():
            raise ConfigError("the collection name must not be empty")
        if not sources:
            raise ConfigError("nothing to watch: give at least one folder")
        self.kb = kb
        self.collection = collection
        self.roots = [os.path.abspath(os.path.expanduser(str(s))) for s in sources]
        for root in self.roots:
            if not os.path.exists(root):
                raise SourceError(f"{root} does not exist; check the path")
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.on_change = on_change
        self.on_progress = on_progress
        settings = kb.settings
        # Temporary files are out of scope for the catch-up walk too, so that the walk
        # and the events agree on what the watch holds.
        self.scope = Scope(self.roots, Matcher(self.include, (*self.exclude, *TEMP_PATTERNS)),
                           skip=[settings.home])
        self.changes = Changes(settings.watch_debounce, settings.watch_max_delay,
                               settings.watch_queue)
        self.ready = threading.Event()
        self.caught_up = DiscoveryCounts()
        self.applied = DiscoveryCounts()
        self._stop = threading.Event()
        self._runner: Runner | None = None
        self._error: BaseException | None = None

    def stop(self) -> None:
        """Ask the watch to stop; ``run()`` returns once in-flight work is settled."""
        self._stop.set()
        self.changes.interrupt()
        if self._runner is not None:
            self._runner.stop()

    # -- the watch -----------------------------------------------------------------

    def run(self) -> WatchReport:
        """Catch up, then follow every change until stopped.

        Raises:
            SourceError: a watched folder is gone, or the system's inotify limits are
                too low to watch it.
            ModelError: the embedding model is missing or fails its checksum.
        """
        kb = self.kb
        started = time.monotonic()
        kb.embedder  # noqa: B018 - fail early on a missing model
        run = JobRun.create(kb, JobSpec(self.collection, tuple(self.roots), self.include,
                                        self.exclude))
        job_id = run.job_id
        assert job_id is not None  # a run of a job
        run_id = run.start()
        # Items an older extractor version produced are redone, as by any ingest.
        self.caught_up.outdated = run.outdated
        feeder = threading.Thread(target=self._feed, args=(run_id,), name="gristmill-watch",
                                  daemon=True)
        runner = run.runner(follow=True, discovering=feeder.is_alive,
                            on_progress=self.on_progress)
        self._runner = runner
        alarm = OverflowAlarm(self.changes)
        observer = Observer()
        error: BaseException | None = None
        try:
            alarm.attach()
            # Order matters: events are marked from before the catch-up walk begins, so
            # a save during the walk cannot fall between the two.
            self._observe(observer)
            feeder.start()
            if self._stop.is_set():
                runner.stop()
            runner.run()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.stop()
            if feeder.ident is not None:  # started
                feeder.join()
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)
            alarm.detach()
            state = run.finish(error or self._error, {
                "watch": True, "discovered": asdict(self.caught_up),
                "changes": asdict(self.applied), "rescans": self.changes.overflows})
        if self._error is not None:
            raise self._error
        return WatchReport(
            job_id=job_id, collection=self.collection, sources=self.roots, state=state,
            caught_up=self.caught_up, changes=self.applied, rescans=self.changes.overflows,
            items=kb.catalog.counts(self.collection),
            chunks=kb.index.chunk_count(self.collection), seconds=time.monotonic() - started,
            failures=runner.progress.recent_failures)

    def _observe(self, observer: Any) -> None:
        router = EventRouter(self.scope, self.changes)
        scheduled = set()
        for root in self.roots:
            # A file root is watched through its folder: editors replace the file (a
            # new inode), which a watch on the file itself would not survive.
            folder, recursive = (root, True) if root in self.scope.folders else \
                (os.path.dirname(root), False)
            if (folder, recursive) in scheduled:
                continue
            scheduled.add((folder, recursive))
            try:
                observer.schedule(router, folder, recursive=recursive,
                                  event_filter=EVENT_TYPES)
            except OSError as exc:
                raise _watch_error(folder, exc) from exc
        try:
            observer.start()
        except OSError as exc:
            raise _watch_error(", ".join(self.roots), exc) from exc

    # -- the feeder thread ---------------------------------------------------------

    def _feed(self, run_id: int) -> None:
        db = None
        try:
            db = open_database(self.kb.settings)
            self._catch_up(run_id)
            if self._stop.is_set():
                return
            self.ready.set()
            self._follow(Sync(db, self.collection, self.scope, run_id,
                              batch=self.kb.settings.watch_batch, skip=[self.kb.settings.home],
                              confine=self.kb.settings.source_roots))
        except BaseException as exc:  # handed to run(), which re-raises it
            log.exception("watch of %s stopped", ", ".join(self.roots))
            self._error = exc
            self.stop()
        finally:
            if db is not None:
                db.close()

    def _catch_up(self, run_id: int) -> None:
        """Walk the folders like an ingest: what changed while no watch ran."""
        settings = self.kb.settings
        discovery = Discovery(lambda: open_database(settings), self.collection, self.roots,
                              self.scope.matcher, run_id, None, [settings.home],
                              confine=settings.source_roots,
                              include_vendored=settings.include_vendored)
        discovery.start()
        while discovery.running:
            if self._stop.is_set():
                discovery.stop()
            assert self._runner is not None
            self._runner.wake()  # discovery commits batches as it goes: claim them
            self._stop.wait(0.1)
        outdated = self.caught_up.outdated
        self.caught_up = discovery.join()
        self.caught_up.outdated = outdated
        self._applied("caught-up", self.caught_up, count=False)

    def _follow(self, sync: Sync) -> None:
        """Apply settled changes until stopped."""
        batch = self.kb.settings.watch_batch
        next_root_check = time.monotonic() + _ROOT_CHECK_EVERY
        while not self._stop.is_set():
            due = self.changes.take(batch)
            if due.rescan:
                log.warning("watch of %s: events were lost (queue overflow); rescanning",
                            ", ".join(self.roots))
                counts = DiscoveryCounts()
                for root in self.roots:
                    counts += (sync.tree(root) if root in self.scope.folders
                               else sync.files([root]))
                self._applied("rescan", counts)
            if due.files or due.trees:
                counts = sync.files(due.files)
                for folder in due.trees:
                    counts += sync.tree(folder)
                self._applied("changes", counts)
                continue  # more may be due already
            if time.monotonic() >= next_root_check:
                self._check_roots()
                next_root_check = time.monotonic() + _ROOT_CHECK_EVERY
            self.changes.wait(_ROOT_CHECK_EVERY)

    def _check_roots(self) -> None:
        """Stop when a watched folder is gone: its inotify watch went with it (a folder
        moved away keeps its watch, but under a path that no longer exists). A file
        root may come and go, as editors replace it; its folder may not."""
        for root in self.roots:
            folder = root if root in self.scope.folders else os.path.dirname(root)
            if not os.path.isdir(folder):
                raise SourceError(f"{folder} was deleted or moved away; the watch stopped "
                                  "(restore it and watch again)")

    def _applied(self, kind: str, counts: DiscoveryCounts, *, count: bool = True) -> None:
        if count:
            self.applied += counts
        assert self._runner is not None
        self._runner.wake()
        if self.on_change is not None:
            self.on_change(kind, counts)


def _watch_error(path: str, exc: OSError) -> SourceError:
    """An inotify limit or a permission problem, said with what to do."""
    if exc.errno == errno.ENOSPC:
        return SourceError(f"cannot watch {path}: the system's limit of inotify watches is "
                           "reached; raise it (sysctl fs.inotify.max_user_watches=524288)")
    if exc.errno == errno.EMFILE:
        return SourceError(f"cannot watch {path}: too many inotify instances; raise "
                           "fs.inotify.max_user_instances or stop other watchers")
    return SourceError(f"cannot watch {path}: {exc.strerror or exc}")

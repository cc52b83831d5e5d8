"""The library's front door: one object per knowledge base (a home folder).

The CLI and the HTTP API are thin shells over these methods::

    kb = KnowledgeBase.open("./.gristmill")
    report = kb.ingest(["~/papers"], collection="papers")
    for hit in kb.search("reciprocal rank fusion", k=5):
        print(hit.score, hit.source, hit.page)
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.catalog import Catalog, DiscoveryCounts, open_database
from gristmill.catalog.jobs import JobSpec, JobStore
from gristmill.catalog.rebuild import RebuildQueue
from gristmill.config import Settings
from gristmill.discovery import Discovery, dry_run_counts
from gristmill.embed import Embedder, make_embedder
from gristmill.errors import ConfigError, HomeUnwritable, SourceError
from gristmill.home import make_home, require_knowledge_base
from gristmill.index import Hit, VectorCache, make_index
from gristmill.index.search import Searcher, SearchMode
from gristmill.logfile import RESERVE_BYTES, QuietRotatingFileHandler
from gristmill.ops import ErrorGroup, Snapshot, group_problems
from gristmill.runtime.job_run import JobRun
from gristmill.runtime.options import RunOutcome
from gristmill.runtime.progress import Progress
from gristmill.sources import Matcher
from gristmill.sources.base import canonical_root, is_remote
from gristmill.sources.roots import check_root, real_roots

if TYPE_CHECKING:  # watchdog is imported only by a watch; PyAV only by an audio scan
    from gristmill.audio.scan import AudioScanReport, UserScan
    from gristmill.catalog.audio import StoredEvent
    from gristmill.watching import WatchReport

__all__ = ["IngestReport", "KnowledgeBase", "SearchMode", "Searcher"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestReport:
    """What an ingest run did."""

    job_id: int
    collection: str
    discovered: DiscoveryCounts
    items: dict[str, int]
    chunks: int
    pages: int
    failed: int
    seconds: float
    seconds_to_searchable: float | None
    dry_run: bool = False
    stopped: bool = False
    failures: list[str] = field(default_factory=list)
    #: The job's state after this run: succeeded, paused, cancelled or failed.
    state: str = "succeeded"
    #: Items this run extracted (new, changed or not finished before; attachments and
    #: archive members included); 0 when nothing changed.
    processed: int = 0
    #: Of the collection's items (``items``), those inside another item (attachments,
    #: archive members): ``items`` counts them, ``discovered`` (a walk of files) does not.
    members: int = 0
    #: Seconds, each from the start: ``discovery`` (the walk, hashing included),
    #: ``extraction`` (until every item was extracted: keyword search complete),
    #: ``embedding`` (until every vector was stored), ``total``. The phases overlap;
    #: None for a phase that did not end in this run.
    timings: dict[str, float | None] = field(default_factory=dict)
    #: The run's two phases as its progress reported them last (``Progress.to_dict``).
    progress: dict[str, Any] = field(default_factory=dict)
    #: Why the run paused its job by itself (an embedding credential refused, the
    #: embedding service unavailable through its retries); None otherwise.
    reason: str | None = None

    @property
    def unchanged_only(self) -> bool:
        """Whether this run found nothing to do: every file unchanged and finished."""
        return (not self.dry_run and self.processed == 0 and not self.discovered.removed
                and not self.discovered.new and not self.discovered.changed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["discovered"] = asdict(self.discovered)
        out["nothing_changed"] = self.unchanged_only
        return out


class KnowledgeBase:
    """A knowledge base in a home folder: catalog, index and logs."""

    def __init__(self, settings: Settings, *, create: bool = True) -> None:
        """Open the knowledge base ``settings`` point at; ``create=False`` (for commands
        that only read) makes no home where there is none.

        Raises:
            HomeUnwritable: the home folder cannot be created or written.
            NoKnowledgeBase: ``create=False``, and nothing was ingested there yet.
        """
        self.settings = settings
        if not create:
            require_knowledge_base(settings)
        make_home(settings)
        try:
            _configure_logging(settings)
        except OSError as exc:  # the log file itself: a folder in its place, say
            raise HomeUnwritable(settings.log_path.absolute(), exc.strerror) from exc
        self.db = open_database(settings)
        self.catalog = Catalog(self.db)
        self.index = make_index(self.db)
        self.jobs = JobStore(self.db, stale_after=settings.lease_seconds)
        self._embedder: Embedder | None = None

    @classmethod
    def open(cls, home: str | Path | None = None, *, create: bool = True,
             **settings: Any) -> KnowledgeBase:
        """Open (creating if needed, unless ``create=False``) the knowledge base at
        ``home``; other keyword arguments override settings the way CLI flags do."""
        return cls(Settings.load(home=Path(home) if home is not None else None, **settings),
                   create=create)

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder | None:
        """The configured embedder (loaded on first use), or None for keyword-only."""
        if self._embedder is None and self.settings.embedder != "none":
            self._embedder = make_embedder(self.settings)
        return self._embedder

    # -- ingest ------------------------------------------------------------------

    def ingest(
        self,
        sources: Sequence[str | Path],
        *,
        collection: str = "default",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_files: int | None = None,
        retry_failed: bool = False,
        dry_run: bool = False,
        embed: bool = True,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        """Discover ``sources`` (folders, files, ``s3://bucket/prefix/`` URLs), extract
        and index what is new or changed.

        Re-running resumes: finished items are not redone, unchanged files are not
        re-read, and files gone from a source have their chunks removed.
        ``embed=False`` leaves vectors for a later :meth:`embed_pending`.

        Raises:
            SourceError: a source does not exist or cannot be listed.
            ModelError: the embedding model is missing or fails its checksum.
        """
        if not collection or not collection.strip():
            raise ConfigError("the collection name must not be empty")
        started = time.monotonic()
        endpoint = self.settings.s3_endpoint_url
        allowed = real_roots(self.settings.source_roots)
        for source in sources:
            if is_remote(source):
                # Before the store is asked anything (the spelling of s3://bucket/key
                # takes a request), as the API does: a URL outside the roots reaches no
                # server, and its answer tells nothing about buckets outside them.
                check_root(str(source), allowed)
        roots = [canonical_root(s, s3_endpoint_url=endpoint) for s in sources]
        for root in roots:
            if not is_remote(root) and not os.path.exists(root):
                raise SourceError(f"{root} does not exist; check the path")
            check_root(root, allowed)  # the spelling the run reads is inside as well
        self.embedder  # noqa: B018 - fail early on a missing model
        matcher = Matcher(tuple(include), tuple(exclude))
        skip = [self.settings.home]  # never ingest our own database and logs
        if dry_run:
            counts = dry_run_counts(self.db, collection, roots, matcher, max_files, skip,
                                    self.settings.source_roots,
                                    include_vendored=self.settings.include_vendored,
                                    s3_endpoint_url=endpoint, settings=self.settings)
            return IngestReport(0, collection, counts, self.catalog.counts(collection), 0, 0, 0,
                                time.monotonic() - started, None, dry_run=True)
        spec = JobSpec(collection, tuple(roots), tuple(include), tuple(exclude), max_files)
        run = JobRun.continue_or_create(self, spec)
        if retry_failed:
            self.catalog.reset_failed(collection)
        return self._run_job(run, embed=embed, on_progress=on_progress, started=started)

    def run_job(self, spec: JobSpec, *, embed: bool = True,
                on_progress: Callable[[Progress], None] | None = None) -> IngestReport:
        """Run the job ``spec`` describes to its end (continuing a paused or interrupted
        one with this very spec): what :meth:`ingest` does once it has checked its
        arguments, and what an audio scan does for each user.

        Raises:
            SourceError: a source cannot be listed.
        """
        started = time.monotonic()
        return self._run_job(JobRun.continue_or_create(self, spec), embed=embed,
                             on_progress=on_progress, started=started)

    def rebuild(self, collection: str = "default", *, embed: bool = True,
                on_progress: Callable[[Progress], None] | None = None) -> IngestReport:
        """Extract, chunk and index every top-level item of ``collection`` again from
        its original in the store of originals (the ``store`` setting), by the sha256
        recorded for it; its source is never read, and may be gone. Attachments and
        archive members come back with their container; vectors are made for the chunks
        that changed. A rebuild is a job: run again after a kill or a pause, it
        continues, and what it rebuilt already is not redone. An item whose original is
        not in the store fails with a reason; skipped items whose original was never
        kept (unsupported, too large) are left as they are.

        Raises:
            ConfigError: no ``store`` is set, or the collection has no items, or it is
                an audio scan's.
        """
        self._require_store()
        started = time.monotonic()
        queue = RebuildQueue(self.db)
        roots = queue.roots(collection)
        if not roots:
            raise ConfigError(f"collection {collection!r} has no items to rebuild: name "
                              "one that has (`gristmill status` lists them)")
        if queue.holds_recordings(collection):
            raise ConfigError(f"collection {collection!r} holds audio recordings: an audio "
                              "scan is not rebuilt from the store; scan them again with "
                              "`gristmill audio scan`")
        self.embedder  # noqa: B018 - fail early on a missing model
        spec = JobSpec(collection, tuple(roots), kind="rebuild")
        return self._run_job(JobRun.continue_or_create(self, spec), embed=embed,
                             on_progress=on_progress, started=started)

    def _require_store(self) -> None:
        if self.settings.store is None:
            raise ConfigError("a rebuild reads the originals from the store of originals, "
                              "and `store` is not set: set it (GRISTMILL_STORE, or store "
                              "in gristmill.toml) to the folder or s3:// prefix the "
                              "originals were kept in")

    def resume(self, job_id: int, *, embed: bool = True,
               on_progress: Callable[[Progress], None] | None = None) -> IngestReport:
        """Run a paused, interrupted or failed job again: its sources are walked afresh
        and only what is not finished is done.

        An audio scan's job waits, first, for any audio scan running on this home.

        Raises:
            JobNotFound: no such job.
            JobStateConflict: it is running, succeeded or cancelled.
            SourceError: one of its sources is gone, or now lies (or leads through a
                symlink) outside the source roots.
        """
        started = time.monotonic()
        spec = self.jobs.get(job_id).spec
        if spec.kind == "rebuild":  # its sources are not read: they may be gone
            self._require_store()
            self.embedder  # noqa: B018 - fail early on a missing model, before the claim
            return self._run_job(JobRun.resume(self, job_id), embed=embed,
                                 on_progress=on_progress, started=started)
        for root in spec.sources:
            if not is_remote(root) and not os.path.exists(root):
                raise SourceError(f"{root} does not exist any more; cancel job {job_id} "
                                  "or restore the folder")
            # Checked again at every run, not only when the job was created: a folder
            # may have been swapped for a symlink since (the walk checks once more).
            check_root(root, real_roots(self.settings.source_roots))
        if spec.kind == "audio":
            from gristmill.audio.scan import scan_lock, sweep_clips

            # One audio scan of a home at a time: a resumed one (a job `serve` runs, say)
            # queues behind the scan running now, as `audio scan --wait` does.
            def waiting(holder: int | None) -> None:
                log.info("job %s: waiting for the audio scan of process %s to end",
                         job_id, holder or "?")

            with scan_lock(self.settings.home, wait=True, on_wait=waiting):
                run = JobRun.resume(self, job_id)
                report = self._run_job(run, embed=False, on_progress=on_progress,
                                       started=started)
                options = run.audio_options()
                if options is not None:  # clips no stored event names any more
                    sweep_clips(self, options)
                return report
        self.embedder  # noqa: B018 - fail early on a missing model, before the claim
        return self._run_job(JobRun.resume(self, job_id), embed=embed,
                             on_progress=on_progress, started=started)

    def _run_job(self, run: JobRun, *, embed: bool,
                 on_progress: Callable[[Progress], None] | None,
                 started: float) -> IngestReport:
        """Walk the job's sources while its runner extracts what the walk finds (a
        rebuild walks nothing: its run marked the items to do when it started)."""
        spec = run.spec
        assert spec is not None and run.job_id is not None  # a run of a job
        run_id = run.start()
        discovery = None if spec.kind == "rebuild" else self._discovery(run, run_id)
        counts = discovery.counts if discovery is not None else DiscoveryCounts()
        counts.outdated = run.outdated
        runner = run.runner(embed=embed, on_progress=on_progress,
                            discovering=(lambda: False) if discovery is None
                            else lambda: discovery.running)
        error: BaseException | None = None
        if discovery is not None:
            discovery.start()
        try:
            try:
                progress = runner.run()
            finally:
                if discovery is not None:
                    discovery.stop()
                    counts = discovery.join()  # re-raises what stopped the walk
        except BaseException as exc:
            error = exc  # the walk's, when both failed: it is raised
            raise
        finally:
            state = run.finish(error, {"discovered": asdict(counts)})
        total = time.monotonic() - started
        vectors_done = runner.outcome == RunOutcome.FINISHED and runner.embed
        return IngestReport(
            job_id=run.job_id, collection=spec.collection, discovered=counts,
            items=self.catalog.counts(spec.collection),
            chunks=self.index.chunk_count(spec.collection), pages=progress.pages,
            failed=progress.failed, seconds=total,
            seconds_to_searchable=progress.searchable_at,
            stopped=runner.outcome == RunOutcome.STOPPED,
            failures=progress.recent_failures, state=state, processed=progress.done,
            members=self.catalog.member_count(spec.collection),
            timings={"discovery": discovery.seconds if discovery is not None else None,
                     "extraction": progress.searchable_at,
                     "embedding": progress.elapsed if vectors_done else None,
                     "total": total},
            progress=progress.to_dict(), reason=runner.pause_reason)

    def _discovery(self, run: JobRun, run_id: int) -> Discovery:
        """The walk of the job's sources for run ``run_id``, not started."""
        spec = run.spec
        assert spec is not None
        audio = run.audio_options()
        since = None if audio is None or audio.since is None else int(audio.since * 1e9)
        return Discovery(lambda: open_database(self.settings), spec.collection,
                         list(spec.sources), Matcher(spec.include, spec.exclude), run_id,
                         spec.max_files, [self.settings.home],  # never ingest our own files
                         confine=self.settings.source_roots,
                         include_vendored=self.settings.include_vendored,
                         modified_since_ns=since,
                         s3_endpoint_url=self.settings.s3_endpoint_url,
                         settings=self.settings)

    # -- audio ---------------------------------------------------------------------

    def scan_audio(
        self, root: str | Path, *, per_user: bool = False, user: str | None = None,
        collection: str = "audio", clips: bool = False, since: float | None = None,
        wait: bool = False, on_progress: Callable[[Progress], None] | None = None,
        on_user: Callable[[UserScan], None] | None = None,
        on_wait: Callable[[int | None], None] | None = None,
    ) -> AudioScanReport:
        """Scan the recordings under ``root`` for sound events (``audio_model``,
        ``audio_classes``, ``audio_threshold``... from the settings), one job per user:
        each first-level folder with ``per_user``, ``root`` as ``user``'s folder, or
        ``root`` as the folder of the user it is named for. See
        :func:`gristmill.audio.scan.scan_audio`.

        Raises:
            ModelError: no audio model is configured, or it cannot be loaded.
            ScanBusy: another scan of this home is running (and ``wait`` is False).
            SourceError: ``root`` does not exist or cannot be read.
        """
        from gristmill.audio.scan import scan_audio

        return scan_audio(self, root, per_user=per_user, user=user, collection=collection,
                          clips=clips, since=since, wait=wait, on_progress=on_progress,
                          on_user=on_user, on_wait=on_wait)

    def audio_events(self, *, user: str | None = None, since: float | None = None,
                     collection: str | None = None, model: str | None = None
                     ) -> list[StoredEvent]:
        """The stored sound events (of one user; of recordings modified at or after
        ``since``, seconds since the epoch; of one collection), by user, recording and
        time: of each recording, the scan by the configured ``audio_model`` if it has
        one, else its most recent; or the scan by ``model`` (the first characters of a
        model's sha256)."""
        from gristmill.audio.recording import configured_model_sha256
        from gristmill.audio.scan import MAX_SINCE
        from gristmill.catalog.audio import AudioStore

        return AudioStore(self.db).events(
            collection=collection, user=user,
            modified_since_ns=None if since is None else int(min(since, MAX_SINCE) * 1e9),
            current_model=None if model else configured_model_sha256(self.settings),
            model=model)

    def embed_pending(self, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Run only the embedding stage over every extracted item, in all collections."""
        if self.embedder is None:
            raise ConfigError("no embedder configured (embedder = none); nothing to embed")
        return JobRun.embed_only(self).runner(on_progress=on_progress).run()

    # -- watch -------------------------------------------------------------------

    def watch(
        self,
        sources: Sequence[str | Path],
        *,
        collection: str = "default",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        on_change: Callable[[str, DiscoveryCounts], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> WatchReport:
        """Bring ``sources`` up to date, then index every save, move and delete in them
        as it happens, until SIGINT/SIGTERM or a ``jobs pause``/``cancel`` of its job.

        To stop it from another thread, build a :class:`gristmill.watching.Watcher`
        and call its ``stop()``.

        Raises:
            SourceError: a source does not exist, is deleted while watched, cannot be
                watched (inotify limits), or is a URL.
        """
        from gristmill.watching import Watcher

        remote = [str(source) for source in sources if is_remote(source)]
        if remote:
            raise SourceError(f"{remote[0]}: watch follows local folders only; ingest a URL "
                              "again (a re-run downloads only what changed)")
        return Watcher(self, sources, collection=collection, include=include,
                       exclude=exclude, on_change=on_change, on_progress=on_progress).run()

    # -- search ------------------------------------------------------------------

    def search(
        self, query: str, *, collection: str | None = None, k: int = 10,
        mode: SearchMode = "hybrid", language: str | None = None, kind: str | None = None,
        path: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``.

        ``hybrid`` fuses BM25 and vector rankings by their scores: chunks holding every
        word of the query first, then the rest by word coverage, BM25 and cosine
        (:func:`gristmill.index.fuse`); it falls back to keyword ranking when no
        embedder is configured. Any string is a safe query. ``language``, ``kind`` and
        ``path`` (a glob over the file's path) keep to code chunks that match them.
        """
        return Searcher(self.index, self.embedder).search(
            query, collection=collection, k=k, mode=mode, language=language, kind=kind,
            path=path)

    def searcher(self, vectors: VectorCache | None = None) -> Searcher:
        """A searcher with a read-only connection of its own, sharing this knowledge
        base's embedder (and ``vectors``, see :meth:`vector_cache`): one per thread
        serves concurrent searches (the API does)."""
        return Searcher(make_index(open_database(self.settings, readonly=True)),
                        self.embedder, vectors)

    def vector_cache(self) -> VectorCache | None:
        """An in-memory copy of the chunk vectors for a long-lived process, not yet
        started; None without an embedder, with ``vector_cache_mb = 0``, or where
        pgvector's HNSW index answers on the server."""
        embedder = self.embedder
        if embedder is None or self.settings.vector_cache_mb == 0:
            return None
        if getattr(self.index, "vector_engine", None) == "pgvector":
            return None
        return VectorCache(lambda: open_database(self.settings, readonly=True),
                           embedder.model_id, embedder.dim,
                           self.settings.vector_cache_mb)

    # -- status ------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The figures ``status``, the API's health and its metrics are built from,
        each read on first use."""
        return Snapshot(self.catalog, self.index, self.jobs, self.settings)

    def status(self) -> dict[str, Any]:
        """Counts by status, chunks, and the same per collection; the running jobs
        with their batcher's figures."""
        return self.snapshot().status()

    def errors(self, collection: str | None = None, job: int | None = None
               ) -> list[ErrorGroup]:
        """Failed and skipped items grouped by the pattern of their reason (of one
        collection, or of the items one job saw)."""
        return group_problems(self.catalog.problems(collection, job))

    def reset_failed(self, collection: str | None = None) -> int:
        """Re-queue failed items for the next ingest; returns how many."""
        return self.catalog.reset_failed(collection)

    def reset_skipped(self, collection: str | None = None) -> int:
        """Re-queue skipped files for the next ingest (after installing a tool a format
        needs, such as LibreOffice); returns how many."""
        return self.catalog.reset_skipped(collection)


def _configure_logging(settings: Settings) -> None:
    settings.log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("gristmill")
    target = str(settings.log_path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in root.handlers):
        return
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            root.removeHandler(handler)
            handler.close()
    # On a full disk the reserve takes the line saying why the run stopped; later
    # lines are dropped, not a traceback printed for each.
    handler = QuietRotatingFileHandler(target, maxBytes=20 * 2**20, backupCount=3,
                                       encoding="utf-8", reserve=RESERVE_BYTES)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(settings.log_level)

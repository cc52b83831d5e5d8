"""A job's run from its claim to its recorded end: the one lifecycle of ``ingest``,
``jobs resume`` and ``watch`` (and of the embedding stage alone, which has no job).

::

    run = JobRun.continue_or_create(kb, spec)  # or create(kb, spec), resume(kb, job_id)
    run.start()                                # a new run holds the job; outdated items requeued
    runner = run.runner(discovering=..., on_progress=...)
    error = None
    try:
        runner.run()
    except BaseException as exc:
        error = exc
        raise
    finally:
        state = run.finish(error, summary)     # the job's state, decided in one place

Each step is what :class:`~gristmill.catalog.jobs.JobStore` documents: the owner token
answers for the job and for the leases of its items, ``start`` makes this run the one
that holds the job (an earlier run is superseded), and ``finish`` records the end only
while this run still holds it (the ``run_id`` compare-and-set of ``JobStore.finish``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gristmill.catalog import Catalog, lease_owner_token
from gristmill.catalog.audio import AudioStore
from gristmill.catalog.jobs import JobSpec, JobState, JobStore
from gristmill.catalog.rebuild import RebuildQueue
from gristmill.config import Settings
from gristmill.errors import JobNotFound, JobStateConflict, StoreError
from gristmill.extract import current_versions, reads
from gristmill.runtime.fork_server import start_fork_server
from gristmill.runtime.options import RunOptions, RunOutcome
from gristmill.runtime.progress import Progress
from gristmill.runtime.runner import Runner

if TYPE_CHECKING:
    from gristmill.audio.recording import AudioOptions
    from gristmill.embed import Embedder
    from gristmill.index import Index

__all__ = ["JobRun", "KnowledgeBaseParts", "job_state"]

log = logging.getLogger(__name__)


class KnowledgeBaseParts(Protocol):
    """What a run needs of a knowledge base (a :class:`gristmill.KnowledgeBase` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def index(self) -> Index: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def embedder(self) -> Embedder | None: ...


def job_state(outcome: RunOutcome, *, follow: bool,
              error: BaseException | None = None) -> JobState:
    """The state a run's end asks for its job (``JobStore.finish`` may keep another:
    a cancel requested meanwhile wins, a newer run's row is left alone).

    A database error (a full disk, a server away longer than ``store_retry_seconds``)
    leaves the job ``interrupted``: the data is safe and a resume continues it. Any
    other error fails it. Stopped by a signal or ``stop()``: a watch ends that way when
    it is done (``succeeded``); an ingest stopped half-way can be resumed like a paused
    one.
    """
    if isinstance(error, StoreError):
        return JobState.INTERRUPTED
    if error is not None:
        return JobState.FAILED
    if outcome == RunOutcome.STOPPED:
        return JobState.SUCCEEDED if follow else JobState.PAUSED
    return {RunOutcome.FINISHED: JobState.SUCCEEDED, RunOutcome.PAUSED: JobState.PAUSED,
            RunOutcome.CANCELLED: JobState.CANCELLED}[outcome]


class JobRun:
    """One run of one job by this process; see the module docstring.

    Made by :meth:`create`, :meth:`continue_or_create` or :meth:`resume` (each claims
    the job for :attr:`owner`), or by :meth:`embed_only` for the embedding stage,
    which works for no job.
    """

    def __init__(self, kb: KnowledgeBaseParts, owner: str, job_id: int | None = None,
                 spec: JobSpec | None = None) -> None:
        self.kb = kb
        self.owner = owner  # answers for the job row and for the leases of its items
        self.job_id = job_id
        self.spec = spec
        self.run_id: int | None = None
        #: Items requeued by :meth:`start` because an older extractor made them (in an
        #: audio scan: recordings scanned with another model or other settings; in a
        #: rebuild: the items this run is to rebuild that no run of its job took on).
        self.outdated = 0
        self._runner: Runner | None = None

    # -- claiming the job ----------------------------------------------------------

    @classmethod
    def create(cls, kb: KnowledgeBaseParts, spec: JobSpec) -> JobRun:
        """A new job for ``spec``, running under this process."""
        owner = lease_owner_token()
        return cls(kb, owner, kb.jobs.create(spec, owner), spec)

    @classmethod
    def continue_or_create(cls, kb: KnowledgeBaseParts, spec: JobSpec) -> JobRun:
        """The paused or interrupted job with this very spec, claimed to run again
        (running the same ingest again continues its job: `jobs list` then shows one
        job, not a stale paused one beside a new one); else a new job."""
        owner = lease_owner_token()
        earlier = kb.jobs.find_unfinished(spec)
        if earlier is not None:
            try:
                kb.jobs.claim_for_resume(earlier, owner)
            except (JobNotFound, JobStateConflict):
                pass  # claimed, cancelled or ended meanwhile: start a job of our own
            else:
                log.info("job %s: continued by a new ingest of the same sources", earlier)
                return cls(kb, owner, earlier, spec)
        return cls(kb, owner, kb.jobs.create(spec, owner), spec)

    @classmethod
    def resume(cls, kb: KnowledgeBaseParts, job_id: int) -> JobRun:
        """A queued, paused, interrupted or failed job, claimed to run again (waiting
        for its previous driver to finish what it has in flight).

        Raises:
            JobNotFound: no such job.
            JobStateConflict: it is running, succeeded or cancelled.
        """
        owner = lease_owner_token()
        spec = kb.jobs.claim_for_resume(job_id, owner)
        return cls(kb, owner, job_id, spec)

    @classmethod
    def embed_only(cls, kb: KnowledgeBaseParts) -> JobRun:
        """The embedding stage over every collection: leases, no job."""
        return cls(kb, lease_owner_token())

    # -- the run -------------------------------------------------------------------

    def start(self) -> int:
        """Start the run (it holds the job from now on) and requeue the items an older
        extractor version produced, or skipped as a type nothing read then: discovery
        then sees them like any unchanged file. An audio scan requeues instead the
        recordings scanned with another model or other detection settings; a rebuild,
        every item of its collection that the job has not rebuilt yet
        (:class:`~gristmill.catalog.rebuild.RebuildQueue`). Returns the run id."""
        job_id, spec = self._job()
        start_fork_server()  # its imports overlap what the caller does next (discovery)
        self.run_id = self.kb.jobs.start_run(job_id, self.owner)
        audio = self.audio_options()
        if spec.kind == "rebuild":
            # Leases of dead drivers (a killed run of this job) are freed first: an item
            # still `processing` afterwards is held by a live driver.
            self.kb.catalog.reap_expired()
            self.outdated = RebuildQueue(self.kb.catalog.db).requeue(
                spec.collection, job_id, self.run_id)
        elif audio is not None:
            since = None if audio.since is None else int(audio.since * 1e9)
            self.outdated = AudioStore(self.kb.catalog.db).requeue_rescans(
                spec.collection, list(spec.sources), audio.user, audio.model_sha256,
                audio.settings_key(), modified_since_ns=since)
        else:
            self.outdated = self.kb.catalog.requeue_outdated(
                spec.collection, list(spec.sources), current_versions(),
                lambda source: reads(Path(source)))
        return self.run_id

    def audio_options(self) -> AudioOptions | None:
        """An audio scan's options (from its job's spec); None for an ingest."""
        if self.spec is None or self.spec.kind != "audio" or self.spec.audio is None:
            return None
        from gristmill.audio.recording import AudioOptions

        return AudioOptions.from_spec(self.spec.audio, self.kb.settings.home)

    def runner(self, *, embed: bool = True, follow: bool = False,
               discovering: Callable[[], bool] = lambda: False,
               on_progress: Callable[[Progress], None] | None = None) -> Runner:
        """The runner of this run (of the embedding stage alone for :meth:`embed_only`).

        ``follow``: a watch, which goes on until stopped; ``discovering``: True while
        discovery may still add items to the scope.
        """
        if self.job_id is None:
            options = RunOptions.embed_only(self.owner)
        else:
            job_id, spec = self._job()
            if self.run_id is None:
                raise RuntimeError("start() the run before building its runner")
            audio = self.audio_options()
            options = RunOptions(self.owner, spec.collection, spec.sources, job_id,
                                 self.run_id, embed=embed and audio is None, follow=follow,
                                 audio=audio, rebuild=spec.kind == "rebuild")
        kb = self.kb
        # An audio scan makes no chunks: no embedder, and none is loaded for it.
        embedder = kb.embedder if options.audio is None else None
        self._runner = Runner(kb.settings, kb.catalog, kb.index, embedder, options,
                              jobs=kb.jobs, discovering=discovering, on_progress=on_progress)
        return self._runner

    def finish(self, error: BaseException | None, summary: dict[str, object]) -> JobState:
        """Record how the run ended (``error``: what stopped it, if anything) with
        ``summary``; returns the job's state afterwards.

        Raises:
            StoreError: the end could not be recorded, and the run did not already stop
                on a database error (then the job, left ``running`` under a driver about
                to exit, shows as interrupted all the same).
        """
        job_id, _ = self._job()
        if self.run_id is None:
            raise RuntimeError("finish() of a run that was never started")
        outcome = self._runner.outcome if self._runner is not None else RunOutcome.STOPPED
        follow = self._runner is not None and self._runner.follow
        if self._runner is not None and self._runner.pause_reason is not None:
            summary = {**summary, "reason": self._runner.pause_reason}
        state = job_state(outcome, follow=follow, error=error)
        if isinstance(error, StoreError):
            # The database failed (its disk full, its server away too long), not the
            # job: it stays resumable, and the log says why it stopped.
            log.error("job %s stopped: %s", job_id, error)
        try:
            return self.kb.jobs.finish(job_id, state, summary, run_id=self.run_id)
        except StoreError as exc:
            if state != JobState.INTERRUPTED:
                raise
            log.warning("job %s: could not record that it stopped: %s", job_id, exc)
            return state

    def _job(self) -> tuple[int, JobSpec]:
        if self.job_id is None or self.spec is None:
            raise RuntimeError("this run works for no job (embed_only)")
        return self.job_id, self.spec

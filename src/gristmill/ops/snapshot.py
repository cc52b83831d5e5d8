"""What a knowledge base holds and is doing now: the one read behind ``gristmill status``,
the API's ``/api/v1/health`` and its ``/metrics``.

Each figure is defined once here (which jobs count as running, how many vectors there
are), so the three outputs cannot drift apart; each output picks the figures it shows.
A figure is read when first asked for and then kept: a Prometheus scrape, which shows no
per-collection counts, pays for none, and a figure two parts of one output share costs
one query. A snapshot reads through its knowledge base's connection: use it at once, in
the thread that may use that connection, and drop it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from gristmill.catalog.jobs import Job, JobState

if TYPE_CHECKING:
    from gristmill.catalog import Catalog
    from gristmill.catalog.jobs import JobStore
    from gristmill.config import Settings
    from gristmill.index import Index

__all__ = ["JOBS_LISTED", "RunningJob", "Snapshot"]

#: Jobs by state, and the running ones, are read among the latest this many jobs: each
#: costs a few queries (its counters), and running jobs are always among the recent ones.
JOBS_LISTED = 1000


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A running job and its write-behind batcher, as its driver last recorded it."""

    job: Job
    #: :meth:`~gristmill.batching.BatcherStats.summary`; empty until the driver's first
    #: record, a few seconds into the run.
    batcher: dict[str, float]


class Snapshot:
    """The catalog's, the index's and the jobs' figures, each read on first use."""

    def __init__(self, catalog: Catalog, index: Index, jobs: JobStore,
                 settings: Settings) -> None:
        self._catalog = catalog
        self._index = index
        self._jobs = jobs
        self._settings = settings

    @cached_property
    def items(self) -> dict[str, int]:
        """Items by status, every status present (zeros included)."""
        return self._catalog.counts()

    @cached_property
    def chunks(self) -> int:
        """Chunks in the index."""
        return self._index.chunk_count()

    @cached_property
    def members(self) -> int:
        """Items that are attachments or archive members (``items`` counts them, a walk
        of the files does not)."""
        return self._catalog.member_count()

    @cached_property
    def collection_names(self) -> list[str]:
        """Every collection with at least one item, sorted."""
        return self._catalog.collections()

    @cached_property
    def collections(self) -> dict[str, dict[str, Any]]:
        """``items`` (by status) and ``chunks`` of each collection."""
        return {name: {"items": self._catalog.counts(name),
                       "chunks": self._index.chunk_count(name)}
                for name in self.collection_names}

    @cached_property
    def vectors(self) -> dict[str, int]:
        """Stored vectors (the embedding cache) by model: one per distinct chunk text."""
        return self._index.vector_counts()

    @cached_property
    def embedding_cache(self) -> dict[str, float]:
        """``hits``, ``misses`` and ``hit_rate`` of the embedding cache over every run:
        a hit is a chunk whose vector was already stored, a miss a text embedded."""
        from gristmill.runtime.progress import cache_figures

        return cache_figures(*self._jobs.embedding_cache())

    def chunks_with_vectors(self, model: str) -> int:
        """Chunks whose text has a ``model`` vector (identical texts share one)."""
        return self._index.chunks_with_vectors(model)

    @cached_property
    def jobs(self) -> list[Job]:
        """The latest :data:`JOBS_LISTED` jobs, newest first."""
        return self._jobs.recent(limit=JOBS_LISTED)

    @cached_property
    def job_states(self) -> dict[str, int]:
        """How many of :attr:`jobs` are in each state (states with none left out)."""
        states: dict[str, int] = {}
        for job in self.jobs:
            states[job.state] = states.get(job.state, 0) + 1
        return states

    @cached_property
    def running(self) -> list[RunningJob]:
        """The running jobs among :attr:`jobs`, each with its batcher's figures."""
        return [RunningJob(job, self._jobs.run_stats(job.id))
                for job in self.jobs if job.state == JobState.RUNNING]

    def status(self) -> dict[str, Any]:
        """The ``gristmill status --json`` object: counts by status, chunks, and the same
        per collection; the running jobs with their batcher's figures; with an embedder,
        the vectors of the bundled model."""
        out: dict[str, Any] = {
            "items": self.items,
            "chunks": self.chunks,
            # Attachments and archive members: `items` counts them, a walk of files not.
            "members": self.members,
            "collections": self.collections,
            "home": str(self._settings.home),
            "embedder": self._settings.embedder,
            "running": [{"job": run.job.id, "collection": run.job.spec.collection,
                         "done": run.job.done, "rate": round(run.job.rate, 3),
                         "batcher": run.batcher}
                        for run in self.running],
            "embedding_cache": self.embedding_cache,
        }
        if self._settings.embedder != "none":
            model = _model_id(self._settings)
            # Distinct chunk texts with a vector (what an ingest's "texts embedded" adds
            # to), and the chunks those vectors serve (duplicates share one).
            out["vectors"] = self.vectors.get(model, 0)
            out["chunks_with_vectors"] = self.chunks_with_vectors(model)
        return out


def _model_id(settings: Settings) -> str:
    """The configured embedder's model id, without loading the bundled model (a remote
    embedder's is made from its settings, before any request)."""
    if settings.embedder == "minilm":
        from gristmill.embed.minilm import MODEL_ID

        return MODEL_ID
    from gristmill.embed import make_embedder

    embedder = make_embedder(settings)
    assert embedder is not None  # embedder != "none"
    return embedder.model_id

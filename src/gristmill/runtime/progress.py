"""A run's figures: :class:`Progress`, and the memory and cache numbers it reports.

A snapshot is what the terminal view, ``ingest --json``, the job's SSE events and the
run's stored statistics all read; the runner fills it in as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from gristmill.runtime.rates import eta, texts_left

__all__ = ["Progress", "cache_figures", "tree_rss"]


def cache_figures(hits: int, misses: int) -> dict[str, float]:
    """The embedding cache's ``hits``, ``misses`` and ``hit_rate`` (0 with no lookup)."""
    lookups = hits + misses
    return {"hits": hits, "misses": misses,
            "hit_rate": round(hits / lookups, 4) if lookups else 0.0}


def tree_rss(process: psutil.Process | None = None) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    process = process or psutil.Process()
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


@dataclass(slots=True)
class Progress:
    """A snapshot of a run, for terminals, logs, ``--json`` and the job's SSE events.

    Two phases, each with its own pace (see :mod:`gristmill.runtime.rates`):
    *extraction* (``done`` of ``total`` items this run, at ``extract_rate``) and
    *embedding* (``chunks_embedded`` texts embedded this run, ``embed_backlog`` texts
    still without vectors, at ``embed_rate``). Items found unchanged are in neither.
    """

    total: int = 0  # items this run extracts: done + still to do (grows with discovery)
    done: int = 0  # items whose extraction this run settled (extracted, indexed, ...)
    extracted: int = 0  # items in scope that wait for their vectors
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    in_flight: int = 0
    pages: int = 0
    chunks: int = 0
    #: Distinct chunk texts embedded by this run: each is one new vector stored
    #: (identical texts are embedded once; cached vectors are reused, not counted).
    chunks_embedded: int = 0
    #: Chunks this run gave an item while embedding: each needs a vector, found in the
    #: embedding cache (a hit) or computed (a miss: ``chunks_embedded``).
    vector_lookups: int = 0
    #: Distinct chunk texts of extracted items still without a vector (all collections).
    embed_backlog: int = 0
    extract_rate: float = 0.0  # items per second, recent (not since the start)
    embed_rate: float = 0.0  # texts embedded per second, recent
    embedding: bool = False  # whether this run computes vectors
    #: Whether this run scans recordings for sound events (an audio scan): then
    #: ``done`` and ``total`` count recordings, and these count what they held.
    audio: bool = False
    audio_seconds: float = 0.0  # of the recordings this run scanned
    events: int = 0  # found by this run
    #: Whether originals are kept in a store (the ``store`` setting): then these count
    #: the originals this run wrote there, and those it found there already (the same
    #: bytes from another file or run: nothing written).
    keeps_originals: bool = False
    originals_stored: int = 0
    originals_present: int = 0
    rss_bytes: int = 0
    elapsed: float = 0.0
    searchable_at: float | None = None
    finished: bool = False
    stopping: bool = False
    recent_failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Items extracted per second, over the recent past."""
        return self.extract_rate

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio scanned per second of the run (``100``: 100x real time)."""
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cache_hits(self) -> int:
        """Chunks whose vector was already stored (another file, an earlier run, or an
        identical text of this run): the lookups that cost no embedding. Texts embedded
        for items of an interrupted earlier run are misses with no lookup of this run,
        so the difference is floored at 0."""
        return max(0, self.vector_lookups - self.chunks_embedded)

    @property
    def extract_eta(self) -> float | None:
        """Seconds until every item is extracted (keyword-searchable), if known."""
        return eta(self.total - self.done, self.extract_rate)

    @property
    def embed_eta(self) -> float | None:
        """Seconds until every text has its vector, if known: the backlog plus what the
        items still to extract will add, at the recent embedding rate."""
        if not self.embedding:
            return None
        return eta(texts_left(self.embed_backlog, self.total - self.done, self.chunks,
                              self.done), self.embed_rate)

    @property
    def eta(self) -> float | None:
        """Seconds until the run is done (both phases), if known."""
        extract = self.extract_eta
        if not self.embedding or extract is None:
            return extract
        embed = self.embed_eta
        return None if embed is None else max(extract, embed)

    def to_dict(self) -> dict[str, object]:
        """The two phases, JSON-ready (``ingest --json``, the job's SSE events)."""
        def seconds(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            # Milliseconds, not tenths: a job's rate is its runs' items over their stored
            # elapsed time, and a run over a handful of files takes under 0.05 s.
            "elapsed": round(self.elapsed, 3),
            "extract": {"done": self.done, "total": self.total, "failed": self.failed,
                        "skipped": self.skipped, "pages": self.pages, "chunks": self.chunks,
                        "rate": round(self.extract_rate, 3),
                        "eta": seconds(self.extract_eta)},
            "embed": {"texts_embedded": self.chunks_embedded,
                      "texts_waiting": self.embed_backlog,
                      "rate": round(self.embed_rate, 3), "eta": seconds(self.embed_eta),
                      "cache": cache_figures(self.cache_hits, self.chunks_embedded)}
            if self.embedding else None,
            "keyword_searchable_after": seconds(self.searchable_at),
            "eta": seconds(self.eta),
            **({"originals_stored": self.originals_stored,
                "originals_already_stored": self.originals_present}
               if self.keeps_originals else {}),
            **({"audio": {"recordings": self.done, "total": self.total,
                          "audio_seconds": round(self.audio_seconds, 3),
                          "events": self.events,
                          "realtime_factor": round(self.realtime_factor, 1)}}
               if self.audio else {}),
        }

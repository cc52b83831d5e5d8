"""What a run is asked to do (:class:`RunOptions`) and how it ended (:class:`RunOutcome`).

A :class:`~gristmill.runtime.runner.Runner` takes its collaborators (settings, catalog,
index, embedder, job store) as arguments and everything else as one frozen
``RunOptions``, which :class:`~gristmill.runtime.job_run.JobRun` builds for ingest,
resume and watch alike, and for the embedding stage alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.audio.recording import AudioOptions

__all__ = ["RunOptions", "RunOutcome"]


class RunOutcome(enum.StrEnum):
    """How a run ended (``Runner.outcome``); :func:`gristmill.runtime.job_run.job_state`
    turns it into its job's state."""

    FINISHED = "finished"  # every item in scope settled and embedded
    PAUSED = "paused"  # a pause (or a newer run, or a queued resume): in-flight work done
    CANCELLED = "cancelled"  # a cancel: workers killed, leases given back
    STOPPED = "stopped"  # stop() or a signal; also a run that raised before it ended


@dataclass(frozen=True, slots=True)
class RunOptions:
    """One run's scope and mode.

    ``job_id`` and ``run_id`` name the job a run works for (both, or neither for the
    embedding stage alone, :meth:`embed_only`): its claims are limited to the items its
    run's discovery saw, and it obeys pause and cancel requests written into the job.
    """

    owner: str  # the lease owner token (see ``lease_owner_token``)
    collection: str = ""
    roots: tuple[str, ...] = ()
    job_id: int | None = None
    run_id: int | None = None
    extract: bool = True  # False: only the embedding stage, over every collection
    embed: bool = True  # False: vectors are left for a later embedding run
    follow: bool = False  # a watch: idle until woken while discovery may add items
    #: An audio scan: items are recordings scanned for sound events (no chunks, no
    #: vectors; no twin copying) and their events stored with their status.
    audio: AudioOptions | None = None
    #: A rebuild: each item is extracted from its original in the store of originals
    #: (by its sha256), never from its source; no twin copying.
    rebuild: bool = False

    def __post_init__(self) -> None:
        if (self.job_id is None) != (self.run_id is None):
            raise ValueError("a run of a job has both a job_id and a run_id; "
                             "a run outside any job has neither")
        if self.extract and (not self.collection or not self.roots):
            raise ValueError("an extracting run needs a collection and its roots")

    @classmethod
    def embed_only(cls, owner: str) -> RunOptions:
        """The embedding stage alone, over every collection's extracted items."""
        return cls(owner, extract=False)

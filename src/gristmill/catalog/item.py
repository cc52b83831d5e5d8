"""Items, their statuses and the kinds of problem that stop them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ErrorType", "Item", "Status"]


class Status(enum.StrEnum):
    """Where an item is in the pipeline.

    ``pending`` -> ``processing`` (leased) -> ``extracted`` (keyword-searchable, vectors
    pending) -> ``indexed``; or ``skipped`` / ``failed`` with a reason. A ``processing``
    item whose lease expired is claimable again, so there is no stuck state.
    """

    PENDING = "pending"
    PROCESSING = "processing"
    EXTRACTED = "extracted"
    INDEXED = "indexed"
    SKIPPED = "skipped"
    FAILED = "failed"

    @classmethod
    def done(cls) -> frozenset[Status]:
        """Statuses an item can end a run in."""
        return frozenset({cls.INDEXED, cls.SKIPPED, cls.FAILED})


class ErrorType(enum.StrEnum):
    """The kind of problem that left an item ``skipped`` or ``failed``: its
    ``error_type``, stored beside the reason (``error``) and shown with it.

    An extractor's permanent error is stored under its class name: ``ExtractionError``
    and ``LimitExceeded`` are members, but a plugin's own subclass is stored by its name
    too, so the column is text and not every value read back is a member.
    """

    # -- skipped -----------------------------------------------------------------------
    #: No extractor reads it (redone when one can: ``Catalog.requeue_outdated``).
    UNSUPPORTED = "unsupported"
    EMPTY = "empty"  # an empty file, or one with no text
    TOO_LARGE = "too large"  # over ``max_file_mb``
    TOO_DEEP = "too deep"  # a container nested past ``max_depth``
    NOT_A_REGULAR_FILE = "not a regular file"
    OUTSIDE_ROOTS = "outside source roots"
    # -- failed ------------------------------------------------------------------------
    UNREADABLE = "unreadable"  # discovery could not read it to hash it
    EXTRACTION_ERROR = "ExtractionError"
    LIMIT_EXCEEDED = "LimitExceeded"
    TRANSIENT = "transient"  # still failing after ``max_attempts`` tries
    CRASH = "crash"  # killed or timed out ``max_crashes`` times: quarantined
    WORKER = "worker"  # the worker's result could not be read
    STORE = "store"  # the database refused to store the result
    #: A rebuild found no (or a damaged) original in the store of originals.
    MISSING_ORIGINAL = "missing original"
    #: The file changed while it was read; a worker says so, and the runner reads the
    #: item again rather than storing this.
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Item:
    """A claimed item, as handed to a worker.

    A child item (an attachment, an archive member) has ``source`` like
    ``mail.eml!/report.pdf``; ``path`` is then the file on disk that holds it and
    ``members`` the names that lead from that file to it.
    """

    id: int
    collection: str
    source: str
    size: int
    sha256: str | None
    attempts: int
    crashes: int
    parent_id: int | None = None
    #: An item holding the same bytes whose chunks are stored, found by the claim (when
    #: it was asked for): its chunks can be copied instead of extracting these again.
    twin: int | None = None
    path: str = ""
    members: tuple[str, ...] = ()
    #: The file's mtime as recorded with its size and sha256 (None for a child).
    mtime_ns: int | None = None
    #: The sha256 of the file on disk that holds a child (its top-level ancestor's, as
    #: recorded): a rebuild reads that original from the store. None for a top-level item.
    path_sha256: str | None = None

    @property
    def disk_path(self) -> str:
        """The file a worker opens: the item itself, or the file holding it."""
        return self.path or self.source

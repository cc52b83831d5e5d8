"""Items and their statuses."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Item", "Status"]


class Status(str, enum.Enum):
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

    @property
    def disk_path(self) -> str:
        """The file a worker opens: the item itself, or the file holding it."""
        return self.path or self.source

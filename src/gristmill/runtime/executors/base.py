"""What the runner needs of an executor: the seam a cluster executor (Ray) plugs into."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from gristmill.runtime.worker import WorkResult

__all__ = ["Executor"]


class Executor(Protocol):
    """Runs extraction work items somewhere and hands back futures of their results.

    A future fails with ``concurrent.futures.TimeoutError`` when its attempt ran past the
    hard limit, and with ``pebble.ProcessExpired`` when its worker died (``exitcode``:
    ``RECYCLE_EXIT_CODE`` for a worker that retired over its RSS limit; see
    :meth:`timed_out` for one killed for making no progress).
    """

    def submit(self, source: str, members: tuple[str, ...] = (),
               expected: tuple[int, int] | None = None, *,
               item_id: int = 0, sha256: str | None = None) -> Future[WorkResult]:
        """Schedule one item: a file, or ``members`` down inside it; ``expected``: the
        file's size and mtime as recorded with its sha256; ``item_id``: its id, which
        names a recording's clip files (the runner passes it only in an audio scan);
        ``sha256``: the file's, as discovery recorded it (passed only when originals
        are kept in a store, which checks the bytes it keeps against it)."""
        ...

    def overdue(self) -> int:
        """Kill the workers whose attempt made no progress for ``item_timeout`` seconds;
        returns how many."""
        ...

    def timed_out(self, future: Future[WorkResult]) -> bool:
        """Whether :meth:`overdue` killed the worker of ``future``."""
        ...

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop the workers: let them finish (``kill=False``) or terminate them now."""
        ...

"""Tickets: the acknowledgement of one enqueued row, shared per batch underneath."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gristmill.batching.stores import Row

log = logging.getLogger(__name__)


class _Batch:
    """Up to ``max_rows`` rows of one table: one flush, one transaction, one event."""

    __slots__ = ("callbacks", "done", "errors", "first", "rows", "table", "times")

    def __init__(self, table: str, now: float) -> None:
        self.table = table
        self.first = now  # max_delay counts from here
        self.rows: list[Row] = []
        self.times: list[float] = []  # each row's enqueue time, for latency figures
        self.done = threading.Event()
        self.errors: dict[int, BaseException] = {}  # row index -> why it did not commit
        self.callbacks: list[tuple[Ticket, Callable[[Ticket], object]]] | None = []

    def finish(self, errors: dict[int, BaseException]) -> None:
        self.errors = errors
        self.rows, self.times = [], []  # tickets outlive batches: do not hold their rows
        with _CALLBACKS:
            callbacks, self.callbacks = self.callbacks or [], None
            self.done.set()
        for ticket, fn in callbacks:
            _call_back(fn, ticket)


_CALLBACKS = threading.Lock()  # orders add_done_callback against a batch finishing


def _call_back(fn: Callable[[Ticket], object], ticket: Ticket) -> None:
    try:
        fn(ticket)
    except Exception:
        log.exception("a ticket's done-callback failed")


class Ticket:
    """The acknowledgement of one enqueued row, completed when its fate is durable.

    Shaped like :class:`concurrent.futures.Future`, but shared per batch underneath, so
    one costs a small object rather than a lock.
    """

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        """True once the row is committed, dead-lettered or failed."""
        return self._batch.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`done`; False if ``timeout`` seconds passed first."""
        return self._batch.done.wait(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """None if the row is durably committed, else why not.

        The reasons are listed in :mod:`gristmill.batching`.

        Raises:
            TimeoutError: the row's batch did not finish within ``timeout`` seconds.
        """
        if not self._batch.done.wait(timeout):
            raise TimeoutError(f"row not committed within {timeout} s")
        return self._batch.errors.get(self._index)

    def result(self, timeout: float | None = None) -> None:
        """Return once the row is durably committed; raise why it was not."""
        error = self.exception(timeout)
        if error is not None:
            raise error

    def add_done_callback(self, fn: Callable[[Ticket], object]) -> None:
        """Call ``fn(ticket)`` when done: on a flusher thread, or now if already done.

        Keep it short, and never call the writer's ``flush`` or ``close`` from it.
        """
        with _CALLBACKS:
            if self._batch.callbacks is not None:
                self._batch.callbacks.append((self, fn))
                return
        _call_back(fn, self)

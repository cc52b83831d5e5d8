"""The failure policy every database call shares: back off when busy, wait out an
outage, bisect a rejected batch.

A busy database (:class:`~gristmill.errors.StoreBusy`: locked, a deadlock lost) is
retried ``_BUSY_RETRIES`` times with jittered exponential backoff. An unreachable one
(:class:`~gristmill.errors.StoreUnavailable`: a PostgreSQL restart or failover) is
retried until ``outage_seconds`` (the ``store_retry_seconds`` setting, a minute by
default) after this process first found it unreachable: calls nested in one another, or
made one after another, all give up together rather than each waiting a minute of its
own. Each outage is logged once when it starts and once when it ends. The catalog's
reads and transactions (:mod:`gristmill.catalog`) and both batchers go through
:func:`retry_busy`. A batch's writer fails in a third way: any other error halves the
batch until each bad operation is alone, so every good one still commits.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from gristmill.errors import StoreBusy, StoreFull, StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

# Read at call time (tests shorten them).
_BUSY_RETRIES = 8
_BUSY_BASE_DELAY = 0.05
#: Seconds an unreachable database is waited for when the caller names no budget.
OUTAGE_SECONDS = 60.0
_OUTAGE_MAX_DELAY = 2.0  # a restart is noticed within this long of its end
_OUTAGE_GAP = 60.0


class _Outages:
    """Whether this process currently finds its database unreachable, so that an outage
    is logged once when it starts and once when it ends, however many threads hit it."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._last = 0.0  # when a call last found it unreachable
        self._lock = threading.Lock()

    def begin(self, where: str, exc: BaseException, budget: float) -> float:
        """Note that ``where`` is unreachable; returns when this outage began."""
        now = time.monotonic()
        with self._lock:
            # Failures far apart, with no call in between, are two outages, not one.
            if self._since is not None and now - self._last < _OUTAGE_GAP:
                self._last = now
                return self._since
            self._since = self._last = since = now
        log.warning("%s is unreachable (%s); retrying for up to %.0f s", where, exc, budget)
        return since

    def end(self, where: str) -> None:
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.info("%s is reachable again after %.1f s", where, time.monotonic() - since)


_OUTAGES = _Outages()


def _write_or_bisect(write: Callable[[Sequence[T]], None], ops: Sequence[T],
                     on_dead: Callable[[T, Exception], None], *,
                     split_write: Callable[[Sequence[T]], None] | None = None,
                     outage_seconds: float | None = None) -> None:
    """Write ``ops`` in one call; if that fails, halve until each bad op is alone.

    The halves are written with ``split_write`` (default ``write``); each lone bad op goes
    to ``on_dead`` with its error. :class:`StoreBusy` (an outage included) and
    :class:`StoreFull` propagate: the database is unavailable or its disk full, not the
    data bad, so nothing is dead-lettered for them.
    """
    try:
        _write_with_backoff(write, ops, outage_seconds)
    except (StoreBusy, StoreFull):
        raise
    except Exception as exc:
        if len(ops) == 1:
            on_dead(ops[0], exc)
            return
        middle = len(ops) // 2
        halves = split_write or write
        _write_or_bisect(halves, ops[:middle], on_dead, outage_seconds=outage_seconds)
        _write_or_bisect(halves, ops[middle:], on_dead, outage_seconds=outage_seconds)


def _write_with_backoff(write: Callable[[Sequence[T]], None], ops: Sequence[T],
                        outage_seconds: float | None = None) -> None:
    retry_busy(lambda: write(ops), outage_seconds=outage_seconds)


def retry_busy(call: Callable[[], R], *, outage_seconds: float | None = None,
               where: str = "the database") -> R:
    """``call()``, called again after a jittered backoff each time it raises
    :class:`StoreBusy`: ``_BUSY_RETRIES`` times at most, or, while it raises
    :class:`StoreUnavailable`, until ``outage_seconds`` (default :data:`OUTAGE_SECONDS`)
    after the outage began.
    The last error propagates. ``where`` names the database in the log.

    ``call`` must be safe to repeat: a read, or a whole transaction (what it wrote
    before failing was rolled back).
    """
    budget = OUTAGE_SECONDS if outage_seconds is None else outage_seconds
    busy = away = 0
    while True:
        try:
            result = call()
        except StoreUnavailable as exc:
            now = time.monotonic()
            outage_started = _OUTAGES.begin(where, exc, budget)
            if now - outage_started >= budget:
                raise
            # Doubling, but capped: the end of a restart is noticed within seconds.
            delay = min(_OUTAGE_MAX_DELAY, 0.1 * 2 ** min(away, 8),
                        outage_started + budget - now)
            away += 1
        except StoreBusy:
            busy += 1
            if busy >= _BUSY_RETRIES:
                raise
            delay = _BUSY_BASE_DELAY * 2 ** (busy - 1)
        else:
            _OUTAGES.end(where)
            return result
        time.sleep(delay * (0.5 + random.random()))

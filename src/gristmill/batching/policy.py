"""The failure policy both batchers share: bisect a rejected batch, back off when busy.

A busy or unreachable database (:class:`~gristmill.errors.StoreBusy`) is retried
``_BUSY_RETRIES`` times with jittered exponential backoff; any other error halves the
batch until each bad operation is alone, so every good one still commits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from gristmill.errors import StoreBusy

T = TypeVar("T")
R = TypeVar("R")

# Read at call time (tests shorten them).
_BUSY_RETRIES = 8
_BUSY_BASE_DELAY = 0.05


def _write_or_bisect(write: Callable[[Sequence[T]], None], ops: Sequence[T],
                     on_dead: Callable[[T, Exception], None], *,
                     split_write: Callable[[Sequence[T]], None] | None = None) -> None:
    """Write ``ops`` in one call; if that fails, halve until each bad op is alone.

    The halves are written with ``split_write`` (default ``write``); each lone bad op goes
    to ``on_dead`` with its error. :class:`StoreBusy` propagates: the database is
    unavailable, not the data bad, so nothing is dead-lettered for it.
    """
    try:
        _write_with_backoff(write, ops)
    except StoreBusy:
        raise
    except Exception as exc:
        if len(ops) == 1:
            on_dead(ops[0], exc)
            return
        middle = len(ops) // 2
        halves = split_write or write
        _write_or_bisect(halves, ops[:middle], on_dead)
        _write_or_bisect(halves, ops[middle:], on_dead)


def _write_with_backoff(write: Callable[[Sequence[T]], None], ops: Sequence[T]) -> None:
    retry_busy(lambda: write(ops))


def retry_busy(call: Callable[[], R]) -> R:
    """``call()``, called again after a jittered backoff each time it raises
    :class:`StoreBusy`, ``_BUSY_RETRIES`` times at most; the last StoreBusy propagates."""
    for attempt in range(_BUSY_RETRIES):
        try:
            return call()
        except StoreBusy:
            if attempt == _BUSY_RETRIES - 1:
                raise
            delay = _BUSY_BASE_DELAY * 2**attempt
            time.sleep(delay * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

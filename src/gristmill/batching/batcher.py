"""Batcher: the synchronous core the runner drives from its own thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gristmill.batching.policy import _write_or_bisect

log = logging.getLogger(__name__)

T = TypeVar("T")


def _percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 6)


@dataclass(slots=True)
class BatcherStats:
    """Running totals, for progress and metrics.

    ``latencies`` holds the last 1,000 flushes' wait of their oldest operation (enqueue
    to durable commit); ``durations`` the last 1,000 flushes' own time.
    """

    flushes: int = 0
    ops: int = 0
    rows: int = 0
    dead: int = 0
    flush_seconds: float = 0.0
    last_flush_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Totals and percentiles, JSON-ready (what a job records for ``/metrics``)."""
        return {"flushes": self.flushes, "ops": self.ops, "rows": self.rows,
                "dead": self.dead, "flush_seconds": round(self.flush_seconds, 6),
                "flush_p50": _percentile(self.durations, 50),
                "flush_p99": _percentile(self.durations, 99),
                "latency_p50": _percentile(self.latencies, 50),
                "latency_p99": _percentile(self.latencies, 99)}


class Batcher(Generic[T]):
    """Buffers operations and writes them in batches, on the caller's thread.

    Nothing in the buffer is durable: an operation is acknowledged only when ``flush``
    returns. Callers that must survive a crash (the runner) keep the source of truth
    elsewhere until then (an item's lease, which expires and is re-claimed).
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], None],
        *,
        on_dead: Callable[[T, Exception], None],
        max_rows: int = 500,
        max_delay: float = 1.0,
        weigh: Callable[[T], int] = lambda _op: 1,
        clock: Callable[[], float] = time.monotonic,
        outage_seconds: float | None = None,
    ) -> None:
        self._write = write
        self._outage_seconds = outage_seconds  # how long an unreachable database is awaited
        self._on_dead = on_dead
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._weigh = weigh
        self._clock = clock
        self._buffer: list[T] = []
        self._rows = 0
        self._oldest: float | None = None
        self.stats = BatcherStats()

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, op: T) -> None:
        """Buffer ``op``; flush now if the buffer is full."""
        if self._oldest is None:
            self._oldest = self._clock()
        self._buffer.append(op)
        self._rows += max(1, self._weigh(op))
        if self._rows >= self._max_rows:
            self.flush()

    def flush_if_due(self) -> None:
        """Flush when the oldest buffered operation has waited ``max_delay``."""
        if self._oldest is not None and self._clock() - self._oldest >= self._max_delay:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered; returns once it is committed (or dead-lettered)."""
        if not self._buffer:
            return
        ops, rows, oldest = self._buffer, self._rows, self._oldest
        self._buffer, self._rows, self._oldest = [], 0, None
        started = self._clock()
        _write_or_bisect(self._write, ops, self._dead, outage_seconds=self._outage_seconds)
        took = self._clock() - started
        self.stats.flushes += 1
        self.stats.ops += len(ops)
        self.stats.rows += rows
        self.stats.flush_seconds += took
        self.stats.last_flush_seconds = took
        self.stats.durations.append(took)
        del self.stats.durations[:-1000]
        if oldest is not None:
            self.stats.latencies.append(self._clock() - oldest)
            del self.stats.latencies[:-1000]  # keep a bounded window for percentiles

    def _dead(self, op: T, exc: Exception) -> None:
        self.stats.dead += 1
        log.warning("dropping one operation after a failed write: %s", exc, exc_info=True)
        self._on_dead(op, exc)

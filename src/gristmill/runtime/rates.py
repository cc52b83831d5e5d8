"""Rates and ETAs for progress reports, measured over the recent past.

A run's pace changes as it goes: unchanged files are passed over at once, scans wait
for OCR, and embedding runs beside extraction at its own, slower speed. A rate averaged
since the start lags every change by the whole run, and an ETA that counts items
finished (only once their vectors are in) climbs while the real remainder shrinks: the
items are extracted quickly and then wait for the embedding backlog. So each phase has
its own rate, an exponential moving average over about the last half minute, and the
embedding ETA counts what is left to embed: the backlog of texts without vectors plus
what the items still to extract will add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RecentRate", "eta", "texts_left"]

_MIN_STEP = 0.5  # seconds: shorter intervals are folded into the next update


@dataclass(slots=True)
class RecentRate:
    """Events per second over roughly the last ``window`` seconds, from running totals."""

    window: float = 30.0
    _rate: float | None = None
    _count: int = 0
    _at: float | None = None

    def update(self, count: int, now: float) -> float:
        """Record the running total ``count`` at ``now`` (monotonic seconds); returns
        the rate."""
        if self._at is None:
            self._count, self._at = count, now
            return self.per_second
        step = now - self._at
        if step < _MIN_STEP:
            return self.per_second
        recent = max(count - self._count, 0) / step
        # The weight of the new interval grows with its length: the average forgets the
        # past at the same pace whether it is updated twice a second or once a minute.
        weight = 1.0 - math.exp(-step / self.window)
        self._rate = recent if self._rate is None else self._rate + weight * (
            recent - self._rate)
        self._count, self._at = count, now
        return self.per_second

    @property
    def per_second(self) -> float:
        """The rate, 0.0 before two updates at least half a second apart."""
        return self._rate or 0.0


def eta(left: float, rate: float) -> float | None:
    """Seconds to do ``left`` at ``rate`` per second: 0.0 when nothing is left, None
    while the rate is unknown."""
    if left <= 0:
        return 0.0
    return left / rate if rate > 0 else None


def texts_left(backlog: int, items_left: int, texts: int, items_done: int) -> float:
    """Texts still to embed: the ``backlog`` without vectors, plus what the
    ``items_left`` to extract will add at the run's ``texts`` per item done so far."""
    per_item = texts / items_done if items_done else 0.0
    return backlog + max(items_left, 0) * per_item

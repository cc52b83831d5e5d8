"""How often one client may search.

Search is the one route whose cost a caller controls (a query runs BM25 and, in hybrid
mode, the embedding model), so it is rate-limited per client. (Request bodies are
capped by the request guard, see guards.py.)
"""

from __future__ import annotations

import math
import time

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gristmill.api.problems import ApiError

__all__ = ["SearchThrottle"]


class SearchThrottle:
    """Moving-window limits per client key (a token's name, or an address)."""

    def __init__(self, rate: str) -> None:
        """Args:
        rate: ``limits`` notation, e.g. ``"20/second;600/minute"``.
        """
        self._items = parse_many(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, key: str) -> None:
        """Count one search for ``key``.

        Raises:
            ApiError: 429 with ``Retry-After`` once a window is full.
        """
        # test() first, so a refused request does not use up another window's budget.
        for item in self._items:
            if not self._limiter.test(item, "search", key):
                reset, _ = self._limiter.get_window_stats(item, "search", key)
                wait = max(1, math.ceil(reset - time.time()))
                raise ApiError(429, f"too many searches: at most {item} per client; "
                                    f"retry in {wait} s",
                               headers={"Retry-After": str(wait)})
        for item in self._items:
            self._limiter.hit(item, "search", key)

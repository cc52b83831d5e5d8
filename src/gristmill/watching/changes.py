"""Changes: file-system events coalesced per path until the path has been quiet.

A save is rarely one event. An editor writes a temporary file and renames it over the
target; a download appends for minutes; ``sed -i`` creates, writes and renames. So an
event only *marks* a path; what the change was (new, modified, deleted) is decided once
the path has been quiet for ``debounce`` seconds, by looking at the disk then: the last
write wins, a path that is gone is a delete, and a temporary file renamed away is
nothing at all. A path written to without pause is settled every ``max_delay`` seconds
anyway.

The set is bounded: past ``capacity`` distinct paths it forgets them all and asks for a
rescan of the watched folders, which finds every change the forgotten marks stood for
(the same fallback as an overflow of the kernel's inotify queue). Memory is therefore
O(capacity), whatever the rate of events.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Changes", "Due"]


@dataclass(slots=True)
class _Mark:
    first: float  # when the burst of events on this path began
    last: float  # its latest event: the path is due ``debounce`` after it
    tree: bool  # a folder: everything under it is looked at again


@dataclass(slots=True)
class Due:
    """Paths whose changes have settled, for the watcher to apply."""

    files: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    #: The marks overflowed (or the kernel dropped events): rescan every watched folder.
    rescan: bool = False

    def __bool__(self) -> bool:
        return bool(self.files or self.trees or self.rescan)


class Changes:
    """Marked paths in the order of their latest event; thread-safe.

    The watchdog thread calls :meth:`mark`; the watcher's feeder thread calls
    :meth:`wait` and :meth:`take`.
    """

    def __init__(self, debounce: float, max_delay: float, capacity: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self.capacity = capacity
        self._clock = clock
        self._marks: OrderedDict[str, _Mark] = OrderedDict()
        self._rescan = False
        self._cond = threading.Condition()
        #: How many rescans overflows asked for.
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._marks)

    def mark(self, path: str, *, tree: bool = False) -> None:
        """Note that ``path`` (a folder, with ``tree``) changed just now."""
        now = self._clock()
        with self._cond:
            mark = self._marks.get(path)
            if mark is None:
                if len(self._marks) >= self.capacity:
                    self._overflow()
                    return
                self._marks[path] = _Mark(now, now, tree)
                if len(self._marks) == 1:
                    self._cond.notify_all()  # a new earliest deadline
                return
            mark.tree = mark.tree or tree
            if now - mark.first < self.max_delay:
                mark.last = now
                self._marks.move_to_end(path)
            # else: a path written to without pause keeps its place and comes due.

    def overflow(self) -> None:
        """Forget every mark and ask for a rescan (events were lost, or too many)."""
        with self._cond:
            self._overflow()

    def _overflow(self) -> None:
        self._marks.clear()
        if not self._rescan:  # one rescan answers every overflow before it starts
            self._rescan = True
            self.overflows += 1
        self._cond.notify_all()

    def take(self, limit: int, *, everything: bool = False) -> Due:
        """Up to ``limit`` paths that have been quiet for ``debounce`` (every path, with
        ``everything``), oldest first, and whether a rescan is wanted."""
        due = Due()
        now = self._clock()
        with self._cond:
            due.rescan, self._rescan = self._rescan, False
            while self._marks and len(due.files) + len(due.trees) < limit:
                path, mark = next(iter(self._marks.items()))
                if not everything and mark.last + self.debounce > now:
                    break
                del self._marks[path]
                (due.trees if mark.tree else due.files).append(path)
        return due

    def wait(self, timeout: float) -> None:
        """Sleep until the oldest mark may be due, a rescan is wanted, :meth:`interrupt`
        is called, or ``timeout`` seconds pass."""
        with self._cond:
            if self._rescan:
                return
            if self._marks:
                first = next(iter(self._marks.values()))
                timeout = min(timeout, first.last + self.debounce - self._clock())
            if timeout > 0:
                self._cond.wait(timeout)

    def interrupt(self) -> None:
        """Wake a thread blocked in :meth:`wait`."""
        with self._cond:
            self._cond.notify_all()

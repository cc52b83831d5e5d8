"""From watchdog's events to marked paths: which paths a watch cares about, and how
each kind of event marks them.

A watch admits exactly what an ingest of the same folders would walk: no hidden folders
(``.git``), nothing under the knowledge base's own home, the include and exclude
patterns, plus the temporary files editors and downloaders write before renaming
(:data:`TEMP_PATTERNS`), which are never worth indexing.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from gristmill.sources import Matcher
from gristmill.watching.changes import Changes

__all__ = ["EVENT_TYPES", "TEMP_PATTERNS", "EventRouter", "OverflowAlarm", "Scope"]

# watchdog 7 warns, from its own thread, when a folder moved out of a watch comes back:
# the stale inotify watch is overwritten, which is right. For a user that is a normal
# move, not something to print into a service's log.
WATCH_OVERWRITTEN = r"Callback with id .* already exists"
warnings.filterwarnings("ignore", message=WATCH_OVERWRITTEN, category=RuntimeWarning)

#: File names a watch ignores: editors' swap, backup and lock files, atomic writers'
#: and downloaders' temporaries. ``sed -i``'s ``sedXXXXXX`` is not here: it is renamed
#: away before it has been quiet, and a path that is gone when due is no change.
TEMP_PATTERNS = (
    "*~", ".#*", "#*#", "*.swp", "*.swo", "*.swx", "*.swpx", "4913", "*.tmp", "*.temp",
    "*.part", "*.crdownload", "~$*", ".~lock.*#", ".goutputstream-*", "*.kate-swp",
)

#: The events a watch listens to. Opens and read-only closes are left out: extraction
#: itself reads every file, and those events would only feed the queue.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent, FileMovedEvent,
    FileDeletedEvent, DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]


class Scope:
    """The paths a watch of ``roots`` admits (see the module docstring)."""

    def __init__(self, roots: Sequence[str], matcher: Matcher, skip: Sequence[Path] = ()) -> None:
        self.roots = list(roots)
        self.matcher = matcher
        #: The roots that are folders (the others are single files).
        self.folders = {root for root in roots if os.path.isdir(root)}
        self._skip = [os.path.abspath(p) for p in skip]

    def root_of(self, path: str) -> str | None:
        """The first root ``path`` lies in (or is), if any."""
        for root in self.roots:
            if path == root or (root in self.folders and _below(path, root)):
                return root
        return None

    def relative(self, path: str, root: str) -> str:
        """``path`` as the patterns see it: relative to its root, ``/``-separated (a
        root that is a file is matched by its name)."""
        if path == root:
            return os.path.basename(path)
        return os.path.relpath(path, root).replace(os.sep, "/")

    def admits_file(self, path: str) -> bool:
        """Whether a change to the file ``path`` concerns the watch."""
        root = self.root_of(path)
        if root is None or self._skipped(path):
            return False
        if root not in self.folders:
            return True  # a file root: the one file, whatever the patterns say
        relative = self.relative(path, root)
        if any(part.startswith(".") for part in relative.split("/")[:-1]):
            return False  # inside a hidden folder, which the walk never enters
        return self.matcher(relative)

    def admits_tree(self, path: str) -> bool:
        """Whether a change to the folder ``path`` concerns the watch."""
        root = self.root_of(path)
        if root is None or root not in self.folders or self._skipped(path):
            return False
        if path == root:
            return True
        return not any(part.startswith(".") for part in self.relative(path, root).split("/"))

    def _skipped(self, path: str) -> bool:
        return any(path == skip or _below(path, skip) for skip in self._skip)


class EventRouter(FileSystemEventHandler):
    """Marks the paths watchdog's events name (runs on watchdog's thread: O(1) each)."""

    def __init__(self, scope: Scope, changes: Changes) -> None:
        self.scope = scope
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [os.fsdecode(event.src_path)]
        if event.event_type == "moved" and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        if event.is_directory:
            # A folder created, deleted or moved: everything under it is looked at
            # again (a move out of the watch arrives as a delete, with no event for
            # what it held). Its "modified" events only say its listing changed.
            if event.event_type in ("created", "deleted", "moved"):
                for path in paths:
                    if self.scope.admits_tree(path):
                        self.changes.mark(path, tree=True)
            return
        for path in paths:
            if self.scope.admits_file(path):
                self.changes.mark(path)


class OverflowAlarm(logging.Handler):
    """Turns watchdog's report of an inotify queue overflow into a rescan.

    The kernel drops events when its queue (``fs.inotify.max_queued_events``) fills;
    watchdog then rebuilds its watches and logs a warning, but tells no handler. That
    warning is the only signal, so it is caught here.
    """

    LOGGER = "watchdog.observers.inotify_c"

    def __init__(self, changes: Changes) -> None:
        super().__init__(logging.WARNING)
        self.changes = changes

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.changes.overflow()

    def attach(self) -> None:
        """Start listening (the logger is made to pass warnings on)."""
        logger = logging.getLogger(self.LOGGER)
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(self)

    def detach(self) -> None:
        """Stop listening."""
        logging.getLogger(self.LOGGER).removeHandler(self)


def _below(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)

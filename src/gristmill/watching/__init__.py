"""Watching folders: file-system events turned into batched pipeline work.

``Watcher`` (and :meth:`gristmill.KnowledgeBase.watch`) catch a collection up with its
folders, then follow every save, move and delete; see :mod:`gristmill.watching.watcher`.
"""

from gristmill.watching.events import TEMP_PATTERNS
from gristmill.watching.watcher import Watcher, WatchReport

__all__ = ["TEMP_PATTERNS", "WatchReport", "Watcher"]

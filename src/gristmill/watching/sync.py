"""Sync: bring the catalog in line with the disk for the paths a watch saw change.

What a path *is* is read from the disk when its change is applied, never from the event:
a regular file is recorded like discovery records it (new or changed bytes make the item
``pending`` for the runner; same bytes keep the work done), a path that is gone loses
its item and chunks, a folder is walked again. A path may be applied twice, or in any
order with its neighbours: each application only makes the catalog match the disk.

It runs in the watcher's feeder thread, on a database connection of its own, like the
discovery walk; the runner claims what it records.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gristmill.catalog import Catalog, CatalogDatabase, DiscoveryCounts, FileFacts
from gristmill.errors import SourceError
from gristmill.sources import Matcher, sha256_file, walk
from gristmill.sources import facts as file_facts  # one stat, judged as the walk does
from gristmill.sources.roots import real_roots
from gristmill.watching.events import Scope

__all__ = ["Sync"]

T = TypeVar("T")

_PAGE = 500  # catalog rows read (or deleted) at a time when pruning a folder


class Sync:
    """Applies settled changes to the catalog; see the module docstring."""

    def __init__(self, db: CatalogDatabase, collection: str, scope: Scope, run_id: int, *,
                 batch: int = 500, skip: Sequence[Path] = (),
                 confine: Sequence[str | Path] = ()) -> None:
        self.db = db
        self.catalog = Catalog(db)
        self.collection = collection
        self.scope = scope
        self.run_id = run_id
        self.batch = batch
        self._skip = list(skip)
        self._confine = list(confine)
        self._allowed = real_roots(confine)
        # Hashing reads the file: only one that is (still) inside the source roots.
        self._hasher = functools.partial(sha256_file, roots=self._allowed)

    def files(self, paths: Iterable[str]) -> DiscoveryCounts:
        """Record each file as it is now; remove the items of those that are gone."""
        counts = DiscoveryCounts()
        by_root: dict[str, list[FileFacts]] = {}
        gone: list[str] = []
        folders: list[str] = []
        for path in paths:
            root = self.scope.root_of(path)
            if root is None:
                continue
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                gone.append(path)
                continue
            except OSError:
                mode = 0  # judged (and given its reason) by file_facts below
            if stat.S_ISDIR(mode):
                folders.append(path)  # a file replaced by a folder
                continue
            by_root.setdefault(root, []).append(file_facts(path, self._allowed))
        for root, facts in by_root.items():
            for part in _batches(facts, self.batch):
                counts += self.catalog.record_discovered(self.collection, root, part,
                                                         self.run_id, self._hasher)
        counts.removed += self._remove(gone)
        for folder in folders:
            counts += self.tree(folder)
        return counts

    def tree(self, folder: str) -> DiscoveryCounts:
        """Walk ``folder`` again: record what is there, remove items of what is not.

        Raises:
            SourceError: ``folder`` is a watched root and it is gone.
        """
        root = self.scope.root_of(folder)
        if root is None:
            return DiscoveryCounts()
        exists = os.path.isdir(folder) and not os.path.islink(folder)
        if not exists and folder == root:
            raise SourceError(f"{root} was deleted or moved away; the watch stopped "
                              "(its items are kept: restore the folder and watch again)")
        counts = DiscoveryCounts()
        if exists:
            prefix = "" if folder == root else self.scope.relative(folder, root) + "/"
            matcher = _Below(self.scope.matcher.include, self.scope.matcher.exclude, prefix)
            try:
                for part in _batches(walk(Path(folder), matcher, self._skip, self._confine),
                                     self.batch):
                    counts += self.catalog.record_discovered(self.collection, root, part,
                                                             self.run_id, self._hasher)
            except SourceError:
                if folder == root:
                    raise
                # A sub-folder that vanished (or became unreadable) as it was walked:
                # what it held is pruned below, and its own event follows.
        counts.removed += self._prune(folder, root)
        if folder != root:
            counts.removed += self._remove([folder])  # it may have been a file before
        return counts

    def _prune(self, folder: str, root: str) -> int:
        """Remove the items under ``folder`` whose file is gone (only those the patterns
        admit, as a complete discovery pass does)."""
        low, high = folder.rstrip(os.sep) + os.sep, folder.rstrip(os.sep) + chr(ord(os.sep) + 1)
        removed = 0
        after = low
        while True:
            sources = self.catalog.top_level_sources(self.collection, after, high, _PAGE)
            if not sources:
                return removed
            after = sources[-1]
            gone = [source for source in sources
                    if self.scope.matcher(self.scope.relative(source, root))
                    and not _is_file(source)]
            removed += self._remove(gone)

    def _remove(self, sources: Sequence[str]) -> int:
        """Delete the items (their chunks, their children) with these sources."""
        return self.catalog.remove_sources(self.collection, sources)


@dataclass(frozen=True, slots=True)
class _Below(Matcher):
    """The watch's patterns applied below a sub-folder: the walk gives paths relative to
    the folder, the patterns expect them relative to the root."""

    prefix: str = ""

    def __call__(self, relative: str) -> bool:
        return Matcher.__call__(self, self.prefix + relative)


def _is_file(source: str) -> bool:
    """Whether ``source`` still names something that is not a folder (a broken link or
    a FIFO still counts: discovery keeps those, as skipped items)."""
    try:
        return not stat.S_ISDIR(os.lstat(source).st_mode)
    except OSError:
        return False


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

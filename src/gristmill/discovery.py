"""Discovery: walking the sources into the catalog, beside extraction.

A walk of a large pile is not free: every new or changed file is read once for its
sha256, which for gigabytes of PDFs takes longer than extracting the first hundreds of
them. So discovery runs in its own thread with its own database connection and commits
a batch of files at a time; the runner claims items as soon as they are committed.
Batches start at 16 files and double up to 500, so the workers get their first files
within milliseconds while most of a large walk still commits in few transactions. Only
items seen by this run (or by a later one, walking the same files in another process)
are claimed, so a file that has left the source is never extracted while discovery has
not yet reached the point of noticing it is gone.

Every root is a :class:`~gristmill.sources.base.Source`: a local folder (walked, or
listed by git in a work tree), or a remote prefix such as ``s3://bucket/prefix/``,
listed a page at a time. A remote object is judged by its change token (its ETag) and
never read here: a worker downloads and hashes what is new or changed.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

from gristmill.catalog import Catalog, CatalogDatabase, DiscoveryCounts, FileFacts
from gristmill.sources import Matcher, sha256_file, walk
from gristmill.sources import facts as file_facts
from gristmill.sources.base import Source, is_remote, open_source, relative_name
from gristmill.sources.git import GitTree, git_tree, skipped_as_vendored
from gristmill.sources.roots import check_root, real_roots

if TYPE_CHECKING:
    from gristmill.config import Settings
    from gristmill.sources.gdrive_source import GdriveSource

__all__ = ["Discovery", "dry_run_counts"]

log = logging.getLogger(__name__)

_GDRIVE = "gdrive://"
_FIRST_BATCH = 16
_MAX_BATCH = 500


class Discovery:
    """One run's walk of its sources, in a background thread.

    ``start()`` returns at once; ``running`` tells the runner whether more items may
    still appear; ``join()`` waits for the end and returns the counts (or raises what
    stopped the walk). ``open_db`` opens the catalog for the walk's thread (for
    instance ``lambda: open_database(settings)``). With ``modified_since_ns``, only files
    modified at or after that time are looked at (a nightly audio scan's ``--since``):
    like a walk capped by ``max_files``, such a listing is partial and removes nothing.
    """

    def __init__(self, open_db: Callable[[], CatalogDatabase], collection: str,
                 roots: Sequence[str], matcher: Matcher, run_id: int, max_files: int | None,
                 skip: Sequence[Path] = (), confine: Sequence[str | Path] = (), *,
                 include_vendored: bool = False, modified_since_ns: int | None = None,
                 s3_endpoint_url: str | None = None, settings: Settings | None = None
                 ) -> None:
        self._open_db = open_db
        self._s3_endpoint_url = s3_endpoint_url
        self._settings = settings
        self._since = modified_since_ns
        self._include_vendored = include_vendored
        self._confine = list(confine)
        self._collection = collection
        self._roots = list(roots)
        self._matcher = matcher
        self._run_id = run_id
        self._max_files = max_files
        self._skip = list(skip)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.counts = DiscoveryCounts()
        #: Seconds the walk took (hashing new and changed files included), once it ended.
        self.seconds: float | None = None
        self._thread = threading.Thread(target=self._run, name="gristmill-discovery",
                                        daemon=True)

    def start(self) -> None:
        """Begin walking in the background."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the walk may still add items."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop after the current batch; what was committed stays."""
        self._stop.set()

    def join(self) -> DiscoveryCounts:
        """Wait for the walk to end; re-raise whatever ended it early."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.counts

    def _run(self) -> None:
        started = time.monotonic()
        try:
            db = self._open_db()
        except BaseException as exc:  # handed to join(), which re-raises it
            self._error = exc
            return
        try:
            self._walk(Catalog(db))
        except BaseException as exc:
            self._error = exc
        finally:
            self.seconds = time.monotonic() - started
            db.close()

    def _walk(self, catalog: Catalog) -> None:
        left = self._max_files
        # Hashing reads the file: only one that is (still) inside the source roots.
        allowed = real_roots(self._confine)
        hasher = functools.partial(sha256_file, roots=allowed) if allowed else sha256_file
        for root in self._roots:
            remote = is_remote(root)
            tree = git_tree(Path(root)) if left is None and self._since is None \
                and not remote else None
            if tree is not None and self._repository(catalog, root, tree, hasher):
                continue
            if left is None and self._since is None and root.startswith(_GDRIVE):
                self._drive(catalog, root)
                continue
            # A folder's listing is LocalSource.entries, i.e. this walk.
            listing = self._source(root).entries(self._matcher) if remote else \
                walk(Path(root), self._matcher, self._skip, self._confine)
            # Removal needs a complete listing: one of recent files only did not look at
            # the older ones, which stay as they are.
            complete = self._since is None
            if self._since is not None:
                listing = _modified_since(listing, self._since)
            for batch in _batches(listing, left):
                if self._stop.is_set():
                    return  # an interrupted walk is incomplete: nothing is removed
                self.counts += catalog.record_discovered(
                    self._collection, root, batch, self._run_id, hasher)
                if left is not None:
                    left -= len(batch)
                    if left <= 0:
                        complete = False
                        break
            # Removal needs a complete listing: a capped walk did not look everywhere.
            if complete:
                self.counts.removed += catalog.remove_unseen(
                    self._collection, root, self._run_id,
                    functools.partial(self._in_scope, root))
            if left is not None and left <= 0:
                return

    def _source(self, root: str) -> Source:
        return open_source(root, skip=self._skip, confine=self._confine,
                           s3_endpoint_url=self._s3_endpoint_url, settings=self._settings)

    def _drive(self, catalog: Catalog, root: str) -> None:
        """Discover a Google Drive root: what the changes feed reports since the page
        token the last complete run saved, or, the first time (or when the patterns
        changed, or a folder left the root), every file."""
        source = cast("GdriveSource", self._source(root))
        scope = repr(("gdrive", sorted(self._matcher.include), sorted(self._matcher.exclude)))
        last = catalog.source_head(self._collection, root)
        if last is not None and last[1] == scope \
                and self._drive_changes(catalog, root, source, last[0], scope):
            return
        # Taken before the listing: a file changed while it runs is in the feed next time.
        token = source.start_token()
        for batch in _batches(source.entries(self._matcher), None):
            if self._stop.is_set():
                return  # incomplete: nothing removed, no token saved
            self.counts += catalog.record_discovered(self._collection, root, batch,
                                                     self._run_id, sha256_file)
        self.counts.removed += catalog.remove_unseen(
            self._collection, root, self._run_id, functools.partial(self._in_scope, root))
        catalog.set_source_head(self._collection, root, token, scope)

    def _drive_changes(self, catalog: Catalog, root: str, source: GdriveSource,
                       token: str, scope: str) -> bool:
        """Apply the Drive changes since ``token``, saving each page's token once its
        changes are committed. False when a folder left the root: the files it held are
        not named in the feed, so the caller lists every file instead."""
        # Imported here: the Google client is an optional extra a folder run never loads.
        from gristmill.sources.gdrive_source import facts as gdrive_facts

        changed = 0
        for page in source.changes(token):
            if self._stop.is_set():
                return True  # the saved token still covers what was not read
            found: list[FileFacts] = []
            gone: list[str] = []
            for change in page.changes:
                if change.file is None and change.folder:
                    log.info("%s: a folder left the root; listing every file", root)
                    return False
                keep = None
                if change.file is not None and self._matcher(unquote(change.file.path)):
                    found.append(gdrive_facts(change.file))
                    keep = change.file.url
                # Renamed, moved, trashed or deleted: its old names go.
                gone += [name for name in _named_for(catalog, self._collection, change.file_id)
                         if name != keep]
            self.counts.removed += catalog.remove_sources(self._collection, gone)
            for batch in _batches(iter(found), None):
                self.counts += catalog.record_discovered(self._collection, root, batch,
                                                         self._run_id, sha256_file)
            changed += len(found) + len(gone)
            # Only now that the page's changes are committed: a crash before this line
            # reads the page again, which records the same facts again (nothing twice).
            catalog.set_source_head(self._collection, root, page.token, scope)
        # Everything else under the root is unchanged, and still there.
        known = catalog.mark_root_seen(self._collection, root, self._run_id)
        self.counts.unchanged += max(0, known - changed)
        return True

    def _repository(self, catalog: Catalog, root: str, tree: GitTree,
                    hasher: Callable[[str], str]) -> bool:
        """Discover a folder in a git work tree: the files git lists, or only what changed
        since the commit the last complete run saw. False if the folder cannot be
        walked as a repository (it is then walked as a folder)."""
        check_root(os.path.abspath(root), real_roots(self._confine))
        scope = repr((sorted(self._matcher.include), sorted(self._matcher.exclude),
                      self._include_vendored))
        head = tree.head()
        dirty = tree.dirty()
        last = catalog.source_head(self._collection, root)
        if (last is not None and head is not None and not dirty and last[1] == scope
                and tree.is_ancestor(last[0], head)):
            self._apply_changes(catalog, root, tree, last[0], head, hasher)
        else:
            if last is not None:
                log.info("%s: listing every file (%s)", root,
                         "uncommitted changes" if dirty else "history rewritten or "
                         "the include/exclude patterns changed")
            self._list_repository(catalog, root, tree, hasher)
        if self._stop.is_set():
            return True
        if head is not None:
            catalog.record_commit(self._collection, root, self._run_id, head,
                                  [os.path.join(root, path) for path in sorted(dirty)])
        # A dirty tree's text is not the commit's: the next run lists every file again.
        # Two runs walking one root at once may write this row in either order; either
        # commit is safe: every change since it is in the catalog (pending or done), so
        # an older one only makes the next run look at more files, never at fewer.
        catalog.set_source_head(self._collection, root, None if dirty else head, scope)
        return True

    def _list_repository(self, catalog: Catalog, root: str, tree: GitTree,
                         hasher: Callable[[str], str]) -> None:
        listed = _repository_listing(root, tree, self._matcher, self._include_vendored,
                                     self._skip, self._confine)
        for batch in _batches(listed, None):
            if self._stop.is_set():
                return
            self.counts += catalog.record_discovered(self._collection, root, batch,
                                                     self._run_id, hasher)
        self.counts.removed += catalog.remove_unseen(
            self._collection, root, self._run_id, functools.partial(self._in_scope, root))

    def _apply_changes(self, catalog: Catalog, root: str, tree: GitTree, old: str,
                       head: str, hasher: Callable[[str], str]) -> None:
        """Everything known under ``root`` stays; what git says changed is re-read,
        renamed or removed."""
        known = catalog.mark_root_seen(self._collection, root, self._run_id)
        if old == head:
            self.counts.unchanged += known
            return
        changed: list[FileFacts] = []
        gone: list[str] = []
        for change in tree.changes(old, head):
            if change.status == "R" and change.old_path is not None:
                before = os.path.join(root, change.old_path)
                if self._repository_facts(root, change.path, tracked=True) is None:
                    gone.append(before)  # renamed out of scope
                    continue
                if not catalog.rename_source(self._collection, before,
                                             os.path.join(root, change.path)):
                    gone.append(before)
            if change.status == "D":
                gone.append(os.path.join(root, change.path))
                continue
            found = self._repository_facts(root, change.path, tracked=True)
            if found is not None:
                changed.append(found)
        self.counts.removed += catalog.remove_sources(self._collection, gone)
        self.counts.unchanged += max(0, known - len(changed) - len(gone))
        for batch in _batches(iter(changed), None):
            self.counts += catalog.record_discovered(self._collection, root, batch,
                                                     self._run_id, hasher)

    def _repository_facts(self, root: str, relative: str, *, tracked: bool
                          ) -> FileFacts | None:
        return _repository_facts(root, relative, self._matcher, tracked=tracked,
                                 include_vendored=self._include_vendored, skip=self._skip,
                                 confine=self._confine)

    def _in_scope(self, root: str, source: str) -> bool:
        """Whether the include/exclude patterns select ``source`` (found under ``root``)."""
        return self._matcher(relative_name(source, root))


def dry_run_counts(db: CatalogDatabase, collection: str, roots: Sequence[str], matcher: Matcher,
                   max_files: int | None, skip: Sequence[Path] = (),
                   confine: Sequence[str | Path] = (), *, include_vendored: bool = False,
                   s3_endpoint_url: str | None = None, settings: Settings | None = None
                   ) -> DiscoveryCounts:
    """What a walk would find (new, changed, unchanged, skipped), writing nothing. A git
    work tree is listed as a run lists it (``git ls-files``, vendored folders left out),
    so the counts match what the run will do."""
    counts = DiscoveryCounts()
    catalog = Catalog(db)
    left = max_files
    for root in roots:
        tree = git_tree(Path(root)) if left is None and not is_remote(root) else None
        listing = _repository_listing(root, tree, matcher, include_vendored, skip, confine) \
            if tree is not None else open_source(
                root, skip=skip, confine=confine,
                s3_endpoint_url=s3_endpoint_url, settings=settings).entries(matcher)
        for batch in _batches(listing, left):
            known = catalog.known_stats(collection, [facts.source for facts in batch])
            for facts in batch:
                stats = known.get(facts.source)
                if facts.skip_reason is not None:
                    counts.skipped += 1
                elif stats is None:
                    counts.new += 1
                elif stats == (facts.size, facts.change_token or facts.mtime_ns):
                    counts.unchanged += 1
                else:
                    counts.changed += 1
            if left is not None:
                left -= len(batch)
                if left <= 0:
                    return counts
    return counts


def _repository_listing(root: str, tree: GitTree, matcher: Matcher, include_vendored: bool,
                        skip: Sequence[Path], confine: Sequence[str | Path]
                        ) -> Iterator[FileFacts]:
    """The facts of every file git lists in ``tree`` that the run would read."""
    untracked = tree.untracked()
    for path in tree.files():
        found = _repository_facts(root, path, matcher, tracked=path not in untracked,
                                  include_vendored=include_vendored, skip=skip,
                                  confine=confine)
        if found is not None:
            yield found


def _repository_facts(root: str, relative: str, matcher: Matcher, *, tracked: bool,
                      include_vendored: bool, skip: Sequence[Path],
                      confine: Sequence[str | Path]) -> FileFacts | None:
    """The facts of a path git listed, or None when the patterns leave it out, it lies in
    a vendored folder, in the knowledge base's own home, or (untracked) in a hidden
    folder, as a folder walk would not enter it."""
    if not matcher(relative):
        return None
    if not include_vendored and skipped_as_vendored(relative):
        return None
    path = os.path.join(root, relative)
    if any(path.startswith(os.path.abspath(s) + os.sep) for s in skip):
        return None
    if not tracked and any(part.startswith(".") for part in relative.split("/")[:-1]):
        return None
    return file_facts(path, real_roots(confine))


def _named_for(catalog: Catalog, collection: str, file_id: str) -> list[str]:
    """The items named for Drive file ``file_id`` (``gdrive://<file_id>/<path>``)."""
    # "0" follows "/": every name with the prefix sorts between the two bounds.
    prefix = f"{_GDRIVE}{file_id}/"
    return catalog.top_level_sources(collection, prefix, prefix[:-1] + "0", 1000)


def _modified_since(facts: Iterator[FileFacts], since_ns: int) -> Iterator[FileFacts]:
    """The regular files of a walk modified at or after ``since_ns``."""
    return (f for f in facts if f.skip_reason is None and f.mtime_ns >= since_ns)


def _batches(facts: Iterator[FileFacts], limit: int | None) -> Iterator[list[FileFacts]]:
    """Cut the walk into batches of 16, 32, ... up to ``_MAX_BATCH`` files, and at most
    ``limit`` files in all."""
    size = _FIRST_BATCH
    batch: list[FileFacts] = []
    for item in facts:
        batch.append(item)
        if limit is not None and len(batch) >= limit:
            yield batch
            return
        if len(batch) >= size:
            yield batch
            if limit is not None:
                limit -= len(batch)
            batch = []
            size = min(size * 2, _MAX_BATCH)
    if batch:
        yield batch

"""Git work trees as sources: listed by git, and re-read by what git says changed.

A folder inside a git work tree is listed with ``git ls-files`` (tracked files and
untracked ones that ``.gitignore`` does not exclude), so build output and ignored files
are never read. Vendored and generated folders (``node_modules``, ``target``, ``build``,
``dist``...) are left out too unless asked for. After a run, discovery records the
commit it saw (``HEAD``); the next run asks git what changed since
(``git diff --name-status -M OLD HEAD``) instead of looking at every file, and follows
renames as renames. It falls back to a full listing when history was rewritten (the old
commit is no longer an ancestor of ``HEAD``), the work tree has uncommitted changes, or
the include/exclude patterns changed.

git is run as a subprocess (``git`` on ``PATH``): every repository format, worktree and
config it reads is then read the way the user's own git reads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gristmill.errors import SourceError

__all__ = ["VENDORED_DIRS", "Change", "GitTree", "git_tree", "skipped_as_vendored"]

log = logging.getLogger(__name__)

#: Folders of vendored or generated code, left out of a repository unless
#: ``include_vendored`` is set: package caches and build output that a .gitignore
#: usually, but not always, excludes.
VENDORED_DIRS = frozenset({"node_modules", "bower_components", "vendor", "target", "build",
                           "dist", "out", "__pycache__", ".venv", "venv", ".tox", ".gradle",
                           ".mvn"})

_TIMEOUT = 600.0  # a listing of a huge monorepo still finishes; a hung git does not hang us


@dataclass(frozen=True, slots=True)
class Change:
    """One path that changed between two commits (``git diff --name-status``).

    Attributes:
        status: ``A`` added, ``M`` modified, ``D`` deleted, ``R`` renamed, ``T`` type
            changed (``C`` copies are reported as added).
        path: the path now, relative to the tree's folder.
        old_path: for a rename, the path before.
    """

    status: str
    path: str
    old_path: str | None = None


def git_tree(folder: Path) -> GitTree | None:
    """The git work tree ``folder`` is in, or None (not in one, a bare repository, or no
    ``git`` program)."""
    if shutil.which("git") is None or not folder.is_dir():
        return None
    try:
        inside = _git(folder, "rev-parse", "--is-inside-work-tree").strip()
    except SourceError:
        return None
    return GitTree(folder) if inside == "true" else None


class GitTree:
    """A folder in a git work tree, as git sees it; paths are relative to ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def head(self) -> str | None:
        """The commit checked out, or None in a repository with no commit yet."""
        try:
            return _git(self.folder, "rev-parse", "--verify", "-q", "HEAD^{commit}").strip()
        except SourceError:
            return None

    def files(self) -> list[str]:
        """Tracked files and untracked ones not ignored, under the folder, sorted (a
        tracked file deleted from the work tree is left out)."""
        listing = _git(self.folder, "ls-files", "-z", "--cached", "--others",
                       "--exclude-standard", "--deduplicate", "--", ".")
        deleted = set(_split(_git(self.folder, "ls-files", "-z", "--deleted", "--", ".")))
        return sorted({path for path in _split(listing) if path not in deleted})

    def untracked(self) -> set[str]:
        """Untracked files that are not ignored."""
        return set(_split(_git(self.folder, "ls-files", "-z", "--others",
                               "--exclude-standard", "--", ".")))

    def dirty(self) -> set[str]:
        """Paths with uncommitted changes (staged or not) and untracked files: what a
        commit's diff does not describe."""
        out = _git(self.folder, "status", "--porcelain=v1", "-z", "--untracked-files=all",
                   "--", ".")
        paths: set[str] = set()
        fields = iter(_split(out))
        top = Path(_git(self.folder, "rev-parse", "--show-prefix").strip() or ".")
        for entry in fields:
            code, path = entry[:2], entry[3:]
            if "R" in code or "C" in code:
                next(fields, None)  # the path it was renamed or copied from
            # status paths are relative to the repository's top, not to the folder.
            paths.add(os.path.relpath(path, top) if str(top) != "." else path)
        return paths

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether commit ``old`` is in ``new``'s history (not rewritten away)."""
        try:
            _git(self.folder, "merge-base", "--is-ancestor", old, new)
        except SourceError:
            return False
        return True

    def changes(self, old: str, new: str) -> list[Change]:
        """What changed under the folder from commit ``old`` to ``new``, renames as
        renames."""
        out = _git(self.folder, "diff", "--name-status", "-z", "--find-renames",
                   "--relative", old, new, "--", ".")
        fields = iter(_split(out))
        changes = []
        for status in fields:
            kind = status[:1]
            if kind in "RC":
                before, after = next(fields), next(fields)
                changes.append(Change("R", after, before) if kind == "R"
                               else Change("A", after))
            else:
                changes.append(Change(kind, next(fields)))
        return changes


def skipped_as_vendored(relative: str) -> bool:
    """Whether a path lies in a vendored or generated folder (:data:`VENDORED_DIRS`)."""
    return any(part in VENDORED_DIRS for part in relative.split("/")[:-1])


def _split(output: str) -> Iterator[str]:
    return (part for part in output.split("\0") if part)


def _git(folder: Path, *args: str) -> str:
    """Run ``git -C folder args``; its stdout, or SourceError with git's own words."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              timeout=_TIMEOUT, check=False,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceError(f"git failed in {folder}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"git {args[0]} failed in {folder}: "
                          f"{message[-1] if message else f'exit {done.returncode}'}")
    return done.stdout.decode("utf-8", "surrogateescape")


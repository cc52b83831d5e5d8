"""The home folder: made by the commands that write, only looked for by those that read.

A home that cannot be made or written (a file in its way, a read-only mount, an
immutable folder) is the user's to fix with another ``--home``, so every command says so
in the same sentence (:class:`~gristmill.errors.HomeUnwritable`, which ``doctor``
prints too). A command that only reads (search, status, errors, jobs) never creates a
home: where nothing was ingested it says so (:class:`~gristmill.errors.NoKnowledgeBase`)
instead of leaving an empty ``.gristmill`` behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.errors import HomeUnwritable, NoKnowledgeBase

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["make_home", "nearest_existing", "require_knowledge_base", "unwritable_reason"]


def make_home(settings: Settings) -> None:
    """Create the home folder and its log folder (when missing).

    Raises:
        HomeUnwritable: either cannot be created, or the home cannot be written.
    """
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        settings.log_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeUnwritable(home.absolute(), unwritable_reason(home) or exc.strerror
                             ) from exc
    # An existing folder is not written by mkdir: ask (root is refused too on a
    # read-only mount or an immutable folder).
    reason = unwritable_reason(home)
    if reason is not None:
        raise HomeUnwritable(home.absolute(), reason)


def unwritable_reason(home: Path) -> str | None:
    """Why ``home`` cannot be created or written, or None when it can; changes nothing."""
    home = home.absolute()
    existing = nearest_existing(home)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    # Effective ids: what opening a file there would be judged by.
    if not os.access(existing, os.X_OK, effective_ids=True):
        return f"{existing} cannot be entered (permission denied)"
    if os.access(existing, os.W_OK | os.X_OK, effective_ids=True):
        return None
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{existing} is on a read-only file system"
    except OSError:
        pass
    return f"{existing} is not writable"


def nearest_existing(path: Path) -> Path:
    """``path`` or the nearest folder above it that exists as far as this user can
    tell: inside a folder it cannot enter nothing does, and that folder is the answer."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except PermissionError:
            continue
    return Path(path.anchor or "/")


def require_knowledge_base(settings: Settings) -> None:
    """Make sure there is a knowledge base to read where ``settings`` point, without
    creating or migrating anything.

    Raises:
        NoKnowledgeBase: nothing was ingested there (no SQLite file in the home; on
            PostgreSQL, a database without gristmill's tables).
        HomeUnwritable: nothing is there, and no ingest could make it there either.
        StoreError: the PostgreSQL server cannot be reached.
    """
    from gristmill.catalog import catalog_exists

    if catalog_exists(settings):
        return
    reason = unwritable_reason(settings.home)
    if reason is not None:
        raise HomeUnwritable(settings.home.absolute(), reason)
    if settings.database_url is None:
        raise NoKnowledgeBase(str(settings.home.absolute()))
    from gristmill.catalog.postgres import display_url

    raise NoKnowledgeBase(display_url(settings.database_url.get_secret_value()),
                          database=True)

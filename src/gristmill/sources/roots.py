"""Source roots: the folders a run may read, enforced where files are opened.

A path checked once and opened later can change in between: a folder that was real when
a job was created may be a symlink to ``/etc`` by the time the job walks it, and a file
hashed by discovery may be a symlink to a secret by the time a worker extracts it. So
containment is judged on what was actually opened, not on the name: the open
descriptor's own path, read back from the kernel (``/proc/self/fd``), must lie inside a
root. A swap before the open is then seen, whichever path component was swapped (a
file, a folder, the root itself).

Without configured roots (a CLI user's own files) nothing is confined, but files are
still opened without blocking, so a FIFO swapped in for a file cannot hang a reader.

Roots may also be URL prefixes (``s3://bucket/`` or ``s3://bucket/prefix/``): a remote
source is allowed when it starts with one at a ``/`` boundary, compared as text, since
an object store has no symlinks to swap. The prefixes are kept, unresolved, among the
real roots: no real path ever starts with ``scheme://``, so a URL prefix never admits a
local file, and a list of URL prefixes alone still confines local reads (to nothing).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from pathlib import Path

from gristmill.errors import SourceError

__all__ = ["OUTSIDE", "OutsideRoots", "check_root", "inside", "inside_url", "is_url",
           "open_inside", "real_roots", "url_root"]

#: The reason given for whatever is refused.
OUTSIDE = "outside the source roots (source_roots): not read"

_URL = re.compile(r"^([a-z][a-z0-9+.-]+)://([^/?#]+)(/[^?#]*)?$", re.IGNORECASE)


class OutsideRoots(OSError):
    """An opened path turned out to lie outside every source root.

    An ``OSError`` so that code handling unreadable files (discovery's hashing records
    them as ``failed`` with the reason) treats it as one, with a clear reason.
    """

    def __init__(self, path: str) -> None:
        super().__init__(errno.EACCES, OUTSIDE, path)


def is_url(root: str | Path) -> bool:
    """Whether ``root`` is spelt as a URL (``scheme://...``) rather than a path."""
    return isinstance(root, str) and "://" in root


def url_root(url: str) -> str:
    """``url`` as a URL prefix root: scheme in lower case, ending in ``/``.

    Raises:
        ValueError: not ``scheme://bucket[/prefix]``, or a path with ``.``, ``..`` or
            empty segments (whose meaning a store may not share with the comparison).
    """
    match = _URL.match(url.strip())
    if match is None:
        raise ValueError(f"{url!r} is not a URL prefix such as s3://bucket/ or "
                         "s3://bucket/prefix/ (no query, no fragment)")
    scheme, bucket, path = match.group(1).lower(), match.group(2), match.group(3) or "/"
    segments = path.strip("/").split("/") if path.strip("/") else []
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"{url!r}: a URL prefix may not hold empty, '.' or '..' segments")
    return f"{scheme}://{bucket}{path.rstrip('/')}/"


def real_roots(roots: Sequence[str | Path]) -> tuple[str, ...]:
    """The configured roots with symlinks and ``..`` resolved, as containment compares
    them; URL prefixes are kept as they are (see the module's docstring)."""
    return tuple(url_root(str(root)) if is_url(root) else os.path.realpath(root)
                 for root in roots)


def inside_url(url: str, roots: Sequence[str | Path]) -> bool:
    """Whether the remote source ``url`` lies under a URL prefix among ``roots``.

    The comparison is at a ``/`` boundary (``s3://bucket-evil/`` is not under
    ``s3://bucket/``); a URL that is not in normal form (``..``, empty segments, a
    query) is never inside, whatever its text starts with.
    """
    try:
        given = url_root(url)
    except ValueError:
        return False
    match = _URL.match(url.strip())
    if match and match.group(3) and not url.endswith("/"):
        # An object key keeps its spelling: the object "docs" is not under "docs/".
        given = given[:-1]
    return any(given.startswith(url_root(str(root))) for root in roots if is_url(root))


def inside(path: str, roots: Sequence[str]) -> bool:
    """Whether the real path ``path`` is one of ``roots`` (real paths) or below one."""
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep)
               for root in roots)


def open_inside(path: str, roots: Sequence[str], *, folder: bool = False,
                follow: bool = True) -> int:
    """Open ``path`` read-only and return its descriptor, if what was opened lies inside
    ``roots`` (real paths; none: anything).

    ``folder`` opens a directory (for ``os.scandir``); ``follow=False`` refuses a final
    component that is a symlink (``ELOOP``), as a walk that does not follow folder links
    needs. The caller closes the descriptor.

    Raises:
        OutsideRoots: what was opened lies outside every root.
        OSError: the path cannot be opened.
    """
    # O_NONBLOCK: opening a FIFO (swapped in for a file) must not wait for a writer; it
    # changes nothing for regular files and folders.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if folder:
        flags |= os.O_DIRECTORY
    if not follow:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    if roots:
        real = _opened_path(fd, path)
        if real is None or not inside(real, roots):
            os.close(fd)
            raise OutsideRoots(path)
    return fd


def check_root(root: str, roots: Sequence[str]) -> None:
    """Refuse a source (folder or file) that is, or leads through a symlink to,
    somewhere outside ``roots`` (real paths; none: anything goes).

    Raises:
        SourceError: ``root`` lies outside every source root.
    """
    if not roots:
        return
    if "://" in root:
        if not inside_url(root, roots):
            raise SourceError(f"{root} is not under a URL prefix listed in source_roots: "
                              "it is not read. Add its prefix (such as "
                              "s3://bucket/prefix/) to source_roots, or end a prefix "
                              "you meant with /")
        return
    try:
        os.close(open_inside(root, roots))
    except OutsideRoots:
        raise SourceError(
            f"{root} is outside the source roots (source_roots), or leads out of them "
            "through a symlink: it is not read. Give a source inside a source root, or "
            "add its folder to source_roots") from None
    except OSError:
        # Unreadable or gone: judged by name here; the walk says what is wrong with it.
        if not inside(os.path.realpath(root), roots):
            raise SourceError(f"{root} is outside the source roots (source_roots): it is "
                              "not read") from None


def _opened_path(fd: int, path: str) -> str | None:
    """The real path of the file open as ``fd`` (None: cannot tell)."""
    try:
        # Linux: the kernel's own name for what the descriptor refers to.
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    # Elsewhere: the resolved name, if it still names the very file that is open.
    real = os.path.realpath(path)
    try:
        named, opened = os.stat(real), os.fstat(fd)
    except OSError:
        return None
    return real if (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino) else None

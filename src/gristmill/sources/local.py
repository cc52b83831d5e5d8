"""Discovery of a local folder: a streaming walk with include/exclude patterns.

The walk holds one directory listing at a time (sorted, for a stable order), never the
whole tree. Directory symlinks are not followed, which rules out loops; file symlinks are
followed and judged by what they point at. Anything that is not a regular file (FIFO,
device, socket, broken link, symlink loop) is reported with a reason instead of opened:
reading a FIFO would block forever and ``/dev/zero`` never ends.

With source roots configured, every folder is listed and every file hashed through a
descriptor whose real path is checked against them (see :mod:`gristmill.sources.roots`):
a folder swapped for a symlink after it was listed, or a root that has become one since
its job was created, is never read.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gristmill.catalog import FileFacts
from gristmill.errors import SourceError
from gristmill.sources.roots import OutsideRoots, check_root, inside, open_inside, real_roots

__all__ = ["Matcher", "facts", "sha256_file", "walk"]

log = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Matcher:
    """Include/exclude glob patterns.

    A pattern containing ``/`` is matched against the path relative to the root;
    one without is matched against the file name. With no include pattern every file is
    included; an exclude pattern always wins.
    """

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    def __call__(self, relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        if self.include and not any(self._hit(p, relative, name) for p in self.include):
            return False
        return not any(self._hit(p, relative, name) for p in self.exclude)

    @staticmethod
    def _hit(pattern: str, relative: str, name: str) -> bool:
        target = relative if "/" in pattern else name
        return fnmatch.fnmatchcase(target, pattern.removeprefix("./"))


def sha256_file(path: str, roots: Sequence[str] = ()) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks; with ``roots`` (real paths),
    only if the file opened lies inside one of them.

    Raises:
        OutsideRoots: the file opened lies outside every root.
        OSError: it cannot be read, or is no longer a regular file.
    """
    digest = hashlib.sha256()
    with os.fdopen(open_inside(path, roots), "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file any more", path)
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def walk(root: Path, matcher: Matcher, skip_dirs: Sequence[Path] = (),
         confine: Sequence[str | Path] = ()) -> Iterator[FileFacts]:
    """Yield facts for every file under ``root`` that ``matcher`` admits.

    Hidden directories (``.git``, ``.venv``) and ``skip_dirs`` (the KB's own home) are
    not entered. With ``confine`` (the configured source roots), ``root`` itself must
    resolve inside one of them, each folder is listed only if the folder actually opened
    does, and a file symlink that resolves outside all of them is skipped with a reason,
    never read: a link planted in an allowed folder must not reach ``/etc``.

    Raises:
        SourceError: ``root`` does not exist, is not a readable folder, or lies (or
            leads through a symlink) outside the source roots.
    """
    root = Path(os.path.abspath(root))
    allowed = real_roots(confine)
    check_root(str(root), allowed)  # at every run: the root may have become a symlink
    if root.is_file():
        yield facts(str(root), allowed)
        return
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder or file; check the path")
    skip = {os.path.abspath(p) for p in skip_dirs}
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        try:
            # The listing is read from the folder opened, checked where it really is: a
            # folder swapped for a symlink since its parent was listed is not followed.
            fd = open_inside(folder, allowed, folder=True, follow=folder == str(root))
        except OSError as exc:
            if folder == str(root):
                if isinstance(exc, OutsideRoots):
                    check_root(str(root), allowed)  # raises, with the reason
                raise SourceError(f"cannot list {root}: {exc.strerror}") from exc
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) or isinstance(exc, OutsideRoots):
                # Replaced since it was listed: judged as what it is now, like the
                # entries of the listing (a folder symlink is not followed).
                log.warning("%s became a symlink or a file while walked", folder)
                if matcher(relative):
                    yield facts(folder, allowed)
            continue
        try:
            with os.scandir(fd) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if folder == str(root):
                raise SourceError(f"cannot list {root}: {exc.strerror}") from exc
            continue
        finally:
            os.close(fd)
        subfolders = []
        for entry in entries:
            path = os.path.join(folder, entry.name)  # a listing by descriptor gives names
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.name.startswith(".") and path not in skip:
                    subfolders.append(path)
                continue
            if matcher(relative):
                yield facts(path, allowed)
        stack.extend(reversed(subfolders))


def facts(path: str, allowed: Sequence[str] = ()) -> FileFacts:
    """What one path is, judged as the walk judges it: a regular file's size and mtime
    (a symlink's target's), or why it is skipped (outside ``allowed``, a loop, a folder,
    a FIFO or device...)."""
    if allowed and os.path.islink(path) and not inside(os.path.realpath(path), allowed):
        return FileFacts(path, skip_reason="symlink out of the allowed source roots "
                         "(source_roots)")
    try:
        st = os.stat(path)  # follows symlinks: a link to a file is that file
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return FileFacts(path, skip_reason="symlink loop")
        if os.path.islink(path):
            return FileFacts(path, skip_reason="broken symlink")
        return FileFacts(path, skip_reason=f"cannot stat: {exc.strerror}")
    if stat.S_ISDIR(st.st_mode):
        return FileFacts(path, skip_reason="symlink to a folder (not followed)")
    if not stat.S_ISREG(st.st_mode):
        return FileFacts(path, skip_reason=f"not a regular file ({_kind(st.st_mode)})")
    return FileFacts(path, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"

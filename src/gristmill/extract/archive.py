"""Zip archives: every member becomes an item of its own (``archive.zip!/dir/file.pdf``).

The archive is judged from its central directory before anything is unpacked (see
:func:`~gristmill.extract._archive.check_zip`): too many members, too many bytes or a
zip-bomb ratio refuse it whole. Members are unpacked one at a time, by the worker that
processes each, with at most their declared size written (zipfile checks the CRC).
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract._archive import check_zip
from gristmill.extract.base import Limits, Member, Segment

__all__ = ["EXTRACTORS", "ZipExtractor"]

_ENCRYPTED = 0x1  # general-purpose flag bit 0


class ZipExtractor:
    """``.zip`` files; a container: its members are the items, it has no text of its own."""

    name = "zip"
    version = 1
    extensions = frozenset({".zip"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Check the archive; its text is its members'.

        Raises:
            ExtractionError: not a readable zip.
            LimitExceeded: a zip bomb or too many members.
            Unsupported: the archive holds no files.
        """
        check_zip(path, limits)
        if not any(True for _ in self.members(path, limits)):
            raise Unsupported("empty archive: no files in it")
        return iter(())

    def members(self, path: Path, limits: Limits) -> Iterator[Member]:
        """Every file in the archive, in directory order (folders left out)."""
        check_zip(path, limits)
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                problem = ("encrypted zip member: a password is needed"
                           if info.flag_bits & _ENCRYPTED else None)
                yield Member(info.filename, info.file_size, problem)

    def unpack(self, path: Path, name: str, target: Path, limits: Limits) -> None:
        """Write member ``name`` to ``target``."""
        try:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo(name)
                if info.file_size > limits.max_unpacked_bytes:
                    raise LimitExceeded(f"member is {info.file_size:,} bytes, over the limit "
                                        f"of {limits.max_unpacked_bytes:,} (max_unpacked_bytes)")
                with archive.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
        except KeyError:
            raise ExtractionError(f"no member {name!r} in the archive (changed since it "
                                  "was listed?)") from None
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
            # NotImplementedError: a compression method zipfile lacks (e.g. deflate64);
            # RuntimeError: encrypted.
            raise ExtractionError(f"zip member cannot be unpacked: {exc}") from exc


EXTRACTORS = [ZipExtractor()]

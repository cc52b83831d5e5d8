"""Zip-bomb checks for the zip-based formats (DOCX, PPTX, XLSX, EPUB).

The parsers (python-docx, python-pptx, openpyxl, ebooklib) decompress members whole, so a
hostile archive must be refused from its directory alone, before any of them opens it.
Declared sizes can be trusted for this: :mod:`zipfile` never returns more than a member's
declared ``file_size`` and fails its CRC check when the data disagrees.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

from gristmill.errors import ExtractionError, LimitExceeded
from gristmill.extract.base import Limits

__all__ = ["check_zip"]

# Small members legitimately compress far beyond any sane ratio (a 20 KB styles.xml of
# repeated markup); only a member this big can hurt, so only such members are judged alone.
_BIG_MEMBER_BYTES = 1024 * 1024

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_MAX_COMMENT = 0xFFFF


def check_zip(path: Path, limits: Limits) -> None:
    """Refuse a zip that is corrupt or would unpack past ``limits``.

    Raises:
        ExtractionError: the file is not a readable zip archive.
        LimitExceeded: too many members, too many unpacked bytes, or a zip-bomb ratio.
    """
    with path.open("rb") as fh:
        declared = _declared_member_count(fh)
    # Counted from the end record first: zipfile builds one object per member, so a
    # directory of millions of entries would cost gigabytes before we could refuse it.
    if declared is not None and declared > limits.max_archive_members:
        raise _too_many(declared, limits)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ExtractionError(f"not a valid zip archive (corrupt or truncated): {exc}") from exc
    if len(members) > limits.max_archive_members:
        raise _too_many(len(members), limits)

    unpacked = sum(info.file_size for info in members)
    packed = sum(info.compress_size for info in members)
    if unpacked > limits.max_unpacked_bytes:
        raise LimitExceeded(
            f"archive unpacks to {unpacked:,} bytes, over the limit of "
            f"{limits.max_unpacked_bytes:,} (max_unpacked_bytes)"
        )
    if unpacked >= _BIG_MEMBER_BYTES and _ratio(unpacked, packed) > limits.max_compression_ratio:
        raise _bomb("archive", unpacked, packed, limits)
    for info in members:
        if (
            info.file_size >= _BIG_MEMBER_BYTES
            and _ratio(info.file_size, info.compress_size) > limits.max_compression_ratio
        ):
            raise _bomb(f"member {info.filename!r}", info.file_size, info.compress_size, limits)


def _declared_member_count(fh: BinaryIO) -> int | None:
    """The member count from the end-of-central-directory record, or ``None`` if absent."""
    size = fh.seek(0, 2)
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    fh.seek(tail_start)
    tail = fh.read()
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD.size:
        return None  # Not a zip at all; zipfile reports it with a proper message.
    count: int = _EOCD.unpack_from(tail, at)[4]
    if count != 0xFFFF:
        return count
    # Zip64: the real count lives in a record that the locator just before the EOCD names.
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at < 0 or tail[locator_at : locator_at + 4] != _ZIP64_LOCATOR_SIGNATURE:
        return count
    record_offset: int = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
    fh.seek(record_offset)
    record = fh.read(_ZIP64_EOCD.size)
    if len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
        return count
    return int(_ZIP64_EOCD.unpack(record)[7])



def _ratio(unpacked: int, packed: int) -> float:
    return unpacked / max(packed, 1)


def _too_many(count: int, limits: Limits) -> LimitExceeded:
    return LimitExceeded(
        f"archive has {count:,} members, over the limit of "
        f"{limits.max_archive_members:,} (max_archive_members)"
    )


def _bomb(what: str, unpacked: int, packed: int, limits: Limits) -> LimitExceeded:
    return LimitExceeded(
        f"zip bomb suspected: {what} expands {_ratio(unpacked, packed):,.0f}:1 "
        f"({packed:,} -> {unpacked:,} bytes), over max_compression_ratio "
        f"{limits.max_compression_ratio:g}"
    )

"""A small Compound File Binary writer ([MS-CFB]), for building OLE test files.

olefile reads compound files but cannot create them, and the formats built on them
(Outlook ``.msg``) are only worth testing against real files. This writes version 3
files: 512-byte sectors, streams under 4,096 bytes in the mini stream, a FAT of at most
109 sectors (files up to about 7 MB, so no DIFAT), and each storage's children as a
balanced binary search tree coloured as a valid red-black tree, as the format requires.

A tree is a dict: ``bytes`` values are streams, ``dict`` values are storages::

    write_cfb(path, {"__substg1.0_0037001F": "Hi".encode("utf-16-le"),
                     "__attach_version1.0_#00000000": {"__substg1.0_37010102": b"..."}})
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

__all__ = ["Tree", "build_cfb", "write_cfb"]

Tree: TypeAlias = "dict[str, bytes | Tree]"

MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
SECTOR = 512
MINI_SECTOR = 64
MINI_CUTOFF = 4096
FREESECT, ENDOFCHAIN, FATSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
NOSTREAM = 0xFFFFFFFF
STORAGE, STREAM, ROOT = 1, 2, 5
RED, BLACK = 0, 1


@dataclass
class _Entry:
    name: str
    kind: int
    data: bytes = b""
    children: list[_Entry] = field(default_factory=list)
    left: int = NOSTREAM
    right: int = NOSTREAM
    child: int = NOSTREAM
    color: int = BLACK
    start: int = ENDOFCHAIN
    sid: int = 0


def write_cfb(path: Path, tree: Tree) -> Path:
    """Write ``tree`` as a compound file at ``path``."""
    path.write_bytes(build_cfb(tree))
    return path


def build_cfb(tree: Tree) -> bytes:
    """The bytes of a compound file holding ``tree``."""
    root = _Entry("Root Entry", ROOT, children=_entries(tree))
    entries = _number(root)
    for entry in entries:
        entry.child = _link(entry.children)

    # Small streams share the mini stream in 64-byte mini sectors.
    mini_stream = bytearray()
    minifat: list[int] = []
    for entry in entries:
        if entry.kind == STREAM and 0 < len(entry.data) < MINI_CUTOFF:
            entry.start = len(minifat)
            count = -(-len(entry.data) // MINI_SECTOR)
            minifat.extend(range(entry.start + 1, entry.start + count))
            minifat.append(ENDOFCHAIN)
            mini_stream += _pad(entry.data, MINI_SECTOR)

    directory = b"".join(_directory_entry(entry) for entry in entries)
    # Sector layout: FAT, directory, MiniFAT, mini stream, then the large streams.
    chains = [
        ("directory", _pad(directory, SECTOR, fill=_directory_entry(None))),
        ("minifat", _pad(struct.pack(f"<{len(minifat)}I", *minifat), SECTOR, fill=b"\xff")),
        ("ministream", _pad(bytes(mini_stream), SECTOR)),
    ]
    large = [e for e in entries if e.kind == STREAM and len(e.data) >= MINI_CUTOFF]
    chains += [(str(e.sid), _pad(e.data, SECTOR)) for e in large]
    data_sectors = sum(len(data) // SECTOR for _, data in chains)
    fat_sectors = 1
    while fat_sectors * (SECTOR // 4) < fat_sectors + data_sectors:
        fat_sectors += 1
    if fat_sectors > 109:
        raise ValueError("too large for a FAT without DIFAT sectors")

    fat = [FATSECT] * fat_sectors
    starts: dict[str, int] = {}
    for name, data in chains:
        count = len(data) // SECTOR
        starts[name] = len(fat) if count else ENDOFCHAIN
        fat.extend(range(len(fat) + 1, len(fat) + count))
        if count:
            fat.append(ENDOFCHAIN)
    for entry in large:
        entry.start = starts[str(entry.sid)]
    root.start = starts["ministream"]
    root.data = bytes(mini_stream)  # only its length is written
    # The directory was laid out before the start sectors were known: write it again.
    directory = b"".join(_directory_entry(entry) for entry in entries)
    chains[0] = ("directory", _pad(directory, SECTOR, fill=_directory_entry(None)))

    fat += [FREESECT] * (fat_sectors * (SECTOR // 4) - len(fat))
    header = _header(
        fat_sectors,
        first_directory=starts["directory"],
        first_minifat=starts["minifat"],
        minifat_sectors=len(chains[1][1]) // SECTOR,
    )
    body = struct.pack(f"<{len(fat)}I", *fat) + b"".join(data for _, data in chains)
    return header + body


def _entries(tree: Tree) -> list[_Entry]:
    entries = []
    for name, value in tree.items():
        if len(name) > 31:
            raise ValueError(f"entry name longer than 31 characters: {name}")
        if isinstance(value, dict):
            entries.append(_Entry(name, STORAGE, children=_entries(value)))
        else:
            entries.append(_Entry(name, STREAM, data=bytes(value)))
    return entries


def _number(root: _Entry) -> list[_Entry]:
    """Every entry in directory order, root first, each given its stream id."""
    order = [root]
    at = 0
    while at < len(order):
        order.extend(order[at].children)
        at += 1
    for sid, entry in enumerate(order):
        entry.sid = sid
    return order


def _order_key(entry: _Entry) -> tuple[int, str]:
    # [MS-CFB] 2.6.4: shorter names first, then by upper-cased code points.
    return len(entry.name), entry.name.upper()


def _link(children: list[_Entry]) -> int:
    """Arrange siblings as a balanced search tree; returns the root's stream id.

    Splitting at the middle fills every level but the last, so colouring the last level
    red (when it is not full) gives every path the same number of black nodes.
    """
    ordered = sorted(children, key=_order_key)
    depths: dict[int, int] = {}

    def build(low: int, high: int, depth: int) -> int:
        if low >= high:
            return NOSTREAM
        middle = (low + high) // 2
        node = ordered[middle]
        depths[node.sid] = depth
        node.left = build(low, middle, depth + 1)
        node.right = build(middle + 1, high, depth + 1)
        return node.sid

    top = build(0, len(ordered), 0)
    deepest = max(depths.values(), default=0)
    full = len(ordered) == 2 ** (deepest + 1) - 1
    for node in ordered:
        node.color = RED if deepest and not full and depths[node.sid] == deepest else BLACK
    return top


def _directory_entry(entry: _Entry | None) -> bytes:
    if entry is None:  # an unused slot
        return struct.pack("<64sHBBIII16sIQQIQ", b"", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM,
                           b"", 0, 0, 0, 0, 0)
    name = (entry.name + "\x00").encode("utf-16-le")
    size = len(entry.data) if entry.kind in (STREAM, ROOT) else 0
    start = entry.start if size else (0 if entry.kind == STORAGE else ENDOFCHAIN)
    return struct.pack(
        "<64sHBBIII16sIQQIQ", name, len(name), entry.kind, entry.color, entry.left,
        entry.right, entry.child, b"", 0, 0, 0, start, size,
    )


def _header(fat_sectors: int, *, first_directory: int, first_minifat: int,
            minifat_sectors: int) -> bytes:
    difat = list(range(fat_sectors)) + [FREESECT] * (109 - fat_sectors)
    return (
        MAGIC
        + bytes(16)  # CLSID
        + struct.pack("<HHHHH", 0x003E, 0x0003, 0xFFFE, 9, 6)
        + bytes(6)
        + struct.pack("<IIIIIIIII", 0, fat_sectors, first_directory, 0, MINI_CUTOFF,
                      first_minifat, minifat_sectors, ENDOFCHAIN, 0)
        + struct.pack("<109I", *difat)
    )


def _pad(data: bytes, size: int, fill: bytes = b"\x00") -> bytes:
    missing = -len(data) % size
    return data + (fill * (missing // len(fill) + 1))[:missing]

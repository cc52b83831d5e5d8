"""The archive file: one uncompressed POSIX tar holding a knowledge base, and its checks.

Members, in this order::

    tables/<table>.jsonl.zst   one per table, rows in primary-key order (zstd): the first
                               line the header [[name, type], ...] (types integer, real,
                               text, blob), then one JSON array per row (blobs base64)
    files/clips/<user>/<name>  audio clip files, as they are
    config/gristmill.toml      the home's settings files (secrets removed unless asked)
    config/env
    manifest.json              last: versions, models, row counts, a sha256 per member

The tar is not compressed as a whole so that ``tar tf`` lists it and a reader can find
the manifest without decompressing anything; each table is compressed on its own. A
member's size goes in its tar header, before its bytes, so each table is compressed into
a spool file beside the archive first (disk, not memory), then added. The archive is
written under a temporary name and renamed at the end: a killed export leaves no half
archive under the name asked for.

:func:`check_archive` and :class:`ArchiveReader` share one set of checks, so ``verify``
and ``import`` refuse the same archives for the same reasons.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from gristmill.errors import ConfigError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "ArchiveProblem",
    "ArchiveReader",
    "ArchiveRefused",
    "ArchiveWriter",
    "Column",
    "check_archive",
    "table_member",
]

FORMAT = "gristmill-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: (name, neutral type): the type is ``integer``, ``real``, ``text`` or ``blob``.
Column = tuple[str, str]

_TABLES = "tables/"
_TABLE_SUFFIX = ".jsonl.zst"
_CHUNK = 1 << 20  # bytes copied at a time: memory stays flat whatever the member's size
_ZSTD_THREADS = 2  # compression threads at most (see add_table)
_ZSTD_LEVEL = 3  # zstd's default: ~10x faster than level 19 for ~10 % larger tables
_NEUTRAL_TYPES = frozenset({"integer", "real", "text", "blob"})
_GET_GOOD_COPY = "export it again from the source, or copy the archive again"
# One encoder for every row (json.dumps makes one per call unless given the defaults).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class ArchiveProblem:
    """One thing wrong with an archive: ``what`` (one line) and ``fix`` (what to do)."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


class ArchiveRefused(ConfigError):
    """An archive that cannot be imported as it is: damaged, incomplete, or written by a
    newer gristmill. The message is one line saying what is wrong and what to do."""

    http_status = 400
    exit_code = 2

    def __init__(self, problem: ArchiveProblem,
                 problems: Sequence[ArchiveProblem] = ()) -> None:
        super().__init__(str(problem))
        self.problem = problem
        #: Every problem found (an archive opened may have several), ``problem`` first.
        self.problems = list(problems) or [problem]


def table_member(table: str) -> str:
    """The member path holding ``table``'s rows."""
    return f"{_TABLES}{table}{_TABLE_SUFFIX}"


def _table_of(member: str) -> str | None:
    if member.startswith(_TABLES) and member.endswith(_TABLE_SUFFIX):
        return member[len(_TABLES):-len(_TABLE_SUFFIX)]
    return None


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """The sha256 of ``manifest`` without its own checksum, as canonical JSON: a
    flipped byte in the manifest itself is caught too."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# -- values ------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


# -- writing -----------------------------------------------------------------------


class _HashingWriter:
    """A file that counts and hashes what is written through it."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


class ArchiveWriter:
    """Writes an archive member by member; :meth:`finish` adds the manifest and puts the
    file under its name. Used as a context manager: leaving it without ``finish`` (an
    error, a kill) leaves nothing under the archive's name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial")
        # Closed by finish() or __exit__: the writer is the context manager.
        self._tar = tarfile.open(self._partial, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._closed = False
        self.members: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.bytes = 0

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self._tar.close()
        self._partial.unlink(missing_ok=True)

    def add_table(self, table: str, columns: Sequence[Column],
                  rows: Iterable[Sequence[Any]]) -> int:
        """Add ``table``'s rows (in the order given); how many there were."""
        count = 0
        with tempfile.TemporaryFile(dir=self.path.parent, prefix=".gristmill-spool-") as spool:
            hashing = _HashingWriter(spool)
            # Compressed by worker threads beside this thread's JSON encoding: 8.1 s
            # instead of 11.9 s for 100,000 chunks and their vectors; a few MB of
            # buffers per thread, so their number is capped.
            compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL,
                                                  threads=min(_ZSTD_THREADS, os.cpu_count() or 1))
            blobs = [i for i, (_, kind) in enumerate(columns) if kind == "blob"]
            with compressor.stream_writer(hashing, closefd=False) as packed:  # type: ignore[arg-type]
                header = [[name, kind] for name, kind in columns]
                packed.write(json.dumps(header).encode() + b"\n")
                lines: list[bytes] = []
                for row in rows:
                    if blobs:
                        row = list(row)
                        for i in blobs:
                            row[i] = _encode(row[i])
                    lines.append(_ENCODE(row).encode())
                    count += 1
                    if len(lines) >= 1000:
                        packed.write(b"\n".join(lines) + b"\n")
                        lines.clear()
                if lines:
                    packed.write(b"\n".join(lines) + b"\n")
            spool.seek(0)
            self._add(table_member(table), spool, hashing.bytes, hashing.sha256.hexdigest())
        self.tables[table] = {"rows": count, "columns": [list(c) for c in columns]}
        return count

    def add_file(self, member: str, source: Path) -> None:
        """Add the file ``source`` as ``member``, as it is."""
        sha256 = hashlib.sha256()
        with open(source, "rb") as file:
            while block := file.read(_CHUNK):
                sha256.update(block)
            size = file.tell()
            file.seek(0)
            self._add(member, file, size, sha256.hexdigest())

    def add_bytes(self, member: str, data: bytes) -> None:
        """Add ``data`` as ``member``."""
        self._add(member, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    def _add(self, member: str, file: IO[bytes], size: int, sha256: str) -> None:
        info = tarfile.TarInfo(member)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o644
        self._tar.addfile(info, file)
        self.members[member] = {"sha256": sha256, "bytes": size}
        self.bytes += size

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Add ``manifest`` (completed with the tables and members written), close the
        archive and give it its name; the manifest as written."""
        manifest = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "tables": self.tables, "members": self.members}
        manifest["manifest_sha256"] = manifest_checksum(manifest)
        data = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._closed = True
        # Durable before it takes the name: a power cut must not leave a named archive
        # whose tail never reached the disk.
        with open(self._partial, "rb") as file:
            os.fsync(file.fileno())
        os.replace(self._partial, self.path)
        self.bytes += len(data)
        return manifest


# -- reading -----------------------------------------------------------------------


class _HashingReader:
    """A file whose bytes read through it are counted and hashed."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever is left."""
        while self.read(_CHUNK):
            pass


class ArchiveReader:
    """An archive opened for reading: its manifest, then its members, each checked
    against the manifest as it is read.

    Raises:
        ArchiveRefused: on opening, when the file is no archive, has no manifest, the
            manifest is damaged or of a newer format, or a member is missing, extra or
            of the wrong size (:attr:`problems` lists them all; the first is raised).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[ArchiveProblem] = []
        self.manifest: dict[str, Any] = {}
        self.manifest_sha256 = ""
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 (closed by close())
        except (tarfile.TarError, OSError) as exc:
            self._refuse(ArchiveProblem(f"{path} is not a gristmill archive ({exc})",
                                        _GET_GOOD_COPY))
        try:
            self._infos = {info.name: info for info in self._tar.getmembers()}
            self._read_manifest()
            self._check_members()
        except (tarfile.TarError, OSError) as exc:
            self.problems.append(ArchiveProblem(
                f"{path} is truncated or damaged: its tar structure cannot be read ({exc})",
                _GET_GOOD_COPY))
        if self.problems:
            self.close()
            raise ArchiveRefused(self.problems[0], self.problems)

    def _refuse(self, problem: ArchiveProblem) -> None:
        self.problems.append(problem)
        raise ArchiveRefused(problem)

    def close(self) -> None:
        """Close the file."""
        if hasattr(self, "_tar"):
            self._tar.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_manifest(self) -> None:
        info = self._infos.get(MANIFEST)
        if info is None:
            self.problems.append(ArchiveProblem(
                f"{self.path} has no {MANIFEST} (it is written last: the archive is "
                "truncated, or not a gristmill archive)", _GET_GOOD_COPY))
            return
        file = self._tar.extractfile(info)
        data = file.read() if file is not None else b""
        if len(data) != info.size:
            self.problems.append(ArchiveProblem(
                f"{self.path}: {MANIFEST} is truncated", _GET_GOOD_COPY))
            return
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            self.problems.append(ArchiveProblem(
                f"{self.path}: {MANIFEST} is damaged ({exc})", _GET_GOOD_COPY))
            return
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            self.problems.append(ArchiveProblem(
                f"{self.path}: {MANIFEST} is not a gristmill archive's", _GET_GOOD_COPY))
            return
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            self.problems.append(ArchiveProblem(
                f"{self.path} was written by gristmill {manifest.get('gristmill')} in "
                f"archive format {version}; this gristmill reads format {FORMAT_VERSION}",
                "upgrade with pip install -U gristmill"))
            return
        if manifest.get("manifest_sha256") != manifest_checksum(manifest):
            self.problems.append(ArchiveProblem(
                f"{self.path}: {MANIFEST} is damaged (its checksum does not match)",
                _GET_GOOD_COPY))
            return
        self.manifest = manifest
        self.manifest_sha256 = hashlib.sha256(data).hexdigest()

    def _check_members(self) -> None:
        if not self.manifest:
            return
        listed: dict[str, dict[str, Any]] = self.manifest.get("members") or {}
        for name, entry in listed.items():
            info = self._infos.get(name)
            if info is None:
                self.problems.append(ArchiveProblem(
                    f"{self.path}: member {name} is missing", _GET_GOOD_COPY))
            elif info.size != entry.get("bytes"):
                self.problems.append(ArchiveProblem(
                    f"{self.path}: member {name} has {info.size} bytes, the manifest "
                    f"says {entry.get('bytes')}", _GET_GOOD_COPY))
        for name in self._infos:
            if name != MANIFEST and name not in listed:
                self.problems.append(ArchiveProblem(
                    f"{self.path}: member {name} is not in the manifest (an archive is "
                    "not to be edited)", _GET_GOOD_COPY))
        for name in listed:
            table = _table_of(name)
            if table is not None and table not in self.tables:
                self.problems.append(ArchiveProblem(
                    f"{self.path}: member {name} is not a table of the manifest",
                    _GET_GOOD_COPY))
        for table in self.tables:
            if table_member(table) not in listed:
                self.problems.append(ArchiveProblem(
                    f"{self.path}: table {table} has no member", _GET_GOOD_COPY))
            columns = self.tables[table].get("columns") or []
            if any(len(c) != 2 or c[1] not in _NEUTRAL_TYPES for c in columns):
                self.problems.append(ArchiveProblem(
                    f"{self.path}: table {table} has a column of an unknown type",
                    "upgrade with pip install -U gristmill"))

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        """``{table: {"rows": n, "columns": [[name, type], ...]}}`` from the manifest."""
        tables: dict[str, dict[str, Any]] = self.manifest.get("tables") or {}
        return tables

    def files(self) -> list[str]:
        """The members that are files (clips, settings), not tables."""
        return [m for m in self.manifest.get("members", {}) if _table_of(m) is None]

    def _open(self, member: str) -> _HashingReader:
        file = self._tar.extractfile(self._infos[member])
        if file is None:  # pragma: no cover - _check_members saw a regular member
            raise ArchiveRefused(ArchiveProblem(f"{self.path}: {member} is not a file",
                                                _GET_GOOD_COPY))
        return _HashingReader(file)

    def _check_digest(self, member: str, reader: _HashingReader) -> None:
        entry = self.manifest["members"][member]
        if reader.bytes != entry["bytes"]:
            raise ArchiveRefused(ArchiveProblem(
                f"{self.path}: member {member} is truncated ({reader.bytes} of "
                f"{entry['bytes']} bytes)", _GET_GOOD_COPY))
        if reader.sha256.hexdigest() != entry["sha256"]:
            raise ArchiveRefused(ArchiveProblem(
                f"{self.path}: member {member} is damaged (its sha256 does not match the "
                "manifest's)", _GET_GOOD_COPY))

    def rows(self, table: str) -> Iterator[list[Any]]:
        """``table``'s rows (blobs decoded), checked as they stream: once the last row
        is given, the member's size, sha256 and row count are compared with the
        manifest's, and a difference raises :class:`ArchiveRefused`. A consumer must
        therefore read to the end before trusting anything it read."""
        member = table_member(table)
        reader = self._open(member)
        count = 0
        try:
            stream = zstandard.ZstdDecompressor().stream_reader(
                reader, read_size=_CHUNK, read_across_frames=True,  # type: ignore[arg-type]
                closefd=False)
            text = io.TextIOWrapper(io.BufferedReader(stream, _CHUNK), encoding="utf-8")
            header = json.loads(text.readline() or "null")
            if [list(c) for c in header or []] != self.tables[table]["columns"]:
                raise ValueError("its header is not the manifest's columns")
            width = len(header)
            blobs = [i for i, (_, kind) in enumerate(header) if kind == "blob"]
            decode = json.JSONDecoder().decode
            for line in text:
                row = decode(line)
                if not isinstance(row, list) or len(row) != width:
                    raise ValueError(f"row {count + 1} is not {width} values")
                for i in blobs:
                    if isinstance(row[i], str):
                        row[i] = base64.b64decode(row[i])
                yield row
                count += 1
        except (zstandard.ZstdError, ValueError, tarfile.TarError, OSError) as exc:
            # A damaged member reads as bad compression or bad JSON before its sha256
            # can be compared: say what the checksum says when it disagrees.
            try:
                reader.drain()
            except (tarfile.TarError, OSError):
                pass
            self._check_digest(member, reader)
            raise ArchiveRefused(ArchiveProblem(
                f"{self.path}: member {member} is damaged ({exc})", _GET_GOOD_COPY)
            ) from exc
        reader.drain()
        self._check_digest(member, reader)
        expected = self.tables[table]["rows"]
        if count != expected:
            raise ArchiveRefused(ArchiveProblem(
                f"{self.path}: table {table} has {count} rows, the manifest says "
                f"{expected}", _GET_GOOD_COPY))

    def read_file(self, member: str) -> bytes:
        """A small member's bytes (settings files), checked."""
        reader = self._open(member)
        data = reader.read()
        self._check_digest(member, reader)
        return data

    def copy_file(self, member: str, target: IO[bytes]) -> None:
        """Copy ``member`` into ``target``, checked (raises before returning)."""
        reader = self._open(member)
        while block := reader.read(_CHUNK):
            target.write(block)
        self._check_digest(member, reader)


def check_archive(path: Path) -> list[ArchiveProblem]:
    """Everything wrong with the archive at ``path`` (an empty list: it is sound).

    Checks that it is a tar with a manifest of a format this gristmill reads, that every
    member the manifest lists is there with its size and sha256 and no other is, and
    that each table has the manifest's row count. Reads the file once, streaming.
    """
    try:
        reader = ArchiveReader(path)
    except ArchiveRefused as exc:
        return exc.problems
    problems: list[ArchiveProblem] = []
    with reader:
        for member in reader.manifest["members"]:
            table = _table_of(member)
            try:
                if table is not None:
                    for _ in reader.rows(table):
                        pass
                else:
                    reader.copy_file(member, _Discard())  # type: ignore[arg-type]
            except ArchiveRefused as exc:
                problems.append(exc.problem)
    return problems


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

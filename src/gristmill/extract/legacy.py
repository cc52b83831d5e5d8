"""Legacy and OpenDocument office files, read through LibreOffice.

``.doc``/``.rtf``/``.odt`` become DOCX, ``.xls``/``.ods`` XLSX and ``.ppt``/``.odp`` PPTX:
``soffice --headless --convert-to`` writes the OOXML file into a private temporary folder
and the extractors of :mod:`gristmill.extract.office` read it, so tables, headings, pages
and limits come out exactly as they do for native OOXML files.

Each conversion runs in its own session with its own throwaway LibreOffice profile (two
workers converting at once would otherwise fight over the profile lock) and is killed,
whole process group, after :data:`CONVERT_TIMEOUT_S`. LibreOffice reports success for
many failures, and reads anything it is handed (random bytes become a text document), so
the input is sniffed before and the output checked after.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from gristmill.errors import ExtractionError, Unsupported
from gristmill.extract._archive import check_zip
from gristmill.extract.base import Extractor, Limits, Segment
from gristmill.extract.office import DocxExtractor, PptxExtractor, XlsxExtractor
from gristmill.extract.text import looks_like_text

__all__ = ["CONVERT_TIMEOUT_S", "EXTRACTORS", "PACKAGES", "CalcExtractor", "ImpressExtractor",
           "WriterExtractor"]

#: Seconds one conversion may take before LibreOffice is killed. Below the default
#: ``item_timeout`` (300 s) so the worker reports it instead of being killed itself.
CONVERT_TIMEOUT_S = 120.0

#: The Debian packages that bring soffice without a desktop.
PACKAGES = "libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"
_ENCRYPTED = "encrypted document: a password is needed"

# LibreOffice reserves far more address space than it touches: converting a 600 KB .ppt
# peaks at ~470 MB of it, and under RLIMIT_AS caps of 320-448 MB conversions of tiny
# files failed (write errors reported with exit status 0, or aborts). The child inherits
# the worker's cap (init_worker); the default 4096 MB is plenty. A lower soft cap is
# raised to this for the child only, where the hard cap allows it; init_worker sets both
# to the same value today, so then it cannot be raised, and the failure names the limit.
_SOFFICE_ADDRESS_SPACE = 2 * 1024**3

# One malloc arena per thread (64 MB of address space each) is most of that reservation;
# two arenas made conversions under a 384 MB cap succeed where the default failed.
_CHILD_ENV = {"MALLOC_ARENA_MAX": "2"}

# A fresh profile makes soffice run its graphics self-tests (big bitmaps, ~0.8 s, and an
# abort under a 448 MB address-space cap): they run once per "product upgrade", which it
# detects from this setting. Marking the profile as set up by a newer version skips them.
_PROFILE_SEED = """\
<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Setup/Product"><prop oor:name="ooSetupLastVersion"
 oor:op="fuse"><value>99.9</value></prop></item>
</oor:items>
"""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,100}")
# Source locations and our temporary file's URL in soffice's messages help nobody.
_NOISE = re.compile(r" <file://[^>]*>| at \./[^ )]+:\d+")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
# Pre-OLE formats LibreOffice still reads: Word 2 for Windows, WordPerfect, Excel 2-5.
_OLD_MAGICS = (b"\xdb\xa5", b"\xffWPC", b"\x09\x00", b"\x09\x02", b"\x09\x04", b"\x09\x08")
_MAX_MANIFEST_BYTES = 1024 * 1024


class _Converted:
    """Convert with LibreOffice to ``target``, then read the result with ``delegate``."""

    name: str
    version: int
    extensions: frozenset[str]
    kind: str  # what the file should be, for the reason when it is not
    target: str  # the suffix LibreOffice converts to, without the dot
    delegate: Extractor

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the delegated extractor's segments for the converted file, unchanged.

        Raises:
            ExtractionError: corrupt, encrypted, or LibreOffice failed or timed out.
            LimitExceeded: a zip-bomb limit (ODF input, converted file) or max_text_chars.
            Unsupported: LibreOffice is not installed, or the document has no text.
        """
        soffice = _find_soffice()
        _check_input(path, limits, self.kind)
        with tempfile.TemporaryDirectory(prefix="gristmill-soffice-") as tmp:
            converted = _convert(soffice, path, self.target, Path(tmp))
            yield from self.delegate.extract(converted, limits)


class WriterExtractor(_Converted):
    """Word 97-2003, RTF and OpenDocument text, read as DOCX (headings, tables)."""

    name = "writer"
    version = 1
    extensions = frozenset({".doc", ".rtf", ".odt"})
    kind = "word-processing document"
    target = "docx"
    delegate = DocxExtractor()


class CalcExtractor(_Converted):
    """Excel 97-2003 and OpenDocument spreadsheets, read as XLSX (one table per sheet)."""

    name = "calc"
    version = 1
    extensions = frozenset({".xls", ".ods"})
    kind = "spreadsheet"
    target = "xlsx"
    delegate = XlsxExtractor()


class ImpressExtractor(_Converted):
    """PowerPoint 97-2003 and OpenDocument presentations, read as PPTX (one page a slide)."""

    name = "impress"
    version = 1
    extensions = frozenset({".ppt", ".odp"})
    kind = "presentation"
    target = "pptx"
    delegate = PptxExtractor()


# --- Running LibreOffice ---------------------------------------------------------------


def _find_soffice() -> str:
    for program in ("soffice", "libreoffice"):
        if found := shutil.which(program):
            return found
    raise Unsupported(f"LibreOffice is not installed (no soffice on PATH): install {PACKAGES}")


def _convert(soffice: str, path: Path, target: str, tmp: Path) -> Path:
    """Convert ``path`` into ``tmp/out`` and return the converted file."""
    profile, outdir = tmp / "profile", tmp / "out"
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(_PROFILE_SEED)
    # The output is named after the input, and Calc names the sheet of a CSV-like .xls
    # after it; other names ('#', a leading '-', undecodable bytes) could trip
    # LibreOffice's URL handling, so they are replaced.
    stem = path.stem if _PLAIN_NAME.fullmatch(path.stem) else "source"
    source = tmp / f"{stem}{path.suffix.lower()}"
    source.symlink_to(path.resolve())
    command = [soffice, "--headless", "--invisible", "--norestore", "--nologo",
               "--nodefault", "--nolockcheck", f"-env:UserInstallation={profile.as_uri()}",
               "--convert-to", target, "--outdir", str(outdir), str(source)]
    # Its temporary files (and a crashed run's leftovers) stay in our folder.
    env = {**os.environ, **_CHILD_ENV, "TMPDIR": str(tmp)}
    # preexec_fn only when the cap must change: it costs the fast spawn path, and it is
    # unsafe in a process with threads (pebble workers have none).
    child_cap, raise_cap = _child_address_space()
    timeout = CONVERT_TIMEOUT_S
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, cwd=tmp,
                            start_new_session=True, preexec_fn=raise_cap)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ExtractionError(f"LibreOffice conversion timed out after {timeout:g} s") from None
    finally:
        if proc.returncode is None:  # interrupted: never leave soffice running
            _kill_group(proc)
        _remove_ipc_socket(profile.as_uri())
    converted = outdir / f"{stem}.{target}"
    if converted.is_file() and converted.stat().st_size > 0:
        return converted
    if _encrypted_ole(path):
        raise ExtractionError(_ENCRYPTED)
    reason = f"LibreOffice could not convert it: {_summary(output, proc.returncode)}"
    if child_cap is not None and child_cap < _SOFFICE_ADDRESS_SPACE:
        reason += (f" (it may need more than the worker's {child_cap // 2**20} MB "
                   "address-space limit: worker_memory_limit_mb)")
    raise ExtractionError(reason)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # soffice is a script that starts oosplash, which starts soffice.bin (twice with a
    # fresh profile): killing the session's group reaches all of them.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # a process outside the group holds the pipe
        proc.kill()
        proc.wait()


def _remove_ipc_socket(profile_url: str) -> None:
    # soffice.bin listens on a socket named after its profile, outside our folder; a
    # killed or crashed one leaves it behind. The name is LibreOffice's own recipe
    # (desktop/source/app/officeipcthread.cxx: MD5 of the URL in UTF-16, unpadded hex;
    # sal/osl/unx/pipe.cxx: the folder), unique to our profile, so no one else's.
    digest = hashlib.md5(profile_url.encode("utf-16-le"), usedforsecurity=False).digest()
    name = f"OSL_PIPE_{os.getuid()}_SingleOfficeIPC_{''.join(f'{b:x}' for b in digest)}"
    for folder in ("/tmp", "/var/tmp"):
        Path(folder, name).unlink(missing_ok=True)


def _child_address_space() -> tuple[int | None, Callable[[], None] | None]:
    """The RLIMIT_AS the child will run under (None: unlimited), and the preexec_fn
    that sets it when it differs from ours."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft >= _SOFFICE_ADDRESS_SPACE:
        return None if soft == resource.RLIM_INFINITY else soft, None
    wanted = _SOFFICE_ADDRESS_SPACE if hard == resource.RLIM_INFINITY else min(
        hard, _SOFFICE_ADDRESS_SPACE)
    if wanted <= soft:
        return soft, None

    def raise_cap() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))

    return wanted, raise_cap


def _summary(output: bytes, returncode: int | None) -> str:
    """LibreOffice's own words in one line, without its routine warnings."""
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and "javaldx" not in line
             and not line.startswith("convert ")]
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error")]
    if errors:
        text = _NOISE.sub("", "; ".join(errors))
    elif returncode:
        text = "soffice crashed"  # its output is a stack trace
    else:
        text = lines[-1] if lines else "no output file and no message"
    if returncode:
        text = f"{text} ({_status(returncode)})"
    return " ".join(text.split())[:300]


def _status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


# --- Looking at the input --------------------------------------------------------------


def _check_input(path: Path, limits: Limits, kind: str) -> None:
    """Refuse what LibreOffice would misread or choke on, before starting it."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(_ZIP_MAGIC):
        # OpenDocument (or OOXML under an old name): LibreOffice inflates it whole, so the
        # zip-bomb limits apply to it as to DOCX; and it would ask for a password nobody
        # can type, so encryption is recognised here.
        check_zip(path, limits)
        if _encrypted_odf(path):
            raise ExtractionError(_ENCRYPTED)
    elif not (head.startswith(_OLE_MAGIC) or head.startswith(_OLD_MAGICS)
              or looks_like_text(head)):
        # LibreOffice would import these bytes as a plain-text document of garbage.
        raise ExtractionError(f"corrupt or not a {kind}: unrecognised binary content")


def _encrypted_odf(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive, archive.open("META-INF/manifest.xml") as fh:
            manifest = fh.read(_MAX_MANIFEST_BYTES)
    except KeyError:
        return False
    return b"encryption-data" in manifest


def _encrypted_ole(path: Path) -> bool:
    """Whether a compound file (.doc, .xls, .ppt, encrypted OOXML) says it is encrypted."""
    try:
        with path.open("rb") as fh:
            ole = _Ole(fh)
            names = ole.names()
            if {"encryptedpackage", "encryptedsummary"} & names:
                return True
            if "worddocument" in names:  # FIB flags: fEncrypted
                fib = ole.head("worddocument", 12)
                return len(fib) == 12 and bool(struct.unpack_from("<H", fib, 10)[0] & 0x0100)
            for book in ("workbook", "book"):  # a FILEPASS record right after the BOF
                if book in names:
                    records = ole.head(book, 512)
                    if len(records) < 4:
                        return False
                    after_bof = 4 + struct.unpack_from("<H", records, 2)[0]
                    return records[after_bof:after_bof + 2] == b"\x2f\x00"
            if "current user" in names:  # CurrentUserAtom.headerToken
                token = ole.head("current user", 16)
                return token[12:16] == b"\xdf\xc4\xd1\xf3"
    except (OSError, ValueError, struct.error):
        return False
    return False


class _Ole:
    """Just enough of a compound file (MS-CFB) to read the start of a named stream."""

    _END = 0xFFFFFFFA  # sector numbers above this mark chain ends and free sectors

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        header = fh.read(512)
        if len(header) < 512 or not header.startswith(_OLE_MAGIC):
            raise ValueError("not a compound file")
        self._shift, mini_shift = struct.unpack_from("<2H", header, 0x1E)
        if self._shift not in (9, 12) or mini_shift != 6:
            raise ValueError("unexpected sector size")
        (fat_count, first_dir, _, self._cutoff, first_minifat, _, first_difat,
         difat_count) = struct.unpack_from("<8L", header, 0x2C)
        fat_sectors = list(struct.unpack_from("<109L", header, 0x4C))
        per_sector = (1 << self._shift) // 4
        sectors_in_file = fh.seek(0, os.SEEK_END) >> self._shift
        sector = first_difat
        for _ in range(min(difat_count, sectors_in_file)):
            if sector > self._END:
                break
            entries = struct.unpack(f"<{per_sector}L", self._sector(sector))
            fat_sectors.extend(entries[:-1])
            sector = entries[-1]
        fat = b"".join(self._sector(s) for s in fat_sectors[:fat_count] if s <= self._END)
        self._fat = struct.unpack(f"<{len(fat) // 4}L", fat[: len(fat) // 4 * 4])
        directory = self._chain(first_dir)
        self._entries: dict[str, tuple[int, int]] = {}
        self._root = (self._END + 1, 0)
        for at in range(0, len(directory) - 127, 128):
            length, kind = struct.unpack_from("<HB", directory, at + 64)
            start, size = struct.unpack_from("<LL", directory, at + 116)
            name = directory[at:at + max(0, min(length, 64) - 2)].decode("utf-16-le", "replace")
            if kind == 5 and not self._entries:  # the root: holds the mini stream
                self._root = (start, size)
            if kind in (2, 5):
                self._entries.setdefault(name.lower(), (start, size))
        minifat = self._chain(first_minifat) if first_minifat <= self._END else b""
        self._minifat = struct.unpack(f"<{len(minifat) // 4}L", minifat[: len(minifat) // 4 * 4])

    def names(self) -> set[str]:
        """Lower-case names of the streams."""
        return set(self._entries)

    def head(self, name: str, size: int) -> bytes:
        """Up to ``size`` bytes from the start of stream ``name``."""
        start, length = self._entries[name]
        size = min(size, length)
        if length >= self._cutoff:
            return self._chain(start, size)
        container = self._chain(self._root[0], self._root[1])
        data = bytearray()
        sector = start
        while sector <= self._END and len(data) < size and sector < len(self._minifat):
            data += container[sector * 64:(sector + 1) * 64]
            sector = self._minifat[sector]
        return bytes(data[:size])

    def _sector(self, number: int) -> bytes:
        self._fh.seek((number + 1) << self._shift)
        return self._fh.read(1 << self._shift)

    def _chain(self, start: int, size: int | None = None) -> bytes:
        data = bytearray()
        sector = start
        # At most one visit per sector, so a looping chain in a damaged file ends.
        for _ in range(len(self._fat)):
            if sector > self._END or (size is not None and len(data) >= size):
                break
            data += self._sector(sector)
            sector = self._fat[sector] if sector < len(self._fat) else self._END + 1
        return bytes(data if size is None else data[:size])


EXTRACTORS = [WriterExtractor(), CalcExtractor(), ImpressExtractor()]

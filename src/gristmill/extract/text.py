"""Plain text, Markdown, reStructuredText, Org, logs and CSV/TSV, streamed in blocks.

A file is never held whole: it is decoded through :class:`io.TextIOWrapper` in blocks of
about 1 MB and leaves as segments of at most about 1 MB, so a 30 MB one-line log costs a
few megabytes. The encoding is chosen once, from the first megabyte (:func:`detect_encoding`).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import charset_normalizer

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment

__all__ = [
    "EXTRACTORS",
    "DelimitedExtractor",
    "TextExtractor",
    "detect_encoding",
    "looks_like_text",
    "markdown_table_blocks",
    "markdown_table_row",
    "plain_segments",
    "sniff_bom",
]

_SAMPLE_BYTES = 1024 * 1024
_BLOCK_CHARS = 1024 * 1024
# A segment is cut at whitespace in its last quarter when it can be, mid-word otherwise.
_MAX_SEGMENT_CHARS = 1024 * 1024
_MAX_HEADING_CHARS = 200
_ROWS_PER_SEGMENT = 200

# Longest first: the UTF-32 LE BOM begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Detectors often tie windows-1250 with windows-1252 on Western text; 1252 is far more
# common (and is what HTML means by "latin1"), so it wins ties.
_PREFERRED_ON_TIE = "cp1252"


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f") + b"\x7f"


def looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes are text in some encoding (UTF-16 by its BOM; else
    at most 1 % control bytes): for files whose name does not say (README, LICENSE,
    a .doc that is really RTF)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return bool(head.strip()) and controls * 100 <= len(head)


def detect_encoding(sample: bytes) -> tuple[str, int]:
    """The codec name for ``sample`` and the length of its byte-order mark (0 if none).

    A BOM decides; then (mostly) valid UTF-8; then charset-normalizer; UTF-8 as the last
    resort, which callers decode with replacement characters.
    """
    if found := sniff_bom(sample):
        return found
    if _mostly_utf8(sample):
        return "utf-8", 0
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return "utf-8", 0
    best = matches[0]
    for match in matches:
        if match.encoding == _PREFERRED_ON_TIE and (
            match.percent_chaos,
            match.percent_coherence,
        ) == (best.percent_chaos, best.percent_coherence):
            return match.encoding, 0
    return best.encoding, 0


def sniff_bom(sample: bytes) -> tuple[str, int] | None:
    """The codec named by ``sample``'s byte-order mark and the mark's length, if it has one."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name, len(bom)
    return None


def _mostly_utf8(sample: bytes) -> bool:
    # NULs are valid UTF-8 but mean UTF-16/32 without a BOM (or binary): let the
    # detector look at those.
    if b"\x00" in sample:
        return False
    # final=False: the sample may end inside a multi-byte character.
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    bad = text.count("\ufffd")
    if not bad:
        return True
    # UTF-8 with a few damaged bytes still has more valid multi-byte characters than
    # errors; a legacy 8-bit text has almost none.
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return non_ascii - bad >= bad


class TextExtractor:
    """Plain-text family; Markdown, reST and Org headings set ``heading``."""

    name = "text"
    version = 1
    # Configuration files (TOML, INI) are read as the plain text they are; YAML is read
    # by the code extractor, by top-level key.
    extensions = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".log", ".org",
                            ".toml", ".ini", ".cfg"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the text in segments of at most about 1 MB, cut at whitespace.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty, blank or binary.
        """
        suffix = path.suffix.lower()
        finder = _HEADING_FINDERS.get(suffix)
        with _open_text(path, limits) as fh:
            if finder is None:
                segments = plain_segments(_blocks(fh, limits))
            else:
                segments = _sectioned_segments(_lines(fh, limits), finder)
            found = False
            for segment in segments:
                found = True
                yield segment
        if not found:
            raise Unsupported("empty file")


class DelimitedExtractor:
    """CSV and TSV as Markdown table rows, the header row repeated in every segment."""

    name = "csv"
    version = 1
    extensions = frozenset({".csv", ".tsv"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield blocks of rows as Markdown tables.

        Raises:
            ExtractionError: the file is not parseable as delimited text.
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty or blank.
        """
        with _open_text(path, limits, newline="") as fh:
            start = fh.tell()  # after the byte-order mark
            sample = fh.read(64 * 1024)
            fh.seek(start)
            default = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
            dialect = _dialect(sample, default)
            try:
                yield from _table_segments(csv.reader(fh, dialect), limits)
            except csv.Error as exc:
                raise ExtractionError(f"malformed CSV: {exc}") from exc


# --- Reading ---------------------------------------------------------------------------


def _open_text(path: Path, limits: Limits, newline: str | None = None) -> IO[str]:
    size = path.stat().st_size
    # No encoding spends more than four bytes on a character, so a file this big is over
    # the limit whatever it turns out to hold; refuse it before reading a byte.
    if size // 4 > limits.max_text_chars:
        raise LimitExceeded(
            f"text file of {size:,} bytes exceeds {limits.max_text_chars:,} characters "
            "(max_text_chars)"
        )
    raw = path.open("rb")
    try:
        sample = raw.read(_SAMPLE_BYTES)
        if not sample.strip():
            raise Unsupported("empty file")
        encoding, bom = detect_encoding(sample)
        if b"\x00" in sample and not bom and encoding == "utf-8":
            raise Unsupported("binary content, not text")
        raw.seek(bom)
        # Python's codec names; an exotic name charset-normalizer knows might not be one.
        codecs.lookup(encoding)
    except BaseException:
        raw.close()
        raise
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=newline)


def _blocks(fh: IO[str], limits: Limits) -> Iterator[str]:
    total = 0
    while block := fh.read(_BLOCK_CHARS):
        total += len(block)
        if total > limits.max_text_chars:
            raise _over_limit(limits)
        yield block


def _lines(fh: IO[str], limits: Limits) -> Iterator[tuple[str, bool]]:
    """Yield ``(text, complete)``; a line longer than a segment comes in pieces cut at
    whitespace, all but the last with ``complete`` false."""
    total = 0
    carry = ""  # the tail of an over-long line, after its last cut
    while True:
        # carry is under a quarter of a segment, so this always asks for a good piece.
        want = _MAX_SEGMENT_CHARS - len(carry)
        line = fh.readline(want)
        total += len(line)
        if total > limits.max_text_chars:
            raise _over_limit(limits)
        if not line:
            if carry:
                yield carry, True
            return
        piece, carry = carry + line, ""
        if piece.endswith("\n"):
            yield piece[:-1], True
        elif len(line) < want:
            yield piece, True  # the last line, without a final newline
        else:
            cut = _cut_point(piece, len(piece))
            piece, carry = piece[:cut], piece[cut:]
            yield piece, False


def _over_limit(limits: Limits) -> LimitExceeded:
    return LimitExceeded(f"text exceeds {limits.max_text_chars:,} characters (max_text_chars)")


# --- Plain text ------------------------------------------------------------------------


def plain_segments(blocks: Iterable[str]) -> Iterator[Segment]:
    """Join text blocks and cut them into segments of at most about 1 MB at whitespace."""
    pending = ""
    for block in blocks:
        pending += block
        while len(pending) >= _MAX_SEGMENT_CHARS:
            cut = _cut_point(pending, _MAX_SEGMENT_CHARS)
            if text := pending[:cut].strip():
                yield Segment(text)
            pending = pending[cut:]
    if text := pending.strip():
        yield Segment(text)


def _cut_point(text: str, limit: int) -> int:
    """Where to cut ``text`` at or before ``limit``: a paragraph, line or word break."""
    floor = limit * 3 // 4
    for separator in ("\n\n", "\n", " ", "\t"):
        at = text.rfind(separator, floor, limit)
        if at >= 0:
            return at + len(separator)
    return limit


# --- Headed text (Markdown, reST, Org) --------------------------------------------------


class _FenceState:
    """Whether the reader is inside a fenced code block, where ``#`` is not a heading."""

    def __init__(self) -> None:
        self.fence: str | None = None

    def update(self, line: str) -> bool:
        """Track ``line``; true when it is part of a fence (so never a heading)."""
        stripped = line.lstrip()
        marker = stripped[:3]
        if self.fence is None:
            if marker in ("```", "~~~"):
                self.fence = marker
                return True
            return False
        if marker == self.fence:
            self.fence = None
        return True


# Given a line, the section's lines before it and the fence state: how many of those lines
# belong to the heading and its text, or None when the line makes no heading.
_HeadingFinder = Callable[[str, list[str], _FenceState], tuple[int, str] | None]

_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([=\-`:.'\"~^_*+#<>])\1{1,}[ \t]*$")
_ORG = re.compile(r"^\*+[ \t]+(.*?)[ \t]*$")


def _markdown_heading(line: str, before: list[str], fences: _FenceState) -> tuple[int, str] | None:
    if fences.update(line):
        return None
    if match := _ATX.match(line):
        return 0, (match.group(1) or "").strip()
    if _SETEXT.match(line) and before and _is_text_line(before[-1]):
        return 1, before[-1].strip()
    return None


def _rst_heading(line: str, before: list[str], fences: _FenceState) -> tuple[int, str] | None:
    if not _RST_ADORNMENT.match(line) or not before or not _is_text_line(before[-1]):
        return None
    title = before[-1].strip()
    if len(line.rstrip()) < len(title):
        return None
    # Over- and underlined titles: "=====\nTitle\n=====".
    overlined = len(before) >= 2 and before[-2].rstrip() == line.rstrip()
    return (2 if overlined else 1), title


def _org_heading(line: str, before: list[str], fences: _FenceState) -> tuple[int, str] | None:
    match = _ORG.match(line)
    return (0, match.group(1)) if match else None


def _is_text_line(line: str) -> bool:
    stripped = line.strip()
    # Headings, quotes, list items and table rows are not titles that an underline
    # could belong to.
    return (
        bool(stripped)
        and not _RST_ADORNMENT.match(stripped)
        and not stripped.startswith(("#", ">", "- ", "* ", "|"))
    )


_HEADING_FINDERS: dict[str, _HeadingFinder] = {
    ".md": _markdown_heading,
    ".markdown": _markdown_heading,
    ".rst": _rst_heading,
    ".org": _org_heading,
}


def _sectioned_segments(
    lines: Iterable[tuple[str, bool]], finder: _HeadingFinder
) -> Iterator[Segment]:
    heading: str | None = None
    buffer: list[str] = []  # lines of the current section, its heading lines included
    size = 0
    fences = _FenceState()
    continuation = False  # the previous piece was cut from an over-long line
    for text, complete in lines:
        # A piece of an over-long line is never a heading.
        found = None if continuation or not complete else finder(text, buffer, fences)
        continuation = not complete
        if found is not None:
            taken, title = found
            kept = buffer[len(buffer) - taken :]
            del buffer[len(buffer) - taken :]
            if segment := _section(buffer, heading):
                yield segment
            heading = title[:_MAX_HEADING_CHARS] or heading
            buffer = [*kept, text]
            size = sum(len(line) + 1 for line in buffer)
            continue
        buffer.append(text)
        size += len(text) + 1
        if size >= _MAX_SEGMENT_CHARS:
            if segment := _section(buffer, heading):
                yield segment
            buffer, size = [], 0
    if segment := _section(buffer, heading):
        yield segment


def _section(lines: list[str], heading: str | None) -> Segment | None:
    text = "\n".join(lines).strip()
    return Segment(text, heading=heading) if text else None


# --- Delimited text ---------------------------------------------------------------------


def _dialect(sample: str, default: type[csv.Dialect]) -> type[csv.Dialect]:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return default  # one column, or too little text to tell


def _table_segments(rows: Iterable[list[str]], limits: Limits) -> Iterator[Segment]:
    total = 0
    found = False
    for block in markdown_table_blocks(rows):
        found = True
        total += len(block)
        if total > limits.max_text_chars:
            raise _over_limit(limits)
        yield Segment(block)
    if not found:
        raise Unsupported("empty file")


def markdown_table_blocks(rows: Iterable[list[str]]) -> Iterator[str]:
    """Markdown tables of at most 200 rows (or ~1 MB) each, every one starting with the
    first row as its header, so each block reads as a table on its own. Blank rows are
    dropped; rows are consumed lazily, so a million-row sheet is never held whole."""
    header: str | None = None
    rule = ""
    block: list[str] = []
    size = 0
    yielded = False
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        line = markdown_table_row(row)
        if header is None:
            header, rule = line, markdown_table_row(["---"] * len(row))
            continue
        block.append(line)
        size += len(line)
        if len(block) >= _ROWS_PER_SEGMENT or size >= _MAX_SEGMENT_CHARS:
            yield "\n".join([header, rule, *block])
            yielded = True
            block, size = [], 0
    if header is not None and (block or not yielded):
        yield "\n".join([header, rule, *block])


def markdown_table_row(cells: Iterable[str]) -> str:
    """One Markdown table row; whitespace folded and ``|`` escaped so a cell keeps its line."""
    escaped = (" ".join(cell.split()).replace("|", "\\|") for cell in cells)
    return "| " + " | ".join(escaped) + " |"


EXTRACTORS = [TextExtractor(), DelimitedExtractor()]

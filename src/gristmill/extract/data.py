"""JSON, JSON Lines and XML, rendered as lines a keyword search can hit.

In a data file the meaning sits in the keys as much as in the values: ``Canada`` alone
matches nothing useful, ``capital: Ottawa`` does. So every JSON scalar becomes one
``path.to.key: value`` line (``[0]`` for list items) and every XML element with text one
``tag: text`` line, with mixed content (``<p>Hello <b>world</b></p>``) kept as one line.

Memory: JSON has to be parsed whole, so it is refused by size first (as text files are);
JSON Lines is read one line at a time and XML one element at a time, each emptied once
read, so either costs a few megabytes whatever its size.

XML is parsed with entity references left unexpanded and no DTD or network access, so an
XXE file yields only its literal text and never the file or URL it names; an entity bomb
("billion laughs") is refused by libxml2's amplification cap.
"""

from __future__ import annotations

import codecs
import functools
import io
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lxml import etree

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.text import detect_encoding, sniff_bom

__all__ = ["EXTRACTORS", "JsonExtractor", "JsonLinesExtractor", "XmlExtractor", "load_json"]

log = logging.getLogger(__name__)

_SAMPLE_BYTES = 1024 * 1024
_MAX_SEGMENT_CHARS = 1024 * 1024
_MAX_HEADING_CHARS = 200
# A longer JSON Lines record is skipped as bad rather than read into memory whole.
_MAX_RECORD_CHARS = 32 * 1024 * 1024
# An XML element with at most this much text inside can still become one line (mixed
# content); past it the element streams out line by line. It bounds what is held per open
# element, and libxml2 bounds nesting to 256 without huge_tree.
_MAX_INLINE_CHARS = 32 * 1024
_TITLE_NAMES = frozenset({"title", "name", "heading", "headline", "label", "caption", "subject"})
# Keys that would read ambiguously in a dotted path are written ``["like this"]``.
_AWKWARD_KEY = re.compile(r'[.\[\]"\n\r\t]|: |^\s|\s$|^$')
_BREAK = ""  # in a line stream: a paragraph break (between records)
# Numbers stay the strings they were written as: 24.99 stays 24.99 (no float rounding),
# and a 5,000-digit integer is no error (int() refuses over 4,300 digits).
_DECODER = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str)

# (heading, line) pairs; a line equal to _BREAK ends a paragraph.
_Items = Iterator[tuple[str | None, str]]


class JsonExtractor:
    """JSON documents; each top-level key holding an object or list is its own section."""

    name = "json"
    version = 1
    extensions = frozenset({".json"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield ``path: value`` lines, one paragraph per record.

        Raises:
            ExtractionError: the file is not valid JSON.
            LimitExceeded: more text than ``limits.max_text_chars``, or nested too deeply.
            Unsupported: the file is empty or holds no values.
        """
        try:
            document = load_json(path, limits)
        except _ValuePerLine:
            # Exports often write JSON Lines under a .json name.
            yield from JsonLinesExtractor().extract(path, limits)
            return
        found = False
        for segment in _pack(_json_items(document), limits, "JSON"):
            found = True
            yield segment
        if not found:
            raise Unsupported("no values in JSON")


class JsonLinesExtractor:
    """JSON Lines / NDJSON, streamed; a bad line is skipped, not fatal."""

    name = "jsonl"
    version = 1
    extensions = frozenset({".jsonl", ".ndjson"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the records' ``path: value`` lines, one paragraph per record.

        Raises:
            ExtractionError: no line holds a valid JSON value.
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty or holds no values.
        """
        bad = _BadLines()
        found = False
        with _open_text(path, limits) as fh:
            for segment in _pack(_jsonl_items(fh, bad), limits, "JSON Lines"):
                found = True
                yield segment
        if bad.count and not bad.good:
            raise ExtractionError(
                f"no valid JSON Lines record: {bad.count:,} bad line(s), "
                f"first at line {bad.first_line}: {bad.first_reason}"
            )
        if bad.count:
            log.warning(
                "%s: skipped %d bad JSON Lines record(s), first at line %d: %s",
                path, bad.count, bad.first_line, bad.first_reason,
            )
        if not found:
            raise Unsupported("no values in JSON Lines")


class XmlExtractor:
    """XML, streamed; each child of the root element is a section."""

    name = "xml"
    version = 1
    # .tld: JSP tag library descriptors are XML too.
    extensions = frozenset({".xml", ".tld"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield ``tag: text`` lines, grouped by the root's children.

        A group's ``heading`` is a title-like child's text (``<title>``, ``<name>``, ...)
        or a ``title``/``name`` attribute, else the group's tag.

        Raises:
            ExtractionError: the file is not well-formed XML.
            LimitExceeded: more text than ``limits.max_text_chars``, or past a parser limit.
            Unsupported: the file is empty or holds no text.
        """
        _check_size(path, limits, "XML")
        found = False
        with path.open("rb") as raw:
            sample = raw.read(_SAMPLE_BYTES)
            if not sample.strip():
                raise Unsupported("empty file")
            raw.seek(0)
            source, encoding = _xml_source(raw, sample)
            try:
                for segment in _pack(_XmlWalker().items(source, encoding), limits, "XML"):
                    found = True
                    yield segment
            except etree.LxmlError as exc:
                raise _xml_error(exc) from exc
        if not found:
            raise Unsupported("no text in XML")


# --- Reading ---------------------------------------------------------------------------


def load_json(path: Path, limits: Limits, what: str = "JSON") -> Any:
    """Parse a whole JSON file (any encoding :func:`detect_encoding` knows).

    Numbers are kept as the strings they were written as (``24.99`` stays ``24.99``);
    ``what`` names the format in error reasons.

    Raises:
        ExtractionError: the file is not valid JSON.
        LimitExceeded: the file is too big for ``limits``, or nested too deeply to parse.
        Unsupported: the file is empty.
    """
    _check_size(path, limits, what)
    data = path.read_bytes()
    if not data.strip():
        raise Unsupported("empty file")
    encoding, bom = detect_encoding(data[:_SAMPLE_BYTES])
    text = data[bom:].decode(_known_codec(encoding), errors="replace")
    del data
    try:
        return _DECODER.decode(text)
    except RecursionError as exc:
        # The C parser recurses once per level; the walk below does not.
        raise LimitExceeded(
            f"{what} nested too deeply to parse (more than about "
            f"{sys.getrecursionlimit():,} levels)"
        ) from exc
    except json.JSONDecodeError as exc:
        reason = f"invalid {what}: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        if exc.msg == "Extra data" and text[: exc.pos].rstrip(" \t\r").endswith("\n"):
            raise _ValuePerLine(reason) from exc
        raise ExtractionError(reason) from exc
    except ValueError as exc:
        raise ExtractionError(f"invalid {what}: {_first_line(exc)}") from exc


class _ValuePerLine(ExtractionError):
    """A second JSON value starts on a new line: the file is JSON Lines."""


def _check_size(path: Path, limits: Limits, what: str) -> None:
    size = path.stat().st_size
    # No encoding spends more than four bytes on a character: a file this big is over the
    # limit whatever it holds, so refuse it before reading a byte.
    if size // 4 > limits.max_text_chars:
        raise LimitExceeded(
            f"{what} file of {size:,} bytes exceeds {limits.max_text_chars:,} characters "
            "(max_text_chars)"
        )


def _open_text(path: Path, limits: Limits) -> IO[str]:
    _check_size(path, limits, "JSON Lines")
    raw = path.open("rb")
    try:
        sample = raw.read(_SAMPLE_BYTES)
        if not sample.strip():
            raise Unsupported("empty file")
        encoding, bom = detect_encoding(sample)
        raw.seek(bom)
    except BaseException:
        raw.close()
        raise
    return io.TextIOWrapper(raw, encoding=_known_codec(encoding), errors="replace")


def _known_codec(encoding: str) -> str:
    # Python's codec names; an exotic name charset-normalizer knows might not be one.
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return "utf-8"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- Lines into segments -----------------------------------------------------------------


def _pack(items: Iterable[tuple[str | None, str]], limits: Limits, what: str) -> Iterator[Segment]:
    """Segments of consecutive lines with one heading, about 1 MB at most, cut between
    records where possible; counts every character against ``max_text_chars``."""
    lines: list[str] = []
    heading: str | None = None
    size = total = 0
    for here, line in items:
        if lines and (
            here != heading
            or (size >= _MAX_SEGMENT_CHARS and (line == _BREAK or size >= 2 * _MAX_SEGMENT_CHARS))
        ):
            if segment := _segment(lines, heading):
                yield segment
            lines, size = [], 0
        heading = here
        if line == _BREAK:
            if lines and lines[-1] != _BREAK:
                lines.append(_BREAK)
            continue
        total += len(line) + 1
        if total > limits.max_text_chars:
            raise LimitExceeded(
                f"{what} text exceeds {limits.max_text_chars:,} characters (max_text_chars)"
            )
        lines.append(line)
        size += len(line) + 1
    if segment := _segment(lines, heading):
        yield segment


def _segment(lines: list[str], heading: str | None) -> Segment | None:
    text = "\n".join(lines).strip()
    return Segment(text, heading=heading) if text else None


def _heading(text: str) -> str | None:
    return " ".join(text.split())[:_MAX_HEADING_CHARS] or None


# --- JSON ------------------------------------------------------------------------------


def _json_items(document: Any) -> _Items:
    if isinstance(document, dict):
        for key, value in document.items():
            path = _member("", key)
            if isinstance(value, dict | list):
                yield from _records(value, path, _heading(key))
            else:
                yield None, _scalar_line(path, value)
    elif isinstance(document, list):
        yield from _records(document, "", None)
    else:
        yield None, _scalar_line("", document)


def _records(container: dict[str, Any] | list[Any], path: str, heading: str | None) -> _Items:
    """The container's members, each object or list among them a paragraph of its own."""
    for child_path, child in _children(path, container):
        if isinstance(child, dict | list):
            yield heading, _BREAK
            for line in _json_lines(child, child_path):
                yield heading, line
            yield heading, _BREAK
        else:
            yield heading, _scalar_line(child_path, child)


def _json_lines(value: Any, path: str) -> Iterator[str]:
    """One ``path: value`` line per scalar under ``value``, in document order.

    Iterative: nesting costs a list entry per level, not a stack frame.
    """
    if not isinstance(value, dict | list):
        yield _scalar_line(path, value)
        return
    stack = [(path, *_members(value))]
    while stack:
        base, members, keyed = stack[-1]
        for key, child in members:
            child_path = _member(base, key) if keyed else f"{base}[{key}]"
            if isinstance(child, dict | list):
                stack.append((child_path, *_members(child)))
                break
            yield _scalar_line(child_path, child)
        else:
            stack.pop()


def _members(value: dict[str, Any] | list[Any]) -> tuple[Iterator[tuple[Any, Any]], bool]:
    if isinstance(value, dict):
        return iter(value.items()), True
    return enumerate(value), False


def _children(path: str, value: dict[str, Any] | list[Any]) -> Iterator[tuple[str, Any]]:
    members, keyed = _members(value)
    for key, item in members:
        yield (_member(path, key) if keyed else f"{path}[{key}]"), item


def _member(path: str, key: str) -> str:
    step = _cached_step(key) if len(key) <= 64 else _step(key)
    return path + step if path or step[0] == "[" else step[1:]


def _step(key: str) -> str:
    if _AWKWARD_KEY.search(key):
        return f"[{json.dumps(key, ensure_ascii=False)}]"
    return f".{key}"


# Records repeat the same few keys; long ones are not worth pinning in memory.
_cached_step = functools.lru_cache(maxsize=4096)(_step)


def _scalar_line(path: str, value: Any) -> str:
    if value is None:
        text = "null"
    elif value is True or value is False:
        text = "true" if value else "false"
    else:
        text = str(value)  # strings, and numbers kept as written (see load_json)
    if not path:
        return text
    return f"{path}: {text}" if text else f"{path}:"


# --- JSON Lines --------------------------------------------------------------------------


@dataclass(slots=True)
class _BadLines:
    good: int = 0
    count: int = 0
    first_line: int = 0
    first_reason: str = ""

    def add(self, line: int, reason: str) -> None:
        if not self.count:
            self.first_line, self.first_reason = line, reason
        self.count += 1


def _jsonl_items(fh: IO[str], bad: _BadLines) -> _Items:
    number = 0
    while line := fh.readline(_MAX_RECORD_CHARS):
        number += 1
        if len(line) == _MAX_RECORD_CHARS and not line.endswith("\n"):
            # Skip the rest of the over-long line piece by piece, never holding it whole.
            while (rest := fh.readline(_MAX_RECORD_CHARS)) and not rest.endswith("\n"):
                pass
            bad.add(number, f"record longer than {_MAX_RECORD_CHARS:,} characters")
            continue
        if not line.strip():
            continue
        try:
            record = _DECODER.decode(line)
        except RecursionError:
            bad.add(number, "nested too deeply to parse")
            continue
        except json.JSONDecodeError as exc:
            bad.add(number, f"{exc.msg} at column {exc.colno}")
            continue
        except ValueError as exc:
            bad.add(number, _first_line(exc))
            continue
        bad.good += 1
        # One item per record: a record is at most _MAX_RECORD_CHARS, and the per-line
        # overhead of the packer would dominate a file of small records.
        if block := "\n".join(_json_lines(record, "")):
            yield None, _BREAK
            yield None, block


# --- XML -------------------------------------------------------------------------------

_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*\bencoding\s*=", re.ASCII)


def _xml_source(raw: IO[bytes], sample: bytes) -> tuple[IO[bytes] | _Utf8Reader, str | None]:
    """The stream to parse and the encoding to impose on it, if any.

    libxml2 follows a byte-order mark or an encoding declaration; a file with neither is
    taken as UTF-8, which a legacy 8-bit file is not. Such a file is decoded here with
    the text extractor's detection and handed over as UTF-8.
    """
    if sniff_bom(sample) or _DECLARED_ENCODING.match(sample):
        return raw, None
    encoding, _ = detect_encoding(sample)
    codec = _known_codec(encoding)
    if codec == "utf-8":
        return raw, None
    return _Utf8Reader(io.TextIOWrapper(raw, encoding=codec, errors="replace")), "utf-8"


class _Utf8Reader:
    """A byte stream of ``text`` re-encoded as UTF-8 (for lxml, which reads bytes)."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def read(self, size: int = -1) -> bytes:
        # A few bytes more than asked for is fine: lxml feeds whatever read() returns.
        return self._text.read(size if size and size > 0 else -1).encode("utf-8")


def _xml_error(exc: etree.LxmlError) -> ExtractionError:
    message = " ".join(str(getattr(exc, "msg", None) or exc).split())[:300]
    if "XML_PARSE_HUGE" in message or "amplification" in message:
        return LimitExceeded(f"XML over a parser safety limit: {message}")
    return ExtractionError(f"malformed XML: {message}")


def _local(name: Any) -> str:
    """``{uri}tag`` -> ``tag``. (Not etree.QName: it rejects the odd names libxml2 lets
    through, such as a prefix that was never declared.)"""
    if not isinstance(name, str):
        return ""
    return name.rpartition("}")[2] if name.startswith("{") else name


@dataclass(slots=True)
class _Frame:
    """An open element.

    While it may still turn out to hold mixed content it is *pending*: its attribute
    lines, direct text pieces and finished children wait in ``entries``, so that at its
    end it can become one ``tag: text`` line. Past ``_MAX_INLINE_CHARS`` it *streams*:
    ``entries`` is None and everything goes straight out.
    """

    element: Any
    tag: str
    # ("attr", line) | ("text", piece) | ("child", inline text, output lines, padded)
    entries: list[tuple[Any, ...]] | None = field(default_factory=list)
    size: int = 0
    text_seen: bool = False
    has_text: bool = False


class _XmlWalker:
    """Turns iterparse events into (heading, line) items, emptying elements as it goes."""

    def __init__(self) -> None:
        self._stack: list[_Frame] = []
        self._streaming = 0  # frames [0:_streaming] stream; the rest are pending
        self._out: list[str] = []
        self._out_size = 0
        self._group_tag: str | None = None
        self._title: str | None = None

    def items(self, source: IO[bytes] | _Utf8Reader, encoding: str | None) -> _Items:
        events = etree.iterparse(
            source,
            events=("start", "end"),
            encoding=encoding,
            # Hardened: no entity expansion, no DTD, no network, libxml2's size limits on.
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        for event, element in events:
            if event == "start":
                if len(self._stack) == 1:
                    # A group begins: what came before it keeps the old heading.
                    self._take_text_before(0, element)
                    yield from self._flush()
                self._start(element)
            elif self._end(element):
                yield from self._flush(end_group=True)
                self._group_tag = self._title = None
            if self._out_size >= _MAX_SEGMENT_CHARS:
                yield from self._flush()
        yield from self._flush()

    def _flush(self, *, end_group: bool = False) -> _Items:
        heading = self._title or self._group_tag
        for line in self._out:
            yield heading, line
        self._out, self._out_size = [], 0
        if end_group:
            yield heading, _BREAK

    def _sink(self, line: str) -> None:
        self._out.append(line)
        self._out_size += len(line) + 1

    def _start(self, element: Any) -> None:
        depth = len(self._stack)
        if depth:
            self._take_text_before(depth - 1, element)
        tag = _local(element.tag)
        frame = _Frame(element, tag)
        self._stack.append(frame)
        if depth == 0:
            frame.entries = None  # the root never becomes one line
            self._streaming = 1
        elif depth == 1:
            self._group_tag, self._title = tag, None
        for name, value in element.attrib.items():
            attribute, text = _local(name), " ".join(value.split())
            if not text:
                continue
            if depth == 1 and self._title is None and attribute.lower() in _TITLE_NAMES:
                self._title = text[:_MAX_HEADING_CHARS]
            self._add(depth, ("attr", f"{tag}@{attribute}: {text}"), len(text))

    def _end(self, element: Any) -> bool:
        """Finish ``element``; true when it was a child of the root (a group ends)."""
        index = len(self._stack) - 1
        frame = self._stack[index]
        if not frame.text_seen:
            frame.text_seen = True
            self._direct(index, element.text)
        for child in element:
            self._direct(index, child.tail)
        # Keep the tail: it is the parent's text, read when the next sibling starts.
        element.clear(keep_tail=True)
        self._stack.pop()
        self._streaming = min(self._streaming, index)
        if frame.entries is not None:
            inline, lines, padded = _finish(frame)
            # A group's title: its own text when the group is a <title>, else the text of
            # its first <title>-like child.
            if index in (1, 2) and self._title is None and frame.tag.lower() in _TITLE_NAMES:
                self._title = inline[:_MAX_HEADING_CHARS] or None
            size = len(inline) + sum(len(line) for line in lines)
            self._add(index - 1, ("child", inline, lines, padded), size)
        return index == 1

    def _take_text_before(self, index: int, element: Any) -> None:
        """Read the parent's text and the tails of ``element``'s earlier siblings (final
        once ``element`` starts), then drop those siblings so memory stays flat."""
        frame = self._stack[index]
        parent = frame.element
        if not frame.text_seen:
            frame.text_seen = True
            self._direct(index, parent.text)
        if element.getparent() is not parent:
            return  # libxml2 gave up mid-tree (past a limit); its error is coming
        # parent[0], not len(parent): lxml counts children by walking them.
        while (first := parent[0]) is not element:
            self._direct(index, first.tail)  # an ended element or an unexpanded entity
            del parent[0]

    def _direct(self, index: int, piece: str | None) -> None:
        if piece:
            self._add(index, ("text", piece), len(piece))

    def _add(self, index: int, entry: tuple[Any, ...], size: int) -> None:
        frame = self._stack[index]
        if frame.entries is None:
            self._emit(frame.tag, entry)
            return
        frame.entries.append(entry)
        frame.size += size
        if entry[0] == "text" and not entry[1].isspace():
            frame.has_text = True
        if frame.size > _MAX_INLINE_CHARS:
            # Its text no longer fits one line, nor does any ancestor's: they all stream,
            # outermost first, which keeps document order.
            for outer in self._stack[self._streaming : index + 1]:
                for held in outer.entries or ():
                    self._emit(outer.tag, held)
                outer.entries = None
            self._streaming = index + 1

    def _emit(self, tag: str, entry: tuple[Any, ...]) -> None:
        kind = entry[0]
        if kind == "attr":
            self._sink(entry[1])
        elif kind == "text":
            if text := " ".join(entry[1].split()):
                self._sink(f"{tag}: {text}")
        else:
            for line in entry[2]:
                self._sink(line)


def _finish(frame: _Frame) -> tuple[str, list[str], bool]:
    """A pending element's inline text, output lines, and whether to pad it with spaces
    when it sits inside mixed content (a leaf like ``<b>`` joins its neighbours' words;
    ``<br/>`` or a nested block separates them)."""
    pieces: list[str] = []
    attrs: list[str] = []
    children: list[str] = []
    has_children = False
    for entry in frame.entries or ():
        if entry[0] == "attr":
            attrs.append(entry[1])
        elif entry[0] == "text":
            pieces.append(entry[1])
        else:
            has_children = True
            inline, lines, padded = entry[1], entry[2], entry[3]
            pieces.append(f" {inline} " if padded else inline)
            children.extend(lines)
    inline = " ".join("".join(pieces).split())
    # Mixed content reads as one line; a purely structural element leaves its children's.
    lines = [*attrs, f"{frame.tag}: {inline}"] if frame.has_text else [*attrs, *children]
    return inline, lines, has_children or not inline


EXTRACTORS = [JsonExtractor(), JsonLinesExtractor(), XmlExtractor()]

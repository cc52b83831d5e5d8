"""HTML main text with selectolax's lexbor parser, in reading order.

Boilerplate (scripts, styles, navigation, page headers and footers, asides) is dropped;
block elements end paragraphs; ``h1``-``h6`` start sections. The tree is walked with an
explicit loop over child/sibling/parent links, never by recursion, so nesting depth costs
no stack. :func:`html_to_segments` is shared with the EPUB and e-mail extractors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser, LexborNode

from gristmill.errors import LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.text import detect_encoding, sniff_bom

__all__ = ["EXTRACTORS", "HtmlExtractor", "decode_html", "html_to_segments"]

_MAX_SEGMENT_CHARS = 1024 * 1024
_MAX_HEADING_CHARS = 200

# Subtrees that are never main text.
_SKIP = frozenset(
    {"head", "script", "style", "noscript", "template", "svg", "math", "nav", "aside",
     "iframe", "object", "select", "button", "-comment"}
)
# Page-level banners; inside an article or main they hold the article's own title.
_BOILERPLATE = frozenset({"header", "footer"})
_CONTENT = frozenset({"article", "main"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset(
    {"address", "article", "blockquote", "body", "center", "dd", "details", "dialog", "div",
     "dl", "dt", "fieldset", "figcaption", "figure", "form", "header", "footer", "hgroup",
     "hr", "li", "main", "ol", "p", "pre", "section", "summary", "ul", "caption", "legend",
     "option", "table", "tbody", "thead", "tfoot", "tr", "td", "th", *_HEADINGS}
)
_CELLS = frozenset({"td", "th"})
_MAX_PROBED_TABLE_DEPTH = 8

# lexbor checks "is a <p> in button scope" by walking the open-element stack at every
# block start tag, so parse time grows with the square of nesting depth (200,000 nested
# divs take 90 s). Browsers cap the depth (Chrome at 512) and so do we: tags nested
# deeper are dropped before parsing, which keeps their text.
_MAX_DEPTH = 4096
# "<" is not allowed unquoted inside a tag, so a "<" with no ">" after it costs a scan to
# the next "<", not to the end of the document (which would make the scan quadratic).
_TAG = re.compile(
    r"<!--(?:.*?-->|.*\Z)|<(/?)([A-Za-z][^\s/<>]*)(?:[^<>\"']|\"[^\"]*\"|'[^']*')*>", re.S
)
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)
# Closed implicitly by their next sibling, so they do not add depth in real documents.
_SELF_CLOSING_SIBLINGS = frozenset(
    {"p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "rb", "rt", "rp"}
)

_XML_ENCODING = re.compile(rb"\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9_.:-]+)")
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)
# WHATWG Encoding: these labels all mean windows-1252 on the web.
_WINDOWS_1252_LABELS = frozenset(
    {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii", "cp819"}
)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_WHITESPACE = re.compile(r"\s+")


class HtmlExtractor:
    """HTML pages; ``heading`` is the nearest ``h1``-``h6``, else the ``<title>``."""

    name = "html"
    version = 1
    extensions = frozenset({".html", ".htm", ".xhtml"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the page's main text in reading order.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the page has no text.
        """
        found = False
        for segment in html_to_segments(path.read_bytes(), limits=limits):
            found = True
            yield segment
        if not found:
            raise Unsupported("no text in HTML page")


def html_to_segments(
    document: str | bytes,
    *,
    heading: str | None = None,
    page: int | None = None,
    limits: Limits | None = None,
) -> Iterator[Segment]:
    """Yield the main text of an HTML document as segments.

    Args:
        document: the markup; bytes are decoded by BOM, ``<meta charset>``, then detection.
        heading: the heading before the first ``h1``-``h6`` when there is no ``<title>``.
        page: stamped on every segment (an EPUB chapter number, for instance).
        limits: ``max_text_chars`` is enforced when given.
    """
    text = decode_html(document) if isinstance(document, bytes) else document
    tree = LexborHTMLParser(_flatten_deep_nesting(text))
    title = tree.head.css_first("title") if tree.head is not None else None
    title_text = " ".join(title.text().split()) if title is not None else ""
    writer = _Writer(title_text[:_MAX_HEADING_CHARS] or heading, page, limits or Limits())
    root = tree.body or tree.root
    if root is None:
        return
    yield from _walk(root, writer)
    if segment := writer.flush():
        yield segment


def decode_html(data: bytes) -> str:
    """Decode HTML bytes: byte-order mark, then ``<meta charset>``, then detection."""
    if found := sniff_bom(data):
        encoding, bom = found
        return data[bom:].decode(encoding, errors="replace")
    head = data[:4096]
    if match := _XML_ENCODING.match(head) or _META_CHARSET.search(head):
        declared = match.group(1).decode("ascii").lower()
        declared = "cp1252" if declared in _WINDOWS_1252_LABELS else declared
        try:
            # UTF-16/32 cannot be declared from inside an ASCII-readable document.
            if not declared.startswith(("utf-16", "utf-32")):
                return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label; detect instead
    encoding, _ = detect_encoding(data[: 1024 * 1024])
    return data.decode(encoding, errors="replace")


def _flatten_deep_nesting(text: str) -> str:
    """Drop the tags that would nest elements deeper than ``_MAX_DEPTH``."""
    if text.count("<") <= _MAX_DEPTH:
        return text  # too few tags to nest that deep: skip the scan
    depth = 0
    dropped: list[tuple[int, int]] = []
    for match in _TAG.finditer(text):
        closing, name = match.group(1), match.group(2)
        if name is None:
            continue
        name = name.lower()
        if name in _VOID or name in _SELF_CLOSING_SIBLINGS or match.group(0).endswith("/>"):
            continue
        if closing:
            if depth > _MAX_DEPTH:
                dropped.append(match.span())
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > _MAX_DEPTH:
                dropped.append(match.span())
    if not dropped:
        return text
    pieces: list[str] = []
    at = 0
    for start, end in dropped:
        pieces.append(text[at:start])
        pieces.append(" ")  # keep words on either side of a dropped tag apart
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


class _Writer:
    """Gathers text into paragraphs and paragraphs into segments."""

    def __init__(self, heading: str | None, page: int | None, limits: Limits) -> None:
        self.heading = heading
        self.page = page
        self.limits = limits
        self.paragraphs: list[str] = []
        self.size = 0
        self.total = 0
        self._line: list[str] = []
        self._verbatim = False  # the open paragraph is preformatted

    def text(self, text: str, *, verbatim: bool = False) -> None:
        """Add inline text to the open paragraph."""
        if verbatim:
            self._verbatim = True
            self._line.append(text)
        else:
            # Source line breaks are just spaces; <br> adds its "\n" through break_line.
            self._line.append(_WHITESPACE.sub(" ", text))

    def break_line(self) -> None:
        """Start a new line inside the open paragraph."""
        self._line.append("\n")

    def mark(self) -> int:
        """A position in the open paragraph, for :meth:`truncate`."""
        return len(self._line)

    def has_text_since(self, mark: int) -> bool:
        """True when words (not just table pipes and spaces) were added after ``mark``."""
        return bool("".join(self._line[mark:]).strip("|- \n"))

    def truncate(self, mark: int) -> None:
        """Forget what the open paragraph gained after ``mark``."""
        del self._line[mark:]

    def end_paragraph(self) -> str:
        """Close the open paragraph; returns its text ("" when it had none)."""
        if not self._line:
            return ""  # the common case: a block boundary right after another
        raw = "".join(self._line)
        self._line.clear()
        if self._verbatim:
            paragraph = raw.strip("\n").rstrip()
            self._verbatim = False
        else:
            lines = (_SPACES.sub(" ", line).strip() for line in raw.split("\n"))
            paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            self.paragraphs.append(paragraph)
            self.size += len(paragraph) + 2
            self.total += len(paragraph)
            if self.total > self.limits.max_text_chars:
                raise LimitExceeded(
                    f"HTML text exceeds {self.limits.max_text_chars:,} characters "
                    "(max_text_chars)"
                )
        return paragraph

    def flush(self) -> Segment | None:
        """The closed paragraphs as one segment, or ``None`` when there are none."""
        self.end_paragraph()
        if not self.paragraphs:
            return None
        segment = Segment("\n\n".join(self.paragraphs), page=self.page, heading=self.heading)
        self.paragraphs = []
        self.size = 0
        return segment


class _Table:
    """An open ``<table>`` and how it is written.

    ``data`` tables become Markdown rows; ``layout`` tables (page scaffolding) read as
    plain blocks; ``inline`` tables sit inside a data cell and are folded into it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows = 0  # rows written so far
        self.cells = 0  # cells opened in the current row
        self.row_mark = 0  # where the current row starts in the open paragraph


class _Walk:
    """The state of one traversal: what the current node is inside of."""

    def __init__(self) -> None:
        self.content = 0  # open <article>/<main> elements
        self.pre = 0  # open <pre> elements
        self.tables: list[_Table] = []  # open tables, innermost last

    @property
    def data_table(self) -> _Table | None:
        """The innermost open table when it is a data table."""
        top = self.tables[-1] if self.tables else None
        return top if top is not None and top.kind == "data" else None

    @property
    def in_cell(self) -> bool:
        """True inside a data table, where a row must stay on one line."""
        return bool(self.tables) and self.tables[-1].kind != "layout"


def _walk(root: LexborNode, writer: _Writer) -> Iterator[Segment]:
    """Visit every node under ``root`` in document order, entering and leaving each."""
    state = _Walk()
    node = root.child
    depth = 1
    while node is not None and depth > 0:
        descend = _enter(node, writer, state)
        if writer.size >= _MAX_SEGMENT_CHARS or node.tag in _HEADINGS:
            yield from _boundary_segments(node, writer, entering=True)
        child = node.child if descend else None
        if child is not None:
            node, depth = child, depth + 1
            continue
        # Leave this node, then every ancestor that has no next sibling.
        while node is not None and depth > 0:
            if descend:
                _leave(node, writer, state)
                if writer.size >= _MAX_SEGMENT_CHARS or node.tag in _HEADINGS:
                    yield from _boundary_segments(node, writer, entering=False)
            sibling = node.next
            if sibling is not None:
                node = sibling
                break
            node, depth, descend = node.parent, depth - 1, True


def _skipped(node: LexborNode, tag: str, state: _Walk) -> bool:
    if tag in _SKIP or (tag in _BOILERPLATE and not state.content):
        return True
    # Hidden content (inline XBRL headers in SEC filings, collapsed templates) is not
    # part of what a reader sees.
    attributes = node.attributes
    if "hidden" in attributes:
        return True
    style = attributes.get("style")
    return style is not None and "display:none" in style.replace(" ", "").lower()


def _enter(node: LexborNode, writer: _Writer, state: _Walk) -> bool:
    """Handle the start of ``node``; false when its subtree is to be skipped."""
    tag = node.tag or ""
    if tag == "-text":
        writer.text(node.text_content or "", verbatim=bool(state.pre))
        return False
    if _skipped(node, tag, state):
        return False
    table = state.data_table
    if tag in _CONTENT:
        state.content += 1
    elif tag == "pre":
        state.pre += 1
    if tag == "table":
        kind = _table_kind(node, state)
        if kind == "inline":
            writer.text(" ")
        else:
            writer.end_paragraph()
        state.tables.append(_Table(kind))
    elif table is not None and tag == "tr":
        table.row_mark = writer.mark()
        table.cells = 0
        if table.rows:
            writer.break_line()
    elif table is not None and tag in _CELLS:
        writer.text("| " if table.cells == 0 else " | ")
        table.cells += 1
    elif tag == "br" or tag in _BLOCKS:
        if state.in_cell:
            writer.text(" ")  # a line break inside a Markdown row would end the row
        elif tag == "br":
            writer.break_line()
        else:
            writer.end_paragraph()
    return True


def _leave(node: LexborNode, writer: _Writer, state: _Walk) -> None:
    tag = node.tag or ""
    table = state.data_table
    if tag in _CONTENT:
        state.content -= 1
    elif tag == "pre":
        state.pre -= 1
    if tag == "table":
        closed = state.tables.pop() if state.tables else None
        if closed is None or closed.kind != "inline":
            writer.end_paragraph()
    elif table is not None and tag == "tr":
        if not writer.has_text_since(table.row_mark):
            writer.truncate(table.row_mark)  # spacer rows carry no text
            return
        writer.text(" |")
        table.rows += 1
        if table.rows == 1:
            # Markdown wants a rule under the header row.
            writer.break_line()
            writer.text("| --- " * max(table.cells, 1) + "|")
    elif tag in _BLOCKS and not state.in_cell:
        writer.end_paragraph()


def _table_kind(table: LexborNode, state: _Walk) -> str:
    if state.in_cell:
        return "inline"
    if table.attributes.get("role") in ("presentation", "none"):
        return "layout"
    # Tables nested this deep inside layout tables are layout too; not probing them keeps
    # the subtree queries below from growing with the square of the nesting.
    if len(state.tables) >= _MAX_PROBED_TABLE_DEPTH:
        return "layout"
    # Tables that hold tables or a single row lay a page out (a box around content, not
    # a grid of values); as Markdown rows they would put whole articles on one line.
    if len(table.css("table")) > 1 or len(table.css("tr")) < 2:  # "table" matches itself
        return "layout"
    return "data"


def _boundary_segments(node: LexborNode, writer: _Writer, *, entering: bool) -> Iterator[Segment]:
    """Segments due at a node boundary: before a heading, after one, or when full."""
    tag = node.tag or ""
    if tag in _HEADINGS:
        if entering:
            if segment := writer.flush():
                yield segment
        else:
            # The heading's own text opens its section, so keyword search still finds it.
            title = writer.paragraphs[-1] if writer.paragraphs else ""
            if title:
                writer.heading = " ".join(title.split())[:_MAX_HEADING_CHARS]
    elif writer.size >= _MAX_SEGMENT_CHARS and (segment := writer.flush()):
        yield segment


EXTRACTORS = [HtmlExtractor()]

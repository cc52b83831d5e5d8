"""JSP pages, tag files and FreeMarker/Velocity templates: code entities in markup.

No JSP grammar exists for tree-sitter on PyPI, and an HTML parser would choke on
``<a href="<%= url %>">``, so a small scanner finds the JSP constructs (regular
expressions over the text, never a parse of the HTML) and everything else stays markup:

- directives (``<%@ page import=... %>``, ``taglib``, ``include``, tag-file ``tag`` /
  ``attribute`` / ``variable``, and the XML ``<jsp:directive.page .../>`` forms): one
  ``header`` entity per file, language ``"jsp"``;
- declarations ``<%! ... %>`` (and ``<jsp:declaration>``): Java class members, parsed by
  :func:`~gristmill.extract.code.code_entities`; each method or field group becomes an
  entity named ``<page>.<member>`` with its lines mapped back onto the JSP file;
- scriptlets ``<% ... %>`` (and ``<jsp:scriptlet>``): Java statements, one ``scriptlet``
  entity each (tiny neighbours grouped), named ``<page>._jspService`` (``doTag`` in a
  tag file): the method Jasper compiles them into;
- JSP comments ``<%-- --%>``: documentation of the entity right below them, else dropped;
- the rest (HTML, custom tags, expressions ``<%= %>``, EL ``${...}`` / ``#{...}``):
  ``markup`` chunks cut near the budget, preferably where an element begins.

``<page>`` is the class name Jasper gives the page (what a stack trace shows), derived
from the file *name* alone: ``order-list.jsp`` -> ``order_002dlist_jsp``. The folders
above are left out because where the web application's root lies is unknown here.

FreeMarker (``.ftl``) and Velocity (``.vm``) templates are markup too; their macros
(``<#macro name>``, ``#macro(name ...)``) become ``macro`` entities and FreeMarker's
``<#function>`` ``function`` entities, named as declared.

A construct left open (``<%!`` with no ``%>``, a macro with no end) never fails the
item: the file from there on is read as markup, and a note is logged.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gristmill.chunking import CODE_TOKENS_PER_PIECE, code_pieces, estimate_code_tokens
from gristmill.errors import Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.code import code_entities, read_source

__all__ = ["EXTRACTORS", "JspExtractor", "TemplateParse", "page_class", "template_segments"]

log = logging.getLogger(__name__)

_LANGUAGES = {".jsp": "jsp", ".jspx": "jsp", ".jspf": "jsp", ".tag": "jsp", ".tagx": "jsp",
              ".ftl": "freemarker", ".vm": "velocity"}
_TAG_FILES = frozenset({".tag", ".tagx"})
@dataclass(frozen=True, slots=True)
class TemplateParse:
    """What :func:`template_segments` found: segments in file order, and notes on what
    could not be read as intended (an unterminated ``<%``, Java that does not parse)."""

    segments: list[Segment]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Piece:
    """A construct found by a scanner: ``start:end`` is all of it, ``body`` its content."""

    kind: str  # comment, directive, declaration, scriptlet, macro, function
    start: int
    end: int
    body: tuple[int, int]
    name: str | None = None


def page_class(path: Path) -> str:
    """The class name Jasper compiles a page or tag file into, from its file name:
    ``index.jsp`` -> ``index_jsp``, ``my-page.jsp`` -> ``my_002dpage_jsp``."""
    name = path.name
    out = [] if name[:1].isidentifier() else ["_"]
    for ch in name:
        if ch == ".":
            out.append("_")
        elif ch.isidentifier() or ch.isdigit() or ch == "_":
            out.append(ch)
        else:
            out.append(f"_{ord(ch):04x}")  # Jasper's mangleChar
    # Jasper also appends "_" to a Java keyword; a name with its suffix never is one.
    return "".join(out)


def template_segments(source: str, language: str, *, page: str = "page",
                      tag_file: bool = False, budget_tokens: int = 200) -> TemplateParse:
    """Cut a template's ``source`` into entity and markup segments, in file order.

    Args:
        source: the file's text, newlines normalised to ``\\n``.
        language: ``"jsp"``, ``"freemarker"`` or ``"velocity"``.
        page: what JSP members are qualified with (see :func:`page_class`).
        tag_file: a JSP tag file (its scriptlets run in ``doTag``).
        budget_tokens: the chunk budget every segment is cut to (a single over-long
            token stays whole).

    Never raises on a broken file: what cannot be read as a construct is markup.
    """
    scan = {"jsp": _scan_jsp, "freemarker": _scan_freemarker, "velocity": _scan_velocity}
    if language not in scan:
        raise ValueError(f"no template scanner for {language!r}: use jsp, freemarker "
                         "or velocity")
    pieces, notes = scan[language](source)
    builder = _Builder(source, language, page, "doTag" if tag_file else "_jspService",
                       budget_tokens)
    segments = builder.build(pieces)
    return TemplateParse(segments, notes + builder.notes)


class JspExtractor:
    """JSP pages and fragments, tag files, FreeMarker and Velocity templates."""

    name = "jsp"
    version = 1
    extensions = frozenset(_LANGUAGES)

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the file's header, declaration members, scriptlets, macros and markup
        in file order, each with its language, kind and line range.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty or binary.
        """
        suffix = path.suffix.lower()
        language = _LANGUAGES.get(suffix)
        if language is None:
            raise Unsupported(f"not a JSP or template file: {path.name!r}")
        parsed = template_segments(read_source(path, limits), language,
                                   page=page_class(path), tag_file=suffix in _TAG_FILES,
                                   budget_tokens=limits.chunk_tokens)
        for note in parsed.notes:
            log.info("%s: %s", path, note)
        yield from parsed.segments


# --- Scanners: source -> pieces (in order, not overlapping) and notes --------------------

_JSP_OPEN = re.compile(r"<%(--|@|!|=)?|<jsp:(directive\.\w+|declaration|scriptlet|expression)"
                       r"\b")
_JSP_KINDS = {"--": "comment", "@": "directive", "!": "declaration", "=": "expression",
              None: "scriptlet"}
_CDATA = re.compile(r"<!\[CDATA\[|\]\]>")
_XML_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&apos;": "'"}


def _line_of(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1


def _scan_jsp(source: str) -> tuple[list[_Piece], list[str]]:
    pieces: list[_Piece] = []
    pos = 0
    while found := _JSP_OPEN.search(source, pos):
        start = found.start()
        if found.group(2) is not None:  # the XML syntax of .jspx / .tagx
            xml = found.group(2)
            if xml.startswith("directive."):
                close = source.find(">", found.end())
                end = close + 1
                body = (found.end(), close)
                kind = "directive"
            else:
                closing = f"</jsp:{xml}>"
                opened = source.find(">", found.end())
                close = source.find(closing, opened) if opened >= 0 else -1
                end = close + len(closing)
                body = (opened + 1, close)
                kind = xml
        else:
            marker = found.group(1)
            closing = "--%>" if marker == "--" else "%>"
            close = source.find(closing, found.end())
            end = close + len(closing)
            body = (found.end(), close)
            kind = _JSP_KINDS[marker]
        if close < 0:
            return pieces, [f"unterminated {found.group(0)} at line {_line_of(source, start)}: "
                            "the rest of the file is read as markup"]
        if kind != "expression":  # expressions stay in the markup, where they are shown
            pieces.append(_Piece(kind, start, end, body))
        pos = end
    return pieces, []


_FTL_OPEN = re.compile(r"([<\[])(#--|#macro\b|#function\b)")
_FTL_NAME = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[\w.$-]+)")


def _scan_freemarker(source: str) -> tuple[list[_Piece], list[str]]:
    # FreeMarker's square-bracket syntax ([#macro x]...[/#macro]) is scanned alike.
    pieces: list[_Piece] = []
    pos = 0
    while found := _FTL_OPEN.search(source, pos):
        start, bracket, what = found.start(), found.group(1), found.group(2)
        shut = ">" if bracket == "<" else "]"
        if what == "#--":
            close = source.find(f"--{shut}", found.end())
            end, kind, name, body = close + 3, "comment", None, (found.end(), close)
        else:
            directive = what[1:]
            named = _FTL_NAME.match(source, found.end())
            name = named.group(1).strip("\"'") if named else None
            pattern = re.compile(rf"{re.escape(bracket)}(/?)#{directive}\b[^{re.escape(shut)}]*"
                                 rf"{re.escape(shut)}")
            close, end, depth = -1, -1, 0
            for tag in pattern.finditer(source, start):
                depth += -1 if tag.group(1) else 1
                if depth == 0:
                    close, end = tag.start(), tag.end()
                    break
            kind, body = directive, (found.end(), close)
        if close < 0:
            return pieces, [f"unterminated {bracket}{what} at line {_line_of(source, start)}: "
                            "the rest of the file is read as markup"]
        pieces.append(_Piece(kind, start, end, body, name))
        pos = end
    return pieces, []


# Velocity: comments, escapes, and the directives that open (#if, #foreach, #macro,
# #define, #@block) or close (#end) a block, in their #{braced} form too.
_VM_TOKEN = re.compile(r"\\#|##[^\n]*|#\*.*?\*#|#\*|"
                       r"#\{?(if|foreach|macro|define|end|@[A-Za-z_][\w-]*)\b\}?", re.S)
_VM_MACRO_NAME = re.compile(r"\s*\(\s*([A-Za-z_][\w-]*)")


def _scan_velocity(source: str) -> tuple[list[_Piece], list[str]]:
    pieces: list[_Piece] = []
    macro: tuple[int, int, str | None] | None = None  # start, body start, name
    depth = 0
    for token in _VM_TOKEN.finditer(source):
        text, word = token.group(0), token.group(1)
        if text == "#*":
            line = _line_of(source, token.start())
            return pieces, [f"unterminated #* at line {line}: the rest of the file is read "
                            "as markup"]
        if text.startswith(("##", "#*")):
            if macro is None:
                pieces.append(_Piece("comment", token.start(), token.end(),
                                     (token.start() + 2, token.end() - 2 * text.startswith("#*"))))
            continue
        if word is None:  # \#: an escaped directive
            continue
        if word == "end":
            depth = max(depth - 1, 0)
            if macro is not None and depth == 0:
                pieces.append(_Piece("macro", macro[0], token.end(), (macro[1], token.start()),
                                     macro[2]))
                macro = None
            continue
        if word == "macro" and macro is None:
            named = _VM_MACRO_NAME.match(source, token.end())
            macro, depth = (token.start(), token.end(), named.group(1) if named else None), 0
        depth += 1
    if macro is not None:
        # Pieces found after the open macro's start were inside it; they are markup now.
        return [p for p in pieces if p.start < macro[0]], [
            f"unterminated #macro at line {_line_of(source, macro[0])}: the rest of the file "
            "is read as markup"]
    return pieces, []


# --- Building segments from pieces -------------------------------------------------------

# Kinds a comment right above (only whitespace between) documents.
_DOCUMENTED = frozenset({"declaration", "scriptlet", "macro", "function"})
# Tiny scriptlets this few lines apart are one entity (`<% if (x) { %> ... <% } %>`).
_NEAR = 3
# Markup is cut where an element begins (not where one closes: </td> ends what precedes).
_ELEMENT_START = re.compile(r"\s*<[^/!]|\s*<!--|\s*<#|\s*#(?:macro|if|foreach|set)\b")


@dataclass(slots=True)
class _Builder:
    """Turns one file's pieces into segments."""

    source: str
    language: str
    page: str
    service: str  # the method scriptlets compile into
    budget: int
    notes: list[str] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._starts = [0, *(i + 1 for i, ch in enumerate(self.source) if ch == "\n")]

    def line(self, offset: int) -> int:
        """The 1-based line of character ``offset``."""
        return bisect.bisect_right(self._starts, offset)

    def build(self, pieces: list[_Piece]) -> list[Segment]:
        segments: list[Segment] = []
        directives: list[_Piece] = []
        scriptlets: list[tuple[_Piece, _Piece | None]] = []
        markup: list[tuple[int, int]] = []  # spans of source that stay markup
        pos = 0
        doc: _Piece | None = None
        for piece in pieces:
            markup.append((pos, piece.start))
            pos = piece.end
            if piece.kind == "comment":
                doc = piece
                continue
            attached = doc if doc is not None and piece.kind in _DOCUMENTED and \
                not self.source[doc.end:piece.start].strip() else None
            doc = None
            if piece.kind == "directive":
                directives.append(piece)
            elif piece.kind == "scriptlet":
                scriptlets.append((piece, attached))
            elif piece.kind == "declaration":
                segments += self._declaration(piece, attached)
            else:
                segments += self._macro(piece, attached)
        markup.append((pos, len(self.source)))
        # Markup is not packed across a declaration or macro (whole blocks of their own,
        # unlike inline scriptlets), so its chunks keep to the page's reading order.
        blocks = [(self.line(p.start), self.line(p.end - 1)) for p in pieces
                  if p.kind in _DOCUMENTED and p.kind != "scriptlet"]
        if directives:
            segments.append(self._header(directives))
        segments += self._scriptlets(scriptlets)
        segments += self._markup(markup, blocks)
        segments.sort(key=lambda s: s.lines or (0, 0))
        return segments

    # Entities -----------------------------------------------------------------------

    def _span_lines(self, start: int, end: int) -> tuple[int, int] | None:
        """The lines of the non-blank text in ``start:end``, or ``None`` when blank."""
        text = self.source[start:end]
        stripped = text.strip()
        if not stripped:
            return None
        first = start + text.index(stripped[0])
        last = start + text.rindex(stripped[-1])
        return self.line(first), self.line(last)

    def _header(self, directives: list[_Piece]) -> Segment:
        text = "\n".join(self.source[d.start:d.end] for d in directives)
        return Segment(text, language="jsp", kind="header", entity=self.page,
                       lines=(self.line(directives[0].start), self.line(directives[-1].end - 1)))

    def _java_body(self, piece: _Piece) -> str:
        body = self.source[piece.body[0]:piece.body[1]]
        if self.source.startswith("<jsp:", piece.start):
            # XML syntax: CDATA markers out (same length keeps columns), entities decoded.
            body = _CDATA.sub(lambda m: " " * len(m.group(0)), body)
            for escaped, plain in _XML_ENTITIES.items():
                body = body.replace(escaped, plain)
        return body

    def _declaration(self, piece: _Piece, doc: _Piece | None) -> list[Segment]:
        body = self._java_body(piece)
        offset = self.line(piece.body[0]) - 1  # fragment line 1 is the line of <%!
        parsed = code_entities(body, "java", budget_tokens=self.budget)
        if parsed.note:
            self.notes.append(f"declaration at line {offset + 1}: {parsed.note}")
        out: list[Segment] = []
        for part in parsed.entities:
            entity = f"{self.page}.{part.entity}" if part.entity else None
            parent = f"{self.page}.{part.parent}" if part.parent else self.page
            text, lines = part.text, (part.lines[0] + offset, part.lines[1] + offset)
            if doc is not None and not out:
                text = f"{self.source[doc.start:doc.end]}\n{text}"
                lines = (self.line(doc.start), lines[1])
            out.append(Segment(text, language="java", kind=part.kind, entity=entity,
                               parent=parent, lines=lines))
        return out

    def _scriptlets(self, found: list[tuple[_Piece, _Piece | None]]) -> list[Segment]:
        """One entity per scriptlet; tiny ones on neighbouring lines go together (a
        ``<% } %>`` alone says nothing), each part within the budget."""
        runs: list[list[tuple[int, str]]] = []  # per entity: (line, text) rows
        last_line, run_tokens = -10, 0
        for piece, doc in found:
            body = self._java_body(piece)
            lines = self._span_lines(piece.body[0], piece.body[1])
            if lines is None:
                continue
            first = self.line(doc.start) if doc is not None else lines[0]
            rows = self._rows(doc, piece, body, lines)
            tokens = sum(_tokens(t) for _, t in rows)
            tiny = tokens <= self.budget // 4
            if runs and tiny and first - last_line <= _NEAR and run_tokens + tokens <= self.budget:
                runs[-1].extend(rows)
                run_tokens += tokens
            else:
                runs.append(rows)
                run_tokens = tokens if tiny else self.budget  # a big one takes no company
            last_line = lines[1]
        out: list[Segment] = []
        for rows in runs:
            for part in _pack(rows, self.budget, cut_before=None):
                out.append(Segment("\n".join(t for _, t in part), language="java",
                                   kind="scriptlet", entity=f"{self.page}.{self.service}",
                                   parent=self.page, lines=(part[0][0], part[-1][0])))
        return out

    def _rows(self, doc: _Piece | None, piece: _Piece, body: str,
              lines: tuple[int, int]) -> list[tuple[int, str]]:
        """The (line, text) rows of a scriptlet: its comment's, then its non-blank
        Java lines (a line shared with markup keeps only the Java)."""
        rows: list[tuple[int, str]] = []
        if doc is not None:
            first = self.line(doc.start)
            for i, text in enumerate(self.source[doc.start:doc.end].split("\n")):
                rows.append((first + i, text))
        first_body_line = self.line(piece.body[0])
        for i, text in enumerate(body.split("\n")):
            line = first_body_line + i
            if lines[0] <= line <= lines[1] and text.strip():
                rows.append((line, text.rstrip()))
        return rows

    def _macro(self, piece: _Piece, doc: _Piece | None) -> list[Segment]:
        """A macro or function, cut into parts that each repeat its first line."""
        start = doc.start if doc is not None else piece.start
        first = self.line(start)
        text = self.source[self._starts[first - 1]:piece.end]
        rows = [(first + i, t) for i, t in enumerate(text.split("\n")) if t.strip()]
        signature = self.source[piece.start:].split("\n", 1)[0]
        out: list[Segment] = []
        for n, part in enumerate(_pack(rows, self.budget - _tokens(signature), cut_before=None)):
            body = "\n".join(t for _, t in part)
            if n:
                body = f"{signature}\n{body}"
            out.append(Segment(body, language=self.language, kind=piece.kind,
                               entity=piece.name, lines=(part[0][0], part[-1][0])))
        return out

    # Markup ---------------------------------------------------------------------------

    def _markup(self, spans: list[tuple[int, int]],
                blocks: list[tuple[int, int]]) -> list[Segment]:
        """What no construct took, as line rows (a line with a construct in it keeps the
        rest of its text), packed into chunks that prefer to end before an element."""
        pieces: dict[int, list[str]] = {}
        for start, end in spans:
            if start >= end:
                continue
            line = self.line(start)
            for i, text in enumerate(self.source[start:end].split("\n")):
                pieces.setdefault(line + i, []).append(text)
        rows: list[tuple[int, str]] = []
        for line in sorted(pieces):
            text = "".join(pieces[line]).rstrip()
            if not text.strip():
                continue
            if _tokens(text) > self.budget:
                rows += [(line, bit) for bit in _split_line(text, self.budget)]
            else:
                rows.append((line, text))
        runs: list[list[tuple[int, str]]] = []
        for row in rows:
            if not runs or any(runs[-1][-1][0] < row[0] and first <= row[0] and
                               last >= runs[-1][-1][0] for first, last in blocks):
                runs.append([])
            runs[-1].append(row)
        return [Segment("\n".join(t for _, t in part), language=self.language, kind="markup",
                        lines=(part[0][0], part[-1][0]))
                for run in runs for part in _pack(run, self.budget, cut_before=_ELEMENT_START)]


def _tokens(text: str) -> int:
    # The chunker's estimate for code and markup (chunking.estimate_code_tokens).
    return estimate_code_tokens(text)


def _pack(rows: list[tuple[int, str]], budget: int,
          cut_before: re.Pattern[str] | None) -> Iterator[list[tuple[int, str]]]:
    """Rows in consecutive groups within ``budget`` (a row alone may exceed it). With
    ``cut_before``, a group that must end ends before the last row matching it in its
    second half, or after a blank-line gap there, when it has one."""
    group: list[tuple[int, str]] = []
    pieces = 0  # of the group's rows (code pieces add up across lines)

    def size(extra: str) -> int:
        return int((pieces + code_pieces(extra)) * CODE_TOKENS_PER_PIECE)

    for row in rows:
        while group and size(row[1]) > budget:
            cut = _best_cut(group, cut_before) if cut_before is not None else len(group)
            yield group[:cut]
            group = group[cut:]
            pieces = sum(code_pieces(t) for _, t in group)
        group.append(row)
        pieces += code_pieces(row[1])
    if group:
        yield group


def _best_cut(group: list[tuple[int, str]], cut_before: re.Pattern[str]) -> int:
    """Where to end ``group``: before the least indented element start in its second
    half (the outermost element: a ``<tr>`` rather than its ``<td>``), the latest of
    those, a blank-line gap counting as unindented; else after all of it."""
    best, best_indent = len(group), None
    for i in range(len(group) - 1, max(len(group) // 2, 1) - 1, -1):
        line, text = group[i]
        if line - group[i - 1][0] > 1:
            indent = 0
        elif cut_before.match(text):
            indent = len(text) - len(text.lstrip())
        else:
            continue
        if best_indent is None or indent < best_indent:
            best, best_indent = i, indent
    return best


_TAG_BOUNDARY = re.compile(r"(?=<[^/])")
_WORD_BOUNDARY = re.compile(r"(?<= )")


def _split_line(text: str, budget: int) -> list[str]:
    """A line over the budget (minified HTML) cut before elements, then after spaces,
    then every ``4 x budget`` characters; joining the bits gives the line back."""
    units: list[str] = []
    for unit in _TAG_BOUNDARY.split(text):
        if _tokens(unit) <= budget:
            units.append(unit)
            continue
        for word in _WORD_BOUNDARY.split(unit):
            units += [word[i:i + budget * 4] for i in range(0, len(word), budget * 4)]
    bits: list[str] = []
    for unit in units:
        if bits and _tokens(bits[-1] + unit) <= budget:
            bits[-1] += unit
        elif unit:
            bits.append(unit)
    return [b for b in bits if b.strip()]


EXTRACTORS = [JspExtractor()]

"""XML and HTML in code repositories: elements as entities with line ranges.

In a git work tree a ``web.xml``, ``pom.xml``, Spring context, tag library descriptor or
HTML page is source, read the way :mod:`gristmill.extract.code` reads Java: parsed with
tree-sitter (the ``xml`` and ``html`` grammars) and cut into element parts, each with its
qualified name, parent and 1-based line range. (Outside a repository the same files are
documents: :mod:`gristmill.extract.data` and :mod:`gristmill.extract.html` read them.)

- An element whose whole text fits the chunk budget is one part. One over it is split:
  its child elements become parts of their own (recursively), and what is left (start
  and end tags, text between the children, comments not attached to a child) is the
  element's own part, as a class's own part holds its declaration and closing brace.
  The start tag is not repeated at the head of every child's part: a child's name
  already says where it is (``web-app/servlet[Hello]``), and a long ``<web-app
  xmlns=... xsi:schemaLocation=...>`` would be most of each small chunk. Only when one
  element's own text is cut in several parts (a long paragraph, cut at line ends) do the
  later parts begin with its first line, as code.py repeats a signature.
- A child element is a part of its own only when it has whole lines to itself, but for
  opening tags before it and closing tags after it (``<html><body>``); inline markup,
  ``<b>`` in a paragraph, stays in the text around it. Small consecutive child
  elements without a name are packed into one part up to the budget (60 ``<li>`` are
  not 60 one-line chunks); a named one (a ``dependency``, ``servlet``, ``bean``...)
  is always an entity of its own.
- Names are element paths from the root with a hint where the element has one:
  ``web-app/servlet[HelloWorldExample]``, ``project/dependencies/dependency[commons-io:
  commons-io]``, ``beans/bean[dataSource]``; in HTML the ``id``: ``html/body/div#main``.
  A hint is an ``id``, ``name`` or ``key`` attribute, else the text of a name-like child
  (``name``, ``<tag>-name``, ``artifactId`` after ``groupId:``, ``id``, another
  ``*-name``). The root is named by its tag alone: its hint (a project's coordinates,
  a web application's display name) would lead every name in the file.
  A pack of anonymous siblings is named by its tags: ``html/body/ul/li``.
- Kinds: ``element``; in HTML also ``style``, and ``script``. A JavaScript ``<script>``
  body is parsed by :func:`~gristmill.extract.code.code_entities`: its functions and
  classes are entities of language ``javascript`` with the file's line numbers, and an
  element holding one is always split so they are.
- The prolog (XML declaration, doctype) and comments above the root belong to it;
  comments right above a child element (no blank line between) belong to that child.
- Markup that does not parse never fails the item: tree-sitter recovers from errors, and
  a file most of whose lines hold errors is cut into line windows with a note.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from gristmill.chunking import CODE_TOKENS_PER_PIECE, code_pieces, estimate_code_tokens
from gristmill.errors import Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.code import CodeEntity, CodeParse, code_entities, line_windows, read_source

__all__ = ["EXTRACTORS", "MARKUP_SUFFIXES", "MarkupExtractor", "markup_entities",
           "markup_language"]

log = logging.getLogger(__name__)

Node = Any  # tree_sitter.Node; kept loose so this module imports without the grammar
MarkupLanguage = Literal["xml", "html"]

#: The suffixes read as markup source inside a repository, and their grammar. Not
#: ``.jspx`` / ``.tagx``: JSP in XML syntax is :mod:`gristmill.extract.jsp`'s.
MARKUP_SUFFIXES: dict[str, MarkupLanguage] = {
    **dict.fromkeys([".xml", ".tld", ".xsd", ".xsl", ".xslt", ".wsdl"], "xml"),
    **dict.fromkeys([".html", ".htm", ".xhtml"], "html"),
}

# A file is cut into line windows when syntax errors cover more than this share of it.
_MAX_ERROR_SHARE = 0.5
# Deeper than this, an element's lines are cut as they come: unclosed <div>s nest one
# level per line, and recursion must not follow them thousands deep.
_MAX_DEPTH = 48
_MAX_HINT_CHARS = 80
# <script type=...> values whose body is JavaScript ("" = no type attribute).
_JS_TYPES = frozenset({"", "module", "text/javascript", "application/javascript",
                       "text/ecmascript", "application/ecmascript", "text/babel", "text/jsx"})
_CLOSING_TAGS = re.compile(rb"\s*(</[^<>]*>\s*)*")
_OPENING_TAGS = re.compile(rb"\s*(<[^/!?<>][^<>]*>\s*)*")
_XML_ESCAPES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}


@dataclass(frozen=True, slots=True)
class _Grammar:
    """The node types of one tree-sitter markup grammar."""

    elements: frozenset[str]
    start_tags: frozenset[str]  # the tags that hold the name and attributes
    end_tags: frozenset[str]
    tag_name: str
    attribute: str
    comment: str


_GRAMMARS: dict[str, _Grammar] = {
    "xml": _Grammar(frozenset({"element"}), frozenset({"STag", "EmptyElemTag"}),
                    frozenset({"ETag"}), "Name", "Attribute", "Comment"),
    "html": _Grammar(frozenset({"element", "script_element", "style_element"}),
                     frozenset({"start_tag", "self_closing_tag"}), frozenset({"end_tag"}),
                     "tag_name", "attribute", "comment"),
}


def markup_language(path: Path) -> MarkupLanguage | None:
    """The markup grammar of ``path`` by its suffix (``"xml"``, ``"html"``), or ``None``."""
    return MARKUP_SUFFIXES.get(path.suffix.lower())


def markup_entities(source: str, language: MarkupLanguage, *,
                    budget_tokens: int = 200) -> CodeParse:
    """Cut XML or HTML ``source`` into element parts of at most ``budget_tokens``
    estimated tokens each (a single longer line stays whole), in file order.

    Never raises on bad markup: a file that does not parse comes back as ``lines``
    windows with a note saying why.
    """
    if language not in _GRAMMARS:
        raise ValueError(f"no markup grammar for {language!r}: use xml or html")
    lines = source.split("\n")
    data = source.encode("utf-8", "surrogatepass")
    root = _parser(language).parse(data).root_node
    share = _error_share(root, language)
    if share > _MAX_ERROR_SHARE:
        return line_windows(lines, budget_tokens,
                            f"{language} markup does not parse ({share:.0%} of its lines "
                            "hold syntax errors): cut into line windows")
    cutter = _Cutter(language, lines, data.split(b"\n"), budget_tokens, root)
    parts = cutter.document(root)
    if parts is None:
        return line_windows(lines, budget_tokens,
                            f"no {language} element found: cut into line windows")
    parts.sort(key=lambda p: p.lines)
    note = f"{language} markup has syntax errors; parts of it may be cut as plain lines" \
        if share else None
    return CodeParse(parts, note)


class MarkupExtractor:
    """XML and HTML files of a code repository as element entities (tree-sitter)."""

    name = "markup"
    version = 1
    #: None by suffix: the worker chooses this extractor for markup inside a git work
    #: tree (``WorkOptions.repositories``); elsewhere the document extractors read it.
    extensions: frozenset[str] = frozenset()

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the file's element parts (and a script's JavaScript entities) in file
        order, with language, kind, qualified name, parent and line range.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty or binary, or not markup.
        """
        language = markup_language(path)
        if language is None:
            raise Unsupported(f"not an XML or HTML file: {path.name!r}")
        parsed = markup_entities(read_source(path, limits), language,
                                 budget_tokens=limits.chunk_tokens)
        if parsed.note:
            log.info("%s: %s", path, parsed.note)
        for part in parsed.entities:
            yield Segment(part.text, language=part.language or language, kind=part.kind,
                          entity=part.entity, parent=part.parent, lines=part.lines)


# --- Parsing -----------------------------------------------------------------------------


@cache
def _parser(language: str) -> Any:
    from tree_sitter_language_pack import get_parser

    return get_parser(language)  # type: ignore[arg-type]


@cache
def _query(language: str, pattern: str) -> Any:
    from tree_sitter import Query, QueryCursor
    from tree_sitter_language_pack import get_language

    return QueryCursor(Query(get_language(language), pattern))  # type: ignore[arg-type]


def _error_share(root: Node, language: str) -> float:
    """The share of the source's lines that hold a syntax error."""
    if not root.has_error:
        return 0.0
    rows = set[int]()
    for node in _query(language, "(ERROR) @error").captures(root).get("error", []):
        rows.update(range(node.start_point.row, node.end_point.row + 1))
    total: int = root.end_point.row - root.start_point.row + 1
    return min(1.0, len(rows) / max(total, 1))


def _end(node: Node) -> tuple[int, int]:
    """Row and column where ``node``'s last token ends (an HTML void element's node
    runs on over the whitespace after it; its last token does not)."""
    while node.child_count:
        node = node.children[-1]
    return int(node.end_point.row), int(node.end_point.column)


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def _unescape(text: str) -> str:
    for escaped, plain in _XML_ESCAPES.items():
        text = text.replace(escaped, plain)
    return text


def _clean(value: str | None) -> str | None:
    """A hint as names show it: one line, spaces collapsed, not too long."""
    if value is None:
        return None
    value = " ".join(_unescape(value).split())[:_MAX_HINT_CHARS]
    return value or None


def _local(name: str) -> str:
    """``beans:bean`` -> ``bean`` (namespace prefixes do not change what a tag means)."""
    return name.rsplit(":", 1)[-1]


# --- Cutting -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """An element to cut, by rows (0-based, inclusive): ``first`` includes the comments
    above it; ``last`` may run past the node over what shares its rows."""

    node: Node
    first: int
    last: int


class _Cutter:
    """Cuts one parsed markup source into parts within the budget."""

    def __init__(self, language: str, lines: list[str], raw: list[bytes], budget: int,
                 root: Node) -> None:
        self.language = language
        self.grammar = _GRAMMARS[language]
        self.lines = lines
        self.raw = raw  # the lines as bytes: tree-sitter's columns count bytes
        self.budget = budget
        # Prefix sums of code pieces per line: any row range's token estimate in O(1),
        # the chunker's estimate for code and markup.
        self._pieces = [0]
        for line in lines:
            self._pieces.append(self._pieces[-1] + code_pieces(line))
        self._holders = self._script_holders(root) if language == "html" else set[int]()

    # Token estimates ----------------------------------------------------------------

    def tokens(self, first: int, last: int) -> int:
        return int((self._pieces[last + 1] - self._pieces[first]) * CODE_TOKENS_PER_PIECE)

    # The document -------------------------------------------------------------------

    def document(self, root: Node) -> list[CodeEntity] | None:
        """Every part of the document, or ``None`` when it holds no element."""
        tops: list[_Item] = []
        for child in root.named_children:
            if child.type not in self.grammar.elements:
                continue
            last = _end(child)[0]
            if tops and child.start_point.row <= tops[-1].last:  # <a/><b/> on one line
                tops[-1].last = max(tops[-1].last, last)
                continue
            tops.append(_Item(child, child.start_point.row, last))
        if not tops:
            return None
        # The prolog, doctype and comments belong to the element below them, anything
        # after the last element to the last: at the top level no line is left out.
        for before, item in zip([None, *tops], tops, strict=False):
            item.first = self._next_text(before.last + 1 if before else 0)
        tops[-1].last = self._previous_text(len(self.lines) - 1)
        parts: list[CodeEntity] = []
        for item in tops:
            name, _ = self.name(item.node, None)
            parts += self.element(item, name, None, 0)
        return parts

    def _next_text(self, row: int) -> int:
        while row < len(self.lines) - 1 and not self.lines[row].strip():
            row += 1
        return row

    def _previous_text(self, row: int) -> int:
        while row > 0 and not self.lines[row].strip():
            row -= 1
        return row

    # Elements -----------------------------------------------------------------------

    def kind(self, node: Node) -> str:
        return {"script_element": "script", "style_element": "style"}.get(node.type, "element")

    def element(self, item: _Item, name: str, parent: str | None,
                depth: int) -> Iterator[CodeEntity]:
        """The parts of one element: whole when it fits, else its own text and its
        children's parts."""
        node, first, last = item.node, item.first, item.last
        kind = self.kind(node)
        signature = self.lines[node.start_point.row]
        body = self._script_body(node) if kind == "script" else None
        if body is not None:
            yield from self._script(item, body, name, parent)
            return
        if self.tokens(first, last) <= self.budget and node.id not in self._holders:
            yield self._part(range(first, last + 1), kind, name, parent)
            return
        children = self._children(node, first, last) if depth < _MAX_DEPTH else []
        taken = {row for child in children for row in range(child.first, child.last + 1)}
        own = [row for row in range(first, last + 1) if row not in taken]
        yield from self._cut(own, kind, name, parent, signature, node.start_point.row)
        yield from self._children_parts(children, name, depth + 1)

    def _children(self, node: Node, first: int, last: int) -> list[_Item]:
        """The child elements that have whole lines to themselves, with the comments
        right above them, in order."""
        floor = self._opening_row(node)  # rows up to here are the start tag's
        items: list[_Item] = []
        comments: list[Node] = []
        for child in self._content(node):
            if child.type == self.grammar.comment:
                comments.append(child)
                continue
            if child.type not in self.grammar.elements:
                # Text between a comment and an element parts them (not the blanks).
                if child.end_byte - child.start_byte > 256 or _text(child).strip():
                    comments = []
                continue
            # The first child may share the parent's first line (<html><body>): then
            # that line is the child's, and the parent's own part repeats it.
            lowest = items[-1].last if items else floor - 1
            attached, comments = self._attached(comments, child, lowest), []
            top = child.start_point.row
            end_row, end_col = _end(child)
            if top <= lowest or end_row > last or not self._owns_lines(child, end_row,
                                                                        end_col):
                continue  # inline: its text stays with what is around it
            start = attached[0].start_point.row if attached else top
            items.append(_Item(child, start, end_row))
        return items

    def _content(self, node: Node) -> Iterator[Node]:
        for child in node.named_children:
            if child.type == "content":  # XML: the children are inside content
                yield from child.named_children
            elif child.type not in self.grammar.start_tags and \
                    child.type not in self.grammar.end_tags:
                yield child

    def _opening_row(self, node: Node) -> int:
        tag = next((c for c in node.children if c.type in self.grammar.start_tags), None)
        return int(_end(tag)[0] if tag is not None else node.start_point.row)

    def _owns_lines(self, node: Node, end_row: int, end_col: int) -> bool:
        """Whether nothing but blanks or opening tags precede ``node`` on its first line
        and nothing but blanks or closing tags follow it on its last."""
        start = node.start_point
        if _OPENING_TAGS.fullmatch(self.raw[start.row][:start.column]) is None:
            return False
        return _CLOSING_TAGS.fullmatch(self.raw[end_row][end_col:]) is not None

    def _attached(self, comments: list[Node], node: Node, lowest: int) -> list[Node]:
        """The comments directly above ``node`` (no blank line between), on lines of
        their own below row ``lowest``."""
        attached: list[Node] = []
        row = node.start_point.row
        for comment in reversed(comments):
            end_row, end_col = _end(comment)
            if end_row < row - 1 or comment.start_point.row <= lowest or \
                    not self._owns_lines(comment, end_row, end_col):
                break
            attached.insert(0, comment)
            row = comment.start_point.row
        return attached

    def _children_parts(self, children: list[_Item], parent: str,
                        depth: int) -> Iterator[CodeEntity]:
        """Each child's parts; consecutive small anonymous ones packed together."""
        pack: list[_Item] = []

        def flush() -> Iterator[CodeEntity]:
            if len(pack) == 1:
                name, _ = self.name(pack[0].node, parent)
                yield from self.element(pack[0], name, parent, depth)
            elif pack:
                tags = list(dict.fromkeys(self.tag(item.node) for item in pack))
                yield self._part(range(pack[0].first, pack[-1].last + 1), "element",
                                 f"{parent}/{','.join(tags)}", parent)
            pack.clear()

        for item in children:
            name, named = self.name(item.node, parent)
            small = not named and self.kind(item.node) == "element" and \
                item.node.id not in self._holders and \
                self.tokens(item.first, item.last) <= self.budget
            if small and pack and self._packs_with(pack, item):
                pack.append(item)
                continue
            yield from flush()
            if small:
                pack.append(item)
            else:
                yield from self.element(item, name, parent, depth)
        yield from flush()

    def _packs_with(self, pack: list[_Item], item: _Item) -> bool:
        """Whether ``item`` joins ``pack``: within the budget, and no text of the
        parent's between them (the pack's lines must be its own)."""
        between = self.lines[pack[-1].last + 1:item.first]
        return not any(line.strip() for line in between) and \
            self.tokens(pack[0].first, item.last) <= self.budget

    # Scripts ------------------------------------------------------------------------

    def _script_body(self, node: Node) -> Node | None:
        """The raw text of a ``<script>`` holding JavaScript, else ``None``."""
        raw = next((c for c in node.named_children if c.type == "raw_text"), None)
        if raw is None or not _text(raw).strip():
            return None
        kind = (self.attributes(node).get("type") or "").strip().lower()
        return raw if kind in _JS_TYPES else None

    def _script_holders(self, root: Node) -> set[int]:
        """The ids of the elements that hold a JavaScript ``<script>`` (and of the
        scripts): these are split whatever their size, so the functions are entities."""
        holders = set[int]()
        for script in _query("html", "(script_element) @script").captures(root).get(
                "script", []):
            if self._script_body(script) is None:
                continue
            node = script
            while node is not None and node.id not in holders:
                holders.add(node.id)
                node = node.parent
        return holders

    def _script(self, item: _Item, body: Node, name: str,
                parent: str | None) -> Iterator[CodeEntity]:
        """A script's JavaScript entities on the file's lines; the tags (and comments
        above) as the ``script`` element's own part."""
        parsed = code_entities(_text(body), "javascript", budget_tokens=self.budget)
        if parsed.entities and all(p.kind == "lines" for p in parsed.entities):
            # Not JavaScript after all (a template, minified junk): plain script text.
            yield from self._cut(list(range(item.first, item.last + 1)), "script", name,
                                 parent, self.lines[item.node.start_point.row],
                                 item.node.start_point.row)
            return
        offset = body.start_point.row  # line 1 of the body is the <script> tag's line
        taken = set[int]()
        for part in parsed.entities:
            first, last = part.lines[0] + offset, part.lines[1] + offset
            taken.update(range(first - 1, last))
            yield CodeEntity(part.text, part.kind, part.entity, part.parent or name,
                             (first, last), language="javascript")
        own = [row for row in range(item.first, item.last + 1) if row not in taken]
        yield from self._cut(own, "script", name, parent,
                             self.lines[item.node.start_point.row], item.node.start_point.row)

    # Names --------------------------------------------------------------------------

    def tag(self, node: Node) -> str:
        tag = next((c for c in node.children if c.type in self.grammar.start_tags), None)
        name = next((c for c in tag.named_children if c.type == self.grammar.tag_name),
                    None) if tag is not None else None
        text = _text(name) or node.type
        return text.lower() if self.language == "html" else text

    def attributes(self, node: Node) -> dict[str, str]:
        """The start tag's attributes, names as written (HTML's lower-cased)."""
        tag = next((c for c in node.children if c.type in self.grammar.start_tags), None)
        found: dict[str, str] = {}
        for attribute in tag.named_children if tag is not None else []:
            if attribute.type != self.grammar.attribute or not attribute.named_children:
                continue
            key = _text(attribute.named_children[0])
            value = attribute.named_children[-1] if len(attribute.named_children) > 1 \
                else None
            if value is not None and value.type == "quoted_attribute_value":
                value = value.named_children[0] if value.named_children else None
            text = _text(value)
            if value is not None and value.type == "AttValue":
                text = text[1:-1]  # XML keeps the quotes in the value's node
            found.setdefault(key.lower() if self.language == "html" else key, text)
        return found

    def name(self, node: Node, parent: str | None) -> tuple[str, bool]:
        """The element's qualified name under ``parent``, and whether it has a hint."""
        tag = self.tag(node)
        hint = self._hint(node, top=parent is None)
        if hint is None:
            label = tag
        elif self.language == "html":
            label = f"{tag}#{hint}"
        else:
            label = f"{tag}[{hint}]"
        return (f"{parent}/{label}" if parent else label), hint is not None

    def _hint(self, node: Node, *, top: bool) -> str | None:
        attributes = self.attributes(node)
        if self.language == "html":
            return _clean(attributes.get("id"))
        if top:
            return None
        for key in ("id", "name", "key"):
            for attribute, value in attributes.items():
                if _local(attribute) == key and not attribute.startswith("xmlns"):
                    return _clean(value)
        texts = self._child_texts(node)
        own = f"{_local(self.tag(node))}-name"
        for key in ("name", own):
            if key in texts:
                return _clean(texts[key])
        if "artifactId" in texts:
            group = texts.get("groupId")
            return _clean(f"{group}:{texts['artifactId']}" if group else texts["artifactId"])
        if "id" in texts:
            return _clean(texts["id"])
        names = [key for key in texts if key.endswith("-name") and key != "display-name"]
        names.append("display-name")
        return next((_clean(texts[key]) for key in names if key in texts), None)

    def _child_texts(self, node: Node) -> dict[str, str]:
        """Local tag -> text of the child elements that hold one line of text only."""
        texts: dict[str, str] = {}
        for child in self._content(node):
            if child.type != "element":
                continue
            content = next((c for c in child.named_children if c.type == "content"), None)
            if content is None or content.end_byte - content.start_byte > _MAX_HINT_CHARS * 4:
                continue  # not a name: not read (a big child's text would be copied)
            text = _text(content)
            if text and "<" not in text and "\n" not in text.strip():
                texts.setdefault(_local(self.tag(child)), text.strip())
        return texts

    # Parts --------------------------------------------------------------------------

    def _part(self, rows: Iterable[int], kind: str, name: str | None,
              parent: str | None, signature: str = "") -> CodeEntity:
        kept = list(rows)
        while len(kept) > 1 and not self.lines[kept[-1]].strip():
            kept.pop()
        while len(kept) > 1 and not self.lines[kept[0]].strip():
            kept.pop(0)
        text = "\n".join(self.lines[row] for row in kept)
        if signature:
            text = f"{signature}\n{text}"
        return CodeEntity(text, kind, name, parent, (kept[0] + 1, kept[-1] + 1))

    def _cut(self, rows: list[int], kind: str, name: str, parent: str | None,
             signature: str, signature_row: int) -> Iterator[CodeEntity]:
        """The non-blank ``rows`` in parts within the budget, cut at line ends; a part
        that begins below the start tag's first line repeats that line (``signature``)
        at its head."""
        rows = [row for row in rows if self.lines[row].strip()]
        sig_tokens = estimate_code_tokens(signature) + 1 if signature.strip() else 0
        group: list[int] = []
        pieces = 0  # of the group's rows: pieces add up across lines, tokens do not

        def emit() -> CodeEntity:
            head = signature if group[0] > signature_row and sig_tokens else ""
            return self._part(group, kind, name, parent, head)

        for row in rows:
            more = self._pieces[row + 1] - self._pieces[row]
            headed = (group[0] if group else row) > signature_row
            size = int((pieces + more) * CODE_TOKENS_PER_PIECE) + (sig_tokens if headed else 0)
            if group and size > self.budget:
                yield emit()
                group, pieces = [], 0
            group.append(row)
            pieces += more
        if group:
            yield emit()


EXTRACTORS = [MarkupExtractor()]

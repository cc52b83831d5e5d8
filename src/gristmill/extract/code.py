"""Source code as entities: classes, methods, functions... parsed with tree-sitter.

Each file is parsed once with the grammar of its language (``tree-sitter-language-pack``)
and cut into *entities*, one segment per entity part, in file order:

- a ``header`` (Java package + imports, Python/Go/JS imports...);
- types (``class``, ``interface``, ``enum``, ``record``, ``annotation``, ``struct``...):
  their own segment holds the declaration line(s) and whatever is not inside a member
  (enum constants, initialisers, the closing brace), so members are never repeated;
- callables (``constructor``, ``method``, ``function``), named with parameter types where
  the language overloads (Java, C#): ``org.acme.Billing.apply(Invoice, BigDecimal)``;
- consecutive field declarations as one ``field`` group named ``Class.a,b,c``;
- code outside every entity (scripts, top-level statements) as ``module`` segments.

Comments directly above an entity (Javadoc, ``//`` lines, docstring-style blocks) belong
to it. An entity over the chunk budget is cut at statement boundaries (descending into a
nested block when one statement is still too big, at line ends as a last resort) into
parts that each repeat the signature line; the parts cover every line. A file that does
not parse, or whose language has no grammar, becomes ``lines`` windows and a note.

Which node types are entities is a table per language
(:data:`gristmill.extract.code_languages.SPECS`); what needs code (Go receivers, C
declarators, SQL object names) is a few small name and kind functions beside the tables.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from gristmill.chunking import CODE_TOKENS_PER_PIECE, code_pieces, estimate_code_tokens
from gristmill.errors import LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.code_languages import (
    C_TYPES,
    CALLABLE_KINDS,
    SPECS,
    SUFFIXES,
    TYPE_KINDS,
    Spec,
)
from gristmill.extract.code_languages import node_text as _text
from gristmill.extract.text import detect_encoding, looks_like_text

__all__ = ["EXTRACTORS", "CodeEntity", "CodeExtractor", "CodeParse", "code_entities",
           "language_for", "line_windows", "read_source"]

log = logging.getLogger(__name__)

Node = Any  # tree_sitter.Node; kept loose so this module imports without the grammar

# A file is "unparsed" when ERROR nodes cover more than this share of its top level.
_MAX_ERROR_SHARE = 0.5
_FRAGMENT_CLASS = "__GristmillFragment__"


@dataclass(frozen=True, slots=True)
class CodeEntity:
    """One part of a code entity (see :class:`~gristmill.extract.base.Segment`).

    Attributes:
        text: the source text of the part (a split part begins with the signature).
        kind: ``header``, ``class``, ``method``, ``field``, ``module``, ``lines``...
        entity: the qualified name (``None`` for ``module`` and ``lines`` parts).
        parent: the qualified name of the enclosing entity, ``None`` at top level.
        lines: 1-based first and last line of the part's own text.
        language: the part's language when it is not the parsed source's own (a
            ``<script>`` in HTML is ``javascript``); ``None``: the source's.
    """

    text: str
    kind: str
    entity: str | None
    parent: str | None
    lines: tuple[int, int]
    language: str | None = None


@dataclass(frozen=True, slots=True)
class CodeParse:
    """What :func:`code_entities` found: the parts in file order, and a note when the
    source could not be parsed (then every part is a ``lines`` window)."""

    entities: list[CodeEntity]
    note: str | None = None


def language_for(path: Path) -> str | None:
    """The tree-sitter language of ``path`` by its suffix (``"java"``), or ``None``."""
    return SUFFIXES.get(path.suffix.lower())


@cache
def _parser(language: str) -> Any:
    # get_parser builds a Parser and loads the grammar: once per language per process.
    from tree_sitter_language_pack import get_parser

    return get_parser(language)  # type: ignore[arg-type]


# --- Finding entities ------------------------------------------------------------------


@dataclass(slots=True)
class _Found:
    """An entity found in the tree, before its text is cut."""

    kind: str
    name: str | None
    parent: str | None
    node: Node  # the declaration (inside any wrapper)
    first: int  # 0-based rows, comments above included
    last: int
    children: list[_Found] = field(default_factory=list)


class _Walker:
    """Finds the entities of one parsed source and cuts them to the budget."""

    def __init__(self, spec: Spec, lines: list[str], budget: int, offset: int) -> None:
        self.spec = spec
        self.lines = lines
        self.budget = budget
        self.offset = offset  # rows before the user's source (a fragment's wrapper)
        # Prefix sums of code pieces per line: any row range's token estimate in O(1),
        # the chunker's estimate for code (gristmill.chunking.estimate_code_tokens).
        self._pieces = [0]
        for line in lines:
            self._pieces.append(self._pieces[-1] + code_pieces(line))

    # Token estimates ----------------------------------------------------------------

    def tokens(self, first: int, last: int) -> int:
        return int(self.pieces(first, last) * CODE_TOKENS_PER_PIECE)

    def pieces(self, first: int, last: int) -> int:
        return self._pieces[last + 1] - self._pieces[first]

    # Scanning -----------------------------------------------------------------------

    def scan(self, container: Node, parent: _Found | None, prefix: str | None,
             out: list[_Found]) -> str | None:
        """Append the entities among ``container``'s children to ``out``; return the
        scope prefix in force after them (a Java package names what follows it)."""
        spec = self.spec
        comments: list[Node] = []
        group: list[Node] = []  # consecutive fields or header nodes
        group_kind = ""

        def close_group() -> None:
            nonlocal group, group_kind
            if group:
                out.append(self._group(group_kind, group, parent, prefix))
                group, group_kind = [], ""

        for child in container.named_children:
            ctype = child.type
            if ctype in spec.comments:
                comments.append(child)
                continue
            if ctype in spec.bodies:  # a transparent list of members
                close_group()
                comments = []
                prefix = self.scan(child, parent, prefix, out)
                continue
            if ctype in spec.scope and child.child_by_field_name("body") is not None:
                # namespace Foo { ... } (PHP, C#): names only its body's members.
                close_group()
                self.scan(child.child_by_field_name("body"), parent,
                          self._scope_name(child) or prefix, out)
                comments = []
                continue
            kind = "header" if ctype in spec.header else (
                spec.field_kind if ctype in spec.fields else "")
            if kind:
                if group and (kind != group_kind or (
                        kind != "header" and self._new_group(group[-1], child, comments))):
                    close_group()
                if not group:
                    group = [*self._attached(comments, child)]
                    group_kind = kind
                else:
                    group.extend(comments)
                group.append(child)
                comments = []
                if ctype in spec.scope:
                    prefix = self._scope_name(child) or prefix
                continue
            close_group()
            if ctype in spec.scope:
                prefix = self._scope_name(child) or prefix
                comments = []
                continue
            found = self._entity(child, parent, prefix, comments)
            comments = []
            if found is not None:
                out.append(found)
        close_group()
        return prefix

    def _new_group(self, before: Node, node: Node, comments: list[Node]) -> bool:
        """Whether ``node`` (with its comments) begins a new field group after ``before``:
        a blank line between them, or (properties) a different section key."""
        start = comments[0] if comments else node
        if start.start_point.row > _last_row(before) + 1:
            return True
        key = self.spec.field_key
        return key is not None and key(before) != key(node)

    def _attached(self, comments: list[Node], node: Node) -> list[Node]:
        """The comments directly above ``node``, with no blank line between."""
        attached: list[Node] = []
        row = node.start_point.row
        for comment in reversed(comments):
            if comment.end_point.row < row - 1 or (comment.end_point.row == row and \
                    comment.start_point.row == row and comment.start_byte > node.start_byte):
                break
            attached.insert(0, comment)
            row = comment.start_point.row
        return attached

    def _scope_name(self, node: Node) -> str | None:
        name = node.child_by_field_name("name")
        if name is None:
            for child in node.named_children:
                if child.type not in self.spec.comments and child.type not in (
                        "annotation", "marker_annotation", "modifiers"):
                    name = child
                    break
        return _text(name) or None

    def _group(self, kind: str, nodes: list[Node], parent: _Found | None,
               prefix: str | None) -> _Found:
        decls = [n for n in nodes if n.type not in self.spec.comments]
        name: str | None = None
        if kind == "header":
            name = prefix
        else:
            joined = self.spec.group_name([n for d in decls for n in self._declared(d)])
            owner = parent.name if parent is not None else prefix
            sep = self.spec.member_seps.get(decls[0].type, self.spec.sep) \
                if parent is not None else self.spec.sep
            name = f"{owner}{sep}{joined}" if owner and joined else joined
        return _Found(kind, name, parent.name if parent else None, decls[-1],
                      nodes[0].start_point.row, _last_row(nodes[-1]))

    def _declared(self, node: Node) -> list[str]:
        if (namer := self.spec.names.get(node.type)) is not None:
            return [name] if (name := namer(node)) else []
        names = [_text(d.child_by_field_name("name")) for d in node.named_children
                 if d.type == "variable_declarator"]
        if not names:
            for child in node.named_children:  # C# (variable_declaration), TS, PHP
                if child.type == "variable_declaration":
                    names += self._declared(child)
                elif child.type in ("property_identifier", "identifier",
                                    "simple_identifier",
                                    "property_element", "variable_declarator"):
                    names.append(_text(child.child_by_field_name("name") or child))
            if not names and (name := node.child_by_field_name("name")) is not None:
                names.append(_text(name))
        return [n for n in names if n]

    def _entity(self, node: Node, parent: _Found | None, prefix: str | None,
                comments: list[Node]) -> _Found | None:
        spec = self.spec
        decl = self._unwrap(node)
        if decl is None or (kind := self._kind(decl, parent)) is None:
            return None
        namer = spec.names.get(decl.type)
        name = namer(decl) if namer is not None else _text(decl.child_by_field_name("name"))
        if decl.type in ("lexical_declaration", "variable_declaration") and not name:
            return None  # const x = 1: plain code, not a function
        owner = parent.name if parent is not None else prefix
        up = parent.name if parent else None
        if name and spec.sep in name and kind in CALLABLE_KINDS:
            # Go's func (c *Cart) Add, C++'s Cart::add defined outside its class, Kotlin's
            # fun Cart.total(): a method of the type it names, declared beside it.
            kind = "method" if kind == "function" else kind
            up = f"{owner}{spec.sep}{name.rsplit(spec.sep, 1)[0]}" if owner \
                else name.rsplit(spec.sep, 1)[0]
        if spec.params and kind in CALLABLE_KINDS:
            name = f"{name}({', '.join(self._parameters(decl, parent))})"
        if name and owner:
            sep = spec.member_seps.get(decl.type, spec.sep) if parent else spec.sep
            name = f"{owner}{sep}{name}"
        attached = self._attached(comments, node)
        first = (attached[0] if attached else node).start_point.row
        found = _Found(kind, name or None, up, decl, first, _last_row(node))
        body = decl.child_by_field_name("body")
        if body is None:
            body = next((c for c in decl.named_children if c.type in spec.bodies), None)
        if body is not None and body.type in spec.bodies and kind not in CALLABLE_KINDS \
                and spec.nested:
            self.scan(body, found, None, found.children)
            # A member on the entity's first line (class A { void f() {} }) is already in
            # the entity's own part: a part of its own would repeat that line.
            found.children = [c for c in found.children if c.first > node.start_point.row]
        return found

    def _unwrap(self, node: Node) -> Node | None:
        """The declaration inside ``node``'s wrappers (decorators, export, template),
        ``None`` when a wrapper holds no entity."""
        spec = self.spec
        decl = node
        while decl.type in spec.wrappers:
            inner = decl.child_by_field_name("definition") or decl.child_by_field_name(
                "declaration")
            if inner is None:
                inner = next((c for c in decl.named_children
                              if (c.type in spec.entities or c.type in spec.kinds
                                  or c.type in spec.wrappers) and _defines(c)), None)
            if inner is None:  # a C prototype is a declaration that is its own entity
                return decl if decl.type in spec.kinds else None
            decl = inner
        return decl

    def _kind(self, decl: Node, parent: _Found | None) -> str | None:
        kind_of = self.spec.kinds.get(decl.type)
        kind = kind_of(decl) if kind_of is not None else self.spec.entities.get(decl.type)
        if kind is None or not _defines(decl):
            return None
        if kind == "function" and parent is not None and parent.kind in TYPE_KINDS:
            return "method"
        return kind

    def _parameters(self, decl: Node, parent: _Found | None) -> list[str]:
        params = decl.child_by_field_name("parameters")
        if decl.type == "compact_constructor_declaration" and parent is not None:
            params = parent.node.child_by_field_name("parameters")  # the record's
        types: list[str] = []
        if params is None:
            return types
        for param in params.named_children:
            if param.type == "spread_parameter":  # Java varargs: String... names
                kind = next((c for c in param.named_children
                             if c.type not in ("modifiers", "variable_declarator")), None)
                types.append(f"{_text(kind)}...")
            elif param.type in ("formal_parameter", "parameter"):
                kind = param.child_by_field_name("type")
                types.append(_text(kind) or _text(param))
        return types

    # Cutting ------------------------------------------------------------------------

    def parts(self, found: _Found, language: str) -> Iterator[CodeEntity]:
        """The entity's own text in parts within the budget, then its members'."""
        if found.children:
            own = self._own_rows(found)
            signature = self._signature(found)
            runs = [(row, row) for row in own]
            yield from self._pack(found, runs, signature)
            for child in found.children:
                yield from self.parts(child, language)
            return
        if self.tokens(found.first, found.last) <= self.budget:
            text = "\n".join(self.lines[found.first:found.last + 1])
            yield self._make(found, text, found.first, found.last)
            return
        # A group (imports, fields, a properties section) has no line that stands for all
        # of it: its parts are plain runs of its lines.
        grouped = found.kind in ("header", self.spec.field_kind)
        signature = "" if grouped else self._signature(found)
        body = found.node.child_by_field_name("body") or (
            found.node.named_children[-1] if found.node.named_children else None)
        sig_end = found.node.start_point.row
        if body is not None:
            opener = body.children[0] if body.children else None
            sig_end = body.start_point.row
            if opener is not None and opener.is_named and sig_end > found.node.start_point.row:
                sig_end -= 1  # Python: the block begins at its first statement
        sig_end = min(max(sig_end, found.first), found.last)
        units = [(found.first, sig_end)]
        if body is not None and sig_end < found.last:
            units += self._units(body, sig_end + 1, found.last)
        elif sig_end < found.last:
            units += [(row, row) for row in range(sig_end + 1, found.last + 1)]
        yield from self._pack(found, units, signature)

    def _own_rows(self, found: _Found) -> list[int]:
        # Members never share the declaration's row (see _entity); a member on the last
        # row (Python's last method, Java's `void f() {} }`) takes that row with it.
        taken = set[int]()
        for child in found.children:
            taken.update(range(child.first, child.last + 1))
        rows = [row for row in range(found.first, found.last + 1) if row not in taken]
        while len(rows) > 1 and not self.lines[rows[-1]].strip():
            rows.pop()  # the blank line before the first member is not the class's
        return rows

    def _signature(self, found: _Found) -> str:
        row = found.node.start_point.row
        line: str = self.lines[row]
        # Java modifiers may begin with annotations on lines of their own: the signature
        # is the line that names the entity.
        name = found.node.child_by_field_name("name")
        if name is not None and name.start_point.row != row:
            line = self.lines[name.start_point.row]
        return line

    def _units(self, node: Node, lo: int, hi: int) -> list[tuple[int, int]]:
        """Rows ``lo..hi`` (inside ``node``) cut where ``node``'s children begin, each
        unit within the budget where the tree allows it."""
        cuts = sorted({c.start_point.row for c in node.children if lo < c.start_point.row <= hi})
        if not cuts:
            inner = max((c for c in node.children
                         if c.end_point.row >= lo and c.start_point.row <= hi),
                        key=lambda c: c.end_point.row - c.start_point.row, default=None)
            if inner is None or inner.end_point.row - inner.start_point.row < 1:
                return [(row, row) for row in range(lo, hi + 1)]
            return self._units(inner, lo, hi)
        bounds = [lo, *cuts, hi + 1]
        units: list[tuple[int, int]] = []
        for a, b in itertools.pairwise(bounds):
            if a == b:
                continue
            if b - 1 == a or self.tokens(a, b - 1) <= self.budget:
                units.append((a, b - 1))
                continue
            inner = max((c for c in node.children if c.start_point.row == a
                         or c.start_point.row < a <= c.end_point.row),
                        key=lambda c: c.end_point.row - c.start_point.row, default=None)
            if inner is None:
                units += [(row, row) for row in range(a, b)]
            else:
                units += self._units(inner, a, b - 1)
        return units

    def _pack(self, found: _Found, units: list[tuple[int, int]],
              signature: str) -> Iterator[CodeEntity]:
        """Greedily join consecutive units into parts within the budget; every part but
        the first begins with ``signature``."""
        sig_tokens = estimate_code_tokens(signature) + 1
        # A unit still over the budget (a long comment, one huge statement with no
        # block inside) is taken line by line: the last resort.
        fitted: list[tuple[int, int]] = []
        for a, b in units:
            if self.tokens(a, b) + sig_tokens > self.budget:
                fitted += [(row, row) for row in range(a, b + 1)]
            else:
                fitted.append((a, b))
        start: int | None = None
        rows: list[tuple[int, int]] = []

        def size(extra: tuple[int, int] | None) -> int:
            every = rows + ([extra] if extra else [])
            # Pieces summed first, then scaled: the estimate of the joined text, as the
            # chunker makes it (rounding each unit down undercounts).
            total = int(sum(self.pieces(a, b) for a, b in every) * CODE_TOKENS_PER_PIECE)
            return total + (sig_tokens if start != found.first else 0)

        for unit in fitted:
            if rows and size(unit) > self.budget:
                yield self._rows_part(found, rows, signature)
                rows = []
            if not rows:
                start = unit[0]
            rows.append(unit)
        if rows:
            yield self._rows_part(found, rows, signature)

    def _rows_part(self, found: _Found, runs: list[tuple[int, int]],
                   signature: str) -> CodeEntity:
        first, last = runs[0][0], runs[-1][1]
        text = "\n".join(self.lines[row] for a, b in runs for row in range(a, b + 1))
        if first != found.first and signature.strip() and not text.startswith(signature):
            text = f"{signature}\n{text}"
        return self._make(found, text, first, last)

    def _make(self, found: _Found, text: str, first: int, last: int) -> CodeEntity:
        return CodeEntity(text, found.kind, found.name, found.parent,
                          (first + 1 - self.offset, last + 1 - self.offset))

    def module_parts(self, rows: list[int]) -> Iterator[CodeEntity]:
        """Rows outside every entity, as ``code`` parts (top-level statements): runs of
        non-blank lines, cut into windows within the budget. Not ``module``, which is
        the kind of a Ruby module or a Rust ``mod``."""
        run: list[int] = []
        for row in [*rows, -2]:
            if run and row != run[-1] + 1:
                while run and not self.lines[run[-1]].strip():
                    run.pop()
                while run and not self.lines[run[0]].strip():
                    run.pop(0)
                if run:
                    found = _Found("code", None, None, None, run[0], run[-1])
                    yield from self._pack(found, [(r, r) for r in run], "")
                run = []
            if row >= 0:
                run.append(row)


# --- Public API ------------------------------------------------------------------------


def code_entities(source: str, language: str, *, budget_tokens: int = 200) -> CodeParse:
    """Cut ``source`` (in tree-sitter ``language``) into entity parts of at most
    ``budget_tokens`` estimated tokens each (a single line longer than that stays whole).

    Java may be a fragment of class members without a class around it (a JSP
    declaration): its methods and fields are named as top-level members.
    Never raises on bad source: a file that does not parse comes back as ``lines``
    windows with a note saying why.
    """
    lines = source.split("\n")
    spec = SPECS.get(language)
    if spec is None:
        return line_windows(lines, budget_tokens, f"no grammar for language {language!r}")
    tree = _parser(language).parse(source.encode("utf-8", "surrogatepass"))
    root, offset = tree.root_node, 0
    share = _error_share(root, language)
    if language == "java" and share:
        # Class members alone (a constructor, an initialiser) do not parse as a file:
        # try them inside a class, whose rows are then taken off again.
        wrapped = f"class {_FRAGMENT_CLASS} {{\n{source}\n}}"
        other = _parser(language).parse(wrapped.encode("utf-8", "surrogatepass")).root_node
        body = other.named_children[0].child_by_field_name("body") \
            if other.named_children else None
        other_share = _error_share(other, language)
        if body is not None and other_share < share / 2:
            root, offset, share = body, 1, other_share
            lines = [f"class {_FRAGMENT_CLASS} {{", *lines, "}"]
    if share > _MAX_ERROR_SHARE:
        return line_windows(source.split("\n"), budget_tokens,
                        f"{language} source does not parse ({share:.0%} of its lines hold "
                        "syntax errors): cut into line windows")
    walker = _Walker(spec, lines, budget_tokens, offset)
    found: list[_Found] = []
    walker.scan(root, None, None, found)
    taken = set[int]()
    for item in found:
        taken.update(range(item.first, item.last + 1))
    loose = [row for row in range(offset, len(lines) - offset) if row not in taken]
    parts = list(walker.module_parts(loose))
    for item in found:
        parts.extend(walker.parts(item, language))
    parts.sort(key=lambda p: p.lines)
    note = f"{language} source has syntax errors; parts of it may be cut as plain code" \
        if share else None
    return CodeParse(parts, note)


def _defines(node: Node) -> bool:
    """False for a C/C++ type named without its body (``struct foo *p``: a use)."""
    return node.type not in C_TYPES or node.child_by_field_name("body") is not None


def _last_row(node: Node) -> int:
    """The node's last row, not the next one when it ends with its line's newline."""
    end = node.end_point
    return int(end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row)


def _error_share(root: Node, language: str) -> float:
    """The share of the source's lines that hold a syntax error (0.0 when none does:
    only a file with errors pays for the query)."""
    if not root.has_error:
        return 0.0
    if root.type == "ERROR":
        return 1.0
    opaque = SPECS[language].opaque
    rows = set[int]()
    for node in _error_query(language).captures(root).get("error", []):
        if opaque and _inside(node, opaque):
            continue
        rows.update(range(node.start_point.row, node.end_point.row + 1))
    total: int = root.end_point.row - root.start_point.row + 1
    return min(1.0, len(rows) / max(total, 1))


def _inside(node: Node, types: frozenset[str]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type in types:
            return True
        parent = parent.parent
    return False


@cache
def _error_query(language: str) -> Any:
    from tree_sitter import Query, QueryCursor
    from tree_sitter_language_pack import get_language

    return QueryCursor(Query(get_language(language), "(ERROR) @error"))  # type: ignore[arg-type]


def line_windows(lines: list[str], budget: int, note: str) -> CodeParse:
    """``lines`` as ``lines`` parts (runs of non-blank lines cut to ``budget``) with
    ``note``: what a source that cannot be parsed becomes."""
    walker = _Walker(Spec(entities={}), lines, budget, 0)
    parts = [CodeEntity(part.text, "lines", None, None, part.lines)
             for part in walker.module_parts(list(range(len(lines))))]
    return CodeParse(parts, note)


class CodeExtractor:
    """Source files as code entities, one segment per entity part (tree-sitter)."""

    name = "code"
    version = 2  # 2: top-level statements are kind "code"; minified files skipped
    extensions = frozenset(SUFFIXES)

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the file's entity parts in file order, with language, kind, qualified
        name, parent and line range.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty, binary, or minified (lines of hundreds of
                characters on average).
        """
        language = language_for(path)
        if language is None:
            raise Unsupported(f"no code grammar for {path.suffix or path.name!r}")
        source = read_source(path, limits)
        lines = source.count("\n") + 1
        if len(source) > _MINIFIED_MIN_CHARS and len(source) / lines > _MINIFIED_LINE_CHARS:
            # A bundle or a generated table: an entity of megabytes, no names to search.
            raise Unsupported(f"looks minified or generated ({lines:,} lines averaging "
                              f"{len(source) // lines:,} characters): not read as source")
        parsed = code_entities(source, language, budget_tokens=limits.chunk_tokens)
        if parsed.note and path.suffix.lower() == ".h":
            # .h is C and C++ alike: a header that C cannot parse is read as C++.
            other = code_entities(source, "cpp", budget_tokens=limits.chunk_tokens)
            if other.note is None:
                language, parsed = "cpp", other
        if parsed.note:
            log.info("%s: %s", path, parsed.note)
        for part in parsed.entities:
            yield Segment(part.text, language=language, kind=part.kind, entity=part.entity,
                          parent=part.parent, lines=part.lines)


def read_source(path: Path, limits: Limits) -> str:
    """A source or template file's text, decoded, with ``\n`` line ends (what line
    numbers count).

    Raises:
        Unsupported: empty, or binary content.
        LimitExceeded: more text than ``limits.max_text_chars``.
    """
    data = path.read_bytes()
    if len(data) // 4 > limits.max_text_chars:
        raise LimitExceeded(f"source file of {len(data):,} bytes exceeds "
                            f"{limits.max_text_chars:,} characters (max_text_chars)")
    if not data.strip():
        raise Unsupported("empty file")
    encoding, bom = detect_encoding(data[:1024 * 1024])
    # Control bytes alone do not make a source file binary (fuzz tests embed them in
    # literals): valid UTF-8 is source; UTF-16/32 are named by the detector.
    wide = encoding.replace("_", "-").lower().startswith(("utf-16", "utf-32"))
    if not bom and not wide and not looks_like_text(data[:8192]) and not _utf8(data):
        raise Unsupported("binary content, not source code")
    try:
        text = data[bom:].decode(encoding, errors="replace")
    except LookupError:
        text = data[bom:].decode("utf-8", errors="replace")
    if len(text) > limits.max_text_chars:
        raise LimitExceeded(f"source file of {len(text):,} characters exceeds "
                            f"{limits.max_text_chars:,} (max_text_chars)")
    # One line convention for line numbers and tree-sitter alike.
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Hand-written code averages 30-60 characters a line; a minified bundle, thousands.
_MINIFIED_LINE_CHARS = 300
_MINIFIED_MIN_CHARS = 4096


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


EXTRACTORS = [CodeExtractor()]

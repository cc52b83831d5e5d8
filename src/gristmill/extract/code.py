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

Which node types are entities is a table per language (:data:`_SPECS`); what needs code
(Go receivers, C declarators, JS arrow functions) is a few small name functions.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from gristmill.errors import LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.text import detect_encoding, looks_like_text

__all__ = ["EXTRACTORS", "CodeEntity", "CodeExtractor", "CodeParse", "code_entities",
           "language_for"]

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
    """

    text: str
    kind: str
    entity: str | None
    parent: str | None
    lines: tuple[int, int]


@dataclass(frozen=True, slots=True)
class CodeParse:
    """What :func:`code_entities` found: the parts in file order, and a note when the
    source could not be parsed (then every part is a ``lines`` window)."""

    entities: list[CodeEntity]
    note: str | None = None


# --- Per-language tables ----------------------------------------------------------------

NameFn = Callable[[Node], "str | None"]


@dataclass(frozen=True)
class _Spec:
    """How to find entities in one grammar's tree.

    Attributes:
        entities: node type -> kind, for nodes that are entities.
        bodies: node types whose children are scanned for members (class bodies, and
            transparent lists such as Java's enum_body_declarations).
        wrappers: node types around an entity that belong to it (decorators, export).
        fields: node types grouped, when consecutive, into one ``field`` entity.
        header: node types gathered, when consecutive, into one ``header`` entity.
        scope: node types that name the rest of the file (Java's package).
        comments: comment node types, attached to the entity just below.
        sep: between a parent's name and a member's.
        params: whether callables are named with their parameter types (overloading).
        nested: whether entities hold member entities (YAML: top-level keys only).
        names: node type -> a function giving the entity's name (default: field "name").
    """

    entities: dict[str, str]
    bodies: frozenset[str] = frozenset()
    wrappers: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()
    header: frozenset[str] = frozenset()
    scope: frozenset[str] = frozenset()
    comments: frozenset[str] = frozenset({"comment"})
    sep: str = "."
    params: bool = False
    names: dict[str, NameFn] = field(default_factory=dict)
    nested: bool = True


def _text(node: Node | None) -> str:
    return "" if node is None else " ".join(node.text.decode("utf-8", "replace").split())


def _field_text(name: str) -> NameFn:
    return lambda node: _text(node.child_by_field_name(name)) or None


def _first_of(*types: str) -> NameFn:
    def find(node: Node) -> str | None:
        for child in node.named_children:
            if child.type in types:
                return _text(child)
        return None
    return find


def _go_type_kind(node: Node) -> str:
    spec = next((c for c in node.named_children if c.type == "type_spec"), None)
    shape = spec.child_by_field_name("type") if spec is not None else None
    return {"struct_type": "struct", "interface_type": "interface"}.get(
        shape.type if shape is not None else "", "type")


def _go_type_name(node: Node) -> str | None:
    spec = next((c for c in node.named_children if c.type in ("type_spec", "type_alias")),
                None)
    return _text(spec.child_by_field_name("name")) if spec is not None else None


def _go_method_name(node: Node) -> str | None:
    # func (s *Server) Handle(...) -> Server.Handle: the receiver's type names the parent.
    receiver = node.child_by_field_name("receiver")
    kind = _text(receiver).strip("()").split()[-1].lstrip("*") if receiver else ""
    kind = kind.split("[", 1)[0]  # generic receivers: Stack[T]
    name = _text(node.child_by_field_name("name"))
    return f"{kind}.{name}" if kind else name


def _c_declarator_name(node: Node) -> str | None:
    # int *f(void) / Foo::bar(int): the name is the innermost declarator's.
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type not in (
            "identifier", "field_identifier", "qualified_identifier", "destructor_name",
            "operator_name", "type_identifier"):
        decl = decl.child_by_field_name("declarator")
    return _text(decl) or None


def _js_variable_function(node: Node) -> str | None:
    # const f = () => ...; let g = function () {}: named by the declarator.
    for decl in node.named_children:
        if decl.type == "variable_declarator":
            value = decl.child_by_field_name("value")
            if value is not None and value.type in _JS_FUNCTION_VALUES:
                return _text(decl.child_by_field_name("name"))
    return None


_C_TYPES = frozenset({"class_specifier", "struct_specifier", "union_specifier",
                      "enum_specifier"})
_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function",
                                 "generator_function"})


def _rust_impl_name(node: Node) -> str | None:
    return _text(node.child_by_field_name("type")) or None


def _ruby_name(node: Node) -> str | None:
    name = node.child_by_field_name("name")
    if node.type == "singleton_method":
        return f"self.{_text(name)}"
    return _text(name) or None


_SQL_NAME = re.compile(
    r"^\s*(create|alter|drop)\s+(?:or\s+replace\s+)?(?:temporary\s+|temp\s+|unique\s+)?"
    r"(table|view|index|function|procedure|trigger|sequence|schema|type|database)\s+"
    r"(?:if\s+(?:not\s+)?exists\s+)?([\w.\"`\[\]]+)", re.IGNORECASE)


def _sql_name(node: Node) -> str | None:
    text = node.text.decode("utf-8", "replace")
    if found := _SQL_NAME.match(text):
        verb, what, name = found.groups()
        return f"{verb.upper()} {what.upper()} {name}"
    words = text.split(None, 1)
    return words[0].upper() if words else None


_JAVA = _Spec(
    entities={"class_declaration": "class", "interface_declaration": "interface",
              "enum_declaration": "enum", "record_declaration": "record",
              "annotation_type_declaration": "annotation",
              "constructor_declaration": "constructor",
              "compact_constructor_declaration": "constructor",
              "method_declaration": "method"},
    bodies=frozenset({"class_body", "interface_body", "enum_body", "enum_body_declarations",
                      "annotation_type_body"}),
    # A fragment of class members (a JSP declaration) parses with fields as locals.
    fields=frozenset({"field_declaration", "constant_declaration",
                      "local_variable_declaration"}),
    header=frozenset({"package_declaration", "import_declaration"}),
    scope=frozenset({"package_declaration"}),
    comments=frozenset({"line_comment", "block_comment"}),
    params=True,
)

_PYTHON = _Spec(
    entities={"class_definition": "class", "function_definition": "function"},
    bodies=frozenset({"block"}),
    wrappers=frozenset({"decorated_definition"}),
    header=frozenset({"import_statement", "import_from_statement",
                      "future_import_statement"}),
)

_JS_ENTITIES = {"class_declaration": "class", "abstract_class_declaration": "class",
                "class": "class", "function_declaration": "function",
                "generator_function_declaration": "function",
                "method_definition": "method", "lexical_declaration": "function",
                "variable_declaration": "function", "interface_declaration": "interface",
                "enum_declaration": "enum", "internal_module": "namespace",
                "module": "namespace", "abstract_method_signature": "method",
                "type_alias_declaration": "type"}
_JS = _Spec(
    entities=_JS_ENTITIES,
    bodies=frozenset({"class_body", "statement_block", "interface_body", "enum_body"}),
    wrappers=frozenset({"export_statement", "expression_statement"}),
    fields=frozenset({"public_field_definition", "field_definition", "property_signature"}),
    header=frozenset({"import_statement"}),
    names={"lexical_declaration": _js_variable_function,
           "variable_declaration": _js_variable_function},
)

_GO = _Spec(
    entities={"function_declaration": "function", "method_declaration": "method",
              "type_declaration": "type"},
    header=frozenset({"package_clause", "import_declaration"}),
    scope=frozenset({"package_clause"}),
    names={"type_declaration": _go_type_name, "method_declaration": _go_method_name},
)

_CSHARP = _Spec(
    entities={"namespace_declaration": "namespace", "class_declaration": "class",
              "interface_declaration": "interface", "struct_declaration": "struct",
              "enum_declaration": "enum", "record_declaration": "record",
              "method_declaration": "method", "constructor_declaration": "constructor",
              "property_declaration": "property"},
    bodies=frozenset({"declaration_list"}),
    fields=frozenset({"field_declaration"}),
    header=frozenset({"using_directive"}),
    scope=frozenset({"file_scoped_namespace_declaration"}),
    params=True,
)

_C_FAMILY = _Spec(
    entities={"function_definition": "function", "struct_specifier": "struct",
              "union_specifier": "union", "enum_specifier": "enum",
              "class_specifier": "class", "namespace_definition": "namespace"},
    bodies=frozenset({"field_declaration_list", "declaration_list"}),
    wrappers=frozenset({"template_declaration", "type_definition", "declaration"}),
    header=frozenset({"preproc_include"}),
    sep="::",
    names={"function_definition": _c_declarator_name},
)

_KOTLIN = _Spec(
    entities={"class_declaration": "class", "object_declaration": "object",
              "function_declaration": "function", "companion_object": "object"},
    bodies=frozenset({"class_body", "enum_class_body"}),
    fields=frozenset({"property_declaration"}),
    header=frozenset({"package_header", "import_list", "import_header"}),
    comments=frozenset({"comment", "line_comment", "multiline_comment", "block_comment"}),
    names={"class_declaration": _first_of("type_identifier", "simple_identifier",
                                          "identifier"),
           "object_declaration": _first_of("type_identifier", "simple_identifier",
                                           "identifier"),
           "function_declaration": _first_of("simple_identifier", "identifier"),
           "companion_object": lambda node: "Companion"},
)

_RUBY = _Spec(
    entities={"module": "module", "class": "class", "method": "method",
              "singleton_method": "method"},
    bodies=frozenset({"body_statement"}),
    sep="::",
    names={"method": _ruby_name, "singleton_method": _ruby_name},
)

_PHP = _Spec(
    entities={"class_declaration": "class", "interface_declaration": "interface",
              "trait_declaration": "trait", "enum_declaration": "enum",
              "function_definition": "function", "method_declaration": "method"},
    bodies=frozenset({"declaration_list"}),
    fields=frozenset({"property_declaration", "const_declaration"}),
    header=frozenset({"namespace_use_declaration", "php_tag"}),
    scope=frozenset({"namespace_definition"}),
    sep="\\",
)

_RUST = _Spec(
    entities={"function_item": "function", "struct_item": "struct", "enum_item": "enum",
              "trait_item": "trait", "impl_item": "impl", "mod_item": "module",
              "union_item": "union", "type_item": "type", "macro_definition": "macro",
              "function_signature_item": "function"},
    bodies=frozenset({"declaration_list"}),
    header=frozenset({"use_declaration", "extern_crate_declaration"}),
    comments=frozenset({"line_comment", "block_comment"}),
    sep="::",
    names={"impl_item": _rust_impl_name},
)

_SQL = _Spec(entities={"statement": "statement"}, names={"statement": _sql_name},
             comments=frozenset({"comment", "marginalia"}))

_SHELL = _Spec(entities={"function_definition": "function"})

_YAML = _Spec(
    entities={"block_mapping_pair": "key"},
    bodies=frozenset({"document", "block_node", "block_mapping"}),
    names={"block_mapping_pair": _field_text("key")},
    nested=False,
)

_PROPERTIES = _Spec(entities={"property": "key"}, names={"property": _first_of("key")})

_SPECS: dict[str, _Spec] = {
    "java": _JAVA, "python": _PYTHON, "javascript": _JS, "typescript": _JS, "tsx": _JS,
    "go": _GO, "csharp": _CSHARP, "c": _C_FAMILY, "cpp": _C_FAMILY, "kotlin": _KOTLIN,
    "ruby": _RUBY, "php": _PHP, "rust": _RUST, "sql": _SQL, "bash": _SHELL, "yaml": _YAML,
    "properties": _PROPERTIES,
}

_LANGUAGES: dict[str, str] = {
    ".java": "java", ".py": "python", ".pyi": "python",
    **dict.fromkeys([".js", ".jsx", ".mjs", ".cjs"], "javascript"),
    ".ts": "typescript", ".tsx": "tsx", ".go": "go", ".cs": "csharp",
    ".c": "c", ".h": "c",
    **dict.fromkeys([".cc", ".cpp", ".cxx", ".hpp", ".hh"], "cpp"),
    ".kt": "kotlin", ".kts": "kotlin", ".rb": "ruby", ".php": "php", ".rs": "rust",
    ".sql": "sql", ".sh": "bash", ".bash": "bash", ".properties": "properties",
    ".yaml": "yaml", ".yml": "yaml",
}

# Kinds whose members are methods (a Python/JS function inside a class is a method).
_TYPE_KINDS = frozenset({"class", "interface", "enum", "record", "struct", "trait", "impl",
                         "object", "annotation"})
_CALLABLE_KINDS = frozenset({"method", "constructor", "function"})


def language_for(path: Path) -> str | None:
    """The tree-sitter language of ``path`` by its suffix (``"java"``), or ``None``."""
    return _LANGUAGES.get(path.suffix.lower())


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

    def __init__(self, spec: _Spec, lines: list[str], budget: int, offset: int) -> None:
        self.spec = spec
        self.lines = lines
        self.budget = budget
        self.offset = offset  # rows before the user's source (a fragment's wrapper)
        # Prefix sums of words and characters per line: any row range's token estimate
        # in O(1), the same max(1.3 x words, chars / 4) the chunker uses.
        self._words = [0]
        self._chars = [0]
        for line in lines:
            self._words.append(self._words[-1] + len(line.split()))
            self._chars.append(self._chars[-1] + len(line) + 1)

    # Token estimates ----------------------------------------------------------------

    def tokens(self, first: int, last: int) -> int:
        words = self._words[last + 1] - self._words[first]
        chars = self._chars[last + 1] - self._chars[first] - 1
        return max(int(words * 1.3), chars // 4)

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
            kind = "header" if ctype in spec.header else (
                "field" if ctype in spec.fields else "")
            if kind:
                if group and (kind != group_kind or (
                        kind == "field" and self._gap(group[-1], child, comments))):
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
                body = child.child_by_field_name("body")
                if body is not None:  # namespace Foo { ... } in PHP: scoped members
                    self.scan(body, parent, prefix, out)
                comments = []
                continue
            found = self._entity(child, parent, prefix, comments)
            comments = []
            if found is not None:
                out.append(found)
        close_group()
        return prefix

    def _gap(self, before: Node, node: Node, comments: list[Node]) -> bool:
        """Whether a blank line separates ``node`` (with its comments) from ``before``."""
        start = comments[0] if comments else node
        return bool(start.start_point.row > before.end_point.row + 1)

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
        if kind == "field":
            names = [n for d in decls for n in self._declared(d)]
            owner = parent.name if parent is not None else prefix
            joined = ",".join(names) or None
            name = f"{owner}{self.spec.sep}{joined}" if owner and joined else joined
        elif kind == "header":
            name = prefix
        return _Found(kind, name, parent.name if parent else None, decls[-1],
                      nodes[0].start_point.row, _last_row(nodes[-1]))

    def _declared(self, node: Node) -> list[str]:
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
        decl = node
        while decl.type in spec.wrappers:
            inner = decl.child_by_field_name("definition") or decl.child_by_field_name(
                "declaration")
            if inner is None:
                inner = next((c for c in decl.named_children
                              if c.type in spec.entities or c.type in spec.wrappers), None)
            if inner is None:
                return None
            decl = inner
        kind = spec.entities.get(decl.type)
        if kind is None:
            return None
        namer = spec.names.get(decl.type)
        name = namer(decl) if namer is not None else _text(decl.child_by_field_name("name"))
        if decl.type in ("lexical_declaration", "variable_declaration") and not name:
            return None  # const x = 1: plain code, not a function
        if decl.type in _C_TYPES and decl.child_by_field_name("body") is None:
            return None  # struct foo *p: a use, not a definition
        if kind == "function" and parent is not None and parent.kind in _TYPE_KINDS:
            kind = "method"
        if decl.type == "type_declaration" and spec is _GO:
            kind = _go_type_kind(decl)
        if spec.params and kind in _CALLABLE_KINDS:
            name = f"{name}({', '.join(self._parameters(decl, parent))})"
        owner = parent.name if parent is not None else prefix
        if name and owner:
            name = f"{owner}{spec.sep}{name}"
        attached = self._attached(comments, node)
        first = (attached[0] if attached else node).start_point.row
        up = parent.name if parent else None
        if spec is _GO and kind == "method" and name and "." in name:
            up = name.rsplit(".", 1)[0]  # the receiver's type, declared beside it
        found = _Found(kind, name or None, up, decl, first, _last_row(node))
        body = decl.child_by_field_name("body")
        if body is None:
            body = next((c for c in decl.named_children if c.type in spec.bodies), None)
        if body is not None and body.type in spec.bodies and kind not in _CALLABLE_KINDS \
                and spec.nested:
            self.scan(body, found, None, found.children)
        return found

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
        signature = self._signature(found)
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
        taken = set[int]()
        keep = {found.node.start_point.row, found.last}
        for child in found.children:
            taken.update(range(child.first, child.last + 1))
        return [row for row in range(found.first, found.last + 1)
                if row not in taken or row in keep]

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
        sig_tokens = max(int(len(signature.split()) * 1.3), (len(signature) + 1) // 4) + 1
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
            words = sum(self._words[b + 1] - self._words[a] for a, b in every)
            chars = sum(self._chars[b + 1] - self._chars[a] for a, b in every)
            total = max(int(words * 1.3), chars // 4)
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
        """Rows outside every entity, as ``module`` parts: contiguous runs of non-blank
        code, cut into windows within the budget."""
        run: list[int] = []
        for row in [*rows, -2]:
            if run and row != run[-1] + 1:
                while run and not self.lines[run[-1]].strip():
                    run.pop()
                while run and not self.lines[run[0]].strip():
                    run.pop(0)
                if run:
                    found = _Found("module", None, None, None, run[0], run[-1])
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
    spec = _SPECS.get(language)
    if spec is None:
        return _windows(lines, budget_tokens, f"no grammar for language {language!r}")
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
        return _windows(source.split("\n"), budget_tokens,
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
    rows = set[int]()
    for node in _error_query(language).captures(root).get("error", []):
        rows.update(range(node.start_point.row, node.end_point.row + 1))
    total: int = root.end_point.row - root.start_point.row + 1
    return min(1.0, len(rows) / max(total, 1))


@cache
def _error_query(language: str) -> Any:
    from tree_sitter import Query, QueryCursor
    from tree_sitter_language_pack import get_language

    return QueryCursor(Query(get_language(language), "(ERROR) @error"))  # type: ignore[arg-type]


def _windows(lines: list[str], budget: int, note: str) -> CodeParse:
    walker = _Walker(_Spec(entities={}), lines, budget, 0)
    parts = [CodeEntity(part.text, "lines", None, None, part.lines)
             for part in walker.module_parts(list(range(len(lines))))]
    return CodeParse(parts, note)


class CodeExtractor:
    """Source files as code entities, one segment per entity part (tree-sitter)."""

    name = "code"
    version = 1
    extensions = frozenset(_LANGUAGES)

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the file's entity parts in file order, with language, kind, qualified
        name, parent and line range.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty or binary.
        """
        language = language_for(path)
        if language is None:
            raise Unsupported(f"no code grammar for {path.suffix or path.name!r}")
        source = _read_source(path, limits)
        parsed = code_entities(source, language, budget_tokens=limits.chunk_tokens)
        if parsed.note:
            log.info("%s: %s", path, parsed.note)
        for part in parsed.entities:
            yield Segment(part.text, language=language, kind=part.kind, entity=part.entity,
                          parent=part.parent, lines=part.lines)


def _read_source(path: Path, limits: Limits) -> str:
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


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


EXTRACTORS = [CodeExtractor()]

"""Which tree-sitter nodes are code entities, one table per language.

:mod:`gristmill.extract.code` walks any grammar's tree the same way; what differs between
languages is data: which node types are entities and of what kind, which hold members,
which are comments, imports or field declarations, and how a member's name is joined to
its owner's. What cannot be a table (Go receivers, C declarators, SQL object names) is a
small name or kind function here.

Naming conventions follow each language's own documentation: ``org.acme.Billing.apply``
(Java), ``acme::Invoice::apply`` (C++, Rust), ``Shop::Cart#add`` and ``Shop::Cart.empty``
(Ruby instance and class methods), ``Acme\\Shop\\Cart::add`` (PHP). Properties files are
grouped into sections: a run of keys with no blank line between them and the same first
dotted segment (``db.url``, ``db.user``) is one ``key`` entity named by the keys' longest
common dotted prefix (``db``), as YAML's top-level key ``db:`` would be.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CALLABLE_KINDS", "SPECS", "SUFFIXES", "TYPE_KINDS", "Spec", "node_text"]

Node = Any  # tree_sitter.Node; kept loose so this module imports without the grammar
NameFn = Callable[[Node], "str | None"]


def _joined(names: list[str]) -> str | None:
    return ",".join(names) or None


@dataclass(frozen=True)
class Spec:
    """How to find entities in one grammar's tree.

    Attributes:
        entities: node type -> kind, for nodes that are entities.
        kinds: node type -> a function giving the kind, or ``None`` when this node is not
            an entity after all (a C declaration that is not a prototype); such a node
            need not be in ``entities``.
        bodies: node types whose children are scanned for members (class bodies, and
            transparent lists such as Java's enum_body_declarations or C's ``#ifdef``).
        wrappers: node types around an entity that belong to it (decorators, export).
        fields: node types grouped, when consecutive, into one ``field_kind`` entity.
        field_kind: the kind of such a group (``field``; ``key`` for properties).
        field_key: when set, a field whose key differs from the one before starts a new
            group (properties: the first dotted segment).
        group_name: the name of a field group from its members' names.
        header: node types gathered, when consecutive, into one ``header`` entity.
        scope: node types that name the rest of the file (Java's package); one with a
            body (PHP's ``namespace X { }``) names only its body's members.
        comments: comment node types, attached to the entity just below.
        sep: between a parent's name and a member's.
        member_seps: node type -> the separator before this member's name where the
            language's convention differs from ``sep`` (Ruby ``#``, PHP ``::``).
        params: whether callables are named with their parameter types (overloading).
        nested: whether entities hold member entities (YAML: top-level keys only).
        opaque: node types holding code of another language (an SQL function's
            PL/pgSQL body): syntax errors inside them do not make the file unparsed.
        names: node type -> a function giving the entity's name (default: field "name").
            A callable's name holding ``sep`` (Go's ``Cart.Add``, C++'s ``Foo::bar``)
            makes it a method of the type it names.
    """

    entities: dict[str, str]
    kinds: dict[str, Callable[[Node], str | None]] = field(default_factory=dict)
    bodies: frozenset[str] = frozenset()
    wrappers: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()
    field_kind: str = "field"
    field_key: NameFn | None = None
    group_name: Callable[[list[str]], str | None] = _joined
    header: frozenset[str] = frozenset()
    scope: frozenset[str] = frozenset()
    comments: frozenset[str] = frozenset({"comment"})
    sep: str = "."
    member_seps: dict[str, str] = field(default_factory=dict)
    params: bool = False
    names: dict[str, NameFn] = field(default_factory=dict)
    nested: bool = True
    opaque: frozenset[str] = frozenset()


# Kinds whose members are methods (a Python/JS function inside a class is a method).
TYPE_KINDS = frozenset({"class", "interface", "enum", "record", "struct", "trait", "impl",
                        "object", "annotation"})
CALLABLE_KINDS = frozenset({"method", "constructor", "function"})


def node_text(node: Node | None) -> str:
    """The node's source text with its whitespace runs collapsed to single spaces."""
    return "" if node is None else " ".join(node.text.decode("utf-8", "replace").split())


def _field_text(name: str) -> NameFn:
    return lambda node: node_text(node.child_by_field_name(name)) or None


def _first_of(*types: str) -> NameFn:
    def find(node: Node) -> str | None:
        for child in node.named_children:
            if child.type in types:
                return node_text(child)
        return None
    return find


# --- Go ---------------------------------------------------------------------------------


def _go_type_kind(node: Node) -> str:
    spec = next((c for c in node.named_children if c.type == "type_spec"), None)
    shape = spec.child_by_field_name("type") if spec is not None else None
    return {"struct_type": "struct", "interface_type": "interface"}.get(
        shape.type if shape is not None else "", "type")


def _go_type_name(node: Node) -> str | None:
    spec = next((c for c in node.named_children if c.type in ("type_spec", "type_alias")),
                None)
    return node_text(spec.child_by_field_name("name")) if spec is not None else None


def _go_method_name(node: Node) -> str | None:
    # func (s *Server) Handle(...) -> Server.Handle: the receiver's type names the parent.
    receiver = node.child_by_field_name("receiver")
    kind = node_text(receiver).strip("()").split()[-1].lstrip("*") if receiver else ""
    kind = kind.split("[", 1)[0]  # generic receivers: Stack[T]
    name = node_text(node.child_by_field_name("name"))
    return f"{kind}.{name}" if kind else name


# --- C and C++ --------------------------------------------------------------------------

_C_NAMES = frozenset({"identifier", "field_identifier", "qualified_identifier",
                      "destructor_name", "operator_name", "type_identifier"})
C_TYPES = frozenset({"class_specifier", "struct_specifier", "union_specifier",
                     "enum_specifier"})


def _c_declarator_name(node: Node) -> str | None:
    # int *f(void) / Foo::bar(int) / typedef int (*handler_t)(int): the innermost
    # declarator's name.
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type not in _C_NAMES:
        decl = decl.child_by_field_name("declarator") or next(
            (c for c in decl.named_children if c.type != "parameter_list"), None)
    return node_text(decl) or None


def _c_prototype_kind(node: Node) -> str | None:
    # int *make(void); / double apply(double) const; in a class: a callable declared
    # without a body is an entity; int x; is not.
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type in ("pointer_declarator", "reference_declarator"):
        decl = decl.child_by_field_name("declarator") or next(
            iter(decl.named_children[-1:]), None)
    if decl is None or decl.type != "function_declarator":
        return None
    # int (*on_done)(int); is a pointer to a function: a variable, not a prototype.
    inner = decl.child_by_field_name("declarator")
    return None if inner is not None and inner.type == "parenthesized_declarator" \
        else "function"


def _c_typedef_kind(node: Node) -> str:
    # typedef struct cart {...} cart_t: a struct named cart_t; typedef int id_t: a typedef.
    inner = next((c for c in node.named_children
                  if c.type in C_TYPES and c.child_by_field_name("body") is not None), None)
    return {"class_specifier": "class", "struct_specifier": "struct",
            "union_specifier": "union", "enum_specifier": "enum"}.get(
        inner.type if inner is not None else "", "typedef")


# --- Others -----------------------------------------------------------------------------


def _js_variable_function(node: Node) -> str | None:
    # const f = () => ...; let g = function () {}: named by the declarator.
    for decl in node.named_children:
        if decl.type == "variable_declarator":
            value = decl.child_by_field_name("value")
            if value is not None and value.type in _JS_FUNCTION_VALUES:
                return node_text(decl.child_by_field_name("name"))
    return None


_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function",
                                 "generator_function"})


def _kotlin_class_kind(node: Node) -> str:
    # interface I, enum class E, data class D and class C are all class_declaration.
    if any(child.type == "interface" for child in node.children):
        return "interface"
    if any(child.type == "enum_class_body" for child in node.named_children):
        return "enum"
    return "class"


def _kotlin_function_name(node: Node) -> str | None:
    # fun Cart.total(): an extension function, named and parented by its receiver type.
    name = _first_of("simple_identifier", "identifier")(node)
    receiver = next((c for c in node.named_children if c.type == "receiver_type"), None)
    if receiver is None or name is None:
        return name
    return f"{node_text(receiver).split('<', 1)[0].rstrip('?')}.{name}"


def _rust_impl_name(node: Node) -> str | None:
    # impl<T> Stack<T> / impl fmt::Display for Cart: methods are Stack::push, Cart::fmt.
    return node_text(node.child_by_field_name("type")).split("<", 1)[0] or None


def _ruby_method_name(node: Node) -> str | None:
    return node_text(node.child_by_field_name("name")) or None


_SQL_OBJECT = re.compile(
    r"^\s*create\s+(?:or\s+replace\s+)?(?:(?:temporary|temp|unique|materialized|global|"
    r"local|unlogged|recursive)\s+)*"
    r"(table|view|index|function|procedure|trigger|sequence|schema|type|database)\s+"
    r"(?:concurrently\s+)?(?:if\s+not\s+exists\s+)?([\w.\"`\[\]]+)", re.IGNORECASE)


def _sql_kind(node: Node) -> str | None:
    # CREATE TABLE/VIEW/... statements are entities of that kind; INSERT, GRANT... are
    # plain code (module parts).
    found = _SQL_OBJECT.match(_sql_statement_text(node))
    return found.group(1).lower() if found else None


def _sql_name(node: Node) -> str | None:
    found = _SQL_OBJECT.match(_sql_statement_text(node))
    return found.group(2).replace('"', "").replace("`", "") if found else None


def _sql_statement_text(node: Node) -> str:
    return str(node.text[:400].decode("utf-8", "replace"))


def _property_key(node: Node) -> str | None:
    return _first_of("key")(node)


def _property_section(node: Node) -> str | None:
    key = _property_key(node)
    return key.split(".", 1)[0] if key else None


def _common_prefix(keys: list[str]) -> str | None:
    """``db.url, db.user`` -> ``db``: the longest common run of dotted segments."""
    if not keys:
        return None
    common = keys[0].split(".")
    for key in keys[1:]:
        parts = key.split(".")
        size = 0
        while size < min(len(common), len(parts)) and common[size] == parts[size]:
            size += 1
        common = common[:size]
    return ".".join(common) or ",".join(keys)


# --- The tables -------------------------------------------------------------------------

_JAVA = Spec(
    entities={"class_declaration": "class", "interface_declaration": "interface",
              "enum_declaration": "enum", "record_declaration": "record",
              "annotation_type_declaration": "annotation",
              "constructor_declaration": "constructor",
              "compact_constructor_declaration": "constructor",
              "method_declaration": "method",
              "annotation_type_element_declaration": "method"},
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

_PYTHON = Spec(
    entities={"class_definition": "class", "function_definition": "function"},
    bodies=frozenset({"block"}),
    wrappers=frozenset({"decorated_definition"}),
    header=frozenset({"import_statement", "import_from_statement",
                      "future_import_statement"}),
)

_JS = Spec(
    entities={"class_declaration": "class", "abstract_class_declaration": "class",
              "class": "class", "function_declaration": "function",
              "generator_function_declaration": "function",
              "method_definition": "method", "lexical_declaration": "function",
              "variable_declaration": "function", "interface_declaration": "interface",
              "enum_declaration": "enum", "internal_module": "namespace",
              "module": "namespace", "abstract_method_signature": "method",
              "type_alias_declaration": "type"},
    bodies=frozenset({"class_body", "statement_block", "interface_body", "enum_body"}),
    wrappers=frozenset({"export_statement", "expression_statement"}),
    fields=frozenset({"public_field_definition", "field_definition", "property_signature"}),
    header=frozenset({"import_statement"}),
    names={"lexical_declaration": _js_variable_function,
           "variable_declaration": _js_variable_function},
)

_GO = Spec(
    entities={"function_declaration": "function", "method_declaration": "method",
              "type_declaration": "type"},
    kinds={"type_declaration": _go_type_kind},
    header=frozenset({"package_clause", "import_declaration"}),
    scope=frozenset({"package_clause"}),
    names={"type_declaration": _go_type_name, "method_declaration": _go_method_name},
)

_CSHARP = Spec(
    entities={"namespace_declaration": "namespace", "class_declaration": "class",
              "interface_declaration": "interface", "struct_declaration": "struct",
              "enum_declaration": "enum", "record_declaration": "record",
              "record_struct_declaration": "record",
              "method_declaration": "method", "constructor_declaration": "constructor",
              "destructor_declaration": "method", "property_declaration": "property",
              "delegate_declaration": "delegate"},
    bodies=frozenset({"declaration_list"}),
    fields=frozenset({"field_declaration", "event_field_declaration"}),
    # using lines and a file-scoped namespace are one header, named by the namespace.
    header=frozenset({"using_directive", "file_scoped_namespace_declaration"}),
    scope=frozenset({"file_scoped_namespace_declaration"}),
    params=True,
    names={"destructor_declaration": lambda node: f"~{_field_text('name')(node)}"},
)

_C_FAMILY = Spec(
    entities={"function_definition": "function", "struct_specifier": "struct",
              "union_specifier": "union", "enum_specifier": "enum",
              "class_specifier": "class", "namespace_definition": "namespace"},
    kinds={"declaration": _c_prototype_kind, "field_declaration": _c_prototype_kind,
           "type_definition": _c_typedef_kind},
    # #ifndef FOO_H ... #endif around a whole header: its declarations are still seen.
    bodies=frozenset({"field_declaration_list", "declaration_list", "preproc_ifdef",
                      "preproc_if", "preproc_else", "preproc_elif", "linkage_specification"}),
    wrappers=frozenset({"template_declaration", "declaration"}),
    header=frozenset({"preproc_include", "preproc_def", "preproc_function_def"}),
    sep="::",
    names={"function_definition": _c_declarator_name, "declaration": _c_declarator_name,
           "field_declaration": _c_declarator_name, "type_definition": _c_declarator_name},
)

_KOTLIN = Spec(
    entities={"class_declaration": "class", "object_declaration": "object",
              "function_declaration": "function", "companion_object": "object"},
    kinds={"class_declaration": _kotlin_class_kind},
    bodies=frozenset({"class_body", "enum_class_body"}),
    fields=frozenset({"property_declaration"}),
    header=frozenset({"package_header", "import_list", "import_header"}),
    scope=frozenset({"package_header"}),
    comments=frozenset({"comment", "line_comment", "multiline_comment", "block_comment"}),
    names={"class_declaration": _first_of("type_identifier", "simple_identifier",
                                          "identifier"),
           "object_declaration": _first_of("type_identifier", "simple_identifier",
                                           "identifier"),
           "function_declaration": _kotlin_function_name,
           "companion_object": lambda node: "Companion"},
)

_RUBY = Spec(
    entities={"module": "module", "class": "class", "method": "method",
              "singleton_method": "method"},
    bodies=frozenset({"body_statement"}),
    sep="::",
    member_seps={"method": "#", "singleton_method": "."},
    names={"method": _ruby_method_name, "singleton_method": _ruby_method_name},
)

_PHP = Spec(
    entities={"class_declaration": "class", "interface_declaration": "interface",
              "trait_declaration": "trait", "enum_declaration": "enum",
              "function_definition": "function", "method_declaration": "method"},
    bodies=frozenset({"declaration_list"}),
    fields=frozenset({"property_declaration", "const_declaration"}),
    # <?php, namespace and use lines are one header, named by the namespace.
    header=frozenset({"php_tag", "namespace_definition", "namespace_use_declaration"}),
    scope=frozenset({"namespace_definition"}),
    sep="\\",
    member_seps={"method_declaration": "::", "property_declaration": "::",
                 "const_declaration": "::"},
)

_RUST = Spec(
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

_SQL = Spec(entities={}, kinds={"statement": _sql_kind}, names={"statement": _sql_name},
            comments=frozenset({"comment", "marginalia"}),
            # The grammar reads a $$ body as SQL; PL/pgSQL's := and loops are errors there.
            opaque=frozenset({"function_body"}))

_SHELL = Spec(entities={"function_definition": "function"})

_YAML = Spec(
    entities={"block_mapping_pair": "key"},
    bodies=frozenset({"document", "block_node", "block_mapping"}),
    names={"block_mapping_pair": _field_text("key")},
    nested=False,
)

_PROPERTIES = Spec(entities={}, fields=frozenset({"property"}), field_kind="key",
                   field_key=_property_section, group_name=_common_prefix,
                   names={"property": _property_key})

SPECS: dict[str, Spec] = {
    "java": _JAVA, "python": _PYTHON, "javascript": _JS, "typescript": _JS, "tsx": _JS,
    "go": _GO, "csharp": _CSHARP, "c": _C_FAMILY, "cpp": _C_FAMILY, "kotlin": _KOTLIN,
    "ruby": _RUBY, "php": _PHP, "rust": _RUST, "sql": _SQL, "bash": _SHELL, "yaml": _YAML,
    "properties": _PROPERTIES,
}

SUFFIXES: dict[str, str] = {
    ".java": "java", ".py": "python", ".pyi": "python",
    **dict.fromkeys([".js", ".jsx", ".mjs", ".cjs"], "javascript"),
    ".ts": "typescript", ".tsx": "tsx", ".go": "go", ".cs": "csharp",
    ".c": "c", ".h": "c",
    **dict.fromkeys([".cc", ".cpp", ".cxx", ".hpp", ".hh"], "cpp"),
    ".kt": "kotlin", ".kts": "kotlin", ".rb": "ruby", ".php": "php", ".rs": "rust",
    ".sql": "sql", ".sh": "bash", ".bash": "bash", ".properties": "properties",
    ".yaml": "yaml", ".yml": "yaml",
}

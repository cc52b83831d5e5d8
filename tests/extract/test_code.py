"""Code entities: source files cut by tree-sitter into named, line-ranged parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.chunking import estimate_tokens
from gristmill.errors import Unsupported
from gristmill.extract import extractor_for
from gristmill.extract.base import Limits
from gristmill.extract.code import CodeExtractor, code_entities, language_for

JAVA = """\
/*
 * Licensed to nobody.
 */
package org.acme.billing;

import java.math.BigDecimal;
import java.util.List;

/**
 * Bills customers.
 */
@Service
public class InvoiceService {
    private static final int LIMIT = 3;
    private final List<Invoice> invoices;

    // The default rate.
    private BigDecimal rate;

    /** Makes one. */
    public InvoiceService(List<Invoice> invoices) {
        this.invoices = invoices;
    }

    /**
     * Applies a discount.
     */
    @Override
    public BigDecimal applyDiscount(Invoice invoice, BigDecimal rate) {
        return invoice.total().multiply(rate);
    }

    public BigDecimal applyDiscount(Invoice invoice) {
        return applyDiscount(invoice, rate);
    }

    static <T> void log(String format, T... args) { }

    public static class Line {
        int qty;
    }

    enum Status {
        OPEN, PAID;
        boolean done() { return this == PAID; }
    }

    record Money(BigDecimal amount, String currency) {
        Money {
            if (amount == null) throw new IllegalArgumentException();
        }
    }

    interface Listener {
        void changed(Invoice invoice);
    }

    @interface Audited {
        String value() default "";
    }
}
"""

P = "org.acme.billing"
S = f"{P}.InvoiceService"


def _by_name(source: str, language: str) -> dict[str | None, tuple[str, str | None,
                                                                    tuple[int, int]]]:
    parsed = code_entities(source, language)
    assert parsed.note is None
    return {e.entity: (e.kind, e.parent, e.lines) for e in parsed.entities}


def test_java_entities_have_kinds_qualified_names_parents_and_lines() -> None:
    """Every Java construct becomes an entity, named as a Java developer would."""
    found = _by_name(JAVA, "java")
    assert found == {
        P: ("header", None, (1, 7)),  # the licence comment is attached to the package
        S: ("class", None, (9, 61)),
        f"{S}.LIMIT,invoices": ("field", S, (14, 15)),
        f"{S}.rate": ("field", S, (17, 18)),
        f"{S}.InvoiceService(List<Invoice>)": ("constructor", S, (20, 23)),
        f"{S}.applyDiscount(Invoice, BigDecimal)": ("method", S, (25, 31)),
        f"{S}.applyDiscount(Invoice)": ("method", S, (33, 35)),
        f"{S}.log(String, T...)": ("method", S, (37, 37)),
        f"{S}.Line": ("class", S, (39, 41)),
        f"{S}.Line.qty": ("field", f"{S}.Line", (40, 40)),
        f"{S}.Status": ("enum", S, (43, 46)),
        f"{S}.Status.done()": ("method", f"{S}.Status", (45, 45)),
        f"{S}.Money": ("record", S, (48, 52)),
        f"{S}.Money.Money(BigDecimal, String)": ("constructor", f"{S}.Money", (49, 51)),
        f"{S}.Listener": ("interface", S, (54, 56)),
        f"{S}.Listener.changed(Invoice)": ("method", f"{S}.Listener", (55, 55)),
        f"{S}.Audited": ("annotation", S, (58, 60)),
    }


def test_java_parts_are_in_file_order_and_members_are_not_repeated() -> None:
    """The class's own part holds its declaration and Javadoc, not its members' code."""
    parts = code_entities(JAVA, "java").entities
    assert [p.lines[0] for p in parts] == sorted(p.lines[0] for p in parts)
    own = next(p for p in parts if p.entity == S)
    assert "Bills customers." in own.text and "public class InvoiceService {" in own.text
    assert "multiply" not in own.text and "LIMIT" not in own.text
    method = next(p for p in parts if p.entity == f"{S}.applyDiscount(Invoice, BigDecimal)")
    assert method.text.startswith("    /**\n     * Applies a discount.")
    enum = next(p for p in parts if p.entity == f"{S}.Status")
    assert "OPEN, PAID;" in enum.text and "done()" not in enum.text


def test_a_huge_method_is_split_at_statements_with_its_signature_in_each_part() -> None:
    """A 400-line method is cut within the budget; every line is in some part."""
    signature = "    public int huge(int a, String b) {"
    body = []
    for i in range(390):
        if i % 50 == 0:
            body.append(f"        if (a > {i}) {{")
        body.append(f"        a = a + compute{i}(b, a * {i});  // step {i}")
        if i % 50 == 49 or i == 389:
            body.append("        }")
    lines = ["package p;", "", "class Big {", "    /** Huge. */", signature, *body,
             "        return a;", "    }", "}"]
    source = "\n".join(lines) + "\n"
    parts = [p for p in code_entities(source, "java", budget_tokens=150).entities
             if p.kind == "method"]
    assert len(lines) > 400 and len(parts) > 10
    assert {p.entity for p in parts} == {"p.Big.huge(int, String)"}
    covered = [n for p in parts for n in range(p.lines[0], p.lines[1] + 1)]
    assert covered == list(range(4, len(lines)))  # each method line once, in order
    for part in parts:
        assert signature in part.text
        assert estimate_tokens(part.text) <= 150
        own = part.text.split("\n")
        if own[0] == signature and part.lines[0] != 5:
            own = own[1:]  # the repeated signature, then the part's own lines
        assert own == lines[part.lines[0] - 1:part.lines[1]]


def test_java_class_members_without_a_class_are_named_as_members() -> None:
    """A JSP declaration's Java (methods, fields, a constructor) parses as a fragment."""
    fragment = "private int hits;\n\npublic String greet(String name) {\n" \
               "    return \"hi \" + name;\n}\n"
    found = _by_name(fragment, "java")
    assert found == {"hits": ("field", None, (1, 1)),
                     "greet(String)": ("method", None, (3, 5))}


PYTHON = '''\
"""Shop."""
import os

LIMIT = 3


# Says hello.
@cached
def greet(name: str) -> str:
    return f"hi {name}"


class Cart:
    """A cart."""

    def add(self, item: str) -> None:
        self.items.append(item)


if __name__ == "__main__":
    greet(os.getcwd())
'''


def test_python_functions_classes_methods_and_module_code() -> None:
    """Decorators and comments belong to their function; top-level code is kept."""
    parts = code_entities(PYTHON, "python").entities
    assert [(p.kind, p.entity, p.parent, p.lines) for p in parts] == [
        ("module", None, None, (1, 1)),
        ("header", None, None, (2, 2)),
        ("module", None, None, (4, 4)),
        ("function", "greet", None, (7, 10)),
        ("class", "Cart", None, (13, 17)),
        ("method", "Cart.add", "Cart", (16, 17)),
        ("module", None, None, (20, 21)),
    ]


TYPESCRIPT = """\
import { Shape } from "./shape";

/** Adds two numbers. */
export const add = (x: number, y: number): number => x + y;

export class Circle implements Shape {
  radius = 1;
  area(): number {
    return Math.PI * this.radius ** 2;
  }
}

function helper(): number { return add(1, 2); }
console.log(helper());
"""


def test_typescript_arrow_functions_classes_and_methods() -> None:
    """An arrow function assigned to a const is a function entity."""
    parts = code_entities(TYPESCRIPT, "typescript").entities
    assert [(p.kind, p.lines) for p in parts if p.entity is None] == [
        ("header", (1, 1)), ("module", (14, 14))]
    found = {p.entity: (p.kind, p.parent, p.lines) for p in parts if p.entity}
    assert found == {
        "add": ("function", None, (3, 4)),
        "Circle": ("class", None, (6, 11)),
        "Circle.radius": ("field", "Circle", (7, 7)),
        "Circle.area": ("method", "Circle", (8, 10)),
        "helper": ("function", None, (13, 13)),
    }


GO = """\
package shop

import "fmt"

// Cart holds items.
type Cart struct {
\tItems []string
}

// Add adds an item.
func (c *Cart) Add(item string) {
\tc.Items = append(c.Items, item)
}

func main() { fmt.Println(Cart{}) }
"""


def test_go_types_functions_and_methods_with_receivers() -> None:
    """A Go method is named and parented by its receiver's type."""
    found = _by_name(GO, "go")
    assert found == {
        "shop": ("header", None, (1, 3)),
        "shop.Cart": ("struct", None, (5, 8)),
        "shop.Cart.Add": ("method", "shop.Cart", (10, 13)),
        "shop.main": ("function", None, (15, 15)),
    }


def test_a_file_that_does_not_parse_becomes_line_windows_with_a_note() -> None:
    """Garbage in a .java file never fails: it is cut into windows, nothing dropped."""
    source = "\n".join(f"}}}} ))) ;; garbage {i} (((" for i in range(300))
    parsed = code_entities(source, "java", budget_tokens=100)
    assert parsed.note is not None and "does not parse" in parsed.note
    assert {p.kind for p in parsed.entities} == {"lines"}
    covered = [n for p in parsed.entities for n in range(p.lines[0], p.lines[1] + 1)]
    assert covered == list(range(1, 301))
    assert all(estimate_tokens(p.text) <= 100 for p in parsed.entities)


def test_an_unknown_language_becomes_line_windows_with_a_note() -> None:
    """code_entities never raises for a language it has no table for."""
    parsed = code_entities("a\nb\n", "cobol")
    assert parsed.note and "cobol" in parsed.note
    assert [p.lines for p in parsed.entities] == [(1, 2)]


def test_the_extractor_yields_segments_and_claims_only_grammar_languages(
        tmp_path: Path) -> None:
    """A .java file is read through the registry; a .xyz or .jsp file is not claimed."""
    source = tmp_path / "InvoiceService.java"
    source.write_text(JAVA, encoding="utf-8")
    extractor = extractor_for(source)
    assert isinstance(extractor, CodeExtractor)
    segments = list(extractor.extract(source, Limits()))
    method = next(s for s in segments if s.kind == "method")
    assert (method.language, method.parent, method.lines) == ("java", S, (25, 31))
    assert language_for(Path("a.cob")) is None and language_for(Path("x.TS")) == "typescript"
    assert extractor_for(Path("a.cob")) is None
    assert not isinstance(extractor_for(Path("page.jsp")), CodeExtractor)


def test_yaml_gets_top_level_keys_with_line_ranges(tmp_path: Path) -> None:
    """A YAML file is cut by top-level key, no longer read as plain text."""
    path = tmp_path / "config.yml"
    path.write_text("server:\n  port: 80\n  host: x\n\ndatabase:\n  url: pg\n")
    segments = list(CodeExtractor().extract(path, Limits()))
    assert [(s.kind, s.entity, s.lines) for s in segments] == [
        ("key", "server", (1, 3)), ("key", "database", (5, 6))]


def test_binary_content_is_unsupported(tmp_path: Path) -> None:
    """A .py file of binary bytes is refused; control bytes in valid UTF-8 are not."""
    path = tmp_path / "blob.py"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    with pytest.raises(Unsupported):
        list(CodeExtractor().extract(path, Limits()))
    fuzz = tmp_path / "Fuzz.java"
    fuzz.write_bytes(b'class Fuzz {\n' + b'  String s = "\x01\x03\x14\x17\x1d";\n' * 20 + b"}\n")
    assert [s.kind for s in CodeExtractor().extract(fuzz, Limits())] == ["class", "field"]

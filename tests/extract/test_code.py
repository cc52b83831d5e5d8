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
        f"{S}.Audited.value()": ("method", f"{S}.Audited", (59, 59)),
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
        ("code", None, None, (1, 1)),
        ("header", None, None, (2, 2)),
        ("code", None, None, (4, 4)),
        ("function", "greet", None, (7, 10)),
        ("class", "Cart", None, (13, 14)),  # its own lines: add's are not repeated
        ("method", "Cart.add", "Cart", (16, 17)),
        ("code", None, None, (20, 21)),
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
        ("header", (1, 1)), ("code", (14, 14))]
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
    assert {s.kind for s in CodeExtractor().extract(fuzz, Limits())} == {"class", "field"}


# --- The other languages: a realistic sample each, every entity asserted ------------

CSHARP = """\
using System;
using System.Collections.Generic;

namespace Acme.Billing
{
    /// <summary>Bills customers.</summary>
    public class InvoiceService : IInvoiceService
    {
        private readonly List<Invoice> _invoices;
        private decimal _rate;

        public InvoiceService(List<Invoice> invoices)
        {
            _invoices = invoices;
        }

        public decimal Rate { get; set; }

        public decimal Apply(Invoice invoice, decimal rate)
        {
            return invoice.Total * rate;
        }

        public decimal Apply(Invoice invoice) => Apply(invoice, _rate);
    }

    public interface IInvoiceService
    {
        decimal Apply(Invoice invoice);
    }

    public struct Money
    {
        public decimal Amount;
    }

    public enum Status { Open, Paid }

    public record Invoice(decimal Total, string Currency);
}
"""

NS = "Acme.Billing"
SVC = f"{NS}.InvoiceService"
EXPECTED_CSHARP = [
    ("header", None, None, (1, 2)),
    ("namespace", NS, None, (4, 40)),
    ("class", SVC, NS, (6, 25)),  # the /// doc comment is the class's
    ("field", f"{SVC}._invoices,_rate", SVC, (9, 10)),
    ("constructor", f"{SVC}.InvoiceService(List<Invoice>)", SVC, (12, 15)),
    ("property", f"{SVC}.Rate", SVC, (17, 17)),
    ("method", f"{SVC}.Apply(Invoice, decimal)", SVC, (19, 22)),
    ("method", f"{SVC}.Apply(Invoice)", SVC, (24, 24)),
    ("interface", f"{NS}.IInvoiceService", NS, (27, 30)),
    ("method", f"{NS}.IInvoiceService.Apply(Invoice)", f"{NS}.IInvoiceService", (29, 29)),
    ("struct", f"{NS}.Money", NS, (32, 35)),
    ("field", f"{NS}.Money.Amount", f"{NS}.Money", (34, 34)),
    ("enum", f"{NS}.Status", NS, (37, 37)),
    ("record", f"{NS}.Invoice", NS, (39, 39)),
]


C_CODE = """\
#include <stdio.h>
#include "cart.h"

#define MAX_ITEMS 16

/* An item in a cart. */
struct item {
    const char *name;
    int qty;
};

typedef struct cart {
    struct item items[MAX_ITEMS];
    int count;
} cart_t;

typedef enum { OPEN, PAID } status_t;

static int count_items(const cart_t *cart);

/* Adds an item. */
int cart_add(cart_t *cart, const char *name)
{
    if (cart->count >= MAX_ITEMS)
        return -1;
    cart->items[cart->count].name = name;
    return cart->count++;
}

int main(void)
{
    cart_t cart = {0};
    printf("%d\\n", cart_add(&cart, "tea"));
    return 0;
}
"""

EXPECTED_C_CODE = [
    ("header", None, None, (1, 4)),
    ("struct", "item", None, (6, 10)),
    ("struct", "cart_t", None, (12, 15)),
    ("enum", "status_t", None, (17, 17)),
    ("function", "count_items", None, (19, 19)),
    ("function", "cart_add", None, (21, 28)),
    ("function", "main", None, (30, 35)),
]


CPP = """\
#include <string>
#include <vector>

namespace acme {
namespace billing {

class Invoice {
public:
    explicit Invoice(double total) : total_(total) {}
    double total() const { return total_; }
    double apply(double rate) const;
    virtual ~Invoice();

private:
    double total_;
};

double Invoice::apply(double rate) const {
    return total_ * rate;
}

Invoice::~Invoice() {}

template <typename T>
class Stack {
public:
    void push(const T& value) { items_.push_back(value); }

private:
    std::vector<T> items_;
};

template <typename T>
T largest(const std::vector<T>& values) {
    T best = values.front();
    for (const T& v : values) if (v > best) best = v;
    return best;
}

}  // namespace billing
}  // namespace acme
"""

EXPECTED_CPP = [
    ("header", None, None, (1, 2)),
    ("namespace", "acme", None, (4, 41)),
    ("namespace", "acme::billing", "acme", (5, 40)),
    ("class", "acme::billing::Invoice", "acme::billing", (7, 16)),
    ("method", "acme::billing::Invoice::Invoice", "acme::billing::Invoice", (9, 9)),
    ("method", "acme::billing::Invoice::total", "acme::billing::Invoice", (10, 10)),
    ("method", "acme::billing::Invoice::apply", "acme::billing::Invoice", (11, 11)),
    ("method", "acme::billing::Invoice::~Invoice", "acme::billing::Invoice", (12, 12)),
    ("method", "acme::billing::Invoice::apply", "acme::billing::Invoice", (18, 20)),
    ("method", "acme::billing::Invoice::~Invoice", "acme::billing::Invoice", (22, 22)),
    ("class", "acme::billing::Stack", "acme::billing", (24, 31)),
    ("method", "acme::billing::Stack::push", "acme::billing::Stack", (27, 27)),
    ("function", "acme::billing::largest", "acme::billing", (33, 38)),
]


KOTLIN = """\
package org.acme.shop

import java.math.BigDecimal

/** A cart. */
class Cart(val owner: String) {
    private val items = mutableListOf<Item>()

    fun add(item: Item) {
        items.add(item)
    }

    companion object {
        fun empty(): Cart = Cart("nobody")
    }
}

data class Item(val name: String, val price: BigDecimal)

object Registry {
    fun lookup(name: String): Item? = null
}

fun Cart.total(): BigDecimal = BigDecimal.ZERO

fun main() {
    println(Cart.empty().total())
}
"""

EXPECTED_KOTLIN = [
    ("header", "org.acme.shop", None, (1, 5)),
    ("class", "org.acme.shop.Cart", None, (6, 16)),
    ("field", "org.acme.shop.Cart.items", "org.acme.shop.Cart", (7, 7)),
    ("method", "org.acme.shop.Cart.add", "org.acme.shop.Cart", (9, 11)),
    ("object", "org.acme.shop.Cart.Companion", "org.acme.shop.Cart", (13, 15)),
    ("method", "org.acme.shop.Cart.Companion.empty", "org.acme.shop.Cart.Companion", (14, 14)),
    ("class", "org.acme.shop.Item", None, (18, 18)),
    ("object", "org.acme.shop.Registry", None, (20, 22)),
    ("method", "org.acme.shop.Registry.lookup", "org.acme.shop.Registry", (21, 21)),
    ("method", "org.acme.shop.Cart.total", "org.acme.shop.Cart", (24, 24)),
    ("function", "org.acme.shop.main", None, (26, 28)),
]


RUBY = """\
require "json"

module Shop
  # A cart.
  class Cart
    attr_reader :items

    def initialize
      @items = []
    end

    def add(item)
      @items << item
    end

    def self.empty
      new
    end
  end
end

puts Shop::Cart.empty.items.to_json
"""

EXPECTED_RUBY = [
    ("code", None, None, (1, 1)),
    ("module", "Shop", None, (3, 20)),
    ("class", "Shop::Cart", "Shop", (5, 19)),
    ("method", "Shop::Cart#initialize", "Shop::Cart", (8, 10)),
    ("method", "Shop::Cart#add", "Shop::Cart", (12, 14)),
    ("method", "Shop::Cart.empty", "Shop::Cart", (16, 18)),
    ("code", None, None, (22, 22)),
]


PHP = """\
<?php

namespace Acme\\Shop;

use Acme\\Util\\Money;
use Psr\\Log\\LoggerInterface;

/** A cart. */
class Cart
{
    private array $items = [];

    public function __construct(private LoggerInterface $log)
    {
    }

    public function add(string $item): void
    {
        $this->items[] = $item;
    }
}

function total(Cart $cart): Money
{
    return new Money(0);
}

echo total(new Cart($log));
"""

EXPECTED_PHP = [
    ("header", "Acme\\Shop", None, (1, 6)),
    ("class", "Acme\\Shop\\Cart", None, (8, 21)),
    ("field", "Acme\\Shop\\Cart::$items", "Acme\\Shop\\Cart", (11, 11)),
    ("method", "Acme\\Shop\\Cart::__construct", "Acme\\Shop\\Cart", (13, 15)),
    ("method", "Acme\\Shop\\Cart::add", "Acme\\Shop\\Cart", (17, 20)),
    ("function", "Acme\\Shop\\total", None, (23, 26)),
    ("code", None, None, (28, 28)),
]


RUST = """\
use std::collections::HashMap;

/// A cart.
pub struct Cart {
    items: Vec<String>,
}

pub enum Status {
    Open,
    Paid,
}

pub trait Priced {
    fn price(&self) -> u32;
}

impl Cart {
    pub fn new() -> Self {
        Cart { items: Vec::new() }
    }

    pub fn add(&mut self, item: &str) {
        self.items.push(item.to_string());
    }
}

impl Priced for Cart {
    fn price(&self) -> u32 {
        0
    }
}

mod util {
    pub fn helper() -> u32 {
        1
    }
}

fn main() {
    let cart = Cart::new();
    println!("{}", cart.price());
}
"""

EXPECTED_RUST = [
    ("header", None, None, (1, 1)),
    ("struct", "Cart", None, (3, 6)),
    ("enum", "Status", None, (8, 11)),
    ("trait", "Priced", None, (13, 15)),
    ("method", "Priced::price", "Priced", (14, 14)),
    ("impl", "Cart", None, (17, 25)),
    ("method", "Cart::new", "Cart", (18, 20)),
    ("method", "Cart::add", "Cart", (22, 24)),
    ("impl", "Cart", None, (27, 31)),
    ("method", "Cart::price", "Cart", (28, 30)),
    ("module", "util", None, (33, 37)),
    ("function", "util::helper", "util", (34, 36)),
    ("function", "main", None, (39, 42)),
]


SQL = """\
-- The shop's schema.
CREATE TABLE invoices (
    id SERIAL PRIMARY KEY,
    total NUMERIC NOT NULL
);

CREATE INDEX invoices_total ON invoices (total);

CREATE VIEW big_invoices AS
SELECT id, total FROM invoices WHERE total > 100;

CREATE FUNCTION discount(amount NUMERIC) RETURNS NUMERIC AS $$
DECLARE
    rate NUMERIC := 0.9;
BEGIN
    IF amount > 100 THEN
        rate := 0.8;
    END IF;
    RETURN amount * rate;
END;
$$ LANGUAGE plpgsql;

INSERT INTO invoices (total) VALUES (10);
"""

EXPECTED_SQL = [
    ("table", "invoices", None, (1, 5)),
    ("index", "invoices_total", None, (7, 7)),
    ("view", "big_invoices", None, (9, 10)),
    ("function", "discount", None, (12, 21)),  # PL/pgSQL body: no parse failure
    ("code", None, None, (23, 23)),
]


SHELL = """\
#!/usr/bin/env bash
set -euo pipefail

# Prints a greeting.
greet() {
    echo "hello $1"
}

function cleanup {
    rm -rf "$TMP"
}

TMP=$(mktemp -d)
trap cleanup EXIT
greet world
"""

EXPECTED_SHELL = [
    ("code", None, None, (1, 2)),
    ("function", "greet", None, (4, 7)),
    ("function", "cleanup", None, (9, 11)),
    ("code", None, None, (13, 15)),
]


PROPERTIES = """\
# Database
db.url=jdbc:postgresql://localhost/shop
db.user=shop
db.password=secret

# Server
server.port=8080
server.host=0.0.0.0
app.name=Shop
"""

EXPECTED_PROPERTIES = [
    ("key", "db", None, (1, 4)),
    ("key", "server", None, (6, 8)),
    ("key", "app.name", None, (9, 9)),
]


JAVASCRIPT = """\
import fs from "fs";
const path = require("path");

/** A cart. */
class Cart {
  constructor() {
    this.items = [];
  }

  add(item) {
    this.items.push(item);
  }
}

function* ids() {
  yield 1;
}

const total = function (cart) {
  return cart.items.length;
};

export default function main() {
  console.log(total(new Cart()));
}

module.exports = { Cart };
"""

EXPECTED_JAVASCRIPT = [
    ("header", None, None, (1, 1)),
    ("code", None, None, (2, 2)),
    ("class", "Cart", None, (4, 13)),
    ("method", "Cart.constructor", "Cart", (6, 8)),
    ("method", "Cart.add", "Cart", (10, 12)),
    ("function", "ids", None, (15, 17)),
    ("function", "total", None, (19, 21)),
    ("function", "main", None, (23, 25)),
    ("code", None, None, (27, 27)),
]

LANGUAGES = {
    "csharp": (CSHARP, EXPECTED_CSHARP),
    "c": (C_CODE, EXPECTED_C_CODE),
    "cpp": (CPP, EXPECTED_CPP),
    "kotlin": (KOTLIN, EXPECTED_KOTLIN),
    "ruby": (RUBY, EXPECTED_RUBY),
    "php": (PHP, EXPECTED_PHP),
    "rust": (RUST, EXPECTED_RUST),
    "sql": (SQL, EXPECTED_SQL),
    "bash": (SHELL, EXPECTED_SHELL),
    "properties": (PROPERTIES, EXPECTED_PROPERTIES),
    "javascript": (JAVASCRIPT, EXPECTED_JAVASCRIPT),
}


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_each_language_gets_its_entities_kinds_names_parents_and_lines(
        language: str) -> None:
    """Each construct a developer of the language expects is an entity, named their way."""
    source, expected = LANGUAGES[language]
    parsed = code_entities(source, language)
    assert parsed.note is None
    assert [(p.kind, p.entity, p.parent, p.lines) for p in parsed.entities] == expected


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_non_blank_line_is_in_a_part_at_its_line_number(language: str) -> None:
    """Nothing is dropped: each non-blank line's text is in a part whose range holds it."""
    source, _ = LANGUAGES[language]
    parts = code_entities(source, language).entities
    assert [p.lines[0] for p in parts] == sorted(p.lines[0] for p in parts)
    for number, line in enumerate(source.split("\n"), start=1):
        if line.strip():
            assert any(p.lines[0] <= number <= p.lines[1] and line in p.text.split("\n")
                       for p in parts), f"{language} line {number} dropped: {line!r}"


def _part(language: str, entity: str | None, kind: str | None = None) -> str:
    source, _ = LANGUAGES[language]
    return next(p.text for p in code_entities(source, language).entities
                if p.entity == entity and (kind is None or p.kind == kind))


def test_member_code_is_not_repeated_in_its_type_part() -> None:
    """A type's part holds its declaration, not its members' bodies (C#, C++, Rust, Ruby)."""
    service = _part("csharp", "Acme.Billing.InvoiceService")
    assert "public class InvoiceService" in service and "invoice.Total" not in service
    invoice = _part("cpp", "acme::billing::Invoice")
    assert "private:" in invoice and "double total_;" in invoice
    assert "double apply(double rate) const;" not in invoice  # its own method entity
    assert "self.items.push" not in _part("rust", "Cart", "impl")
    assert _part("ruby", "Shop::Cart").count("def ") == 0


def test_php_opening_tag_namespace_and_use_lines_are_one_header() -> None:
    """`<?php`, the namespace and the `use` lines are one part named by the namespace."""
    header = _part("php", "Acme\\Shop", "header")
    assert header.split("\n")[0] == "<?php"
    assert "namespace Acme\\Shop;" in header and "use Psr\\Log\\LoggerInterface;" in header


def test_properties_are_grouped_by_section_with_their_comments() -> None:
    """Keys sharing a first segment with no blank line between are one group."""
    group = _part("properties", "db")
    assert group.split("\n") == ["# Database", "db.url=jdbc:postgresql://localhost/shop",
                                 "db.user=shop", "db.password=secret"]
    assert _part("properties", "app.name") == "app.name=Shop"


def test_sql_statements_that_create_nothing_are_plain_code() -> None:
    """An INSERT is kept as a module part; CREATE variants are named by their object."""
    source = ("create or replace view recent as select 1;\n"
              "CREATE UNIQUE INDEX IF NOT EXISTS ix_total ON invoices (total);\n"
              'CREATE TABLE "public"."Users" (id int);\n'
              "ALTER TABLE invoices ADD COLUMN paid boolean;\n")
    found = [(p.kind, p.entity, p.lines) for p in code_entities(source, "sql").entities]
    assert found == [("view", "recent", (1, 1)), ("index", "ix_total", (2, 2)),
                     ("table", "public.Users", (3, 3)), ("code", None, (4, 4))]


def test_a_one_line_type_is_one_part_not_repeated_for_its_members() -> None:
    """`class A { void f() {} }` on one line is one part; its text is not repeated."""
    for source, language in [("class A { void f() {} }\n", "java"),
                             ("class Foo; def bar; end; end\n", "ruby"),
                             ("struct P { int x; void f() {} };\n", "cpp"),
                             ("public class A { public void F() { } }\n", "csharp")]:
        parts = code_entities(source, language).entities
        assert len(parts) == 1, (language, parts)
        assert parts[0].lines == (1, 1) and parts[0].text == source.rstrip("\n")


def test_a_c_header_inside_an_include_guard_still_has_its_entities() -> None:
    """`#ifndef FOO_H` around a header: prototypes, typedefs and macros are still found."""
    source = ("#ifndef CART_H\n#define CART_H\n\n#include <stddef.h>\n\n"
              "typedef int (*handler_t)(int);\n\nstruct cart;\n"
              "struct cart *cart_new(size_t n);\n\n#endif\n")
    found = [(p.kind, p.entity, p.lines) for p in code_entities(source, "c").entities]
    assert found == [("code", None, (1, 1)), ("header", None, (2, 4)),
                     ("typedef", "handler_t", (6, 6)), ("code", None, (8, 8)),
                     ("function", "cart_new", (9, 9)), ("code", None, (11, 11))]


def test_csharp_file_scoped_namespace_is_the_header_and_names_the_types() -> None:
    """`namespace Acme.Shop;` names what follows, like Java's package."""
    source = ("using System;\nnamespace Acme.Shop;\n\npublic delegate void Done(int code);\n"
              "\npublic class A\n{\n    public event Action Changed;\n    ~A() { }\n}\n")
    found = [(p.kind, p.entity, p.parent, p.lines)
             for p in code_entities(source, "csharp").entities]
    assert found == [
        ("header", "Acme.Shop", None, (1, 2)),
        ("delegate", "Acme.Shop.Done", None, (4, 4)),
        ("class", "Acme.Shop.A", None, (6, 10)),
        ("field", "Acme.Shop.A.Changed", "Acme.Shop.A", (8, 8)),
        ("method", "Acme.Shop.A.~A()", "Acme.Shop.A", (9, 9)),
    ]


def test_kotlin_interfaces_and_enum_classes_have_their_kinds() -> None:
    """`interface` and `enum class` are both class_declaration in the grammar."""
    source = "interface Shape {\n    fun area(): Double\n}\n\nenum class Color {\n" \
             "    RED, GREEN\n}\n"
    found = [(p.kind, p.entity, p.lines) for p in code_entities(source, "kotlin").entities]
    assert found == [("interface", "Shape", (1, 3)), ("method", "Shape.area", (2, 2)),
                     ("enum", "Color", (5, 7))]


def test_rust_generic_impl_methods_are_named_by_the_bare_type() -> None:
    """`impl<T: Clone> Stack<T>` methods are `Stack::push`, as rustdoc shows them."""
    source = "impl<T: Clone> Stack<T> {\n    fn push(&mut self, v: T) {}\n}\n"
    found = [(p.kind, p.entity, p.parent) for p in code_entities(source, "rust").entities]
    assert found == [("impl", "Stack", None), ("method", "Stack::push", "Stack")]


def test_c_and_cpp_prototypes_are_entities_and_function_pointers_are_not() -> None:
    """A declared callable is an entity; `int (*open)(...)` in a struct is a member."""
    c_source = "struct ops {\n    int (*open)(const char *path);\n    int flags;\n};\n" \
               "int (*handler)(int);\nstatic int helper(void);\n"
    found = [(p.kind, p.entity, p.lines) for p in code_entities(c_source, "c").entities]
    assert found == [("struct", "ops", (1, 4)), ("code", None, (5, 5)),
                     ("function", "helper", (6, 6))]
    cpp_source = "class W {\n public:\n  W();\n  static W* make(int n);\n  int& at(int i);\n" \
                 "  std::function<void()> cb;\n};\n"
    found = [(p.kind, p.entity, p.lines) for p in code_entities(cpp_source, "cpp").entities]
    assert found == [("class", "W", (1, 7)), ("method", "W::W", (3, 3)),
                     ("method", "W::make", (4, 4)), ("method", "W::at", (5, 5))]


def test_files_of_each_language_are_read_through_the_registry(tmp_path: Path) -> None:
    """Each suffix reaches the code extractor; a C++ header named .h is read as C++."""
    for name, language in [("Billing.cs", "csharp"), ("cart.c", "c"), ("cart.cpp", "cpp"),
                           ("Cart.kt", "kotlin"), ("cart.rb", "ruby"), ("Cart.php", "php"),
                           ("cart.rs", "rust"), ("schema.sql", "sql"), ("run.sh", "bash"),
                           ("app.properties", "properties"), ("cart.js", "javascript")]:
        path = tmp_path / name
        path.write_text(LANGUAGES[language][0], encoding="utf-8")
        extractor = extractor_for(path)
        assert isinstance(extractor, CodeExtractor), name
        segments = list(extractor.extract(path, Limits()))
        assert {s.language for s in segments} == {language}
        assert [(s.kind, s.entity, s.parent, s.lines) for s in segments] \
            == LANGUAGES[language][1]
    header = tmp_path / "invoice.h"
    header.write_text("#pragma once\nnamespace acme {\nclass Invoice {\npublic:\n"
                      "    double total() const;\n};\n}\n", encoding="utf-8")
    segments = list(CodeExtractor().extract(header, Limits()))
    assert [(s.language, s.kind, s.entity) for s in segments] == [
        ("cpp", "code", None), ("cpp", "namespace", "acme"),
        ("cpp", "class", "acme::Invoice"), ("cpp", "method", "acme::Invoice::total")]


@pytest.mark.parametrize("language", ["ruby", "rust", "csharp", "bash", "sql", "php"])
def test_a_huge_callable_in_another_language_is_split_with_nothing_dropped(
        language: str) -> None:
    """A 300-line method/function is cut within the budget; every line is in a part."""
    steps = [f"    total = total + compute_{i}(a, b * {i})" for i in range(300)]
    lines = {
        "ruby": ["class Big", "  def huge(a, b)", *steps, "  end", "end"],
        "rust": ["impl Big {", "    fn huge(a: u32, b: u32) -> u32 {",
                 *[f"{s};" for s in steps], "    }", "}"],
        "csharp": ["class Big {", "    int Huge(int a, int b) {", *[f"{s};" for s in steps],
                   "    }", "}"],
        "bash": ["huge() {", *[f'    echo step {i} "$1" "$2" and more' for i in range(300)],
                 "}"],
        "sql": ["CREATE FUNCTION huge(a int) RETURNS int AS $$", "BEGIN",
                *[f"    a := a + {i} * length('{i}');" for i in range(300)],
                "    RETURN a;", "END;", "$$ LANGUAGE plpgsql;"],
        "php": ["<?php", "class Big {", "    function huge($a) {",
                *[f"        $a = $a + compute{i}($a, {i});" for i in range(300)], "    }", "}"],
    }[language]
    parsed = code_entities("\n".join(lines) + "\n", language, budget_tokens=150)
    assert parsed.note is None
    callables = [p for p in parsed.entities if p.kind in ("method", "function")]
    assert len(callables) > 10 and len({p.entity for p in callables}) == 1
    assert all(estimate_tokens(p.text) <= 150 for p in parsed.entities)
    signature = next(line for line in lines if "huge" in line.lower())
    assert all(p.text.startswith(signature) for p in callables)
    for number, line in enumerate(lines, start=1):
        assert any(p.lines[0] <= number <= p.lines[1] and line in p.text.split("\n")
                   for p in parsed.entities), f"line {number} dropped"


def test_a_long_properties_section_is_cut_without_repeating_a_key() -> None:
    """A 200-key section is split within the budget into parts of its own lines only."""
    lines = ["# Messages", *[f"messages.error.code{i}=Something went wrong with item {i}"
                             for i in range(200)]]
    parts = code_entities("\n".join(lines) + "\n", "properties", budget_tokens=100).entities
    assert len(parts) > 10 and {(p.kind, p.entity) for p in parts} == {
        ("key", "messages.error")}
    assert [line for p in parts for line in p.text.split("\n")] == lines
    assert [p.lines[0] for p in parts[1:]] == [p.lines[1] + 1 for p in parts[:-1]]
    assert all(estimate_tokens(p.text) <= 100 for p in parts)

"""Identifiers split into the words developers type: ``applyDiscount`` is also ``apply
discount``, ``invoice_service`` also ``invoiceservice``.

The keyword index tokenizes ``InvoiceService.applyDiscount`` into ``invoiceservice`` and
``applydiscount`` (FTS5's unicode61 and PostgreSQL's parser split at punctuation, never
inside a word), and ``invoice_service`` into ``invoice`` and ``service``. A code chunk
therefore carries its compound identifiers' parts in a ``terms`` column indexed beside
its text, so ``apply discount`` and ``invoice service`` find the entity, and the joined
form of a snake_case name, so ``invoiceService`` finds ``invoice_service``.
"""

from __future__ import annotations

import re

__all__ = ["identifier_terms", "split_identifier"]

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
# Word starts inside an identifier: lower->Upper (applyDiscount), an acronym's end
# (HTTPServer -> HTTP Server), letter->digit and digit->letter (utf8Decode).
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])")
_SEPARATORS = re.compile(r"[_$]+")
_MAX_TERMS_CHARS = 20_000  # a generated file's identifiers must not double its size


def split_identifier(name: str) -> list[str]:
    """The words of one identifier, lower-cased: ``parseHTTPResponse2`` ->
    ``["parse", "http", "response", "2"]``; a plain word gives itself."""
    words: list[str] = []
    for part in _SEPARATORS.split(name):
        words.extend(word.lower() for word in _HUMP.split(part) if word)
    return words


def identifier_terms(code: str) -> str:
    """The extra keyword text of a chunk of ``code``: each distinct compound identifier's
    words (then, for one joined by ``_``, its words run together), in order of first
    appearance; empty when the code has none."""
    out: list[str] = []
    size = 0
    seen: set[str] = set()
    for name in _IDENTIFIER.findall(code):
        if name in seen:
            continue
        seen.add(name)
        words = split_identifier(name)
        if len(words) < 2:
            continue
        terms = " ".join(words)
        if "_" in name or "$" in name:
            terms += " " + "".join(words)
        size += len(terms) + 1
        if size > _MAX_TERMS_CHARS:
            break
        out.append(terms)
    return " ".join(out)

"""Identifiers are searchable the way developers type them."""

from __future__ import annotations

from gristmill.identifiers import identifier_terms, split_identifier


def test_camel_snake_acronyms_and_digits_split_into_words() -> None:
    assert split_identifier("applyDiscount") == ["apply", "discount"]
    assert split_identifier("InvoiceService") == ["invoice", "service"]
    assert split_identifier("invoice_service") == ["invoice", "service"]
    assert split_identifier("parseHTTPResponse2") == ["parse", "http", "response", "2"]
    assert split_identifier("MAX_RETRY_COUNT") == ["max", "retry", "count"]
    assert split_identifier("$scope") == ["scope"]
    assert split_identifier("x") == ["x"]


def test_terms_hold_each_compound_identifier_once_and_snake_case_joined() -> None:
    code = ("public BigDecimal applyDiscount(Invoice invoice) {\n"
            "    return invoice_service.applyDiscount(invoice);\n}")
    terms = identifier_terms(code)
    assert terms == "big decimal apply discount invoice service invoiceservice"
    assert identifier_terms("return x + y;") == ""


def test_terms_of_a_generated_file_are_bounded() -> None:
    code = " ".join(f"fieldNumber{i}" for i in range(100_000))
    assert len(identifier_terms(code)) <= 20_000

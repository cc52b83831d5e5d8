"""The extractor registry: every built-in family registered under its extensions."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.extract import (
    Extractor,
    email,
    epub,
    extractor_for,
    html,
    office,
    pdf,
    registered,
    text,
)

EXPECTED = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".epub": "epub",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "email",
    **dict.fromkeys(
        [".txt", ".text", ".md", ".markdown", ".rst", ".log", ".org"], "text"
    ),
    ".csv": "csv",
    ".tsv": "csv",
}


@pytest.mark.parametrize(("extension", "name"), sorted(EXPECTED.items()))
def test_each_required_extension_has_its_extractor(extension: str, name: str) -> None:
    """Every extension the formats promise maps to the extractor of its family."""
    assert registered()[extension].name == name


@pytest.mark.parametrize("module", [pdf, office, epub, html, text, email])
def test_every_extractor_follows_the_protocol(module: object) -> None:
    """Each module's extractors have a name, version 1 and lower-case dotted suffixes."""
    for extractor in module.EXTRACTORS:  # type: ignore[attr-defined]
        assert isinstance(extractor, Extractor)
        assert extractor.name and extractor.version == 1
        assert all(e.startswith(".") and e == e.lower() for e in extractor.extensions)


def test_no_two_families_claim_an_extension() -> None:
    """No extension is claimed twice, so registration order never decides a format."""
    claims = [
        ext
        for module in (pdf, office, epub, html, text, email)
        for extractor in module.EXTRACTORS
        for ext in extractor.extensions
    ]
    assert len(claims) == len(set(claims))


def test_extractor_names_are_unique() -> None:
    """Names are recorded on items, so two families must not share one."""
    names = [e.name for m in (pdf, office, epub, html, text, email) for e in m.EXTRACTORS]
    assert len(names) == len(set(names))


def test_lookup_ignores_case_and_unknown_types() -> None:
    """extractor_for matches suffixes case-insensitively and returns None for the unknown."""
    found = extractor_for(Path("REPORT.PDF"))
    assert found is not None and found.name == "pdf"
    assert extractor_for(Path("archive.tar.gz")) is None
    assert extractor_for(Path("no_suffix")) is None

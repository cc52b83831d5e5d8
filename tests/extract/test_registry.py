"""The extractor registry: every built-in family registered under its extensions."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.extract import (
    Extractor,
    archive,
    code,
    data,
    email,
    epub,
    extractor_for,
    html,
    image,
    jsp,
    legacy,
    markup,
    msg,
    notebook,
    office,
    pdf,
    registered,
    text,
)

MODULES = (pdf, office, epub, html, text, email, msg, data, notebook, legacy, image,
           archive, code, jsp, markup)

EXPECTED = {
    ".pdf": "pdf",
    **dict.fromkeys([".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"],
                    "image"),
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".epub": "epub",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    **dict.fromkeys([".eml", ".p7m", ".p7s"], "email"),
    ".zip": "zip",
    ".msg": "msg",
    ".json": "json",
    **dict.fromkeys([".ndjson", ".jsonl"], "jsonl"),
    ".xml": "xml",
    ".tld": "xml",
    ".ipynb": "ipynb",
    **dict.fromkeys([".doc", ".rtf", ".odt"], "writer"),
    **dict.fromkeys([".xls", ".ods"], "calc"),
    **dict.fromkeys([".ppt", ".odp"], "impress"),
    **dict.fromkeys(
        [".txt", ".text", ".md", ".markdown", ".rst", ".log", ".org", ".toml", ".ini",
         ".cfg"], "text"
    ),
    # YAML by top-level key, with the source languages (tree-sitter).
    **dict.fromkeys([".java", ".py", ".ts", ".go", ".yaml", ".yml"], "code"),
    **dict.fromkeys([".jsp", ".jspx", ".jspf", ".tag", ".ftl", ".vm"], "jsp"),
    ".csv": "csv",
    ".tsv": "csv",
}


@pytest.mark.parametrize(("extension", "name"), sorted(EXPECTED.items()))
def test_each_required_extension_has_its_extractor(extension: str, name: str) -> None:
    """Every extension the formats promise maps to the extractor of its family."""
    assert registered()[extension].name == name


@pytest.mark.parametrize("module", MODULES)
def test_every_extractor_follows_the_protocol(module: object) -> None:
    """Each module's extractors have a name, a version and lower-case dotted suffixes."""
    for extractor in module.EXTRACTORS:  # type: ignore[attr-defined]
        assert isinstance(extractor, Extractor)
        assert extractor.name and isinstance(extractor.version, int) and extractor.version >= 1
        assert all(e.startswith(".") and e == e.lower() for e in extractor.extensions)


def test_no_two_families_claim_an_extension() -> None:
    """No extension is claimed twice, so registration order never decides a format."""
    claims = [
        ext
        for module in MODULES
        for extractor in module.EXTRACTORS
        for ext in extractor.extensions
    ]
    assert len(claims) == len(set(claims))


def test_the_lazy_loading_table_matches_what_each_module_declares() -> None:
    """The registry knows which module reads an extension before importing it; that
    table must agree with the modules, or a format would silently go unread."""
    from gristmill.extract import _BUILTIN_HOMES

    declared = {ext: module.__name__.rsplit(".", 1)[1]
                for module in MODULES
                for extractor in module.EXTRACTORS
                for ext in extractor.extensions}
    assert declared == _BUILTIN_HOMES


def test_the_version_table_matches_the_extractor_classes() -> None:
    """The driver decides what to redo from a table of versions; a class bumped without
    the table (or the reverse) would redo its items on every run, or never."""
    from gristmill.extract import _BUILTIN_VERSIONS

    declared = {extractor.name: extractor.version
                for module in MODULES
                for extractor in module.EXTRACTORS}
    assert declared == _BUILTIN_VERSIONS


def test_reads_knows_every_builtin_suffix_without_importing() -> None:
    """`reads` answers for built-in types from the table alone."""
    from gristmill.extract import reads

    assert reads(Path("a/B.PDF")) and reads(Path("notes.md")) and reads(Path("x.tar.csv"))
    assert not reads(Path("image.xyz")) and not reads(Path("Makefile"))


def test_a_pdf_lookup_does_not_import_the_office_libraries() -> None:
    """A worker that meets only PDFs never pays for python-docx, pptx and openpyxl."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from gristmill.extract import "
            "extractor_for; assert extractor_for(Path('a.pdf')).name == 'pdf'; "
            "print(sorted(m for m in ('docx', 'pptx', 'openpyxl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_plugin_keeps_its_claim_over_a_builtin_loaded_later() -> None:
    """Registering a plugin for .docx before any office file is seen keeps the plugin."""
    import subprocess
    import sys

    code = ("from pathlib import Path; from gristmill.extract import extractor_for, "
            "register\n"
            "class Mine:\n name = 'mine'; version = 1; extensions = frozenset({'.docx'})\n"
            " def extract(self, path, limits): return iter(())\n"
            "register(Mine())\n"
            "print(extractor_for(Path('a.xlsx')).name, extractor_for(Path('a.docx')).name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["xlsx", "mine"]


def test_extractor_names_are_unique() -> None:
    """Names are recorded on items, so two families must not share one."""
    names = [e.name for m in MODULES for e in m.EXTRACTORS]
    assert len(names) == len(set(names))


def test_lookup_ignores_case_and_unknown_types() -> None:
    """extractor_for matches suffixes case-insensitively and returns None for the unknown."""
    found = extractor_for(Path("REPORT.PDF"))
    assert found is not None and found.name == "pdf"
    assert extractor_for(Path("archive.tar.gz")) is None
    assert extractor_for(Path("no_suffix")) is None

"""PDF extraction: pages in order with their numbers; clear reasons for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from docs import make_encrypted_pdf, make_pdf
from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.pdf import PdfExtractor


def extract(path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(PdfExtractor().extract(path, limits or Limits()))


def test_each_page_becomes_a_segment_with_its_number(tmp_path: Path) -> None:
    """Every page's text comes back in order, tagged with its 1-based page number."""
    pdf = make_pdf(tmp_path / "a.pdf", ["First page", "Second page", "Third page"])
    segments = extract(pdf)
    assert [(s.text, s.page) for s in segments] == [
        ("First page", 1),
        ("Second page", 2),
        ("Third page", 3),
    ]


def test_lines_and_latin_text_round_trip(tmp_path: Path) -> None:
    """Lines stay separate and WinAnsi characters and PDF escapes survive."""
    pdf = make_pdf(tmp_path / "a.pdf", ["Café (déjà vu) \\ back\nsecond line\nthird line"])
    assert extract(pdf)[0].text == "Café (déjà vu) \\ back\nsecond line\nthird line"


def test_text_beyond_the_page_edge_is_kept(tmp_path: Path) -> None:
    """A line running past the right edge is extracted whole, not clipped to the page."""
    line = " ".join(f"word{i}" for i in range(150))
    pdf = make_pdf(tmp_path / "a.pdf", [line])
    assert extract(pdf)[0].text == line


def test_blank_pages_are_skipped_but_numbers_kept(tmp_path: Path) -> None:
    """A page without text yields nothing; the pages after it keep their true numbers."""
    pdf = make_pdf(tmp_path / "a.pdf", ["one", "", "three"])
    assert [s.page for s in extract(pdf)] == [1, 3]


def test_pdf_without_text_layer_is_unsupported(tmp_path: Path) -> None:
    """A PDF whose pages carry no text (a scan) is skipped with the OCR reason."""
    pdf = make_pdf(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(Unsupported, match="no text layer"):
        extract(pdf)


def test_encrypted_pdf_fails_with_password_reason(tmp_path: Path) -> None:
    """A password-protected PDF fails with a reason that says a password is needed."""
    pdf = make_encrypted_pdf(tmp_path / "locked.pdf", "secret text")
    with pytest.raises(ExtractionError, match="encrypted PDF: a password is needed"):
        extract(pdf)


def test_truncated_pdf_fails_as_corrupt(tmp_path: Path) -> None:
    """A PDF cut in half fails as truncated or corrupt."""
    whole = make_pdf(tmp_path / "whole.pdf", ["one", "two", "three"]).read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ExtractionError, match="truncated or corrupt PDF"):
        extract(cut)


def test_random_bytes_named_pdf_fail_as_corrupt(tmp_path: Path) -> None:
    """Bytes that are not a PDF at all fail as an ExtractionError, not a library error."""
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(bytes((i * 7 + 3) % 256 for i in range(4096)))
    with pytest.raises(ExtractionError, match="truncated or corrupt PDF"):
        extract(fake)


def test_text_over_the_limit_is_refused(tmp_path: Path) -> None:
    """Extraction stops with LimitExceeded once the text passes max_text_chars."""
    pdf = make_pdf(tmp_path / "a.pdf", ["x" * 50, "y" * 50])
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        extract(pdf, Limits(max_text_chars=60))


def test_stopping_early_releases_the_document(tmp_path: Path) -> None:
    """A caller may abandon the generator after one page; closing it raises nothing."""
    pdf = make_pdf(tmp_path / "a.pdf", [f"page {i}" for i in range(1, 6)])
    segments = PdfExtractor().extract(pdf, Limits())
    assert next(segments).page == 1
    segments.close()

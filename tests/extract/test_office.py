"""Word, PowerPoint and Excel extraction, and the zip checks that guard them."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from docs import make_docx, make_pptx, make_xlsx, make_zip_bomb
from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract._archive import check_zip
from gristmill.extract.base import Limits, Segment
from gristmill.extract.office import DocxExtractor, PptxExtractor, XlsxExtractor


def docx_segments(path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(DocxExtractor().extract(path, limits or Limits()))


# --- Word ------------------------------------------------------------------------------


def test_docx_paragraphs_come_back_in_order(tmp_path: Path) -> None:
    """Body paragraphs are returned in document order, separated by blank lines."""
    path = make_docx(tmp_path / "a.docx", ["First paragraph.", "Second paragraph."])
    assert [s.text for s in docx_segments(path)] == ["First paragraph.\n\nSecond paragraph."]


def test_docx_heading_styles_start_sections(tmp_path: Path) -> None:
    """A Heading-styled paragraph opens a new segment whose heading it becomes."""
    path = make_docx(
        tmp_path / "a.docx",
        ["Preface text.", "Body one.", "Body two."],
        headings={1: "Chapter One"},
    )
    assert [(s.heading, s.text) for s in docx_segments(path)] == [
        (None, "Preface text."),
        ("Chapter One", "Chapter One\n\nBody one.\n\nBody two."),
    ]


def test_docx_tables_become_markdown_in_body_order(tmp_path: Path) -> None:
    """A table is rendered as Markdown rows, header rule included, after the paragraphs."""
    path = make_docx(
        tmp_path / "a.docx",
        ["Prices:"],
        tables=[[["Item", "Price"], ["Apple", "1.99"], ["Pear | ripe", "2.50"]]],
    )
    assert docx_segments(path)[0].text == (
        "Prices:\n\n"
        "| Item | Price |\n| --- | --- |\n| Apple | 1.99 |\n| Pear \\| ripe | 2.50 |"
    )


def test_docx_without_text_is_unsupported(tmp_path: Path) -> None:
    """A document whose paragraphs are all blank is skipped as having no text."""
    path = make_docx(tmp_path / "blank.docx", ["", "  "])
    with pytest.raises(Unsupported, match="no text"):
        docx_segments(path)


def test_zip_bomb_named_docx_is_refused_before_parsing(tmp_path: Path) -> None:
    """A member that inflates about 1000:1 is refused as a zip bomb, never decompressed."""
    bomb = make_zip_bomb(tmp_path / "bomb.docx", megabytes=50)
    with pytest.raises(LimitExceeded, match="zip bomb"):
        docx_segments(bomb)


def test_random_bytes_named_docx_fail_as_bad_zip(tmp_path: Path) -> None:
    """Bytes that are not a zip fail as an ExtractionError naming the archive problem."""
    fake = tmp_path / "fake.docx"
    fake.write_bytes(b"this is not a zip archive\n" * 40)
    with pytest.raises(ExtractionError, match="not a valid zip archive"):
        docx_segments(fake)


def test_zip_that_is_not_a_word_package_fails_clearly(tmp_path: Path) -> None:
    """A healthy zip without Word parts fails as an unreadable Word document."""
    path = tmp_path / "other.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(ExtractionError, match="not a readable Word document"):
        docx_segments(path)


def test_password_protected_office_file_fails_as_encrypted(tmp_path: Path) -> None:
    """An OLE container (how Office stores encrypted OOXML) fails as encrypted."""
    path = tmp_path / "locked.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024))
    with pytest.raises(ExtractionError, match="encrypted Excel workbook"):
        list(XlsxExtractor().extract(path, Limits()))


# --- Zip checks ------------------------------------------------------------------------


def test_check_zip_accepts_an_ordinary_document(tmp_path: Path) -> None:
    """A normal DOCX passes every archive limit."""
    check_zip(make_docx(tmp_path / "a.docx", ["hello"]), Limits())


def test_check_zip_refuses_too_many_members(tmp_path: Path) -> None:
    """An archive with more members than max_archive_members is refused."""
    path = make_docx(tmp_path / "a.docx", ["hello"])
    with pytest.raises(LimitExceeded, match="max_archive_members"):
        check_zip(path, Limits(max_archive_members=3))


def test_check_zip_refuses_too_many_unpacked_bytes(tmp_path: Path) -> None:
    """An archive declaring more unpacked bytes than max_unpacked_bytes is refused."""
    path = make_docx(tmp_path / "a.docx", ["hello"])
    with pytest.raises(LimitExceeded, match="max_unpacked_bytes"):
        check_zip(path, Limits(max_unpacked_bytes=10_000))


def test_check_zip_judges_ratio_of_big_members_only(tmp_path: Path) -> None:
    """Small, highly compressible members pass; a big one over the ratio does not."""
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("styles.xml", "<a/>" * 20_000)  # 80 KB at ~400:1
    check_zip(path, Limits())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        # Incompressible bytes keep the whole archive's ratio low, so only the member
        # check can catch the bomb hidden beside them.
        archive.writestr("photo.jpg", random.Random(0).randbytes(8 * 1024 * 1024))
        archive.writestr("big.xml", bytes(4 * 1024 * 1024))
    with pytest.raises(LimitExceeded, match=r"member 'big\.xml'"):
        check_zip(path, Limits(max_compression_ratio=200))


# --- PowerPoint ------------------------------------------------------------------------


def test_pptx_slides_carry_number_and_title(tmp_path: Path) -> None:
    """Each slide is a segment: page = slide number, heading = slide title."""
    path = make_pptx(tmp_path / "a.pptx", [("Welcome", "Opening words"), ("Plans", "Next year")])
    segments = list(PptxExtractor().extract(path, Limits()))
    assert [(s.page, s.heading, s.text) for s in segments] == [
        (1, "Welcome", "Welcome\n\nOpening words"),
        (2, "Plans", "Plans\n\nNext year"),
    ]


def test_pptx_tables_and_notes_are_included(tmp_path: Path) -> None:
    """Slide tables come back as Markdown rows and speaker notes follow the slide text."""
    path = make_pptx(
        tmp_path / "a.pptx",
        [("Figures", "See table")],
        notes={0: "Say the numbers slowly"},
        tables={0: [["Year", "Sales"], ["2024", "10"]]},
    )
    (segment,) = PptxExtractor().extract(path, Limits())
    assert "| Year | Sales |\n| --- | --- |\n| 2024 | 10 |" in segment.text
    assert segment.text.endswith("Notes: Say the numbers slowly")


# --- Excel -----------------------------------------------------------------------------


def test_xlsx_sheets_carry_index_and_name(tmp_path: Path) -> None:
    """Each sheet's rows come back as a Markdown table tagged with its index and name."""
    path = make_xlsx(
        tmp_path / "a.xlsx",
        {"People": [["Name", "Age"], ["Ada", 36]], "Places": [["City"], ["London"]]},
    )
    segments = list(XlsxExtractor().extract(path, Limits()))
    assert [(s.page, s.heading, s.text) for s in segments] == [
        (1, "People", "| Name | Age |\n| --- | --- |\n| Ada | 36 |"),
        (2, "Places", "| City |\n| --- |\n| London |"),
    ]


def test_xlsx_rows_stream_in_blocks_with_header_repeated(tmp_path: Path) -> None:
    """Long sheets are cut into blocks of 200 rows, each starting with the header row."""
    rows = [["n", "square"], *([i, i * i] for i in range(450))]
    path = make_xlsx(tmp_path / "a.xlsx", {"Numbers": rows})
    segments = list(XlsxExtractor().extract(path, Limits()))
    assert len(segments) == 3
    assert all(s.text.startswith("| n | square |\n| --- | --- |\n") for s in segments)
    assert segments[-1].text.endswith("| 449 | 201601 |")


def test_xlsx_without_values_is_unsupported(tmp_path: Path) -> None:
    """A workbook whose sheets are empty is skipped as having no cell values."""
    path = make_xlsx(tmp_path / "empty.xlsx", {"Sheet": []})
    with pytest.raises(Unsupported, match="no cell values"):
        list(XlsxExtractor().extract(path, Limits()))

"""Word, PowerPoint and Excel (OOXML) documents.

Each file passes :func:`~gristmill.extract._archive.check_zip` before its library opens it,
because python-docx, python-pptx and openpyxl inflate whole XML parts in memory. Excel
sheets are read in read-only mode, a block of rows at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pptx
from docx.opc.exceptions import PackageNotFoundError as DocxPackageNotFound
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
from openpyxl.utils.exceptions import InvalidFileException
from pptx.exc import PackageNotFoundError as PptxPackageNotFound
from pptx.shapes.group import GroupShape

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract._archive import check_zip
from gristmill.extract.base import Limits, Segment
from gristmill.extract.text import markdown_table_blocks, markdown_table_row

__all__ = ["EXTRACTORS", "DocxExtractor", "PptxExtractor", "XlsxExtractor"]

_MAX_SEGMENT_CHARS = 1024 * 1024
_MAX_HEADING_CHARS = 200
# Password-protected OOXML is not a zip but an OLE compound file wrapping the encrypted
# package; legacy .doc/.xls/.ppt renamed to the new suffix look the same.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class DocxExtractor:
    """Word documents: body paragraphs and tables in order; heading styles set ``heading``."""

    name = "docx"
    version = 1
    extensions = frozenset({".docx", ".docm"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the body text, one segment per section between headings.

        Raises:
            ExtractionError: not a readable Word package, or encrypted.
            LimitExceeded: a zip-bomb limit or ``limits.max_text_chars``.
            Unsupported: the document has no text.
        """
        _check_package(path, limits, "Word document")
        try:
            document = docx.Document(str(path))
        except (DocxPackageNotFound, KeyError, ValueError) as exc:
            raise ExtractionError(f"not a readable Word document: {exc}") from exc
        styles = {style.style_id: style.name or "" for style in document.styles}
        sections = _Sections(limits)
        for block in _body_blocks(document.element.body):
            if block.tag == qn("w:tbl"):
                sections.add(_docx_table(block, document))
                continue
            paragraph = Paragraph(block, document)
            text = paragraph.text.strip()
            if text and _is_heading(styles.get(block.style or "", "")):
                if segment := sections.flush():
                    yield segment
                sections.heading = " ".join(text.split())[:_MAX_HEADING_CHARS]
            sections.add(text)
            if sections.full and (segment := sections.flush()):
                yield segment
        if segment := sections.flush():
            yield segment
        if not sections.total:
            raise Unsupported("no text in Word document")


class PptxExtractor:
    """PowerPoint decks: ``page`` is the slide number, ``heading`` the slide title."""

    name = "pptx"
    version = 1
    extensions = frozenset({".pptx", ".pptm"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield one segment per slide: title, text frames, tables, then speaker notes.

        Raises:
            ExtractionError: not a readable PowerPoint package, or encrypted.
            LimitExceeded: a zip-bomb limit or ``limits.max_text_chars``.
            Unsupported: no slide has text.
        """
        _check_package(path, limits, "PowerPoint presentation")
        try:
            deck = pptx.Presentation(str(path))
        except (PptxPackageNotFound, KeyError, ValueError) as exc:
            raise ExtractionError(f"not a readable PowerPoint presentation: {exc}") from exc
        total = 0
        for number, slide in enumerate(deck.slides, start=1):
            title_shape = slide.shapes.title
            title = title_shape.text_frame.text.strip() if title_shape is not None else ""
            parts = [title] if title else []
            skip = title_shape.shape_id if title_shape is not None else None
            parts.extend(_shape_texts(slide.shapes, skip))
            if slide.has_notes_slide and (notes := _notes(slide)):
                parts.append(f"Notes: {notes}")
            text = "\n\n".join(part for part in parts if part)
            total = _count(total, text, limits)
            if text:
                heading = " ".join(title.split())[:_MAX_HEADING_CHARS] or None
                yield Segment(text, page=number, heading=heading)
        if not total:
            raise Unsupported("no text in PowerPoint presentation")


class XlsxExtractor:
    """Excel workbooks: ``page`` is the sheet number, ``heading`` its name; rows as tables."""

    name = "xlsx"
    version = 1
    extensions = frozenset({".xlsx", ".xlsm"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield each sheet's rows as Markdown tables of up to 200 rows, header repeated.

        Raises:
            ExtractionError: not a readable Excel package, or encrypted.
            LimitExceeded: a zip-bomb limit or ``limits.max_text_chars``.
            Unsupported: no sheet has a value.
        """
        _check_package(path, limits, "Excel workbook")
        try:
            with _quiet_openpyxl():
                workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (InvalidFileException, KeyError) as exc:
            raise ExtractionError(f"not a readable Excel workbook: {exc}") from exc
        try:
            total = 0
            for number, sheet in enumerate(workbook.worksheets, start=1):
                for text in markdown_table_blocks(_sheet_rows(sheet)):
                    total = _count(total, text, limits)
                    yield Segment(text, page=number, heading=sheet.title)
        finally:
            # Read-only workbooks keep the zip open until closed.
            workbook.close()
        if not total:
            raise Unsupported("no cell values in Excel workbook")


# --- Shared ----------------------------------------------------------------------------


def _check_package(path: Path, limits: Limits, kind: str) -> None:
    with path.open("rb") as fh:
        if fh.read(len(_OLE_MAGIC)) == _OLE_MAGIC:
            raise ExtractionError(
                f"encrypted {kind}: a password is needed (or a legacy binary file renamed)"
            )
    check_zip(path, limits)


def _count(total: int, text: str, limits: Limits) -> int:
    total += len(text)
    if total > limits.max_text_chars:
        raise LimitExceeded(
            f"document text exceeds {limits.max_text_chars:,} characters (max_text_chars)"
        )
    return total


def _markdown_table(rows: Iterable[list[str]]) -> str:
    lines: list[str] = []
    for row in rows:
        lines.append(markdown_table_row(row))
        if len(lines) == 1:
            lines.append(markdown_table_row(["---"] * len(row)))
    return "\n".join(lines)


class _Sections:
    """Paragraphs gathered under the current heading until the next one."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.heading: str | None = None
        self.paragraphs: list[str] = []
        self.size = 0
        self.total = 0

    @property
    def full(self) -> bool:
        """True when the section is as long as one segment may be."""
        return self.size >= _MAX_SEGMENT_CHARS

    def add(self, text: str) -> None:
        """Append a paragraph (blank ones are dropped)."""
        if text:
            self.paragraphs.append(text)
            self.size += len(text)
            self.total = _count(self.total, text, self.limits)

    def flush(self) -> Segment | None:
        """The gathered paragraphs as a segment, or ``None`` when there are none."""
        if not self.paragraphs:
            return None
        segment = Segment("\n\n".join(self.paragraphs), heading=self.heading)
        self.paragraphs, self.size = [], 0
        return segment


# --- Word ------------------------------------------------------------------------------


def _body_blocks(body: Any) -> Iterator[Any]:
    """Body paragraphs and tables in order, including those inside content controls."""
    pending = list(reversed(body))
    while pending:
        element = pending.pop()
        if element.tag in (qn("w:p"), qn("w:tbl")):
            yield element
        elif element.tag == qn("w:sdt"):
            # Content controls (cover pages, tables of contents) wrap ordinary blocks.
            content = element.find(qn("w:sdtContent"))
            if content is not None:
                pending.extend(reversed(content))


def _is_heading(style_name: str) -> bool:
    name = style_name.lower()
    return name.startswith("heading") or name == "title"


def _docx_table(table: Any, document: Any) -> str:
    # Read from the XML rather than python-docx's Table: its cell grid resolution is slow
    # on big tables and fails on some malformed spans; merged cells just appear once here.
    rows = []
    for tr in table.iter(qn("w:tr")):
        cells = [
            " ".join(Paragraph(p, document).text for p in tc.iter(qn("w:p")))
            for tc in tr.iterchildren(qn("w:tc"))
        ]
        if any(cell.strip() for cell in cells):
            rows.append(cells)
    return _markdown_table(rows)


# --- PowerPoint ------------------------------------------------------------------------


def _shape_texts(shapes: Iterable[Any], skip: int | None) -> Iterator[str]:
    """Text of every shape in slide order, group shapes opened in place."""
    pending = list(reversed(list(shapes)))
    while pending:
        shape = pending.pop()
        if shape.shape_id == skip:
            continue
        if isinstance(shape, GroupShape):
            pending.extend(reversed(list(shape.shapes)))
        elif shape.has_text_frame:
            yield shape.text_frame.text.strip()
        elif shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            yield _markdown_table(rows)


def _notes(slide: Any) -> str:
    frame = slide.notes_slide.notes_text_frame
    return frame.text.strip() if frame is not None else ""


# --- Excel -----------------------------------------------------------------------------


@contextmanager
def _quiet_openpyxl() -> Iterator[None]:
    # openpyxl warns about every workbook feature it drops on reading (data validation,
    # conditional formatting extensions, a missing default style); none affects text.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\.|$)")
        yield


def _sheet_rows(sheet: Any) -> Iterator[list[str]]:
    rows = iter(sheet.iter_rows(values_only=True))
    while True:
        # The filter must not stay installed while the caller runs between rows.
        with _quiet_openpyxl():
            row = next(rows, None)
        if row is None:
            return
        yield _cells(row)


def _cells(row: Iterable[Any]) -> list[str]:
    cells = ["" if value is None else str(value) for value in row]
    while cells and not cells[-1].strip():
        cells.pop()
    return cells


EXTRACTORS = [DocxExtractor(), PptxExtractor(), XlsxExtractor()]

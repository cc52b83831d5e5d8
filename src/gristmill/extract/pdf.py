"""PDF text, page by page, with pypdfium2; scanned pages by OCR.

Each page is decided on its own, so mixed PDFs work: a page with a usable text layer is
extracted; a page whose text layer is garbage (fonts without a Unicode map), that is
mostly a picture with next to no text (a scan), or that has no text but a picture, is
rendered in grayscale at ``ocr_dpi`` and read by OCR. Scanned pages are read several at a time (see
:func:`gristmill.extract.ocr.recognize_in_order`).

Only one page and its text page are open at a time, and both are closed before the next
page is loaded, so a 2,000-page report costs the memory of its largest page; rendered
pages waiting for OCR are bounded by the OCR parallelism.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment, ocr_options

if TYPE_CHECKING:  # Pillow and the OCR module load on the first scanned page only
    from PIL import Image

    from gristmill.extract.ocr import OcrEngine

__all__ = ["EXTRACTORS", "MAX_PIXELS", "PdfExtractor", "page_needs_ocr"]

#: Pixels a page is rendered at, at most, for OCR (as for images: see image.MAX_PIXELS).
#: A larger page is rendered at a lower resolution, down to _MIN_DPI.
MAX_PIXELS = 100_000_000
_MIN_DPI = 72

# A page is a scan when pictures cover this share of it and its text layer has fewer
# than _FEW_CHARS characters (a page number, a stamp). A scan with an OCR layer of its
# own has more text, and that layer is kept.
_PICTURE_SHARE = 0.3
_FEW_CHARS = 50
# A page with no text at all is read when any picture on it is more than a stamp: a
# scanned table pasted alone on a page covers a tenth of it.
_ANY_PICTURE_SHARE = 0.01

# A text layer is garbage when this share of its characters are control characters,
# U+FFFD or private-use code points: what pdfium returns for fonts without a Unicode map.
_GARBAGE_SHARE = 0.3
_SPACE = re.compile(r"\s")
_GARBAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd\ue000-\uf8ff]")

# Why a document failed to load, by pdfium's error code, in words a user can act on.
_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_PASSWORD: "encrypted PDF: a password is needed",
    pdfium_c.FPDF_ERR_SECURITY: "encrypted PDF: unsupported security handler",
    pdfium_c.FPDF_ERR_FORMAT: "truncated or corrupt PDF",
    pdfium_c.FPDF_ERR_FILE: "PDF file could not be opened",
    # pdfium reports success yet finds no page when the page tree is broken.
    pdfium_c.FPDF_ERR_SUCCESS: "truncated or corrupt PDF: no pages found",
}

# pdfium marks line-end hyphens and other layout artefacts with C0 control characters.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f]+")  # all C0 controls but \t and \n


class PdfExtractor:
    """PDF files, born-digital, scanned or mixed; ``page`` is the 1-based page number."""

    name = "pdf"
    version = 2  # 2: scanned and garbage-text pages read by OCR
    extensions = frozenset({".pdf"})

    def __init__(self, engine: OcrEngine | None = None) -> None:
        """Args:
        engine: reads scanned pages; by default the one ``ocr_engine`` names.
        """
        self._engine = engine

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield one segment per page that has text, OCR'ing pages that need it.

        Raises:
            ExtractionError: encrypted, truncated or corrupt PDF; OCR of a page failed.
            LimitExceeded: more text than ``limits.max_text_chars``; a page too large to
                render even at 72 dpi.
            Unsupported: no page has text; a page needs OCR and Tesseract (or the
                configured language) is not installed.
        """
        document = _open(path)
        try:
            total = 0
            for index, text in self._page_texts(document):
                total += len(text)
                if total > limits.max_text_chars:
                    raise LimitExceeded(
                        f"PDF text exceeds {limits.max_text_chars:,} characters "
                        "(max_text_chars)"
                    )
                if text:
                    yield Segment(text, page=index + 1)
            if not total:
                raise Unsupported("no text found (no text layer, and OCR found none)")
        finally:
            document.close()

    def _page_texts(self, document: pdfium.PdfDocument) -> Iterator[tuple[int, str]]:
        pages = ((index, _page(document, index)) for index in range(len(document)))
        for index, work in pages:
            if not isinstance(work, str):
                break
            yield index, work
        else:
            return  # born-digital throughout: OCR never loaded
        # From the first page that needs OCR on, pages go through the OCR pipeline.
        from gristmill.extract.ocr import engine, recognize_in_order

        reader = self._engine or engine(ocr_options().engine)
        yield from recognize_in_order(_chain((index, work), pages), reader)


def _open(path: Path) -> pdfium.PdfDocument:
    try:
        # A path (not bytes) lets pdfium read the file lazily instead of holding it all.
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        reason = _LOAD_ERRORS.get(exc.err_code, f"unreadable PDF: {exc}")
        raise ExtractionError(reason) from exc


def _page(document: pdfium.PdfDocument, index: int) -> str | Image.Image:
    """The page's text, or the page rendered for OCR when its text layer will not do."""
    try:
        page = document[index]
    except pdfium.PdfiumError as exc:
        raise ExtractionError(f"corrupt PDF: page {index + 1} cannot be loaded") from exc
    try:
        try:
            textpage = page.get_textpage()
            try:
                # The whole text, not get_text_bounded(): that clips to the page box and
                # drops text set beyond its edge, which is still the document's text.
                raw = textpage.get_text_range()
            finally:
                textpage.close()
        except pdfium.PdfiumError as exc:
            raise ExtractionError(f"corrupt PDF: no text on page {index + 1}: {exc}") from exc
        if page_needs_ocr(page, raw):
            return _render(page, index)
        return _clean(raw)
    finally:
        page.close()


def page_needs_ocr(page: pdfium.PdfPage, raw: str) -> bool:
    """Whether a page with text layer ``raw`` is read by OCR instead: its text is
    garbage, or it is a picture with next to no text (see the module's docstring)."""
    return _garbage(raw) or (len(raw) < 4 * _FEW_CHARS and _scanned(page, raw))


def _garbage(raw: str) -> bool:
    bad = len(_GARBAGE.findall(raw))
    if bad < 8:  # nearly every page: a few hyphen marks at most
        return False
    visible = len(raw) - len(_SPACE.findall(raw))
    return bad >= _GARBAGE_SHARE * visible


def _scanned(page: pdfium.PdfPage, raw: str) -> bool:
    visible = len("".join(_clean(raw).split()))
    if visible >= _FEW_CHARS:
        return False
    share = _PICTURE_SHARE if visible else _ANY_PICTURE_SHARE
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return False
    covered = 0.0
    for picture in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
        left, bottom, right, top = picture.get_bounds()
        covered += max(0.0, min(right, width) - max(left, 0.0)) * max(
            0.0, min(top, height) - max(bottom, 0.0))
        if covered >= share * width * height:
            return True
    return False


def _render(page: pdfium.PdfPage, index: int) -> Image.Image:
    width, height = page.get_size()  # points, 72 a inch
    dpi = float(ocr_options().dpi)
    pixels = (width * dpi / 72) * (height * dpi / 72)
    if pixels > MAX_PIXELS:
        dpi *= math.sqrt(MAX_PIXELS / pixels)
        if dpi < _MIN_DPI:
            raise LimitExceeded(
                f"page {index + 1} is {width / 72:.0f} x {height / 72:.0f} in, over the "
                f"{MAX_PIXELS // 1_000_000}-megapixel limit for OCR even at {_MIN_DPI} dpi")
    try:
        bitmap = page.render(scale=dpi / 72, grayscale=True, may_draw_forms=True)
    except pdfium.PdfiumError as exc:
        raise ExtractionError(f"corrupt PDF: page {index + 1} cannot be rendered") from exc
    try:
        # A copy that owns its pixels: OCR threads must never free pdfium memory.
        image: Image.Image = bitmap.to_pil().copy()
    finally:
        bitmap.close()
    image.info["dpi"] = (dpi, dpi)  # so OCR need not guess it
    return image


def _chain(first: tuple[int, str | Image.Image],
           rest: Iterator[tuple[int, str | Image.Image]]
           ) -> Iterator[tuple[int, str | Image.Image]]:
    yield first
    yield from rest


def _clean(raw: str) -> str:
    # pdfium ends lines with "\r\n". Other control characters (hyphen marks, a stray
    # \r) are dropped; a search first, because most pages have none and a search is
    # cheaper than a substitution.
    text = raw.replace("\r\n", "\n")
    if _CONTROLS.search(text):
        text = _CONTROLS.sub("", text)
    return text.strip()


EXTRACTORS = [PdfExtractor()]

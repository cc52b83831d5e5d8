"""PDF text, page by page, with pypdfium2.

Only one page and its text page are open at a time, and both are closed before the next
page is loaded, so a 2,000-page report costs the memory of its largest page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment

__all__ = ["EXTRACTORS", "PdfExtractor"]

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
    """Text layer of PDF files; ``page`` is the 1-based page number."""

    name = "pdf"
    version = 1
    extensions = frozenset({".pdf"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield one segment per page that has text.

        Raises:
            ExtractionError: encrypted, truncated or corrupt PDF.
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: no page has a text layer (a scan; OCR is another extractor's job).
        """
        document = _open(path)
        try:
            total = 0
            for index in range(len(document)):
                text = _page_text(document, index)
                total += len(text)
                if total > limits.max_text_chars:
                    raise LimitExceeded(
                        f"PDF text exceeds {limits.max_text_chars:,} characters "
                        "(max_text_chars)"
                    )
                if text:
                    yield Segment(text, page=index + 1)
            if not total:
                raise Unsupported("no text layer (scanned PDF; OCR not enabled)")
        finally:
            document.close()


def _open(path: Path) -> pdfium.PdfDocument:
    try:
        # A path (not bytes) lets pdfium read the file lazily instead of holding it all.
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        reason = _LOAD_ERRORS.get(exc.err_code, f"unreadable PDF: {exc}")
        raise ExtractionError(reason) from exc


def _page_text(document: pdfium.PdfDocument, index: int) -> str:
    try:
        page = document[index]
    except pdfium.PdfiumError as exc:
        raise ExtractionError(f"corrupt PDF: page {index + 1} cannot be loaded") from exc
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
    finally:
        page.close()
    return _clean(raw)


def _clean(raw: str) -> str:
    # pdfium ends lines with "\r\n". Other control characters (hyphen marks, a stray
    # \r) are dropped; a search first, because most pages have none and a search is
    # cheaper than a substitution.
    text = raw.replace("\r\n", "\n")
    if _CONTROLS.search(text):
        text = _CONTROLS.sub("", text)
    return text.strip()


EXTRACTORS = [PdfExtractor()]

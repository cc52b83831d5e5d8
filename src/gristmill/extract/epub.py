"""EPUB books: chapters in spine (reading) order, each converted by the HTML extractor."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ebooklib import epub

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract._archive import check_zip
from gristmill.extract.base import Limits, Segment
from gristmill.extract.html import html_to_segments

__all__ = ["EXTRACTORS", "EpubExtractor"]


class EpubExtractor:
    """EPUB 2 and 3; ``page`` is the chapter's place in the spine (1-based)."""

    name = "epub"
    version = 1
    extensions = frozenset({".epub"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield each chapter's text; headings come from the chapter or its TOC entry.

        Raises:
            ExtractionError: not a readable EPUB.
            LimitExceeded: a zip-bomb limit or ``limits.max_text_chars``.
            Unsupported: no chapter has text.
        """
        check_zip(path, limits)
        book = _read(path)
        titles = _toc_titles(book.toc)
        total = 0
        chapter = 0
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            # The navigation document only repeats the chapter titles.
            if item is None or isinstance(item, epub.EpubNav):
                continue
            chapter += 1
            title = titles.get(item.get_name())
            for segment in html_to_segments(item.get_content(), heading=title, page=chapter):
                total += len(segment.text)
                if total > limits.max_text_chars:
                    raise LimitExceeded(
                        f"book text exceeds {limits.max_text_chars:,} characters "
                        "(max_text_chars)"
                    )
                yield segment
        if not total:
            raise Unsupported("no text in EPUB")


def _read(path: Path) -> epub.EpubBook:
    try:
        with warnings.catch_warnings():
            # Older ebooklib releases warn on every read about a future default of
            # ignore_ncx; it is set explicitly here, so the warning says nothing.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"ebooklib(\.|$)")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"ebooklib(\.|$)")
            return epub.read_epub(str(path), options={"ignore_ncx": True})
    except (epub.EpubException, KeyError) as exc:
        raise ExtractionError(f"not a readable EPUB: {exc}") from exc


def _toc_titles(toc: Any) -> dict[str, str]:
    """Chapter file name -> its first title in the table of contents."""
    titles: dict[str, str] = {}
    pending = list(reversed(list(toc)))
    while pending:
        entry = pending.pop()
        if isinstance(entry, tuple | list):
            # (Section, [children]) pairs nest the TOC.
            pending.extend(reversed(list(entry)))
        else:
            # Link and Section entries carry an href; a bare chapter item names its file.
            is_item = isinstance(entry, epub.EpubHtml)
            href = entry.get_name() if is_item else getattr(entry, "href", "")
            title = (getattr(entry, "title", "") or "").strip()
            if href and title:
                titles.setdefault(href.split("#", 1)[0], title)
    return titles


EXTRACTORS = [EpubExtractor()]

"""EPUB extraction: chapters in spine order, each through the HTML converter."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from docs import make_epub, make_zip_bomb
from gristmill.errors import ExtractionError, LimitExceeded
from gristmill.extract.base import Limits, Segment
from gristmill.extract.epub import EpubExtractor


def extract(path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(EpubExtractor().extract(path, limits or Limits()))


def test_chapters_come_in_spine_order_with_numbers(tmp_path: Path) -> None:
    """Each chapter is a segment: page = place in the spine, heading = its title."""
    path = make_epub(
        tmp_path / "book.epub",
        [("Beginning", "It was a dark night.\n\nRain fell."), ("Ending", "The sun rose.")],
    )
    assert [(s.page, s.heading, s.text) for s in extract(path)] == [
        (1, "Beginning", "Beginning\n\nIt was a dark night.\n\nRain fell."),
        (2, "Ending", "Ending\n\nThe sun rose."),
    ]


def test_navigation_document_is_not_repeated(tmp_path: Path) -> None:
    """The table of contents page is skipped, so titles are not indexed twice."""
    path = make_epub(tmp_path / "book.epub", [("Alpha", "one"), ("Beta", "two")])
    text = "\n".join(s.text for s in extract(path))
    assert text.count("Alpha") == 1


def test_zip_bomb_named_epub_is_refused(tmp_path: Path) -> None:
    """An EPUB whose member inflates like a zip bomb is refused before ebooklib opens it."""
    bomb = make_zip_bomb(tmp_path / "bomb.epub", megabytes=20, member="OEBPS/chapter.xhtml")
    with pytest.raises(LimitExceeded, match="zip bomb"):
        extract(bomb)


def test_zip_without_epub_structure_fails_clearly(tmp_path: Path) -> None:
    """A zip lacking the EPUB container fails as an unreadable EPUB."""
    path = tmp_path / "plain.epub"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a book")
    with pytest.raises(ExtractionError, match="not a readable EPUB"):
        extract(path)


def test_text_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A book with more text than max_text_chars raises LimitExceeded."""
    path = make_epub(tmp_path / "book.epub", [("Long", "word " * 500)])
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        extract(path, Limits(max_text_chars=100))

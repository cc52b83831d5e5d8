"""What an extractor is: the types every format family shares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Extractor", "Limits", "Segment"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text with where it came from.

    Extractors yield segments in reading order; the chunker packs them into chunks and
    never merges two segments with different ``page`` or ``heading``.

    Attributes:
        text: the text; paragraphs separated by blank lines.
        page: 1-based page, slide or sheet number, when the format has pages.
        heading: the nearest section heading, slide title or sheet name.
    """

    text: str
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Safety limits every extractor honours (hostile files must not take the machine)."""

    max_text_chars: int = 50_000_000
    # Archive-based formats (DOCX, PPTX, XLSX, EPUB): refuse before decompressing.
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_compression_ratio: float = 200.0
    max_archive_members: int = 100_000


@runtime_checkable
class Extractor(Protocol):
    """One format family (PDF, Office, HTML, ...).

    Attributes:
        name: short stable name recorded on each item (``"pdf"``).
        version: bump it when output changes, so items it produced are re-processed.
        extensions: lower-case suffixes it claims, with the dot (``".pdf"``).
    """

    name: str
    version: int
    extensions: frozenset[str]

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the item's text in reading order.

        Raises:
            gristmill.errors.ExtractionError: the file is corrupt or encrypted.
            gristmill.errors.LimitExceeded: the file is over a safety limit.
            gristmill.errors.Unsupported: the file holds nothing this extractor reads.
        """
        ...

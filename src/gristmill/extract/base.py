"""What an extractor is: the types every format family shares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Container", "Extractor", "Limits", "Member", "OcrOptions", "Segment", "ocr_options",
           "unique_name", "use_ocr_options"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text with where it came from.

    Extractors yield segments in reading order; the chunker packs them into chunks and
    never merges two segments with different ``page`` or ``heading``. A segment that is a
    code entity (``entity`` set) is a chunk of its own: the extractor has already cut it
    to the budget (:attr:`Limits.chunk_tokens`) where the language allows.

    Attributes:
        text: the text; paragraphs separated by blank lines.
        page: 1-based page, slide or sheet number, when the format has pages.
        heading: the nearest section heading, slide title or sheet name.
        language: source code's language (``"java"``: the tree-sitter grammar's name).
        kind: what a code entity is: ``class``, ``method``, ``function``, ``header``...
        entity: its qualified name (``org.acme.Billing.apply(Invoice, BigDecimal)``).
        parent: the qualified name of the entity around it, if any.
        lines: the 1-based first and last line of this text in its file.
    """

    text: str
    page: int | None = None
    heading: str | None = None
    language: str | None = None
    kind: str | None = None
    entity: str | None = None
    parent: str | None = None
    lines: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Safety limits every extractor honours (hostile files must not take the machine)."""

    max_text_chars: int = 50_000_000
    #: The chunk budget, in estimated tokens: extractors that cut their own units (code
    #: entities, at statement boundaries) cut them to it.
    chunk_tokens: int = 200
    # Archive-based formats (DOCX, PPTX, XLSX, EPUB): refuse before decompressing.
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_compression_ratio: float = 200.0
    max_archive_members: int = 100_000
    # Containers (e-mail, .zip): members become items of their own, nested this deep at
    # most (a zip in a zip in a message is depth 3), this many per container.
    max_depth: int = 3
    max_children: int = 10_000


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """How extractors that read pixels (images, scanned PDF pages) run OCR.

    Attributes:
        languages: Tesseract language codes joined by ``+`` (``"eng+deu"``).
        dpi: resolution scanned PDF pages are rendered at for OCR.
        parallel: pages of one item read at once, and Tesseract processes running at
            once across every worker sharing ``slots_dir``.
        slots_dir: folder of lock files the workers of one run share to hold to
            ``parallel`` Tesseract processes in all; ``None`` reads pages one by one.
        engine: the OCR engine's name (see ``gristmill.extract.ocr.ENGINES``).
    """

    engine: str = "tesseract"
    languages: str = "eng"
    dpi: int = 300
    parallel: int = 1
    slots_dir: Path | None = None


# Set by the worker before each item (use_ocr_options); extractors read it with
# ocr_options(). Kept here, not in the OCR module, so setting it imports no imaging code.
_ocr_options = OcrOptions()


def use_ocr_options(options: OcrOptions) -> None:
    """Make ``options`` what :func:`ocr_options` returns in this process."""
    global _ocr_options
    _ocr_options = options


def ocr_options() -> OcrOptions:
    """The OCR options of this process (defaults until :func:`use_ocr_options`)."""
    return _ocr_options


@dataclass(frozen=True, slots=True)
class Member:
    """A file inside an item (an e-mail attachment, an archive member), to become an item
    of its own: a child, searchable as ``container!/name``.

    Attributes:
        name: unique within its container; its suffix chooses the child's extractor.
        size: bytes, when the container declares it.
        problem: why the member cannot be read (an encrypted zip entry): the child is
            recorded as failed with this reason, never unpacked.
    """

    name: str
    size: int | None = None
    problem: str | None = None


def unique_name(name: str, seen: set[str]) -> str:
    """``name``, or ``name (2).ext``, ``(3)``... if ``seen`` has it; adds the result to
    ``seen`` (two attachments called report.pdf are two members)."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix, dot = name, "", ""
    candidate, n = name, 1
    while candidate in seen:
        n += 1
        candidate = f"{stem} ({n}){dot}{suffix}"
    seen.add(candidate)
    return candidate


@runtime_checkable
class Container(Protocol):
    """An extractor whose items hold other files (see :class:`Member`).

    Members are unpacked on demand, one at a time, by the worker that processes the
    child, so nothing is spooled to disk between runs and a child can be redone as long
    as its container is unchanged.
    """

    def members(self, path: Path, limits: Limits) -> Iterator[Member]:
        """The files inside ``path``, in a stable order.

        Raises:
            gristmill.errors.LimitExceeded: a zip bomb, or too many members.
        """
        ...

    def unpack(self, path: Path, name: str, target: Path, limits: Limits) -> None:
        """Write the bytes of member ``name`` of ``path`` to ``target``.

        Raises:
            gristmill.errors.ExtractionError: no such member, or it cannot be read.
            gristmill.errors.LimitExceeded: the member is too large.
        """
        ...


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

"""Structure-aware chunking: segments in, chunks of about N tokens with provenance out.

Chunks never straddle a page or heading boundary, so each keeps one page number and one
heading. Inside a section, paragraphs are packed until the budget is reached; a paragraph
larger than the budget is split at sentence ends, then at spaces, then (a 30 MB line with
no spaces) at a character limit.

Token counts are estimated from words and characters rather than by running the model's
tokenizer in every worker: ``max(1.3 x words, chars / 4)`` tracks WordPiece closely on
prose and errs large on code and numbers, and the embedder truncates at 256 tokens anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gristmill.extract.base import Segment

__all__ = ["Chunk", "chunk_segments", "estimate_tokens", "text_hash"]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_HAS_WORD = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of an item's text, sized for the embedder."""

    seq: int
    text: str
    text_hash: str
    page: int | None
    heading: str | None


def estimate_tokens(text: str) -> int:
    """Approximate WordPiece tokens of ``text``."""
    return max(int(len(text.split()) * 1.3), len(text) // 4)


def text_hash(text: str) -> str:
    """The key of a chunk's text in the embedding cache."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def chunk_segments(segments: Iterable[Segment], target_tokens: int = 200) -> Iterator[Chunk]:
    """Pack segments into chunks of at most about ``target_tokens`` tokens."""
    seq = 0
    buffer: list[str] = []
    words = chars = 0  # of "\n\n".join(buffer), so the estimate is exact, not summed
    where: tuple[int | None, str | None] = (None, None)

    def flush() -> Iterator[Chunk]:
        nonlocal seq, buffer, words, chars
        text = "\n\n".join(buffer).strip()
        buffer, words, chars = [], 0, 0
        if text and _HAS_WORD.search(text):
            yield Chunk(seq, text, text_hash(text), where[0], where[1])
            seq += 1

    for segment in segments:
        here = (segment.page, segment.heading)
        if here != where:
            yield from flush()
            where = here
        for piece in _pieces(segment.text, target_tokens):
            more_words, more_chars = len(piece.split()), len(piece) + (2 if buffer else 0)
            if buffer and max(int((words + more_words) * 1.3),
                              (chars + more_chars) // 4) > target_tokens:
                yield from flush()
                more_chars = len(piece)
            buffer.append(piece)
            words += more_words
            chars += more_chars
    yield from flush()


def _pieces(text: str, budget: int) -> Iterator[str]:
    """Paragraphs of ``text``, each cut down to fit ``budget`` tokens."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        lines = (_SPACES.sub(" ", line).strip() for line in paragraph.splitlines())
        paragraph = "\n".join(line for line in lines if line)
        if not paragraph:
            continue
        if estimate_tokens(paragraph) <= budget:
            yield paragraph
            continue
        yield from _pack(_split_long(paragraph, budget), budget)


def _split_long(paragraph: str, budget: int) -> Iterator[str]:
    max_chars = budget * 4
    for sentence in _SENTENCE_END.split(paragraph):
        if estimate_tokens(sentence) <= budget:
            yield sentence
            continue
        for word in sentence.split():
            # A "word" longer than the budget (base64, a 30 MB line) is cut by length.
            for start in range(0, len(word), max_chars):
                yield word[start:start + max_chars]


def _pack(parts: Iterable[str], budget: int) -> Iterator[str]:
    """Join consecutive small parts with spaces until the budget is reached."""
    current: list[str] = []
    used = 0
    for part in parts:
        cost = estimate_tokens(part) + 1
        if current and used + cost > budget:
            yield " ".join(current)
            current, used = [], 0
        current.append(part)
        used += cost
    if current:
        yield " ".join(current)

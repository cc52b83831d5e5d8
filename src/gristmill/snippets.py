"""Snippets: the passage of a chunk around the words a query asked for, and where those
words are in it, so a result shows why it matched rather than the chunk's first lines.

Words are found the way the keyword index finds them (SQLite FTS5 with ``porter
unicode61 remove_diacritics 2``; PostgreSQL's ``english`` configuration): a word is a run
of letters and digits (``_`` and punctuation separate words), compared without case or
diacritics and after Porter's first step, so "herons" finds "heron" and "nesting" finds
"nested". English stop words ("the", "of") are not marked unless the query holds nothing
else. Offsets are Python ``str`` indices (code points), not bytes or UTF-16 units.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from gristmill.stop_words import STOP_WORDS

__all__ = ["SNIPPET_CHARS", "Snippet", "query_terms", "snippet"]

#: How long a snippet is at most, ellipses aside (characters).
SNIPPET_CHARS = 240
# As many words as fts_query reads from a query: more are ignored there, so here too.
_MAX_QUERY_TOKENS = 64
# Letters and digits, as FTS5's unicode61 tokenizer sees a word; combining marks belong
# to the word they follow (remove_diacritics drops them when comparing).
_WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
_SPACE = re.compile(r"\s+")
_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Snippet:
    """A passage of a chunk and the ``(start, end)`` spans of the query's words in it:
    ``text[start:end]`` is a matched word (Python ``str`` indices)."""

    text: str
    highlights: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, object]:
        """The JSON fields a search hit gains: ``snippet`` and ``highlights``."""
        return {"snippet": self.text, "highlights": [[s, e] for s, e in self.highlights]}


def query_terms(query: str) -> frozenset[str]:
    """The comparison keys of the query's words that a snippet marks."""
    words = [w.casefold() for w in _WORD.findall(query)[:_MAX_QUERY_TOKENS]]
    content = [w for w in words if w not in STOP_WORDS]  # noise when marked
    return frozenset(_key(w) for w in content or words)


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> Snippet:
    """The ``width`` characters of ``text`` (whitespace collapsed) holding the most
    distinct words of ``query``, then the most matches, cut at word boundaries with an
    ellipsis where text was left out; the text's start when no word matches (a hit
    found by meaning alone)."""
    flat = _SPACE.sub(" ", text).strip()
    terms = query_terms(query)
    matches = [(m.start(), m.end(), key) for m in _WORD.finditer(flat)
               if (key := _key(m.group().casefold())) in terms] if terms else []
    if not matches:
        return _cut(flat, 0, 0, width, [])
    first, last = _best_window(matches, max(width, 1))
    return _cut(flat, matches[first][0], matches[last][1], width, matches[first:last + 1])


def _best_window(matches: list[tuple[int, int, str]], width: int) -> tuple[int, int]:
    """Indices of the first and last match of the run that fits in ``width`` characters
    with the most distinct terms, then the most matches, then the earliest."""
    best = (0, 0)
    best_score = (0, 0)
    counts: dict[str, int] = {}
    last = -1
    for first in range(len(matches)):
        # Grow the run to the last match that still ends within `width` of its start
        # (a single match is always a run, however long the word).
        while last + 1 < len(matches) and (
                last < first or matches[last + 1][1] - matches[first][0] <= width):
            last += 1
            key = matches[last][2]
            counts[key] = counts.get(key, 0) + 1
        score = (len(counts), last - first + 1)
        if score > best_score:
            best, best_score = (first, last), score
        key = matches[first][2]
        counts[key] -= 1
        if not counts[key]:
            del counts[key]
    return best


def _cut(flat: str, span_start: int, span_end: int, width: int,
         matches: list[tuple[int, int, str]]) -> Snippet:
    """``width`` characters of ``flat`` around ``[span_start, span_end)``, the context
    shared evenly before and after, moved to word boundaries without losing the span."""
    slack = width - (span_end - span_start)
    start = max(0, span_start - max(slack, 0) // 2)
    end = min(len(flat), start + width)
    start = max(0, min(start, end - width))
    if start > 0 and not flat[start - 1].isspace():  # mid-word: start at the next word
        space = flat.find(" ", start, span_start)
        start = span_start if space < 0 else space + 1
    if end < len(flat) and not flat[end].isspace():  # mid-word: end at the word before
        space = flat.rfind(" ", max(start, span_end), end)
        if space > start:
            end = space
    head = _ELLIPSIS if start > 0 else ""
    tail = _ELLIPSIS if end < len(flat) else ""
    shift = len(head) - start
    highlights = tuple((s + shift, min(e, end) + shift) for s, e, _ in matches if s < end)
    return Snippet(head + flat[start:end] + tail, highlights)


@lru_cache(maxsize=16_384)
def _key(word: str) -> str:
    """What two words must share to be the same word to the keyword index: case-folded
    ``word`` without diacritics, stemmed by Porter's step 1 when it is plain ASCII."""
    bare = "".join(c for c in unicodedata.normalize("NFD", word)
                   if not unicodedata.combining(c))
    return _porter_step1(bare) if bare.isascii() and bare.isalpha() else bare


def _porter_step1(word: str) -> str:
    """Porter (1980) steps 1a-1c: plurals, -ed and -ing, y -> i. FTS5's porter tokenizer
    runs all five steps; the first is where nearly every query/text mismatch lies."""
    if len(word) <= 2:
        return word
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    else:
        for suffix in ("ed", "ing"):
            if word.endswith(suffix) and _has_vowel(word[:-len(suffix)]):
                word = _tidy_1b(word[:-len(suffix)])
                break
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _tidy_1b(stem: str) -> str:
    if stem.endswith(("at", "bl", "iz")):
        return stem + "e"
    if (len(stem) >= 2 and stem[-1] == stem[-2] and _consonant(stem, len(stem) - 1)
            and stem[-1] not in "lsz"):
        return stem[:-1]
    if _measure(stem) == 1 and _cvc(stem):
        return stem + "e"
    return stem


def _consonant(word: str, i: int) -> bool:
    if word[i] in "aeiou":
        return False
    if word[i] == "y":
        return i == 0 or not _consonant(word, i - 1)
    return True


def _has_vowel(stem: str) -> bool:
    return any(not _consonant(stem, i) for i in range(len(stem)))


def _measure(stem: str) -> int:
    """m in Porter's [C](VC){m}[V]: how many vowel-consonant sequences ``stem`` has."""
    m, previous_vowel = 0, False
    for i in range(len(stem)):
        vowel = not _consonant(stem, i)
        if previous_vowel and not vowel:
            m += 1
        previous_vowel = vowel
    return m


def _cvc(stem: str) -> bool:
    return (len(stem) >= 3 and _consonant(stem, len(stem) - 3)
            and not _consonant(stem, len(stem) - 2) and _consonant(stem, len(stem) - 1)
            and stem[-1] not in "wxy")

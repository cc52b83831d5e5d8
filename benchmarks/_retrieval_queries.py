"""Queries with known answers, generated from the chunks of a knowledge base.

Every query is labelled with the set of files whose text holds what the query was made
from: the same words in a copy of a file in another format (``fake-text.txt`` and its
UTF-16 twin, a page that a longer PDF also holds) count as right, since the text cannot
tell them apart. Queries whose answer is in more than ``MAX_SOURCES`` files say nothing
about ranking and are left out.

Kinds:

* ``phrase``: six consecutive words copied from a chunk, as someone pastes a line they
  remember.
* ``question (heading)``: a question about a section, from a chunk's heading ("What does
  the section on Rinks and skaters say?").
* ``question (sentence)``: a question made from one sentence of a chunk: three or four of
  its content words, in order, in a question template; most of the question's words are
  not in the passage, as in a question typed from memory.
* ``question (hand-written)``: ``retrieval_questions.tsv``, written by a person who read
  the passage; ``question (paraphrase)``: the same file's questions put in other words
  than the passage's. Each is ``dev`` (seen while tuning the fusion) or ``test`` (held
  out), and the benchmark reports both halves.
* ``identifier``: a rare token (CamelCase, letters with digits, a file name, an
  underscored name), a person's name (two capitalised words), or a rare long word.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gristmill.stop_words import STOP_WORDS

MAX_SOURCES = 5
PHRASE_WORDS = 6

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CAMEL = re.compile(r"^(?:[a-z]+[A-Z]|[A-Z][a-z]+[A-Z])\w*$")
_IDENT = re.compile(r"[A-Za-z_][\w.\-]*[A-Za-z0-9]")
_NAME = re.compile(r"\b([A-Z][a-z]{2,}) ([A-Z][a-z]{2,})\b")
# The shared list, keeping the fragments of "'s" and "don't" (so the seeded draw makes the
# questions it always made), plus words that name no subject in the corpus's headings.
_STOP = (STOP_WORDS - {"s", "t", "don"}) | frozenset("""
also could would one two may must shall upon said page chapter section table figure
""".split())
_NOT_NAMES = frozenset("""
The This That These Those There Then When Where What Which Who Why How And But For With
From Into Upon Page Chapter Section Table Figure January February March April May June July
August September October November December Monday Tuesday Wednesday Thursday Friday Saturday
Sunday United States Project Gutenberg Mr Mrs Dear Best Regards Subject Date
""".split())
_QUESTION_TEMPLATES = (
    "what does it say about {words}?",
    "which passage explains {words}?",
    "how is {words} described?",
    "where can I read about {words}?",
    "tell me about {words}",
)
_HEADING_TEMPLATES = (
    "What does the section on {h} say?",
    "what is said about {h}",
    "{h}",
)


@dataclass(frozen=True, slots=True)
class Passage:
    """One chunk: its id, the file it came from (relative to the corpus) and its text."""

    chunk_id: int
    source: str
    text: str
    heading: str | None


@dataclass(frozen=True, slots=True)
class Query:
    """A query, its kind, and the files that answer it."""

    kind: str
    text: str
    relevant: frozenset[str]
    origin: str = ""  # the file it was made from (for reading failures)
    split: str = ""  # hand-written questions: `dev` (seen while tuning) or `test` (held out)


_Maker = Callable[[str], Query | None]


@dataclass
class Corpus:
    """The knowledge base's chunks, with what labelling needs: each file's words in order
    (to find every file holding a phrase) and how many files hold each word."""

    passages: list[Passage]
    by_source: dict[str, list[Passage]] = field(default_factory=dict)
    _joined: dict[str, str] = field(default_factory=dict)
    _source_freq: Counter[str] = field(default_factory=Counter)
    _chunk_freq: Counter[str] = field(default_factory=Counter)
    _sources_of_word: dict[str, set[str]] = field(default_factory=dict)
    _chunk_words: dict[str, list[frozenset[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grouped: dict[str, list[Passage]] = defaultdict(list)
        for p in self.passages:
            grouped[p.source].append(p)
        self.by_source = dict(sorted(grouped.items()))
        for source, passages in self.by_source.items():
            # Chunks joined by a newline: no phrase of words spans two chunks.
            self._joined[source] = "\n".join(" " + " ".join(words(p.text)) + " "
                                             for p in passages)
            seen: set[str] = set()
            self._chunk_words[source] = []
            for p in passages:
                chunk_words = frozenset(words(p.text))
                self._chunk_words[source].append(chunk_words)
                self._chunk_freq.update(chunk_words)
                seen |= chunk_words
            self._source_freq.update(seen)
            for word in seen:
                self._sources_of_word.setdefault(word, set()).add(source)

    def holding(self, text: str) -> frozenset[str]:
        """Files holding ``text``'s words consecutively (case and punctuation aside)."""
        tokens = words(text)
        if not tokens:
            return frozenset()
        needle = " " + " ".join(tokens) + " "
        candidates = set.intersection(*(self._sources_of_word.get(w, set()) for w in tokens))
        return frozenset(s for s in candidates if needle in self._joined[s])

    def holding_all(self, chosen: Sequence[str]) -> frozenset[str]:
        """Files with a chunk holding every word of ``chosen`` (lower case)."""
        candidates = set.intersection(*(self._sources_of_word.get(w, set()) for w in chosen))
        wanted = set(chosen)
        return frozenset(s for s in candidates
                         if any(wanted <= held for held in self._chunk_words[s]))

    def sources_with_word(self, word: str) -> int:
        """How many files hold ``word`` (lower case)."""
        return self._source_freq[word]

    def chunks_with_word(self, word: str) -> int:
        """How many chunks hold ``word`` (lower case)."""
        return self._chunk_freq[word]


def words(text: str) -> list[str]:
    """Lower-case runs of word characters."""
    return _WORD.findall(text.lower())


def phrases(corpus: Corpus, n: int, rng: random.Random) -> list[Query]:
    """``n`` spans of six words, each from a file drawn uniformly, then a chunk in it."""
    def make(source: str) -> Query | None:
        passage = rng.choice(corpus.by_source[source])
        matches = list(_WORD.finditer(passage.text))
        if len(matches) < PHRASE_WORDS:
            return None
        start = rng.randrange(len(matches) - PHRASE_WORDS + 1)
        span = passage.text[matches[start].start():matches[start + PHRASE_WORDS - 1].end()]
        tokens = words(span)
        # A line of prose or a heading, not a row of table cells or a run of numbers.
        if "|" in span or sum(t.isalpha() and len(t) >= 3 for t in tokens) < 3:
            return None
        return Query("phrase", " ".join(span.split()), corpus.holding(span), source)

    return _draw(corpus, n, rng, make)


def heading_questions(corpus: Corpus, n: int, rng: random.Random) -> list[Query]:
    """Questions about a section, from headings of two or more content words."""
    by_heading: dict[str, set[str]] = defaultdict(set)
    for p in corpus.passages:
        if p.heading:
            by_heading[" ".join(p.heading.lower().split())].add(p.source)

    def make(source: str) -> Query | None:
        headed = [p for p in corpus.by_source[source] if p.heading]
        if not headed:
            return None
        heading = " ".join(rng.choice(headed).heading.split())  # type: ignore[union-attr]
        content = [w for w in words(heading) if w.isalpha() and w not in _STOP]
        if not 2 <= len(content) <= 10 or len(heading) > 80:
            return None
        text = rng.choice(_HEADING_TEMPLATES).format(h=heading)
        return Query("question (heading)", text, frozenset(by_heading[heading.lower()]),
                     source)

    return _draw(corpus, n, rng, make)


def sentence_questions(corpus: Corpus, n: int, rng: random.Random) -> list[Query]:
    """Questions made of three or four content words of one sentence, in a template."""
    def make(source: str) -> Query | None:
        passage = rng.choice(corpus.by_source[source])
        sentences = [s for s in _SENTENCE_END.split(passage.text)
                     if "|" not in s and 8 <= len(words(s)) <= 40]
        if not sentences:
            return None
        content = list(dict.fromkeys(
            w for w in words(rng.choice(sentences))
            if w.isalpha() and len(w) >= 4 and w not in _STOP))
        if len(content) < 4:
            return None
        picked = sorted(rng.sample(range(len(content)), rng.choice((3, 4))))
        chosen = [content[i] for i in picked]
        # The answer: files with a chunk holding every chosen word.
        relevant = corpus.holding_all(chosen)
        text = rng.choice(_QUESTION_TEMPLATES).format(
            words=", ".join(chosen[:-1]) + " and " + chosen[-1])
        return Query("question (sentence)", text, relevant, source)

    return _draw(corpus, n, rng, make)


def identifiers(corpus: Corpus, n: int, rng: random.Random) -> list[Query]:
    """Rare identifiers, names and words, each subtype drawn equally often."""
    def candidates(text: str, subtype: str) -> list[str]:
        if subtype == "name":
            return [m.group(0) for m in _NAME.finditer(text)
                    if m.group(1) not in _NOT_NAMES and m.group(2) not in _NOT_NAMES]
        if subtype == "rare word":
            return [w for w in _WORD.findall(text)
                    if w.isalpha() and w.islower() and len(w) >= 8
                    and corpus.sources_with_word(w) == 1 and corpus.chunks_with_word(w) <= 3]
        found = []
        for token in _IDENT.findall(text):
            token = token.strip(".-")
            if len(token) < 4 or len(token) > 60:
                continue
            if (_CAMEL.match(token)
                    or (any(c.isdigit() for c in token) and sum(c.isalpha() for c in token) >= 2)
                    or "_" in token or re.search(r"[a-z]\.[a-z]{2,4}$", token)):
                found.append(token)
        return found

    subtypes = ("code", "name", "rare word")

    def make(source: str) -> Query | None:
        subtype = rng.choice(subtypes)
        found = candidates(rng.choice(corpus.by_source[source]).text, subtype)
        if not found:
            return None
        token = rng.choice(found)
        return Query("identifier", token, corpus.holding(token), source)

    return _draw(corpus, n, rng, make)


def hand_written(path: Path, corpus: Corpus) -> list[Query]:
    """The questions of ``retrieval_questions.tsv`` (globs resolved against the corpus)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("question\t"):
            continue
        question, expected, style, split = line.split("\t")
        if split not in ("dev", "test"):
            raise SystemExit(f"{path}: split must be dev or test, not {split!r}")
        globs = expected.split("|")
        relevant = frozenset(s for s in corpus.by_source
                             if any(fnmatch.fnmatchcase(s, g) for g in globs))
        if not relevant:
            raise SystemExit(f"{path}: no file of the corpus matches {expected!r}")
        kind = "question (paraphrase)" if style == "paraphrase" else "question (hand-written)"
        out.append(Query(kind, question, relevant, split=split))
    return out


def _draw(corpus: Corpus, n: int, rng: random.Random, make: _Maker) -> list[Query]:
    """Up to ``n`` distinct queries with 1 to MAX_SOURCES answers, each made from a file
    drawn uniformly (so a 1,225-page book does not supply most of them)."""
    sources = list(corpus.by_source)
    out: dict[str, Query] = {}
    for _ in range(n * 50):
        if len(out) == n:
            break
        query = make(rng.choice(sources))
        if query is not None and 1 <= len(query.relevant) <= MAX_SOURCES:
            out.setdefault(query.text.lower(), query)
    return list(out.values())


def generate(corpus: Corpus, n: int, seed: int, questions: Path | None
             ) -> list[Query]:
    """Every kind of query: ``n`` of each generated kind, plus the hand-written ones."""
    rng = random.Random(seed)
    out = phrases(corpus, n, rng) + heading_questions(corpus, n, rng)
    out += sentence_questions(corpus, n, rng) + identifiers(corpus, n, rng)
    if questions is not None:
        out += hand_written(questions, corpus)
    return out


def kinds(queries: Iterable[Query]) -> list[str]:
    """The kinds present, in a stable order."""
    order = ["phrase", "question (heading)", "question (sentence)",
             "question (hand-written)", "question (paraphrase)", "identifier"]
    present = {q.kind for q in queries}
    return [k for k in order if k in present]



def first_relevant(sources: Sequence[str], relevant: frozenset[str]) -> int | None:
    """1-based rank of the first hit from a relevant file, or None."""
    for rank, source in enumerate(sources, start=1):
        if source in relevant:
            return rank
    return None

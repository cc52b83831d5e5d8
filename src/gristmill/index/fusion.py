"""Hybrid ranking: the keyword and the vector ranking fused into one, on either backend.

Plain reciprocal-rank fusion looks only at ranks, so a chunk first by BM25 with three
times the next one's score, holding every word of the query, weighs no more than the
first of a list of loosely related chunks: on six-word phrases copied from documents it
found the source in the top 5 for 95 % of them where BM25 alone did for 100 % (issue 12;
BENCHMARKS.md, "Retrieval quality"). :func:`fuse` looks at how complete and how strong
each match is:

1. **Every word.** Chunks holding every word of the query (the first ``complete``
   entries of the keyword ranking, which both indexes rank first) come before all
   others: an exact match is never buried.
2. **Coverage.** Each candidate's share of the query's words (:func:`coverage`: stop
   words aside, words compared by their first five letters, so "herons" meets "heron")
   adds ``COVERAGE_WEIGHT`` times that share.
3. **Trust.** The rest is ``w * bm25 / top bm25 + (1 - w) * (cosine / top cosine) ** 4``
   where ``w = KEYWORD_WEIGHT * coverage of the best keyword chunk``: when the best
   keyword match holds most of the query's words BM25 leads; when it holds few (a
   question in other words than the passage's) the vectors do. Raising the relative
   cosine to the 4th power keeps only chunks close to the best one in the running.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gristmill.stop_words import STOP_WORDS

__all__ = ["COVERAGE_WEIGHT", "KEYWORD_WEIGHT", "KeywordRanking", "coverage", "fuse",
           "reciprocal_rank_fusion"]

#: Keyword share of the strength term when the best keyword chunk holds every word.
KEYWORD_WEIGHT = 0.8
#: Weight of a chunk's coverage of the query's words.
COVERAGE_WEIGHT = 0.5
_EVERY_WORD = 2.0  # more than any score without it can reach (1 + COVERAGE_WEIGHT)
_COSINE_POWER = 4
_STEM = 5  # letters compared: a crude stemmer that works for any backend's tokenizer
_RRF_K = 60  # the constant from Cormack et al. (2009)
_WORD = re.compile(r"\w+")
# Words that say little about which passage answers: English function words, and words
# that frame a question about the document rather than name its subject ("what does the
# section on X say", "which passage explains X", "how is X described"): counted, they
# lower the coverage of the very chunk that holds every word of the subject, and the
# vectors' best guess, often unrelated, takes the lead (BENCHMARKS.md, "Retrieval
# quality"). Only coverage skips them; both indexes still search them.
# The shared list less the words this one has always counted (reflexive pronouns and the
# fragments of "'s", "don't"), so coverage scores stay those the ranking was measured with.
_COUNTED = frozenset("""
myself ourselves yourself yourselves himself herself themselves ours yours theirs s t don
""".split())
_STOP_WORDS = (STOP_WORDS - _COUNTED) | frozenset("""
also could would say said tell section chapter page passage passages explain explains
explained describe describes described
""".split())

Ranking = Sequence[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class KeywordRanking:
    """A keyword ranking: ``(chunk_id, score)`` best first, higher better, of which the
    first ``complete`` hold every word of the query (the indexes rank those first)."""

    ranked: list[tuple[int, float]]
    complete: int


def coverage(query: str, texts: Mapping[int, str]) -> dict[int, float]:
    """Each chunk's share (0 to 1) of the query's words, from its text (and heading)."""
    wanted = {w[:_STEM] for w in _WORD.findall(query.lower()) if w not in _STOP_WORDS}
    if not wanted:
        return dict.fromkeys(texts, 0.0)
    return {chunk_id: len(wanted & {w[:_STEM] for w in _WORD.findall(text.lower())})
            / len(wanted) for chunk_id, text in texts.items()}


def fuse(keyword: Ranking, vector: Ranking, limit: int, *, complete: int = 0,
         covered: Mapping[int, float] | None = None) -> list[tuple[int, float]]:
    """The ``limit`` best ``(chunk_id, fused score)`` pairs, best first.

    ``keyword``: ``(chunk_id, score)`` best first, higher better (BM25 or ``ts_rank_cd``),
    its first ``complete`` entries holding every word of the query. ``vector``:
    ``(chunk_id, cosine)`` best first. ``covered``: :func:`coverage` of the candidates
    (a chunk missing from it counts as holding none of the words; None: the keyword
    ranking's every-word chunks hold all of them, the others none). Equal scores order
    by chunk id. A fused score is 2 or more exactly for the every-word chunks.
    """
    if covered is None:
        covered = {chunk_id: 1.0 for chunk_id, _ in keyword[:complete]}
    trust = KEYWORD_WEIGHT * covered.get(keyword[0][0], 0.0) if keyword else 0.0
    fused: dict[int, float] = {}
    top = keyword[0][1] if keyword else 0.0
    for position, (chunk_id, score) in enumerate(keyword):
        strength = max(score / top, 0.0) if top > 0 else 1.0
        fused[chunk_id] = trust * strength + (_EVERY_WORD if position < complete else 0.0)
    best = vector[0][1] if vector else 0.0
    for chunk_id, cosine in vector:
        closeness = max(cosine / best, 0.0) ** _COSINE_POWER if best > 0 else 0.0
        fused[chunk_id] = fused.get(chunk_id, 0.0) + (1 - trust) * closeness
    for chunk_id in fused:
        fused[chunk_id] += COVERAGE_WEIGHT * covered.get(chunk_id, 0.0)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def reciprocal_rank_fusion(rankings: Sequence[Ranking], limit: int
                           ) -> list[tuple[int, float]]:
    """Fuse best-first rankings by reciprocal rank alone: ``sum 1 / (60 + rank)``.

    Blind to scores, it buries exact matches (see the module's docstring); search uses
    :func:`fuse`, and this stays for comparison.
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (_RRF_K + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

"""Hybrid search: an exact match is never buried, paraphrases still reach the vectors'
answer, and the fusion's ordering rules. Runs on the suite's backend (SQLite, or
PostgreSQL with GRISTMILL_TEST_DATABASE=postgresql)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import ON_POSTGRES, url_for
from gristmill.index import coverage, fuse, reciprocal_rank_fusion
from gristmill.knowledge_base import KnowledgeBase

# The case: one file holds every word of the query, in passing, among other
# business; several others are about the query's subject and hold some of its words.
FILES = {
    "facilities-memo.txt": (
        "Quarterly facilities report. The HVAC contract renewal is due in March, parking "
        "permits move to the new portal, and the badge readers on floor three were "
        "replaced. The cafeteria vendor changes next month and the budget variance was "
        "three percent. Last summer's face painting booth and petting zoo left ruts in "
        "the lawn that the landscaping crew repairs before the audit."),
    "face-paint-guide.txt": (
        "Face painting for children: use water-based face paint, test it on the wrist "
        "first, and start with simple designs such as butterflies, tigers and rainbows. "
        "Painting a face takes about five minutes with a sponge and a fine brush."),
    "zoo-visit.txt": (
        "Our petting zoo has goats, sheep, rabbits and a friendly donkey. Children may "
        "give them hay pellets from the dispenser by the gate; staff stay with every group."),
    "zoo-art-class.txt": (
        "The zoo runs painting classes on weekends: young visitors sketch the flamingos "
        "and the giraffes, then paint their pictures in the education centre."),
    "petting-etiquette.txt": (
        "Petting etiquette at the zoo: approach animals slowly, stroke them along the "
        "back, never on the face, and wash your hands afterwards."),
    "leases.txt": (
        "A lease on a claimed item expires after two minutes unless it is renewed; an "
        "expired lease makes the item claimable again by any worker."),
    "sourdough.txt": (
        "Feed the sourdough starter with equal weights of flour and water, keep it warm, "
        "and bake when it has doubled in size and smells pleasantly sour."),
}
EXACT = "face painting petting zoo"


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    """One knowledge base for the module, on the suite's backend (a database of its own
    on PostgreSQL, dropped at the session's end)."""
    folder = tmp_path_factory.mktemp("fusion")
    (folder / "docs").mkdir()
    for name, text in FILES.items():
        (folder / "docs" / name).write_text(text, encoding="utf-8")
    settings: dict[str, object] = {"embedder": "minilm", "workers": 1}
    if ON_POSTGRES:
        settings["database_url"] = url_for(folder / "home" / "gristmill.db")
    with KnowledgeBase.open(folder / "home", **settings) as kb:
        kb.ingest([folder / "docs"])
        yield kb


def _names(hits: list) -> list[str]:
    return [Path(hit.source).name for hit in hits]


def test_chunk_holding_every_word_ranks_first_in_hybrid(kb: KnowledgeBase) -> None:
    """The only chunk holding every word is first in hybrid, where plain RRF buries it."""
    searcher = kb.searcher()
    try:
        keyword = searcher.index.keyword(EXACT, None, 50)
        vector = searcher.index.vector(kb.embedder.embed([EXACT])[0],  # type: ignore[union-attr]
                                       kb.embedder.model_id, None, 50)  # type: ignore[union-attr]
    finally:
        searcher.close()
    by_rrf = _names(kb.index.hits(reciprocal_rank_fusion([keyword, vector], 3)))
    assert "facilities-memo.txt" not in by_rrf[:1]  # the case this test is about
    assert _names(kb.search(EXACT, k=3))[0] == "facilities-memo.txt"
    assert _names(kb.search(EXACT, k=3, mode="keyword"))[0] == "facilities-memo.txt"


def test_paraphrase_found_by_vectors_alone_stays_in_hybrid_top_k(kb: KnowledgeBase) -> None:
    """A question sharing no word with its answer still finds it through the vectors."""
    question = "where do kids feed farm animals"
    assert "zoo-visit.txt" not in _names(kb.search(question, k=10, mode="keyword"))
    assert "zoo-visit.txt" in _names(kb.search(question, k=3, mode="vector"))
    assert "zoo-visit.txt" in _names(kb.search(question, k=3))


def test_hybrid_scores_are_fused_scores_best_first(kb: KnowledgeBase) -> None:
    """Hybrid hits carry their fused score, in decreasing order; every-word chunks >= 2."""
    hits = kb.search(EXACT, k=5)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] >= 2.0 > scores[1]


# -- the fusion function ------------------------------------------------------------


def test_every_word_chunks_come_first_in_keyword_order_of_strength() -> None:
    """The `complete` first keyword entries rank before any chunk the vectors prefer."""
    keyword = [(1, 27.1), (2, 10.0), (3, 9.0)]
    vector = [(4, 0.9), (3, 0.85), (2, 0.8)]
    fused = fuse(keyword, vector, 10, complete=1, covered={1: 1.0, 2: 0.5, 3: 0.5})
    assert fused[0][0] == 1
    assert fused[0][1] >= 2.0 > fused[1][1]


def test_weak_keyword_match_lets_the_vectors_lead() -> None:
    """When the best keyword chunk holds few of the words, the vector's best wins."""
    keyword = [(1, 12.0), (2, 11.0)]
    vector = [(3, 0.7), (1, 0.4), (2, 0.35)]
    fused = fuse(keyword, vector, 10, covered={1: 0.2, 2: 0.2, 3: 0.0})
    assert fused[0][0] == 3


def test_strong_keyword_match_leads_without_every_word() -> None:
    """A keyword chunk holding most of the words, far ahead by BM25, stays first."""
    keyword = [(1, 30.0), (2, 8.0)]
    vector = [(3, 0.62), (2, 0.6), (1, 0.55)]
    fused = fuse(keyword, vector, 10, covered={1: 0.8, 2: 0.4, 3: 0.2})
    assert fused[0][0] == 1


def test_equal_scores_order_by_chunk_id_and_limit_applies() -> None:
    """Ties break by chunk id; at most `limit` pairs come back."""
    fused = fuse([], [(9, 0.5), (4, 0.5), (7, 0.5)], 2)
    assert fused == [(4, pytest.approx(1.0)), (7, pytest.approx(1.0))]


def test_empty_lists_fuse_to_nothing() -> None:
    """No candidates, no results (and no division by a missing top score)."""
    assert fuse([], [], 5) == []
    assert [chunk_id for chunk_id, _ in fuse([(1, 0.0)], [(2, 0.0)], 5)] == [1, 2]


def test_one_list_keeps_its_order() -> None:
    """With only one ranking, the fusion keeps that ranking's order."""
    keyword = [(5, 9.0), (2, 4.0), (8, 1.0)]
    assert [c for c, _ in fuse(keyword, [], 10, complete=3)] == [5, 2, 8]
    vector = [(3, 0.9), (1, 0.5), (2, 0.1)]
    assert [c for c, _ in fuse([], vector, 10)] == [3, 1, 2]


def test_coverage_counts_query_words_held_ignoring_stop_words_and_endings() -> None:
    """Coverage is the share of non-stop query words a text holds, by first 5 letters."""
    texts = {1: "Herons nest in the reeds", 2: "reeds only", 3: "nothing here"}
    assert coverage("the heron and the reeds", texts) == {1: 1.0, 2: 0.5, 3: 0.0}
    assert coverage("the and of", texts) == {1: 0.0, 2: 0.0, 3: 0.0}

"""Chunking: bounded chunks that keep their page and heading, stable hashes, no junk."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import pytest

from gristmill.chunking import Chunk, chunk_segments, estimate_tokens, text_hash
from gristmill.extract.base import Segment

WORDS = ["the", "a", "mill", "grinds", "internationalisation", "x1", "42.0", "hello,",
         "world.", "Zebra!", "über", "naïve", "東京"]


def prose(rng: random.Random, paragraphs: int, max_words: int) -> str:
    return "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words)))
        for _ in range(paragraphs)
    )


def chunks_of(*segments: Segment, target: int = 200) -> list[Chunk]:
    return list(chunk_segments(segments, target))


def test_estimate_tokens_counts_words_and_characters() -> None:
    """The estimate is max(1.3 x words, chars / 4), so long tokens are not undercounted."""
    assert estimate_tokens("") == 0
    assert estimate_tokens("one two three four five six seven eight nine ten") == 13
    assert estimate_tokens("x" * 400) == 100


def test_small_text_is_one_chunk() -> None:
    """A short document becomes a single chunk holding all of its text."""
    [chunk] = chunks_of(Segment("Hello world.\n\nSecond paragraph."))
    assert chunk.text == "Hello world.\n\nSecond paragraph."
    assert chunk.seq == 0


@pytest.mark.parametrize("target", [16, 50, 200, 512])
def test_long_prose_is_split_into_chunks_near_the_budget(target: int) -> None:
    """Long prose is cut into several chunks, none far over the token budget."""
    rng = random.Random(target)
    segment = Segment(prose(rng, paragraphs=40, max_words=150))
    chunks = chunks_of(segment, target=target)
    assert len(chunks) > 1
    # "about" the budget: the blank lines joining paragraphs may add a token or two.
    assert max(estimate_tokens(c.text) for c in chunks) <= target + 3


def test_no_chunk_exceeds_the_token_budget() -> None:
    """Every chunk's estimated tokens are at most the target, whatever the paragraph mix."""
    rng = random.Random(1)
    for _ in range(200):
        segments = [Segment(prose(rng, rng.randint(1, 8), 120), page=i // 2)
                    for i in range(rng.randint(1, 5))]
        for target in (16, 50, 200):
            for chunk in chunk_segments(segments, target):
                assert estimate_tokens(chunk.text) <= target


def test_text_is_kept_in_order_and_whole() -> None:
    """Splitting loses no words and keeps them in reading order."""
    rng = random.Random(7)
    text = prose(rng, paragraphs=30, max_words=80)
    chunks = chunks_of(Segment(text), target=50)
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_chunks_never_straddle_a_page_change() -> None:
    """Text from two pages never shares a chunk, and each chunk keeps its page number."""
    chunks = chunks_of(Segment("alpha words", page=1), Segment("beta words", page=2),
                       Segment("gamma words", page=2))
    assert [(c.page, c.text) for c in chunks] == [
        (1, "alpha words"), (2, "beta words\n\ngamma words")]


def test_chunks_never_straddle_a_heading_change() -> None:
    """Text under two headings never shares a chunk, and each chunk keeps its heading."""
    chunks = chunks_of(Segment("intro text", page=3, heading="Intro"),
                       Segment("method text", page=3, heading="Method"))
    assert [(c.page, c.heading, c.text) for c in chunks] == [
        (3, "Intro", "intro text"), (3, "Method", "method text")]


def test_provenance_is_kept_when_a_section_splits() -> None:
    """Every chunk cut from one long section carries that section's page and heading."""
    rng = random.Random(3)
    chunks = chunks_of(Segment(prose(rng, 20, 100), page=9, heading="Results"), target=32)
    assert len(chunks) > 1
    assert {(c.page, c.heading) for c in chunks} == {(9, "Results")}


def test_three_megabyte_word_is_cut_into_bounded_pieces() -> None:
    """A 3 MB line without spaces (base64, minified JSON) becomes bounded chunks, losslessly."""
    word = "".join(random.Random(0).choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=3_000_000))
    target = 200
    chunks = chunks_of(Segment(word), target=target)
    assert len(chunks) >= 3_000_000 // (4 * target)
    assert max(len(c.text) for c in chunks) <= 4 * target
    assert max(estimate_tokens(c.text) for c in chunks) <= target
    assert "".join(c.text for c in chunks) == word


def test_a_page_long_paragraph_is_cut_at_sentence_ends() -> None:
    """A PDF page is often one paragraph: it is cut after full sentences, into chunks
    that fill the budget, not into one chunk per sentence or mid-sentence."""
    rng = random.Random(11)
    sentences = [" ".join(rng.choice(WORDS[:6]) for _ in range(rng.randint(8, 20))) + "."
                 for _ in range(120)]
    chunks = chunks_of(Segment("\n".join(sentences)), target=100)
    assert len(chunks) > 3
    assert all(c.text.endswith(".") for c in chunks)
    assert all(estimate_tokens(c.text) <= 100 for c in chunks)
    assert min(estimate_tokens(c.text) for c in chunks[:-1]) >= 50


def test_an_abbreviation_early_in_a_run_on_sentence_is_not_a_chunk_of_its_own() -> None:
    """'Fig.' near the start of a long unpunctuated passage does not become a stub."""
    text = "Fig. 3 shows " + " ".join(["grain"] * 400)
    chunks = chunks_of(Segment(text), target=100)
    assert estimate_tokens(chunks[0].text) >= 50
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_unusual_whitespace_is_counted_as_word_breaks() -> None:
    """Em spaces, ideographic spaces and form feeds separate words like spaces do, so
    they cannot smuggle a chunk past the budget."""
    text = "\u2003".join(["word"] * 300) + "\u3000" + "\f".join(["more"] * 300)
    chunks = chunks_of(Segment(text), target=50)
    assert max(estimate_tokens(c.text) for c in chunks) <= 50
    assert sum(len(c.text.split()) for c in chunks) == 600


def test_punctuation_only_text_makes_no_chunk() -> None:
    """Rules, dots and bullets with no word characters are not worth a chunk or a vector."""
    assert chunks_of(Segment("-----\n\n* * *\n\n...."), Segment("§ ¶ •", page=2)) == []


def test_dropped_chunk_does_not_leave_a_gap_in_seq() -> None:
    """A dropped punctuation-only chunk does not consume a sequence number."""
    chunks = chunks_of(Segment("=====", page=1), Segment("real words", page=2))
    assert [(c.seq, c.page, c.text) for c in chunks] == [(0, 2, "real words")]


def test_whitespace_is_normalised() -> None:
    """Runs of spaces and tabs collapse and blank lines inside paragraphs disappear."""
    [chunk] = chunks_of(Segment("a  \t b\u00a0\u00a0c\n   \nd"))
    assert chunk.text == "a b c\n\nd"


def test_identical_text_gives_identical_hash() -> None:
    """The same text in two documents gets the same text_hash (embedded once)."""
    first = chunks_of(Segment("shared boilerplate paragraph", page=1))
    second = chunks_of(Segment("shared boilerplate paragraph", page=40, heading="Legal"))
    assert first[0].text_hash == second[0].text_hash
    assert first[0].text_hash == hashlib.sha256(b"shared boilerplate paragraph").hexdigest()


def test_different_text_gives_different_hash() -> None:
    """Different texts get different hashes, so they are not confused in the cache."""
    assert text_hash("one") != text_hash("two")


def test_text_hash_accepts_lone_surrogates() -> None:
    """Text with a lone surrogate (from a broken PDF) still hashes instead of raising."""
    assert len(text_hash("bad \udc80 text")) == 64


def test_seq_numbers_are_consecutive_across_pages() -> None:
    """Chunks of an item are numbered 0, 1, 2, ... across pages and headings."""
    rng = random.Random(11)
    segments = [Segment(prose(rng, 6, 60), page=p, heading=f"h{p % 3}") for p in range(12)]
    chunks = chunks_of(*segments, target=40)
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_chunking_is_deterministic() -> None:
    """The same input always gives the same chunks (so re-runs dedupe by hash)."""
    rng = random.Random(5)
    segments = [Segment(prose(rng, 10, 90), page=p) for p in range(4)]
    assert chunks_of(*segments, target=64) == chunks_of(*segments, target=64)


def test_segments_are_consumed_lazily() -> None:
    """Chunks come out while segments are still being produced (a long scan is streamed)."""
    produced: list[int] = []

    def segments() -> Iterator[Segment]:
        for page in range(1, 1000):
            produced.append(page)
            yield Segment(f"page {page} text", page=page)

    stream = chunk_segments(segments(), 200)
    first = next(stream)
    assert first.page == 1
    assert len(produced) <= 2


def test_symbols_alone_are_content_but_rules_and_bullets_are_not() -> None:
    """A cell of emoji or a line of maths signs is kept (someone may search it); a page
    of dashes and bullets is not."""
    kept = list(chunk_segments([Segment("🤠😅", page=1), Segment("∑ ≤ ∞", page=2)], 200))
    assert [c.text for c in kept] == ["🤠😅", "∑ ≤ ∞"]
    rules = "-----\n\n• • •\n\n...\n\n+===+===+\n\n| --- | --- |"
    assert list(chunk_segments([Segment(rules)], 200)) == []


# -- code entities -----------------------------------------------------------------


def test_a_code_entity_is_a_chunk_of_its_own_with_its_metadata_and_indentation() -> None:
    """Entities are never packed together or with prose, keep their indentation, and carry
    language, kind, qualified name, parent, line range and their split identifiers."""
    method = ("    /** Applies the discount. */\n"
              "    BigDecimal applyDiscount(Invoice invoice) {\n"
              "        return invoice.total();\n"
              "    }")
    chunks = list(chunk_segments([
        Segment("Notes before the code."),
        Segment("package org.acme;", language="java", kind="header", entity="org.acme",
                lines=(1, 1)),
        Segment(method, language="java", kind="method",
                entity="org.acme.Billing.applyDiscount(Invoice)", parent="org.acme.Billing",
                lines=(5, 8)),
    ], target_tokens=200))
    assert [c.text for c in chunks] == ["Notes before the code.", "package org.acme;", method]
    code = chunks[2]
    assert (code.language, code.kind, code.entity, code.parent, code.lines) == (
        "java", "method", "org.acme.Billing.applyDiscount(Invoice)", "org.acme.Billing",
        (5, 8))
    assert code.terms == "org acme Billing applyDiscount Invoice apply discount big decimal"
    assert chunks[0].language is None and chunks[0].terms is None


def test_a_code_segment_over_the_budget_is_still_cut_and_nothing_is_lost() -> None:
    """The extractor cuts entities at statements; one statement longer than the budget
    is cut again here rather than dropped."""
    statement = "x = " + " + ".join(f"value{i}" for i in range(400)) + ";"
    chunks = list(chunk_segments([Segment(statement, language="java", kind="method",
                                          entity="A.f()", lines=(1, 1))], 50))
    assert len(chunks) > 1
    assert all(c.entity == "A.f()" and estimate_tokens(c.text) <= 50 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == statement.replace(" ", "")


def test_code_with_tabs_before_a_long_word_is_cut_and_the_cutting_ends() -> None:
    """Source keeps its tabs; a cut landing on one before a word longer than the budget
    must still move on (this hung a worker on a fuzzing test's 14,000-character line)."""
    text = "x " * 100 + "\t" + "b" * 2000 + "\n\tint y = 0;"
    chunks = list(chunk_segments([Segment(text, language="java", kind="method",
                                          entity="A.f()", lines=(1, 2))], 20))
    assert all(estimate_tokens(c.text) <= 20 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "").replace("\t", "").replace(
        "\n", "") == text.replace(" ", "").replace("\t", "").replace("\n", "")


def test_code_over_the_budget_is_cut_at_line_ends_keeping_indentation() -> None:
    """When an extractor hands over code it could not cut (a long comment block), the
    chunker cuts it between lines, never mid-line, and keeps each line's indentation."""
    lines = [f"    * line {i} of a long licence comment, with words." for i in range(60)]
    chunks = list(chunk_segments([Segment("\n".join(lines), language="java",
                                          kind="header", lines=(1, 60))], 60))
    assert len(chunks) > 2
    assert all(c.text.startswith("    * line") for c in chunks)
    assert [line for c in chunks for line in c.text.split("\n")] == lines

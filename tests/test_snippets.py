"""Snippets show the match: the passage of a chunk around the query's words, and where
those words are in it, for the CLI, the JSON output, the API and the dashboard."""

from __future__ import annotations

import random
import re
from pathlib import Path

from gristmill.snippets import SNIPPET_CHARS, Snippet, query_terms, snippet
from process_tools import env_for, gristmill, gristmill_json

FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def marked(found: Snippet) -> list[str]:
    """The words a snippet marks, in order."""
    return [found.text[start:end] for start, end in found.highlights]


def test_the_window_holds_the_match_far_from_the_start() -> None:
    """A word 2,000 characters into a chunk is in the snippet, marked, with ellipses
    on both sides where text was left out."""
    text = FILLER * 35 + "The grey heron stood still. " + FILLER * 35
    found = snippet(text, "heron")
    assert marked(found) == ["heron"]
    assert found.text.startswith("…") and found.text.endswith("…")
    assert len(found.text) <= SNIPPET_CHARS + 2
    assert "The grey heron stood still." in found.text


def test_the_window_with_most_distinct_terms_wins_over_the_first_match() -> None:
    """Of a passage with one query word repeated and a later one with all of them, the
    snippet is the later one."""
    text = ("heron heron heron heron. " + FILLER * 10
            + "At dusk the heron left its nest by the river. " + FILLER * 10)
    found = snippet(text, "heron nest river")
    assert marked(found) == ["heron", "nest", "river"]
    assert "At dusk the heron left its nest by the river." in found.text


def test_among_equally_complete_windows_the_densest_wins() -> None:
    """With one word per window everywhere, the window with the most matches wins."""
    text = "heron " + FILLER * 10 + "heron and heron and heron. " + FILLER * 10
    assert marked(snippet(text, "heron")) == ["heron"] * 3


def test_words_match_whole_without_case_or_diacritics() -> None:
    """"HERON" and "Heron" match "heron"; "heronry" and "theron" do not; "café" matches
    "CAFE" as FTS5 with remove_diacritics does."""
    found = snippet("HERON theron heronry Heron", "heron")
    assert marked(found) == ["HERON", "Heron"]
    assert marked(snippet("Le café est ouvert", "CAFE")) == ["café"]


def test_plurals_and_verb_forms_match_as_the_keyword_index_stems_them() -> None:
    """"herons" finds "heron" and back; "nesting" finds "nested"; "ponies" finds "pony"."""
    assert marked(snippet("one heron, two herons", "herons")) == ["heron", "herons"]
    assert marked(snippet("they nested and were nesting", "nest")) == ["nested", "nesting"]
    assert marked(snippet("a pony and ponies", "ponies")) == ["pony", "ponies"]


def test_punctuation_and_underscores_separate_words() -> None:
    """Words next to punctuation match without it; ``_`` splits words as FTS5 does."""
    found = snippet('("heron"), heron; heron\'s rank_fusion', "heron fusion")
    assert marked(found) == ["heron", "heron", "heron", "fusion"]


def test_stop_words_are_not_marked_unless_the_query_is_only_stop_words() -> None:
    """"the" is left unmarked beside a content word, marked when it is all there is."""
    assert marked(snippet("the heron and the river", "the heron")) == ["heron"]
    assert marked(snippet("the heron and the river", "the")) == ["the", "the"]
    assert query_terms("The Herons") == frozenset({"heron"})


def test_no_match_gives_the_start_of_the_chunk_cut_at_a_word() -> None:
    """A hit found by meaning alone shows the chunk's start, cut at a word end."""
    text = FILLER * 10
    found = snippet(text, "heron")
    assert found.highlights == ()
    assert found.text.endswith("…") and text.startswith(found.text[:-1])
    assert text[len(found.text) - 1] == " "  # the cut is at a word boundary
    assert snippet("short text", "").text == "short text"


def test_whitespace_is_collapsed_and_offsets_point_into_the_snippet() -> None:
    """Newlines and runs of spaces become one space; offsets index the snippet."""
    found = snippet("first line\n\n\tsecond    heron\n", "heron")
    assert found.text == "first line second heron"
    assert marked(found) == ["heron"]


def test_terms_at_the_very_start_and_end() -> None:
    """A word that opens or closes the chunk is marked, with no ellipsis on that side."""
    start = snippet("heron " + FILLER * 10, "heron")
    assert start.highlights == ((0, 5),) and not start.text.startswith("…")
    end = snippet(FILLER * 10 + "heron", "heron")
    assert marked(end) == ["heron"] and end.text.endswith("heron")
    assert end.text.startswith("…")


def test_astral_characters_before_a_match_keep_offsets_in_code_points() -> None:
    """Emoji before the word shift it by one index each (Python ``str`` indices)."""
    found = snippet("😀🐦 the 𝒽eron heron 😀", "heron")
    assert marked(found) == ["heron"]
    assert found.highlights == ((13, 18),)


def test_a_very_long_chunk_and_a_word_longer_than_the_snippet() -> None:
    """A 1 MB chunk still gives a bounded snippet; a word longer than the width is cut
    to the width and still marked."""
    text = FILLER * 9000 + "heron " + FILLER * 9000
    found = snippet(text, "heron")
    assert marked(found) == ["heron"] and len(found.text) <= SNIPPET_CHARS + 2
    long_word = "x" * 1000
    cut = snippet(f"a {long_word} b", long_word, width=50)
    assert cut.highlights == ((1, 51),) and cut.text == "…" + "x" * 50 + "…"


def test_hostile_queries_are_only_words() -> None:
    """Regex metacharacters, FTS5 operators and markup in the query match as the words
    they hold (if any), never as patterns."""
    text = "a+b (c|d) [x] .* heron NEAR AND"
    assert snippet(text, r".*+?[](){}|^$\\").highlights == ()
    assert marked(snippet(text, "(heron) NEAR*")) == ["heron", "NEAR"]
    assert marked(snippet(text, "[/x]")) == ["x"]


def test_every_highlight_is_a_query_word_in_random_text() -> None:
    """For random texts and queries, snippets stay within the width and every marked
    span is a whole word of the text that the query asked for."""
    rng = random.Random(12)
    vocabulary = ["heron", "herons", "nest", "river", "😀", "café", "x_y", "the", "a.b"]
    for _ in range(300):
        text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 120)))
        query = " ".join(rng.sample(vocabulary, 2))
        found = snippet(text, query, width=rng.randint(10, 80))
        terms = query_terms(query)
        assert len(found.text) <= 80 + 2
        previous = 0
        for start, end in found.highlights:
            assert previous <= start < end <= len(found.text)
            previous = end
            assert query_terms(found.text[start:end]) <= terms
            assert not found.text[start - 1:start].isalnum()
            assert not found.text[end:end + 1].isalnum()


def _far_match_pile(tmp_path: Path) -> Path:
    """One text file whose only paragraph names the heron ~500 characters in."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "birds.txt").write_text(
        FILLER * 9 + "At dusk the grey Herons left the marsh. " + FILLER * 3 + "\n",
        encoding="utf-8")
    return src


def test_cli_search_json_and_text_show_the_passage_with_the_match(tmp_path: Path) -> None:
    """`search --json` keeps the whole chunk in ``text`` and adds ``snippet`` and
    ``highlights`` pointing at the query's words; the text output shows that passage
    (not the chunk's first characters) with the words styled on a colour terminal."""
    env = env_for(tmp_path / "home")
    src = _far_match_pile(tmp_path)
    assert gristmill("ingest", str(src), env=env).returncode == 0

    hits = gristmill_json("search", "heron marsh", "--mode", "keyword", env=env)
    assert len(hits) == 1
    hit = hits[0]
    assert hit["text"] == (src / "birds.txt").read_text(encoding="utf-8").strip()
    assert hit["text"].index("Herons") > 400  # far beyond the old 240-character cut
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["Herons", "marsh"]
    assert "At dusk the grey Herons left the marsh." in hit["snippet"]

    plain = gristmill("search", "heron marsh", "--mode", "keyword", env=env)
    assert plain.returncode == 0, plain.stderr
    assert "At dusk the grey Herons left the marsh." in plain.stdout
    assert hit["snippet"] in plain.stdout and "\x1b[" not in plain.stdout

    coloured = gristmill("search", "heron marsh", "--mode", "keyword",
                         env={**env, "FORCE_COLOR": "1", "COLUMNS": "1000"})
    styled = re.findall(r"\x1b\[[0-9;]+m([^\x1b]+)\x1b\[0m", coloured.stdout)
    assert "Herons" in styled and "marsh" in styled
    assert hit["snippet"] in _ANSI.sub("", coloured.stdout)

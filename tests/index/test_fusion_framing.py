"""Coverage counts the words that name a question's subject, not those that frame it."""

from __future__ import annotations

from gristmill.index import coverage


def test_framing_words_do_not_lower_coverage() -> None:
    """A chunk holding every subject word of "which passage explains X" covers it fully."""
    text = {1: "Fig. 5. Langmuir adsorption isotherm of egg shell on stainless steel."}
    for query in ("which passage explains the Langmuir isotherm?",
                  "how is the Langmuir isotherm described?",
                  "explain the Langmuir isotherm"):
        assert coverage(query, text) == {1: 1.0}, query


def test_subject_words_still_count() -> None:
    """A chunk missing one of two subject words covers half of the query."""
    assert coverage("which passage explains the Langmuir isotherm?",
                    {1: "Langmuir was a chemist."}) == {1: 0.5}

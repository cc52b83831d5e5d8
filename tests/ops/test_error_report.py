"""The error report: failures grouped by pattern, the most urgent first, a few examples."""

from __future__ import annotations

from gristmill.ops import group_problems, normalise


def test_reasons_differing_only_in_numbers_group_together() -> None:
    """'killed (2 times)' and 'killed (3 times)' are one problem."""
    groups = group_problems([
        ("failed", "/a.pdf", "worker killed by signal 9 (2 times)"),
        ("failed", "/b.pdf", "worker killed by signal 9 (3 times)"),
        ("failed", "/c.pdf", "timed out after 300.5 s"),
    ])
    assert [(g.pattern, g.count) for g in groups] == [
        ("worker killed by signal <n> (<n> times)", 2), ("timed out after <n> s", 1)]


def test_reasons_differing_only_in_paths_group_together() -> None:
    """The same error on different files is one pattern."""
    groups = group_problems([
        ("failed", "/x/a.docx", "cannot open /x/a.docx: truncated"),
        ("failed", "/y/z/b.docx", "cannot open /y/z/b.docx: truncated"),
        ("failed", "c.docx", "cannot open C:/Users/me/c.docx: truncated"),
    ])
    assert len(groups) == 1
    assert groups[0].pattern == "cannot open <path>: truncated"
    assert groups[0].count == 3


def test_reasons_differing_only_in_quoted_names_group_together() -> None:
    """KeyError: 'word/a.xml' and KeyError: "ppt/b.xml" are one pattern."""
    groups = group_problems([
        ("failed", "/a.docx", "KeyError: 'word/document.xml'"),
        ("failed", "/b.pptx", 'KeyError: "there is no item named ppt/slide1.xml"'),
    ])
    assert len(groups) == 1


def test_reasons_differing_only_in_hex_ids_group_together() -> None:
    """Object addresses and digests do not split a pattern."""
    first = normalise("object at 0x7f3a2b1c freed; sha deadbeefcafe1234")
    second = normalise("object at 0xffff0000 freed; sha 0123456789abcdef")
    assert first == second


def test_different_problems_stay_apart() -> None:
    """Reasons that differ in words are different patterns."""
    groups = group_problems([
        ("failed", "/a.pdf", "unreadable PDF: incorrect password"),
        ("failed", "/b.pdf", "unreadable PDF: data format error"),
    ])
    assert len(groups) == 2


def test_same_reason_with_different_status_is_two_groups() -> None:
    """A reason that failed some items and skipped others is reported under each status."""
    groups = group_problems([
        ("failed", "/a", "empty file"),
        ("skipped", "/b", "empty file"),
    ])
    assert [(g.status, g.count) for g in groups] == [("failed", 1), ("skipped", 1)]


def test_failed_groups_sort_before_skipped_then_by_count() -> None:
    """Failures come first even when skips are more common; then the most frequent first."""
    problems = (
        [("skipped", f"/s{i}.bin", "no extractor for .bin") for i in range(10)]
        + [("failed", "/f1.pdf", "encrypted")]
        + [("failed", f"/t{i}.pdf", "timed out") for i in range(3)]
    )
    groups = group_problems(problems)
    assert [(g.status, g.pattern, g.count) for g in groups] == [
        ("failed", "timed out", 3), ("failed", "encrypted", 1),
        ("skipped", "no extractor for .bin", 10)]


def test_at_most_three_examples_are_kept() -> None:
    """A group of thousands shows only the first three examples, with source and error."""
    groups = group_problems(
        ("failed", f"/docs/{i}.pdf", f"page {i} too large") for i in range(5_000))
    [group] = groups
    assert group.count == 5_000
    assert group.examples == [
        {"source": f"/docs/{i}.pdf", "error": f"page {i} too large"} for i in range(3)]


def test_group_json_shape() -> None:
    """to_dict gives the documented JSON keys: pattern, status, count, examples."""
    [group] = group_problems([("failed", "/a", "boom")])
    assert group.to_dict() == {"pattern": "boom", "status": "failed", "count": 1,
                               "examples": [{"source": "/a", "error": "boom"}]}


def test_no_problems_no_groups() -> None:
    """A clean run reports no groups."""
    assert group_problems([]) == []

"""HTML extraction: main text in reading order, headings, tables, encodings, hostile depth."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from docs import make_html
from gristmill.errors import LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.html import HtmlExtractor, decode_html, html_to_segments


def extract(path: Path) -> list[Segment]:
    return list(HtmlExtractor().extract(path, Limits()))


def page(body: str, head: str = "<title>Page</title>") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


def test_title_and_paragraphs_round_trip(tmp_path: Path) -> None:
    """The <title> is the first heading and paragraphs are separated by blank lines."""
    path = make_html(tmp_path / "a.html", "Greetings", ["Hello there.", "Second one."])
    assert [(s.heading, s.text) for s in extract(path)] == [
        ("Greetings", "Greetings\n\nHello there.\n\nSecond one.")
    ]


def test_headings_start_sections() -> None:
    """Each h1-h6 opens a segment under its own text; text before it keeps the title."""
    html = page("<p>Intro.</p><h2>Part A</h2><p>Alpha.</p><h3>Part B</h3><p>Beta.</p>")
    assert [(s.heading, s.text) for s in html_to_segments(html)] == [
        ("Page", "Intro."),
        ("Part A", "Part A\n\nAlpha."),
        ("Part B", "Part B\n\nBeta."),
    ]


def test_boilerplate_is_dropped() -> None:
    """Scripts, styles, navigation, page header/footer and asides never reach the text."""
    html = page(
        "<header>Site banner</header><nav>Home | About</nav>"
        "<script>var hidden = 1;</script><style>p { color: red }</style>"
        "<noscript>Enable JS</noscript><template><p>tpl</p></template>"
        "<svg><text>chart</text></svg><aside>Ads</aside>"
        "<p>Real content.</p><footer>Copyright</footer>"
    )
    assert [s.text for s in html_to_segments(html)] == ["Real content."]


def test_article_header_keeps_its_title() -> None:
    """A <header> inside <article> holds the article's title, so it is kept."""
    html = page("<article><header><h1>Story</h1></header><p>Once upon a time.</p></article>")
    assert [s.text for s in html_to_segments(html)] == ["Story\n\nOnce upon a time."]


def test_hidden_elements_are_dropped() -> None:
    """Elements hidden by attribute or display:none are not part of the text."""
    html = page('<div hidden>secret</div><div style="display: none">xbrl</div><p>shown</p>')
    assert [s.text for s in html_to_segments(html)] == ["shown"]


def test_inline_markup_and_whitespace_fold_into_one_paragraph() -> None:
    """Inline elements join their text; source line breaks are spaces; <br> breaks lines."""
    html = page("<p>One <b>bold</b>\n   word<br>next line</p>")
    assert [s.text for s in html_to_segments(html)] == ["One bold word\nnext line"]


def test_pre_keeps_its_whitespace() -> None:
    """Preformatted text keeps indentation and line breaks."""
    html = page("<p>Code:</p><pre>def f():\n    return 1</pre>")
    assert [s.text for s in html_to_segments(html)] == ["Code:\n\ndef f():\n    return 1"]


def test_data_tables_become_markdown_rows() -> None:
    """A data table becomes Markdown rows with a rule under the header; spacer rows go."""
    html = page(
        "<table><tr><th>Name</th><th>Qty</th></tr><tr><td></td><td> </td></tr>"
        "<tr><td>Bolts</td><td><p>12</p></td></tr></table>"
    )
    assert [s.text for s in html_to_segments(html)] == [
        "| Name | Qty |\n| --- | --- |\n| Bolts | 12 |"
    ]


def test_layout_tables_read_as_plain_blocks() -> None:
    """A one-row layout table around an article reads as paragraphs, not a giant row."""
    html = page("<table><tr><td><p>First para.</p><p>Second para.</p></td></tr></table>")
    assert [s.text for s in html_to_segments(html)] == ["First para.\n\nSecond para."]


def test_page_and_default_heading_are_stamped() -> None:
    """Callers (EPUB, e-mail) can stamp a page and a heading for untitled documents."""
    (segment,) = html_to_segments("<p>Chapter text.</p>", heading="Chapter 3", page=3)
    assert (segment.page, segment.heading) == (3, "Chapter 3")


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    """UTF-16 HTML with a byte-order mark decodes, non-ASCII text intact."""
    path = make_html(tmp_path / "a.html", "Überschrift", ["Grüße, 東京"], encoding="utf-16")
    assert extract(path)[0].text == "Überschrift\n\nGrüße, 東京"


def test_meta_charset_is_honoured(tmp_path: Path) -> None:
    """A cp1252 page declaring windows-1252 in <meta> decodes its curly quotes and dashes."""
    path = make_html(tmp_path / "a.html", "Menu", ["Café – “crème brûlée”"], encoding="cp1252")
    assert extract(path)[0].text == "Menu\n\nCafé – “crème brûlée”"


def test_latin1_label_means_windows_1252() -> None:
    """As in browsers, a page labelled iso-8859-1 is decoded as windows-1252."""
    data = '<meta charset="iso-8859-1"><p>“quoted”</p>'.encode("cp1252")
    assert "“quoted”" in decode_html(data)


def test_undeclared_legacy_encoding_is_detected() -> None:
    """Without BOM or <meta>, a cp1252 page is detected rather than mangled."""
    text = "Café déjà vu – “quotes” naïve façade, Grüße aus Köln. Ça va? Œuvre à côté. " * 3
    assert text in decode_html(f"<p>{text}</p>".encode("cp1252"))


def test_deeply_nested_document_is_survived() -> None:
    """200,000 nested elements neither overflow a stack nor stall the parser."""
    depth = 200_000
    html = "<div>" * depth + "deep text" + "</div>" * depth
    assert [s.text for s in html_to_segments(html)] == ["deep text"]


def test_nesting_deeper_than_the_recursion_limit_is_walked() -> None:
    """A tree 3,000 elements deep (past Python's recursion limit) is walked in full."""
    assert sys.getrecursionlimit() < 3000
    pairs = 1500  # div + span: 3,000 levels, under the depth cap, so nothing is flattened
    html = "<div><span>" * pairs + "bottom" + "</span></div>" * pairs + "<p>after</p>"
    assert [s.text for s in html_to_segments(html)] == ["bottom\n\nafter"]


def test_page_without_text_is_unsupported(tmp_path: Path) -> None:
    """A page with only markup and scripts is skipped as having no text."""
    path = tmp_path / "empty.html"
    path.write_text(page("<script>x()</script><div> </div>"), encoding="utf-8")
    with pytest.raises(Unsupported, match="no text"):
        extract(path)


def test_text_over_the_limit_is_refused() -> None:
    """More text than max_text_chars raises LimitExceeded."""
    html = page("".join(f"<p>{'word ' * 20}</p>" for _ in range(10)))
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        list(html_to_segments(html, limits=Limits(max_text_chars=500)))

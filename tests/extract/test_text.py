"""Plain-text family: encodings, streaming in blocks, headings, CSV/TSV tables."""

from __future__ import annotations

import codecs
import tracemalloc
from pathlib import Path

import pytest

from gristmill.errors import LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.text import DelimitedExtractor, TextExtractor, detect_encoding

MB = 1024 * 1024


def extract(path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(TextExtractor().extract(path, limits or Limits()))


def table(path: Path) -> list[Segment]:
    return list(DelimitedExtractor().extract(path, Limits()))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- Plain text and encodings ------------------------------------------------------------


def test_plain_text_round_trips(tmp_path: Path) -> None:
    """A small UTF-8 file comes back as one segment, Windows line ends normalised."""
    path = write(tmp_path / "a.txt", "Hello, wörld.\r\n\r\nSecond paragraph.\r\n".encode())
    assert [(s.text, s.page, s.heading) for s in extract(path)] == [
        ("Hello, wörld.\n\nSecond paragraph.", None, None)
    ]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_byte_order_marks_are_honoured(tmp_path: Path, codec: str) -> None:
    """UTF-16 and UTF-32 files with a BOM decode correctly, without a stray BOM char."""
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[codec]
    path = write(tmp_path / "a.txt", bom + "Grüße aus 東京 🚀".encode(codec))
    assert [s.text for s in extract(path)] == ["Grüße aus 東京 🚀"]


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark does not leak into the text."""
    path = write(tmp_path / "a.txt", codecs.BOM_UTF8 + "naïve".encode())
    assert [s.text for s in extract(path)] == ["naïve"]


def test_cp1252_is_detected(tmp_path: Path) -> None:
    """A legacy Windows-1252 file is decoded with its accents, dashes and quotes."""
    text = "Café déjà vu – “quotes” naïve façade, Grüße aus Köln. Ça va? Œuvre à côté. " * 3
    path = write(tmp_path / "a.txt", text.encode("cp1252"))
    assert [s.text for s in extract(path)] == [text.strip()]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    """Damaged bytes in a UTF-8 file become U+FFFD and the rest decodes normally."""
    data = "Ünïcödé text ".encode() + b"\xff\xc3" + " and more déjà vu".encode()
    path = write(tmp_path / "a.txt", data)
    (segment,) = extract(path)
    assert segment.text.startswith("Ünïcödé text ")
    assert segment.text.endswith(" and more déjà vu")
    assert "\ufffd" in segment.text


def test_detect_encoding_reports_bom_length() -> None:
    """detect_encoding names the codec and how many BOM bytes to skip."""
    assert detect_encoding(codecs.BOM_UTF16_LE + "hi".encode("utf-16-le")) == ("utf-16-le", 2)
    assert detect_encoding(b"plain ascii") == ("utf-8", 0)


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  "])
def test_empty_or_blank_file_is_unsupported(tmp_path: Path, content: bytes) -> None:
    """An empty or whitespace-only file is skipped with the reason "empty file"."""
    with pytest.raises(Unsupported, match="empty file"):
        extract(write(tmp_path / "a.txt", content))


def test_binary_content_is_unsupported(tmp_path: Path) -> None:
    """Binary bytes under a text suffix are skipped rather than indexed as garbage."""
    with pytest.raises(Unsupported, match="binary"):
        extract(write(tmp_path / "a.log", bytes(range(256)) * 64))


def test_text_over_the_limit_is_refused(tmp_path: Path) -> None:
    """More characters than max_text_chars raise LimitExceeded."""
    path = write(tmp_path / "a.txt", b"word " * 1000)
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        extract(path, Limits(max_text_chars=1000))


def test_huge_file_is_refused_from_its_size(tmp_path: Path) -> None:
    """A file too big to fit the limit even at 4 bytes a character is refused unread."""
    path = write(tmp_path / "a.txt", b"x" * 4100)
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        extract(path, Limits(max_text_chars=1000))


def test_long_text_is_cut_into_segments_at_paragraphs(tmp_path: Path) -> None:
    """A text over 1 MB is split at paragraph breaks, every segment at most 1 MB."""
    paragraph = "A sentence of filler words. " * 40
    text = "\n\n".join(f"{i} {paragraph.strip()}" for i in range(2500))
    segments = extract(write(tmp_path / "a.txt", text.encode()))
    assert len(segments) >= 3
    assert all(len(s.text) <= MB for s in segments)
    assert "\n\n".join(s.text for s in segments) == text


@pytest.mark.slow
def test_30mb_single_line_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 30 MB file with no newline comes back in ~1 MB segments cut at spaces, and is
    never held whole in memory."""
    path = tmp_path / "big.txt"
    words = 3_750_000  # "w0000000 " is 9 bytes: about 32 MB on one line
    with path.open("w", encoding="ascii") as fh:
        for start in range(0, words, 250_000):
            fh.write(" ".join(f"w{i:07d}" for i in range(start, start + 250_000)) + " ")
    tracemalloc.start()
    try:
        count = seen = 0
        for segment in TextExtractor().extract(path, Limits()):
            assert len(segment.text) <= MB
            # Cut only at spaces, so every word arrives whole.
            assert segment.text[0] == "w" and segment.text[-8] == "w"
            count += 1
            seen += segment.text.count(" ") + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == words
    assert 28 <= count <= 40
    assert peak < 16 * MB


# --- Headings ----------------------------------------------------------------------------


def test_markdown_headings_set_heading(tmp_path: Path) -> None:
    """ATX and setext headings open sections; a '#' inside a code fence does not."""
    text = (
        "Intro line.\n\n# Install\n\nRun it.\n\n```sh\n# not a heading\n```\n\n"
        "Usage\n-----\n\nCall it.\n"
    )
    segments = extract(write(tmp_path / "a.md", text.encode()))
    assert [(s.heading, s.text) for s in segments] == [
        (None, "Intro line."),
        ("Install", "# Install\n\nRun it.\n\n```sh\n# not a heading\n```"),
        ("Usage", "Usage\n-----\n\nCall it."),
    ]


def test_rst_headings_set_heading(tmp_path: Path) -> None:
    """reST underlined and over-and-underlined titles open sections."""
    text = "=====\nGuide\n=====\n\nWelcome.\n\nSetup\n-----\n\nSteps.\n"
    segments = extract(write(tmp_path / "a.rst", text.encode()))
    assert [(s.heading, s.text) for s in segments] == [
        ("Guide", "=====\nGuide\n=====\n\nWelcome."),
        ("Setup", "Setup\n-----\n\nSteps."),
    ]


def test_org_headings_set_heading(tmp_path: Path) -> None:
    """Org-mode star lines open sections."""
    segments = extract(write(tmp_path / "a.org", b"* Tasks\nBuy milk.\n** Later\nSleep.\n"))
    assert [s.heading for s in segments] == ["Tasks", "Later"]


def test_plain_text_has_no_headings(tmp_path: Path) -> None:
    """In a .txt file a line starting with '#' is just text."""
    segments = extract(write(tmp_path / "a.txt", b"# not a heading\nbody\n"))
    assert [(s.heading, s.text) for s in segments] == [(None, "# not a heading\nbody")]


# --- CSV and TSV -------------------------------------------------------------------------


def test_csv_becomes_markdown_rows(tmp_path: Path) -> None:
    """CSV rows become Markdown table rows; quoted commas, pipes and newlines are kept."""
    data = b'name,comment\nAda,"likes, commas"\nBob,"a | pipe\nand a line"\n'
    assert [s.text for s in table(write(tmp_path / "a.csv", data))] == [
        "| name | comment |\n| --- | --- |\n| Ada | likes, commas |\n"
        "| Bob | a \\| pipe and a line |"
    ]


def test_csv_header_is_repeated_per_block(tmp_path: Path) -> None:
    """Long CSVs come in blocks of 200 rows, each led by the header row."""
    data = "id,value\n" + "".join(f"{i},v{i}\n" for i in range(450))
    segments = table(write(tmp_path / "a.csv", data.encode()))
    assert len(segments) == 3
    assert all(s.text.startswith("| id | value |\n| --- | --- |\n") for s in segments)


def test_semicolon_delimiter_is_sniffed(tmp_path: Path) -> None:
    """A semicolon-separated .csv is split on semicolons."""
    data = b"year;revenue\n2023;10\n2024;12\n"
    assert table(write(tmp_path / "a.csv", data))[0].text.endswith("| 2024 | 12 |")


def test_tsv_is_split_on_tabs(tmp_path: Path) -> None:
    """A .tsv file is split on tabs."""
    data = b"team\tcity\nBruins\tBoston\n"
    assert [s.text for s in table(write(tmp_path / "a.tsv", data))] == [
        "| team | city |\n| --- | --- |\n| Bruins | Boston |"
    ]


def test_utf16_csv_has_no_stray_bom(tmp_path: Path) -> None:
    """A UTF-16 CSV decodes and its BOM does not end up in the first header cell."""
    data = codecs.BOM_UTF16_BE + "Städte,Land\nKöln,DE\n".encode("utf-16-be")
    assert table(write(tmp_path / "a.csv", data))[0].text.startswith("| Städte | Land |")


def test_empty_csv_is_unsupported(tmp_path: Path) -> None:
    """A CSV with no rows is skipped as empty."""
    with pytest.raises(Unsupported, match="empty file"):
        table(write(tmp_path / "a.csv", b"\n\n"))

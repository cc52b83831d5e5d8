"""Outlook .msg extraction: envelope first, then the body; the subject is the heading.

Fixtures are real compound files written by ``tests/cfb.py``, laid out as [MS-OXMSG]
says Outlook writes them, and checked to open with olefile at its strictest setting.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import olefile
import pytest

from cfb import Tree, write_cfb
from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.msg import MsgExtractor

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "unstructured-example-docs"

# Property tags: id << 16 | type ([MS-OXPROPS]).
MESSAGE_CLASS = 0x001A001F
SUBJECT = 0x0037001F
SUBJECT_A = 0x0037001E
CLIENT_SUBMIT_TIME = 0x00390040
RECIPIENT_TYPE = 0x0C150003
SENDER_NAME = 0x0C1A001F
SENDER_ADDRTYPE = 0x0C1E001F
SENDER_EMAIL = 0x0C1F001F
DISPLAY_CC = 0x0E03001F
DISPLAY_TO = 0x0E04001F
MESSAGE_DELIVERY_TIME = 0x0E060040
ATTACH_SIZE = 0x0E200003
BODY = 0x1000001F
BODY_A = 0x1000001E
RTF_COMPRESSED = 0x10090102
HTML = 0x10130102
HTML_W = 0x1013001F
DISPLAY_NAME = 0x3001001F
ADDRTYPE = 0x3002001F
EMAIL_ADDRESS = 0x3003001F
ATTACH_DATA = 0x37010102
ATTACH_EMBEDDED = 0x3701000D
ATTACH_FILENAME = 0x3704001F
ATTACH_METHOD = 0x37050003
ATTACH_LONG_FILENAME = 0x3707001F
SMTP_ADDRESS = 0x39FE001F
INTERNET_CPID = 0x3FDE0003
MESSAGE_CODEPAGE = 0x3FFD0003
SENDER_SMTP_ADDRESS = 0x5D01001F

SENT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
Props = Mapping[int, object]


# --- Writing .msg files ------------------------------------------------------------------


def property_storage(props: Props, header: bytes) -> Tree:
    """Streams for variable-size values, ``__properties_version1.0`` for the rest."""
    tree: Tree = {}
    entries = bytearray(header)
    for tag, value in props.items():
        kind = tag & 0xFFFF
        if kind == 0x000D:  # an embedded message: a storage of its own
            assert isinstance(value, dict)
            tree[f"__substg1.0_{tag:08X}"] = message_tree(value, header=bytes(24))
            entries += struct.pack("<IIQ", tag, 6, 0xFFFFFFFF)  # object: no size of its own
            continue
        if kind in (0x0003, 0x0040):
            fixed = _filetime(value) if isinstance(value, datetime) else value
            assert isinstance(fixed, int)
            entries += struct.pack("<IIQ", tag, 6, fixed)
            continue
        if kind == 0x001F:
            assert isinstance(value, str)
            data = value.encode("utf-16-le")
            size = len(data) + 2  # the entry counts the terminator the stream omits
        else:
            assert isinstance(value, bytes)
            data = value
            size = len(data) + (1 if kind == 0x001E else 0)
        tree[f"__substg1.0_{tag:08X}"] = data
        entries += struct.pack("<IIII", tag, 6, size, 0)
    tree["__properties_version1.0"] = bytes(entries)
    return tree


def message_tree(
    props: Props,
    recipients: Sequence[Props] = (),
    attachments: Sequence[Props] = (),
    *,
    header: bytes | None = None,
) -> Tree:
    """A message's storage; ``header`` is given for an embedded message (24 zero bytes)."""
    counts = struct.pack("<8xIIII8x", len(recipients), len(attachments), len(recipients),
                         len(attachments))
    tree = property_storage(props, counts if header is None else header)
    if header is None:  # named-property mappings live at the top level only
        tree["__nameid_version1.0"] = {
            "__substg1.0_00020102": b"", "__substg1.0_00030102": b"",
            "__substg1.0_00040102": b"",
        }
    for i, recipient in enumerate(recipients):
        tree[f"__recip_version1.0_#{i:08X}"] = property_storage(recipient, bytes(8))
    for i, attachment in enumerate(attachments):
        tree[f"__attach_version1.0_#{i:08X}"] = property_storage(attachment, bytes(8))
    return tree


def make_msg(path: Path, props: Props, **parts: Sequence[Props]) -> Path:
    """Write an IPM.Note with ``props``; ``parts`` are its recipients and attachments."""
    return write_cfb(path, message_tree({MESSAGE_CLASS: "IPM.Note", **props}, **parts))


def _filetime(when: datetime) -> int:
    return int((when - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds()) * 10_000_000


RTF_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
    b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
    b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)


def lzfu(raw: bytes) -> bytes:
    """Compress RTF as [MS-OXRTFCP] 2.1.3.1: greedy longest matches in a 4 KB window."""
    window = bytearray(4096)
    window[: len(RTF_PREBUF)] = RTF_PREBUF
    write = len(RTF_PREBUF)
    out = bytearray()
    at = 0
    while True:
        control, tokens = 0, bytearray()
        for bit in range(8):
            if at >= len(raw):
                control |= 1 << bit
                tokens += struct.pack(">H", write << 4)  # the end marker
                out += bytes([control]) + tokens
                crc = zlib.crc32(bytes(out), 0xFFFFFFFF) ^ 0xFFFFFFFF  # init 0, no final xor
                return struct.pack("<4I", len(out) + 12, len(raw), 0x75465A4C, crc) + out
            offset, length = _longest_match(window, write, raw, at)
            if length >= 2:
                control |= 1 << bit
                tokens += struct.pack(">H", offset << 4 | (length - 2))
            else:
                length = 1
                tokens.append(raw[at])
            for byte in raw[at:at + length]:
                window[write] = byte
                write = (write + 1) & 0xFFF
            at += length
        out += bytes([control]) + tokens


def _longest_match(window: bytearray, write: int, raw: bytes, at: int) -> tuple[int, int]:
    best = (0, 0)
    start = window.find(raw[at:at + 1])
    while start >= 0:
        if start != write:  # a reference to the write position ends the stream
            length = 0
            while length < 17 and at + length < len(raw):
                pos = (start + length) & 0xFFF
                ahead = (pos - write) & 0xFFF  # bytes this very copy has written already
                byte = raw[at + ahead] if ahead < length else window[pos]
                if byte != raw[at + length]:
                    break
                length += 1
            if length > best[1]:
                best = (start, length)
        start = window.find(raw[at:at + 1], start + 1)
    return best


def mela(raw: bytes) -> bytes:
    """The uncompressed form [MS-OXRTFCP] allows: a header, then the RTF as is."""
    return struct.pack("<4I", len(raw) + 12, len(raw), 0x414C454D, 0) + raw


def extract(path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(MsgExtractor().extract(path, limits or Limits()))


def body_text(path: Path) -> str:
    _envelope, *body = extract(path)
    return "\n\n".join(segment.text for segment in body)


# --- The fixtures themselves -------------------------------------------------------------


def test_fixtures_are_valid_compound_files(tmp_path: Path) -> None:
    """olefile, at its strictest, reads the fixtures back, and their trees are red-black."""
    big = b"x" * 6000  # over the 4,096-byte cutoff: stored in regular sectors
    many = {0x8000_001F + (i << 16): f"value {i}" for i in range(40)}  # a deep tree
    path = make_msg(
        tmp_path / "a.msg",
        {SUBJECT: "Hi", BODY: "text", **many},
        attachments=[{ATTACH_LONG_FILENAME: "a.bin", ATTACH_DATA: big},
                     {ATTACH_LONG_FILENAME: "empty.txt", ATTACH_DATA: b""}],
    )
    with olefile.OleFileIO(str(path), raise_defects=olefile.DEFECT_UNSURE) as ole:
        attachment = "__attach_version1.0_#00000000/__substg1.0_37010102"
        assert ole.openstream(attachment).read() == big
        assert ole.openstream(attachment.replace("#00000000", "#00000001")).read() == b""
        assert ole.openstream("__substg1.0_0037001F").read() == "Hi".encode("utf-16-le")
        assert ole.openstream("__substg1.0_8027001F").read() == "value 39".encode("utf-16-le")
        entries = [entry for entry in ole.direntries if entry is not None]
        assert any(entry.color == 0 for entry in entries)  # some red nodes to check
        for storage in (entry for entry in entries if entry.kids):
            _assert_red_black(ole, storage.sid_child)


def _assert_red_black(ole: olefile.OleFileIO, sid: int) -> int:
    """The black height of the subtree at ``sid``; fails on a red-red edge or imbalance."""
    if sid == 0xFFFFFFFF:
        return 1
    node = ole.direntries[sid]
    for child in (node.sid_left, node.sid_right):
        if child != 0xFFFFFFFF:
            assert not (node.color == 0 and ole.direntries[child].color == 0), "red-red"
    left, right = _assert_red_black(ole, node.sid_left), _assert_red_black(ole, node.sid_right)
    assert left == right, "unequal black heights"
    return left + node.color


def test_lzfu_writer_matches_the_specification() -> None:
    """The test compressor reproduces the worked example of [MS-OXRTFCP] 3.1.1."""
    assert lzfu(b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n") == (
        b"-\x00\x00\x00+\x00\x00\x00LZFu\xf1\xc5\xc7\xa7\x03\x00\n\x00rcpg125B2\n\xf3 hel"
        b"\t\x00 bw\x05\xb0ld}\n\x80\x0f\xa0"
    )


# --- Envelope and bodies -----------------------------------------------------------------

ADA = {
    SUBJECT: "Grüße ☃ report",
    SENDER_NAME: "Ada Lovelace",
    SENDER_ADDRTYPE: "EX",
    SENDER_EMAIL: "/O=EXCHANGELABS/OU=EXCHANGE ADMINISTRATIVE GROUP/CN=RECIPIENTS/CN=ADA",
    SENDER_SMTP_ADDRESS: "ada@example.org",
    CLIENT_SUBMIT_TIME: SENT,
    DISPLAY_TO: "Charles Babbage",
    DISPLAY_CC: "Mary Somerville",
}
RECIPIENTS = [
    {RECIPIENT_TYPE: 1, DISPLAY_NAME: "Charles Babbage", ADDRTYPE: "SMTP",
     EMAIL_ADDRESS: "charles@example.org"},
    {RECIPIENT_TYPE: 2, DISPLAY_NAME: "Mary Somerville", SMTP_ADDRESS: "mary@example.org"},
    {RECIPIENT_TYPE: 3, DISPLAY_NAME: "Hidden Person", SMTP_ADDRESS: "bcc@example.org"},
]


def test_envelope_then_plain_body(tmp_path: Path) -> None:
    """From/To/Cc/Date/Subject come first (Bcc left out), then the plain body."""
    path = make_msg(tmp_path / "a.msg", {**ADA, BODY: "Numbers are up.\r\n\r\nCheers, Ada"},
                    recipients=RECIPIENTS)
    envelope, body = extract(path)
    assert envelope.text == (
        "From: Ada Lovelace <ada@example.org>\n"
        "To: Charles Babbage <charles@example.org>\n"
        "Cc: Mary Somerville <mary@example.org>\n"
        "Date: Tue, 02 Jan 2024 03:04:05 +0000\n"
        "Subject: Grüße ☃ report"
    )
    assert body.text == "Numbers are up.\n\nCheers, Ada"
    assert {envelope.heading, body.heading} == {"Grüße ☃ report"}


def test_display_strings_stand_in_for_a_missing_recipient_table(tmp_path: Path) -> None:
    """Without recipient storages, To and Cc come from the display properties."""
    path = make_msg(tmp_path / "a.msg", {**ADA, BODY: "Hello"})
    assert extract(path)[0].text.splitlines()[1:3] == [
        "To: Charles Babbage", "Cc: Mary Somerville",
    ]


def test_earlier_of_sent_and_received_is_the_date(tmp_path: Path) -> None:
    """A submit time after the delivery time (a converter's clock) loses to the delivery."""
    later = datetime(2025, 6, 1, tzinfo=UTC)
    path = make_msg(tmp_path / "a.msg",
                    {SUBJECT: "Hi", BODY: "x", CLIENT_SUBMIT_TIME: later,
                     MESSAGE_DELIVERY_TIME: SENT})
    assert "Date: Tue, 02 Jan 2024 03:04:05 +0000" in extract(path)[0].text


def test_ansi_strings_use_the_message_code_page(tmp_path: Path) -> None:
    """8-bit strings (type 001E) are decoded in PR_MESSAGE_CODEPAGE."""
    path = make_msg(tmp_path / "a.msg", {
        MESSAGE_CODEPAGE: 1251,
        SUBJECT_A: "Отчёт за квартал".encode("cp1251"),
        BODY_A: "Цифры растут.\r\n".encode("cp1251"),
    })
    envelope, body = extract(path)
    assert envelope.heading == "Отчёт за квартал"
    assert body.text == "Цифры растут."


def test_ansi_strings_without_a_code_page_are_windows_1252(tmp_path: Path) -> None:
    """With no PR_MESSAGE_CODEPAGE, 8-bit strings are read as windows-1252."""
    path = make_msg(tmp_path / "a.msg", {
        SUBJECT_A: "Café".encode("cp1252"),
        BODY_A: "Déjà vu – naïve façade €5".encode("cp1252"),
    })
    assert extract(path)[0].heading == "Café"
    assert body_text(path) == "Déjà vu – naïve façade €5"


@pytest.mark.parametrize("kind", ["binary", "string"])
def test_html_only_body_is_converted(tmp_path: Path, kind: str) -> None:
    """With no plain body the HTML one (binary or string) is turned into text."""
    html = "<html><head><style>p{}</style></head><body><h1>News</h1><p>Große Neuigkeiten."
    props: dict[int, object] = {SUBJECT: "Weekly"}
    if kind == "binary":
        props |= {HTML: html.encode("utf-8"), INTERNET_CPID: 65001}
    else:
        props |= {HTML_W: html}
    segments = extract(make_msg(tmp_path / "a.msg", props))
    assert [(s.heading, s.text) for s in segments[1:]] == [
        ("Weekly", "News\n\nGroße Neuigkeiten."),
    ]


def test_binary_html_without_code_page_is_detected(tmp_path: Path) -> None:
    """Binary HTML with no internet code page falls back to its <meta charset>."""
    html = '<meta charset="windows-1252"><p>Crème brûlée</p>'.encode("cp1252")
    assert body_text(make_msg(tmp_path / "a.msg", {SUBJECT: "x", HTML: html})) == (
        "Crème brûlée"
    )


def test_plain_body_is_preferred_over_html_and_rtf(tmp_path: Path) -> None:
    """When the message has several bodies only the plain one is used (no duplicates)."""
    path = make_msg(tmp_path / "a.msg", {
        SUBJECT: "Hi", BODY: "plain version", HTML: b"<p>html version</p>",
        RTF_COMPRESSED: lzfu(b"{\\rtf1 rtf version}"),
    })
    assert body_text(path) == "plain version"


RTF_DOCUMENT = (
    b"{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss\\fcharset0 Arial;}"
    b"{\\f1\\fnil\\fcharset204 Arial Cyr;}{\\f2\\fnil\\fcharset134 SimSun;}}\r\n"
    b"{\\colortbl ;\\red255\\green0\\blue0;}{\\*\\generator Riched20 10.0;}\r\n"
    b"{\\info{\\title Not body text}}\\viewkind4\\uc1\\pard\\f0\\fs20 "
    b"Caf\\'e9 au lait \\u8364? 5, \\ldblquote quoted\\rdblquote\\par\r\n"
    b"{\\f1 \\'cf\\'f0\\'e8\\'e2\\'e5\\'f2}, {\\f2 \\'c4\\'e3\\'ba\\'c3}\\par\r\n"
    b"\\par\r\nsmile \\u-10179?\\u-8704?{\\*\\unknowndest hidden} a\\tab b\\line c\\par\r\n"
    b"{\\pict\\wmetafile8 0123456789abcdef}brace \\{ and backslash \\\\\\par\r\n}"
)
RTF_TEXT = (
    "Café au lait € 5, “quoted”\n"
    "Привет, 你好\n\n"
    "smile 😀 a\tb\nc\n"
    "brace { and backslash \\"
)


def test_compressed_rtf_only_body_is_converted(tmp_path: Path) -> None:
    """An RTF-only body is decompressed (LZFu) and its visible text kept, code pages and all."""
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "Rich", RTF_COMPRESSED: lzfu(RTF_DOCUMENT)})
    assert body_text(path) == RTF_TEXT


def test_uncompressed_rtf_body_is_read(tmp_path: Path) -> None:
    """The uncompressed ("MELA") form of PR_RTF_COMPRESSED is read too."""
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "Rich", RTF_COMPRESSED: mela(RTF_DOCUMENT)})
    assert body_text(path) == RTF_TEXT


@pytest.mark.parametrize(
    ("compressed", "text"),
    [
        # The worked examples of [MS-OXRTFCP] 3.1.1 and 3.1.2 (the second copies across
        # the write position).
        (b"-\x00\x00\x00+\x00\x00\x00LZFu\xf1\xc5\xc7\xa7\x03\x00\n\x00rcpg125B2\n\xf3 hel"
         b"\t\x00 bw\x05\xb0ld}\n\x80\x0f\xa0", "hello world"),
        (b"\x1a\x00\x00\x00\x1c\x00\x00\x00LZFu\xe2\xd4KQA\x00\x04 WXYZ\rn}\x01\x0e\xb0",
         "WXYZWXYZWXYZWXYZWXYZ"),
    ],
)
def test_specification_examples_decompress(tmp_path: Path, compressed: bytes, text: str) -> None:
    """The specification's own compressed samples come out as the RTF they encode."""
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "x", RTF_COMPRESSED: compressed})
    assert body_text(path) == text


def test_rtf_with_encapsulated_html_is_read_as_html(tmp_path: Path) -> None:
    """A \\fromhtml RTF body yields the HTML it carries, not its RTF rendering."""
    rtf = (
        b"{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 \\deff0{\\fonttbl{\\f0\\fswiss Arial;}}\r\n"
        b"{\\*\\htmltag19 <html>}{\\*\\htmltag34 <head>}{\\*\\htmltag177 <style>p\\{\\}"
        b"</style>}{\\*\\htmltag41 </head>}{\\*\\htmltag50 <body>}\\htmlrtf \\f0 \\htmlrtf0\r\n"
        b"{\\*\\htmltag64}\\htmlrtf {\\htmlrtf0 {\\*\\htmltag2 <h1>}Caf\\'e9 news"
        b"{\\*\\htmltag10 </h1>}\\htmlrtf\\par}\\htmlrtf0\r\n"
        b"{\\*\\htmltag64 <p>}Fish {\\*\\htmltag84 &amp;}\\htmlrtf &\\htmlrtf0  chips"
        b"{\\*\\htmltag116 <br>}\\htmlrtf\\line\\htmlrtf0 tonight\\u8364 ?"
        b"{\\*\\htmltag72 </p>}\\htmlrtf\\par\\htmlrtf0\r\n"
        b"{\\*\\htmltag58 </body>}{\\*\\htmltag27 </html>}}"
    )
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "Menu", RTF_COMPRESSED: lzfu(rtf)})
    assert body_text(path) == "Café news\n\nFish & chips\ntonight€"


def test_rtf_with_encapsulated_text_drops_rtf_only_parts(tmp_path: Path) -> None:
    """In a \\fromtext RTF body, what \\htmlrtf marks as RTF-only is not text."""
    rtf = (
        b"{\\rtf1\\ansi\\fromtext \\deff0{\\fonttbl{\\f0\\fmodern Courier New;}}\r\n"
        b"\\htmlrtf{\\f0\\fs20 \\htmlrtf0 First line\\par\r\n"
        b"\\htmlrtf \\par \\htmlrtf0 second line\\par\r\n\\htmlrtf}\\htmlrtf0}"
    )
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "Plain", RTF_COMPRESSED: lzfu(rtf)})
    assert body_text(path) == "First line\nsecond line"


def test_attachments_are_listed_by_name_and_size(tmp_path: Path) -> None:
    """Attachments appear by name and size, embedded messages by subject; no content."""
    path = make_msg(
        tmp_path / "a.msg",
        {SUBJECT: "Files", BODY: "See attached."},
        attachments=[
            {ATTACH_LONG_FILENAME: "quarterly report.pdf", ATTACH_FILENAME: "QUARTE~1.PDF",
             ATTACH_METHOD: 1, ATTACH_DATA: b"%PDF-1.4 zqsecret " * 400},
            {ATTACH_FILENAME: "data.csv", ATTACH_METHOD: 1, ATTACH_DATA: b"a,b\n1,2\n"},
            {DISPLAY_NAME: "Minutes", ATTACH_METHOD: 5, ATTACH_SIZE: 2048,
             ATTACH_EMBEDDED: {MESSAGE_CLASS: "IPM.Note", SUBJECT: "Fwd: minutes",
                               BODY: "zqsecret inner body"}},
        ],
    )
    envelope, body = extract(path)
    assert envelope.text.splitlines()[-1] == (
        "Attachments: quarterly report.pdf (7.0 KB), data.csv (8 bytes), "
        "Fwd: minutes (message, 2.0 KB)"
    )
    assert body.text == "See attached."
    assert "zqsecret" not in envelope.text + body.text


def test_attached_files_are_members_and_unpack_exactly(tmp_path: Path) -> None:
    """Attached files become members (same names get a number); an embedded message is
    not a file and is not one."""
    pdf = b"%PDF-1.4 zqsecret " * 400
    path = make_msg(
        tmp_path / "a.msg",
        {SUBJECT: "Files", BODY: "See attached."},
        attachments=[
            {ATTACH_LONG_FILENAME: "report.pdf", ATTACH_METHOD: 1, ATTACH_DATA: pdf},
            {ATTACH_FILENAME: "report.pdf", ATTACH_METHOD: 1, ATTACH_DATA: b"second"},
            {DISPLAY_NAME: "Minutes", ATTACH_METHOD: 5, ATTACH_SIZE: 2048,
             ATTACH_EMBEDDED: {MESSAGE_CLASS: "IPM.Note", SUBJECT: "Fwd: minutes"}},
        ],
    )
    extractor = MsgExtractor()
    assert [(m.name, m.size) for m in extractor.members(path, Limits())] == [
        ("report.pdf", len(pdf)), ("report (2).pdf", 6)]
    extractor.unpack(path, "report.pdf", tmp_path / "out.pdf", Limits())
    assert (tmp_path / "out.pdf").read_bytes() == pdf
    with pytest.raises(ExtractionError, match="no attachment 'Minutes'"):
        extractor.unpack(path, "Minutes", tmp_path / "x", Limits())


def test_envelope_alone_is_text(tmp_path: Path) -> None:
    """A message with no body still yields its envelope (as an .eml does)."""
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "Lunch?", BODY: "  \r\n"})
    assert [s.text for s in extract(path)] == ["Subject: Lunch?"]


# --- Failures ----------------------------------------------------------------------------


def test_not_an_ole_file(tmp_path: Path) -> None:
    """A file that is not a compound file fails with a one-line reason."""
    path = tmp_path / "a.msg"
    path.write_bytes(b"From: someone\r\n\r\nthis is an .eml saved as .msg\r\n")
    with pytest.raises(ExtractionError, match=r"^not an Outlook message \(not an OLE compound"):
        extract(path)


def test_ole_file_that_is_not_a_message(tmp_path: Path) -> None:
    """A compound file without message properties (a Word 97 document) is refused."""
    path = write_cfb(tmp_path / "a.msg", {"WordDocument": b"\xec\xa5" + bytes(600),
                                          "1Table": bytes(100)})
    with pytest.raises(ExtractionError, match=r"^not an Outlook message"):
        extract(path)


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.6, 0.9, 0.99])
def test_truncated_message_fails(tmp_path: Path, keep: float) -> None:
    """A message cut short anywhere fails as corrupt rather than yielding part of it."""
    whole = make_msg(tmp_path / "whole.msg", {**ADA, BODY: "All of the body. " * 600},
                     recipients=RECIPIENTS).read_bytes()
    path = tmp_path / "a.msg"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(ExtractionError, match=r"^corrupt Outlook message"):
        extract(path)


def test_empty_message_is_unsupported(tmp_path: Path) -> None:
    """A message with nothing but its class holds no text: skipped, not failed."""
    with pytest.raises(Unsupported, match=r"^no text$"):
        extract(make_msg(tmp_path / "a.msg", {}))


@pytest.mark.parametrize("chars", [90, 400])
def test_text_over_the_limit_fails(tmp_path: Path, chars: int) -> None:
    """More text than max_text_chars (or a body stream far bigger) is refused."""
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "Big", BODY: "x" * chars})
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        extract(path, Limits(max_text_chars=50))


def test_rtf_larger_than_the_limit_is_refused_before_decompressing(tmp_path: Path) -> None:
    """The RTF's declared size is checked against the limit before any work."""
    rtf = b"{\\rtf1 " + b"a" * 5000 + b"}"
    path = make_msg(tmp_path / "a.msg", {SUBJECT: "x", RTF_COMPRESSED: lzfu(rtf)})
    with pytest.raises(LimitExceeded, match="RTF body"):
        extract(path, Limits(max_text_chars=1000))


# --- Hostile files ------------------------------------------------------------------------


def _patch(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4:]


def _big_body_message(tmp_path: Path) -> tuple[bytes, int, int]:
    """A message whose body is in regular sectors: (file bytes, its dir entry, first sector)."""
    path = make_msg(tmp_path / "big.msg", {SUBJECT: "Loop", BODY: "body text " * 1000})
    with olefile.OleFileIO(str(path)) as ole:
        entry = next(kid for kid in ole.root.kids if kid.name == "__substg1.0_1000001F")
        first_directory_sector = ole.first_dir_sector
        sid, start = entry.sid, entry.isectStart
    directory_offset = 512 + first_directory_sector * 512 + sid * 128
    return path.read_bytes(), directory_offset, start


def test_looping_sector_chain_with_a_huge_size_fails_fast(tmp_path: Path) -> None:
    """A FAT chain that loops, under a size bigger than the file, fails at once."""
    data, entry_offset, start = _big_body_message(tmp_path)
    data = _patch(data, 512 + 4 * start, start)  # the body's first sector points at itself
    data = _patch(data, entry_offset + 120, 0x7FFFFFFF)  # ... and claims 2 GB
    path = tmp_path / "a.msg"
    path.write_bytes(data)
    began = time.monotonic()
    with pytest.raises(ExtractionError, match="corrupt"):
        extract(path)
    assert time.monotonic() - began < 5


def test_looping_sector_chain_ends(tmp_path: Path) -> None:
    """A FAT chain that loops within a plausible size is read no further than the
    stream's declared size: the message reads, its envelope intact."""
    data, _, start = _big_body_message(tmp_path)
    intact = extract(tmp_path / "big.msg")
    path = tmp_path / "a.msg"
    path.write_bytes(_patch(data, 512 + 4 * start, start))
    # olefile reads a stream as the number of sectors its size declares, whatever the
    # chain: a loop repeats a sector, it cannot go on.
    envelope, body = extract(path)
    assert envelope == intact[0]
    assert body.heading == "Loop" and len(body.text) <= len("body text " * 1000)


def test_forged_sector_counts_are_refused(tmp_path: Path) -> None:
    """A header claiming more FAT sectors than the file holds is refused before parsing."""
    data, _, _ = _big_body_message(tmp_path)
    path = tmp_path / "a.msg"
    path.write_bytes(_patch(data, 44, 0x00FFFFFF))
    with pytest.raises(ExtractionError, match="more sectors than the file"):
        extract(path)


def test_directory_cycle_is_cut_and_the_message_reads(tmp_path: Path) -> None:
    """A directory whose sibling links loop back is read once round the loop: the
    message reads exactly as it does without the cycle."""
    data, entry_offset, _ = _big_body_message(tmp_path)
    # The body's entry lists the root's first child as its left sibling: a cycle.
    with olefile.OleFileIO(data) as ole:
        top = ole.direntries[0].sid_child
    path = tmp_path / "a.msg"
    path.write_bytes(_patch(data, entry_offset + 68, top))
    # olefile marks each directory entry as used when it first meets it and drops a
    # second reference (a defect it logs, below the level it raises at): the walk ends.
    assert extract(path) == extract(tmp_path / "big.msg")


# --- The example corpus -------------------------------------------------------------------

@pytest.mark.corpus
@pytest.mark.skipif(not (CORPUS / "fake-email.msg").is_file(), reason="example corpus absent")
def test_real_outlook_rtf_gives_the_text_of_the_html_body(tmp_path: Path) -> None:
    """A real message's RTF body alone reads the same as its HTML body alone."""
    with olefile.OleFileIO(str(CORPUS / "fake-email.msg")) as ole:
        rtf = ole.openstream("__substg1.0_10090102").read()
        html = ole.openstream("__substg1.0_10130102").read()
    from_rtf = make_msg(tmp_path / "rtf.msg", {SUBJECT: "x", RTF_COMPRESSED: rtf})
    from_html = make_msg(tmp_path / "html.msg", {SUBJECT: "x", HTML: html})
    assert body_text(from_rtf) == body_text(from_html)
    assert body_text(from_rtf).startswith("This is a test email to use for unit tests.")


CORPUS_EXPECTATIONS = {
    "fake-email.msg": ("Test Email", "This is a test email to use for unit tests."),
    "fake-email-attachment.msg": ("Fake email with attachment", "Here's the attachments!"),
    "fake-email-with-cc-and-bcc.msg": (
        "Fake email with cc and bcc recipients", "This is a test email. Please ignore."),
    # PGP-encrypted: the body is an attachment, so only the envelope has text.
    "fake-encrypted.msg": (None, "Attachments: ATT00001.pgp-encrypted (11 bytes)"),
}


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"example corpus not found at {CORPUS}")
@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTATIONS))
def test_corpus_messages(name: str) -> None:
    """The example corpus's Outlook messages yield their subject and body text."""
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"{name} is not in the corpus")
    heading, expected = CORPUS_EXPECTATIONS[name]
    segments = extract(path)
    assert {segment.heading for segment in segments} == {heading}
    text = "\n\n".join(segment.text for segment in segments)
    assert expected in text
    assert "From: " in segments[0].text
    if heading:
        assert f"Subject: {heading}" in segments[0].text

"""E-mail extraction: envelope first, then the body; the subject is the heading."""

from __future__ import annotations

from pathlib import Path

import pytest

from docs import make_eml
from gristmill.errors import Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.email import EmailExtractor


def extract(path: Path) -> list[Segment]:
    return list(EmailExtractor().extract(path, Limits()))


def test_envelope_then_plain_body(tmp_path: Path) -> None:
    """The first segment holds From/To/Cc/Date/Subject, the next the plain body."""
    path = make_eml(tmp_path / "a.eml", "Quarterly report", "Numbers are up.\n\nCheers, Ada")
    envelope, body = extract(path)
    assert envelope.text == (
        "From: Ada Lovelace <ada@example.org>\n"
        "To: Charles Babbage <charles@example.org>\n"
        "Cc: Mary Somerville <mary@example.org>\n"
        "Date: Tue, 02 Jan 2024 03:04:05 +0000\n"
        "Subject: Quarterly report"
    )
    assert body.text == "Numbers are up.\n\nCheers, Ada"
    assert {envelope.heading, body.heading} == {"Quarterly report"}


def test_plain_part_is_preferred_over_html(tmp_path: Path) -> None:
    """With both alternatives present only the plain text is used (no duplicate text)."""
    path = make_eml(tmp_path / "a.eml", "Hi", "plain version", "<p>html version</p>")
    assert [s.text for s in extract(path)[1:]] == ["plain version"]


def test_html_only_mail_is_converted(tmp_path: Path) -> None:
    """A message with only an HTML body is converted to text; the subject stays heading."""
    html = "<html><head><title>Newsletter</title></head><body><h1>News</h1><p>Big news.</p>"
    path = make_eml(tmp_path / "a.eml", "Weekly", "", html, plain=False)
    body = extract(path)[1:]
    assert [(s.heading, s.text) for s in body] == [("Weekly", "News\n\nBig news.")]


def test_attachments_are_listed_by_name(tmp_path: Path) -> None:
    """Attachment file names appear in the envelope; their content is not inlined."""
    path = make_eml(
        tmp_path / "a.eml",
        "Files",
        "See attached.",
        attachments={"report.pdf": b"%PDF-1.4 fake", "data.csv": b"a,b\n1,2\n"},
    )
    envelope, body = extract(path)
    assert envelope.text.endswith("Attachments: report.pdf, data.csv")
    assert body.text == "See attached."


def test_encoded_subject_is_decoded(tmp_path: Path) -> None:
    """A non-ASCII subject (RFC 2047 encoded on the wire) is decoded in the heading."""
    path = make_eml(tmp_path / "a.eml", "Grüße ☃ aus Köln", "Hallo")
    assert b"=?utf-8?" in path.read_bytes()
    assert extract(path)[0].heading == "Grüße ☃ aus Köln"


def test_message_saved_as_utf16_is_read(tmp_path: Path) -> None:
    """A message file saved as UTF-16 text still yields its headers and body."""
    original = make_eml(tmp_path / "a.eml", "Wide", "Body text").read_bytes()
    path = tmp_path / "wide.eml"
    path.write_bytes(original.decode("ascii").encode("utf-16"))
    envelope, body = extract(path)
    assert envelope.heading == "Wide"
    assert body.text == "Body text"


def test_wrong_charset_label_falls_back_to_detection(tmp_path: Path) -> None:
    """A body whose charset label is unknown is decoded by detection, not dropped."""
    raw = (
        "From: a@example.org\nSubject: Odd\nContent-Type: text/plain; charset=x-unknown\n"
        "Content-Transfer-Encoding: 8bit\n\nCafé déjà vu, naïve façade.\n"
    ).encode()
    path = tmp_path / "a.eml"
    path.write_bytes(raw)
    assert extract(path)[1].text == "Café déjà vu, naïve façade."


def test_empty_file_is_unsupported(tmp_path: Path) -> None:
    """An empty .eml is skipped as empty."""
    path = tmp_path / "empty.eml"
    path.write_bytes(b"  \n\n")
    with pytest.raises(Unsupported, match="empty file"):
        extract(path)


def test_attachments_are_members_with_unique_names(tmp_path: Path) -> None:
    """Attachments (and a forwarded message, whole) are the message's members; inline
    pictures are not; repeated names get a number; unpack gives the exact bytes."""
    from email.message import EmailMessage

    forwarded = EmailMessage()
    forwarded["Subject"] = "Older thread"
    forwarded.set_content("the older thread's text")
    forwarded.add_attachment(b"nested", maintype="text", subtype="plain", filename="deep.txt")
    message = EmailMessage()
    message["Subject"] = "Outer"
    message.set_content("body text")
    message.add_related(b"\x89PNG logo", maintype="image", subtype="png", cid="<logo>",
                        disposition="inline", filename="logo.png")
    message.add_attachment(b"first", maintype="text", subtype="plain", filename="a.txt")
    message.add_attachment(b"second", maintype="text", subtype="plain", filename="a.txt")
    message.add_attachment(forwarded)
    path = tmp_path / "m.eml"
    path.write_bytes(message.as_bytes())
    extractor = EmailExtractor()
    names = [m.name for m in extractor.members(path, Limits())]
    assert names == ["a.txt", "a (2).txt", "forwarded.eml"]
    extractor.unpack(path, "a (2).txt", tmp_path / "out", Limits())
    assert (tmp_path / "out").read_bytes() == b"second"
    extractor.unpack(path, "forwarded.eml", tmp_path / "fwd.eml", Limits())
    inner = [m.name for m in extractor.members(tmp_path / "fwd.eml", Limits())]
    assert inner == ["deep.txt"]
    assert "older thread" in " ".join(s.text for s in extractor.extract(tmp_path / "fwd.eml",
                                                                        Limits()))


def test_smime_message_saved_as_p7s_is_read_without_its_signature(tmp_path: Path) -> None:
    """A .p7s that is a whole S/MIME message reads as mail; its signature part is not an
    attachment; a detached binary signature is refused as having no text."""
    path = tmp_path / "signed.p7s"
    path.write_bytes(
        b'MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/'
        b'x-pkcs7-signature"; boundary="XX"\r\n\r\n--XX\r\n\r\nsigned words here\r\n'
        b'--XX\r\nContent-Type: application/x-pkcs7-signature; name="smime.p7s"\r\n'
        b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; '
        b'filename="smime.p7s"\r\n\r\nMIIB\r\n--XX--\r\n')
    extractor = EmailExtractor()
    assert "signed words here" in " ".join(s.text for s in extractor.extract(path, Limits()))
    assert list(extractor.members(path, Limits())) == []
    der = tmp_path / "detached.p7s"
    der.write_bytes(b"\x30\x82\x05\x10" + bytes(range(256)))
    with pytest.raises(Unsupported, match="binary PKCS #7"):
        list(extractor.extract(der, Limits()))

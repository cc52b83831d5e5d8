"""E-mail messages (``.eml``, RFC 5322) with the standard library's ``email`` package.

The first segment holds the envelope (From, To, Cc, Date, Subject) and the attachment
names; the body follows: the text/plain part, or the HTML part when there is no plain
one. The message is a container: each attachment (a part sent as an attachment, or a
forwarded message) becomes an item of its own, ``message.eml!/report.pdf``; inline
pictures (logos, signatures) do not.
"""

from __future__ import annotations

import dataclasses
import email
import email.errors
from collections.abc import Iterable, Iterator
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Member, Segment, unique_name
from gristmill.extract.html import html_to_segments
from gristmill.extract.text import detect_encoding, plain_segments

__all__ = ["EXTRACTORS", "EmailExtractor", "under_subject"]

_ENVELOPE = ("From", "To", "Cc", "Date", "Subject")
_SIGNATURES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature",
                         "application/pgp-signature"})
_MAX_HEADING_CHARS = 200
# Header values the email package cannot parse raise these on access.
_HEADER_ERRORS = (email.errors.MessageError, ValueError, IndexError, TypeError)


class EmailExtractor:
    """RFC 5322 messages; ``heading`` is the subject."""

    name = "email"
    version = 2  # 2: attachments become child items
    # .p7m/.p7s: S/MIME messages saved whole; a detached binary signature is refused.
    extensions = frozenset({".eml", ".p7m", ".p7s"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the envelope, then the body text.

        Raises:
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the file is empty.
        """
        data = path.read_bytes()
        if not data.strip():
            raise Unsupported("empty file")
        if data[:1] == b"\x30" and path.suffix.lower() in (".p7m", ".p7s"):
            raise Unsupported("a binary PKCS #7 signature or envelope: no text to read")
        message = _parse(data)
        yield from under_subject(_segments(message), _header(message, "Subject"), limits,
                                 empty="no text in message")

    def members(self, path: Path, limits: Limits) -> Iterator[Member]:
        """The attachments, in the order the message holds them."""
        for name, part in _attachments(_parse(path.read_bytes())):
            yield Member(name, len(_attachment_bytes(part)))

    def unpack(self, path: Path, name: str, target: Path, limits: Limits) -> None:
        """Write attachment ``name`` to ``target``."""
        for found, part in _attachments(_parse(path.read_bytes())):
            if found == name:
                target.write_bytes(_attachment_bytes(part))
                return
        raise ExtractionError(f"no attachment {name!r} in the message")


def _attachments(message: EmailMessage) -> Iterator[tuple[str, Message]]:
    """``(unique name, part)`` of each attachment; a forwarded message is one attachment
    (its own attachments are its children, not the outer message's)."""
    body = set(map(id, _body_parts(message)))
    seen: set[str] = set()
    for part in _leaves(message):
        if id(part) in body:
            continue
        forwarded = part.get_content_type() == "message/rfc822"
        if part.get_content_type() in _SIGNATURES:
            continue  # an S/MIME signature: bytes for a verifier, not a document
        name = _filename(part)
        attached = part.get_content_disposition() == "attachment" or (
            name and part.get_content_disposition() != "inline")
        if not (forwarded or attached):
            continue
        default = "forwarded.eml" if forwarded else "attachment"
        yield unique_name((name or default).replace("/", "_"), seen), part


def _leaves(part: Message) -> Iterator[Message]:
    """The non-multipart parts, and forwarded messages whole, in order."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        yield part
        return
    for sub in part.get_payload():
        if isinstance(sub, Message):
            yield from _leaves(sub)


def _attachment_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else inner
        return message.as_bytes() if isinstance(message, Message) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def under_subject(segments: Iterable[Segment], subject: str, limits: Limits, *,
                  empty: str) -> Iterator[Segment]:
    """A message's segments, each headed by its subject, held to ``max_text_chars``
    (shared with the Outlook extractor, whose output matches this one's).

    Raises:
        LimitExceeded: more text than ``limits.max_text_chars``.
        Unsupported: no text at all (``empty`` is the reason).
    """
    heading = " ".join(subject.split())[:_MAX_HEADING_CHARS] or None
    total = 0
    for segment in segments:
        total += len(segment.text)
        if total > limits.max_text_chars:
            raise LimitExceeded(f"message text exceeds {limits.max_text_chars:,} characters "
                                "(max_text_chars)")
        yield dataclasses.replace(segment, heading=heading)
    if not total:
        raise Unsupported(empty)


def _parse(data: bytes) -> EmailMessage:
    # Some tools save messages as UTF-16 text, where the parser would find no headers;
    # re-encoded as UTF-8 they read as usual (their parts then declare UTF-8 anyway).
    if b"\x00" in data[:1024]:
        encoding, bom = detect_encoding(data[: 1024 * 1024])
        data = data[bom:].decode(encoding, errors="replace").encode("utf-8")
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)  # policy.default builds EmailMessage
    return parsed


def _segments(message: EmailMessage) -> Iterator[Segment]:
    lines = [f"{name}: {value}" for name in _ENVELOPE if (value := _header(message, name))]
    body_parts = _body_parts(message)
    names = [
        name
        for part in message.walk()
        if part not in body_parts and (name := _filename(part))
    ]
    if names:
        lines.append("Attachments: " + ", ".join(names))
    if lines:
        yield Segment("\n".join(lines))
    for part in body_parts:
        text = _text_content(part)
        if part.get_content_subtype() == "html":
            yield from html_to_segments(text)
        else:
            yield from plain_segments([text])


def _body_parts(message: EmailMessage) -> list[Message]:
    """The part holding the body: plain text preferred, else HTML; none for a bare MIME."""
    body = message.get_body(preferencelist=("plain", "html"))
    return [body] if body is not None else []


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except _HEADER_ERRORS:
        # A header the parser chokes on is still worth showing as it was written.
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
        return " ".join(str(raw).split())
    return " ".join(str(value).split()) if value is not None else ""


def _filename(part: Message) -> str:
    try:
        return part.get_filename() or ""
    except _HEADER_ERRORS:
        return ""


def _text_content(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or ""
    try:
        return payload.decode(charset or "ascii")
    except (LookupError, UnicodeDecodeError):
        # An unknown or wrong charset label, common in old mail: detect instead.
        encoding, bom = detect_encoding(payload[: 1024 * 1024])
        return payload[bom:].decode(encoding, errors="replace")


EXTRACTORS = [EmailExtractor()]

"""Outlook messages (``.msg``, [MS-OXMSG]): MAPI properties in an OLE compound file.

Each property of the message is a stream named ``__substg1.0_PPPPTTTT`` (property id,
type) or, for fixed-size values such as dates, an entry of ``__properties_version1.0``;
recipients and attachments are storages of their own. The output matches the ``.eml``
extractor: the envelope (From, To, Cc, Date, Subject, attachment names) then the body:
the plain text, else the HTML, else the compressed RTF ([MS-OXRTFCP]) as text, or as the
HTML it encapsulates ([MS-OXRTFEX]). Attachments themselves are not read here.

olefile (BSD) parses the container; the GPL ``extract-msg`` would not fit our licence.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import olefile

from gristmill.errors import ExtractionError, LimitExceeded
from gristmill.extract.base import Limits, Member, Segment, unique_name
from gristmill.extract.email import under_subject
from gristmill.extract.html import decode_html, html_to_segments
from gristmill.extract.text import plain_segments, sniff_bom

if TYPE_CHECKING:
    from olefile.olefile import OleDirectoryEntry

__all__ = ["EXTRACTORS", "MsgExtractor"]

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Listing an attachment costs a few directory look-ups that scan its siblings, so a file
# claiming 100,000 attachments would cost 10^10 comparisons; past this many, they are
# counted instead of named.
_MAX_LISTED = 1000
# A body stream may hold markup or RTF around its text, so it may be this many times
# larger, in bytes, than max_text_chars.
_BODY_BYTES_PER_CHAR = 4

# Property types ([MS-OXCDATA] 2.11.1) and the properties read ([MS-OXPROPS]).
_INT32, _STRING8, _UNICODE, _TIME, _BINARY = 0x0003, 0x001E, 0x001F, 0x0040, 0x0102
_MESSAGE_CLASS = 0x001A
_SUBJECT = 0x0037
_CLIENT_SUBMIT_TIME = 0x0039
_SENT_REPRESENTING_NAME = 0x0042
_SENT_REPRESENTING_ADDRTYPE = 0x0064
_SENT_REPRESENTING_EMAIL = 0x0065
_RECIPIENT_TYPE = 0x0C15
_SENDER_NAME = 0x0C1A
_SENDER_ADDRTYPE = 0x0C1E
_SENDER_EMAIL = 0x0C1F
_DISPLAY_CC = 0x0E03
_DISPLAY_TO = 0x0E04
_MESSAGE_DELIVERY_TIME = 0x0E06
_ATTACH_SIZE = 0x0E20
_BODY = 0x1000
_RTF_COMPRESSED = 0x1009
_HTML = 0x1013
_DISPLAY_NAME = 0x3001
_ADDRTYPE = 0x3002
_EMAIL_ADDRESS = 0x3003
_ATTACH_DATA = 0x3701
_ATTACH_FILENAME = 0x3704
_ATTACH_METHOD = 0x3705
_ATTACH_LONG_FILENAME = 0x3707
_SMTP_ADDRESS = 0x39FE
_INTERNET_CPID = 0x3FDE
_MESSAGE_CODEPAGE = 0x3FFD
_SENDER_SMTP_ADDRESS = 0x5D01
_SENT_REPRESENTING_SMTP_ADDRESS = 0x5D02
_ATTACH_EMBEDDED_MESSAGE = 5
_TO, _CC = 1, 2

# Bytes before the 16-byte entries of __properties_version1.0 ([MS-OXMSG] 2.4.1).
_TOP_HEADER, _CHILD_HEADER = 32, 8  # embedded messages: 24, but none are read
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

# Windows code pages whose Python codec is not simply "cp<number>".
_CODEPAGES = {
    1200: "utf-16-le", 1201: "utf-16-be", 10000: "mac_roman", 20127: "ascii",
    20866: "koi8_r", 21866: "koi8_u", 50220: "iso2022_jp", 50221: "iso2022_jp",
    50222: "iso2022_jp", 51932: "euc_jp", 51949: "euc_kr", 52936: "hz", 54936: "gb18030",
    65000: "utf-7", 65001: "utf-8",
}


class MsgExtractor:
    """Outlook ``.msg`` files; ``heading`` is the subject."""

    name = "msg"
    version = 2  # 2: attached files become child items
    extensions = frozenset({".msg"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the envelope, then the body text.

        Raises:
            ExtractionError: not an Outlook message, or a corrupt or truncated one.
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the message holds no text.
        """
        message = _read(path, limits)
        yield from under_subject(_segments(message, limits), message.subject, limits,
                                 empty="no text")

    def members(self, path: Path, limits: Limits) -> Iterator[Member]:
        """The attached files, in the message's order. An attached Outlook item (an
        embedded message) is named in the envelope but is not a member: it is stored
        as properties, not as a file."""
        for name, _storage, entry in _with_files(path, limits):
            yield Member(name, entry.size)

    def unpack(self, path: Path, name: str, target: Path, limits: Limits) -> None:
        """Write attachment ``name`` to ``target``."""
        for found, storage, entry in _with_files(path, limits):
            if found == name:
                if entry.size > limits.max_unpacked_bytes:
                    raise LimitExceeded(f"attachment is {entry.size:,} bytes, over the limit "
                                        f"of {limits.max_unpacked_bytes:,} (max_unpacked_bytes)")
                target.write_bytes(storage.read(entry))
                return
        raise ExtractionError(f"no attachment {name!r} in the message")


def _with_files(path: Path, limits: Limits) -> Iterator[tuple[str, _Storage, OleDirectoryEntry]]:
    """``(unique name, storage, data stream)`` of each attachment that is a file."""
    seen: set[str] = set()
    with _opened(path, limits) as top:
        for attachment in top.children("__ATTACH_VERSION1.0_#"):
            data = attachment.stream(_ATTACH_DATA, _BINARY)
            if data is None:  # an embedded message, a link, an OLE object
                continue
            name = (attachment.field(_ATTACH_LONG_FILENAME)
                    or attachment.field(_ATTACH_FILENAME) or "attachment").replace("/", "_")
            yield unique_name(name, seen), attachment, data


@dataclass
class _Message:
    """What was read from the file, before any body is converted to text."""

    subject: str = ""
    envelope: list[str] = field(default_factory=list)
    body: str = ""  # the plain-text body
    html: str | bytes = b""
    html_codec: str | None = None
    rtf: bytes = b""


def _segments(message: _Message, limits: Limits) -> Iterator[Segment]:
    if message.envelope:
        yield Segment("\n".join(message.envelope))
    if message.body.strip():
        yield from plain_segments([_normalize_newlines(message.body)])
    elif message.html:
        yield from html_to_segments(_decode_html_body(message), limits=limits)
    elif message.rtf:
        text, is_html = _rtf_to_text(message.rtf)
        if is_html:
            yield from html_to_segments(text, limits=limits)
        else:
            yield from plain_segments([text])


# --- Reading the compound file -----------------------------------------------------------


def _read(path: Path, limits: Limits) -> _Message:
    with _opened(path, limits) as top:
        return _read_message(top.reader, top)


@contextmanager
def _opened(path: Path, limits: Limits) -> Iterator[_Storage]:
    """The message's top property storage, the file checked before olefile parses it."""
    with path.open("rb") as fh:
        header = fh.read(512)
        file_size = fh.seek(0, 2)
    if header[:8] != _OLE_MAGIC:
        raise ExtractionError("not an Outlook message (not an OLE compound file)")
    _check_header(header, file_size)
    with _olefile_errors(), olefile.OleFileIO(str(path)) as ole:
        if ole.root is None or ole.root.size > file_size:
            raise ExtractionError(
                "corrupt Outlook message: the mini stream is larger than the file (truncated?)"
            )
        top = _Reader(ole, file_size, limits).storage(ole.root, ())
        if not top.has(_MESSAGE_CLASS):
            raise ExtractionError(
                "not an Outlook message (an OLE compound file without message properties)"
            )
        yield top


def _check_header(header: bytes, file_size: int) -> None:
    """Refuse sector counts the file cannot hold, before olefile loops over them.

    olefile follows the header's FAT and DIFAT counts as given; a forged count makes it
    concatenate the same sectors into its FAT millions of times.
    """
    if len(header) < 512:
        raise ExtractionError("corrupt Outlook message: truncated OLE header")
    sector_shift = int.from_bytes(header[30:32], "little")
    if sector_shift not in (9, 12):
        raise ExtractionError("corrupt Outlook message: bad OLE sector size")
    sector_size = 1 << sector_shift
    sectors = max(0, -(-file_size // sector_size) - 1)
    needed_fat = -(-sectors // (sector_size // 4)) + 1
    fat, minifat, difat = (int.from_bytes(header[at:at + 4], "little") for at in (44, 64, 72))
    if fat > needed_fat or minifat > sectors or difat > needed_fat:
        raise ExtractionError(
            "corrupt Outlook message: the OLE header counts more sectors than the file holds"
        )


@contextmanager
def _olefile_errors() -> Iterator[None]:
    """Translate olefile's errors (and what a damaged structure makes it raise) once."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None:
            raise  # a real I/O error: the caller decides whether it is worth a retry
        raise ExtractionError(f"corrupt Outlook message: {_first_line(exc)}") from exc
    except (struct.error, ValueError, IndexError, KeyError, EOFError) as exc:
        raise ExtractionError(f"corrupt Outlook message: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise ExtractionError("corrupt Outlook message: storage tree nested too deeply") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class _Reader:
    """Reads streams with every size checked against the file and the limits."""

    def __init__(self, ole: olefile.OleFileIO, file_size: int, limits: Limits) -> None:
        self.ole = ole
        self.limits = limits
        self.codec = "cp1252"
        # The streams read are distinct, so together they cannot hold more bytes than
        # the file; sector chains that loop or share sectors would, and are refused.
        self._budget = file_size

    def storage(self, entry: OleDirectoryEntry, path: tuple[str, ...]) -> _Storage:
        return _Storage(self, path, {kid.name.upper(): kid for kid in entry.kids})

    def read(self, entry: OleDirectoryEntry, path: list[str], *, body: bool = False) -> bytes:
        """The stream's bytes; ``body`` streams are also held to the text limit."""
        self._budget -= entry.size
        if self._budget < 0:
            raise ExtractionError(
                "corrupt Outlook message: its streams need more bytes than the file has "
                "(truncated, or sector chains that loop)"
            )
        limit = self.limits.max_text_chars * _BODY_BYTES_PER_CHAR
        if body and entry.size > limit:
            raise LimitExceeded(
                f"message body of {entry.size:,} bytes exceeds {limit:,} "
                f"({_BODY_BYTES_PER_CHAR} x max_text_chars)"
            )
        with self.ole.openstream(path) as stream:
            data: bytes = stream.read()
        if len(data) != entry.size:
            raise ExtractionError(
                "corrupt Outlook message: truncated (a stream is shorter than declared)"
            )
        return data


@dataclass
class _Storage:
    """One property set: the message, a recipient, an attachment or an embedded message."""

    reader: _Reader
    path: tuple[str, ...]
    kids: dict[str, OleDirectoryEntry]

    def has(self, prop: int) -> bool:
        return any(f"__SUBSTG1.0_{prop:04X}{t:04X}" in self.kids for t in (_UNICODE, _STRING8))

    def stream(self, prop: int, kind: int) -> OleDirectoryEntry | None:
        entry = self.kids.get(f"__SUBSTG1.0_{prop:04X}{kind:04X}")
        return entry if entry is not None and entry.entry_type == olefile.STGTY_STREAM else None

    def read(self, entry: OleDirectoryEntry, *, body: bool = False) -> bytes:
        return self.reader.read(entry, [*self.path, entry.name], body=body)

    def string(self, prop: int, *, body: bool = False) -> str:
        if (entry := self.stream(prop, _UNICODE)) is not None:
            data = self.read(entry, body=body)
            return data[: len(data) // 2 * 2].decode("utf-16-le", "replace").rstrip("\x00")
        if (entry := self.stream(prop, _STRING8)) is not None:
            return self.read(entry, body=body).decode(self.reader.codec, "replace").rstrip("\x00")
        return ""

    def field(self, prop: int) -> str:
        """A one-line value: whitespace (and the odd NUL) collapsed."""
        return " ".join(self.string(prop).replace("\x00", " ").split())

    def substorage(self, name: str) -> _Storage | None:
        entry = self.kids.get(name.upper())
        if entry is None or entry.entry_type != olefile.STGTY_STORAGE:
            return None
        return self.reader.storage(entry, (*self.path, entry.name))

    def children(self, prefix: str) -> list[_Storage]:
        """Storages named ``prefix`` + ``#XXXXXXXX`` (recipients, attachments), in order."""
        names = sorted(name for name in self.kids if name.startswith(prefix))
        found = (self.substorage(name) for name in names[:_MAX_LISTED])
        return [storage for storage in found if storage is not None]

    def count(self, prefix: str) -> int:
        return sum(1 for name in self.kids if name.startswith(prefix))

    def fixed(self, header: int) -> dict[int, bytes]:
        """Tag -> 8-byte value of each entry in ``__properties_version1.0``."""
        entry = self.kids.get("__PROPERTIES_VERSION1.0")
        if entry is None or entry.entry_type != olefile.STGTY_STREAM:
            return {}
        data = self.read(entry)
        return {
            int.from_bytes(data[at:at + 4], "little"): data[at + 8:at + 16]
            for at in range(header, len(data) - 15, 16)
        }


def _read_message(reader: _Reader, top: _Storage) -> _Message:
    props = top.fixed(_TOP_HEADER)
    reader.codec = _codec(_int32(props, _MESSAGE_CODEPAGE)) or "cp1252"
    message = _Message(subject=top.field(_SUBJECT))
    envelope = message.envelope
    if sender := _sender(top):
        envelope.append(f"From: {sender}")
    to, cc = _recipients(top)
    if to := to or top.field(_DISPLAY_TO):
        envelope.append(f"To: {to}")
    if cc := cc or top.field(_DISPLAY_CC):
        envelope.append(f"Cc: {cc}")
    # Sent, else received. A message cannot arrive before it was sent: a submit time
    # after the delivery time was stamped by a converter with its own clock (files made
    # from .eml carry the conversion time there), so the earlier of the two is the date.
    times = [_filetime(props.get(_tag(prop, _TIME)))
             for prop in (_CLIENT_SUBMIT_TIME, _MESSAGE_DELIVERY_TIME)]
    if known := [when for when in times if when is not None]:
        envelope.append(f"Date: {format_datetime(min(known))}")
    if message.subject:
        envelope.append(f"Subject: {message.subject}")
    if attachments := _attachments(top):
        envelope.append("Attachments: " + ", ".join(attachments))

    message.body = top.string(_BODY, body=True)
    if message.body.strip():
        return message
    if (entry := top.stream(_HTML, _BINARY)) is not None:
        message.html = top.read(entry, body=True)
        message.html_codec = _codec(_int32(props, _INTERNET_CPID))
    else:
        message.html = top.string(_HTML, body=True)
    if not message.html.strip():
        message.html = b""
        if (entry := top.stream(_RTF_COMPRESSED, _BINARY)) is not None:
            limit = reader.limits.max_text_chars * _BODY_BYTES_PER_CHAR
            message.rtf = _decompress_rtf(top.read(entry, body=True), limit)
    return message


def _sender(top: _Storage) -> str:
    name = top.field(_SENDER_NAME) or top.field(_SENT_REPRESENTING_NAME)
    address = top.field(_SENDER_SMTP_ADDRESS) or _address(
        top, _SENDER_EMAIL, _SENDER_ADDRTYPE
    ) or top.field(_SENT_REPRESENTING_SMTP_ADDRESS) or _address(
        top, _SENT_REPRESENTING_EMAIL, _SENT_REPRESENTING_ADDRTYPE
    )
    return _mailbox(name, address)


def _address(storage: _Storage, prop: int, addrtype_prop: int) -> str:
    # Exchange ("EX") addresses are X.500 paths such as /O=ORG/OU=.../CN=ADA: not mail
    # addresses anyone searches for.
    if storage.field(addrtype_prop).upper() == "EX":
        return ""
    address = storage.field(prop)
    return "" if address.startswith("/") else address


def _mailbox(name: str, address: str) -> str:
    if name and address and name.lower() != address.lower():
        return f"{name} <{address}>"
    return name or address


def _recipients(top: _Storage) -> tuple[str, str]:
    """To and Cc from the recipient table, which, unlike the display strings, has addresses."""
    lists: dict[int, list[str]] = {_TO: [], _CC: []}
    for recipient in top.children("__RECIP_VERSION1.0_#"):
        kind = _int32(recipient.fixed(_CHILD_HEADER), _RECIPIENT_TYPE)
        if kind is None or (kind & 0xF) not in lists:
            continue  # Bcc, or a type the message does not show
        address = recipient.field(_SMTP_ADDRESS) or _address(
            recipient, _EMAIL_ADDRESS, _ADDRTYPE
        )
        if mailbox := _mailbox(recipient.field(_DISPLAY_NAME), address):
            lists[kind & 0xF].append(mailbox)
    return ", ".join(lists[_TO]), ", ".join(lists[_CC])


def _attachments(top: _Storage) -> list[str]:
    names = []
    for attachment in top.children("__ATTACH_VERSION1.0_#"):
        props = attachment.fixed(_CHILD_HEADER)
        name = attachment.field(_ATTACH_LONG_FILENAME) or attachment.field(_ATTACH_FILENAME)
        notes = []
        if _int32(props, _ATTACH_METHOD) == _ATTACH_EMBEDDED_MESSAGE:
            embedded = attachment.substorage(f"__substg1.0_{_ATTACH_DATA:04X}000D")
            name = name or (embedded.field(_SUBJECT) if embedded is not None else "")
            notes.append("message")
        name = name or attachment.field(_DISPLAY_NAME)
        if not name:
            continue
        data = attachment.stream(_ATTACH_DATA, _BINARY)
        size = data.size if data is not None else _int32(props, _ATTACH_SIZE)
        if size is not None:
            notes.append(_human_size(size))
        names.append(f"{name} ({', '.join(notes)})" if notes else name)
    if (more := top.count("__ATTACH_VERSION1.0_#") - _MAX_LISTED) > 0:
        names.append(f"and {more:,} more")
    return names


def _tag(prop: int, kind: int) -> int:
    return (prop << 16) | kind


def _int32(props: dict[int, bytes], prop: int) -> int | None:
    value = props.get(_tag(prop, _INT32))
    return int.from_bytes(value[:4], "little") if value and len(value) >= 4 else None


def _filetime(value: bytes | None) -> datetime | None:
    """A FILETIME (100 ns ticks since 1601, UTC); None when unset or out of range."""
    if not value or len(value) < 8:
        return None
    ticks = int.from_bytes(value, "little")
    if not ticks or ticks >= 0x7FFFFFFFFFFFFFFF:
        return None  # unset, or the "never" sentinel
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def _human_size(size: int) -> str:
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _codec(codepage: int | None) -> str | None:
    """The Python codec for a Windows code page number, or None when there is none."""
    if not codepage:
        return None
    name = _CODEPAGES.get(codepage)
    if name is None:
        name = f"iso8859_{codepage - 28590}" if 28591 <= codepage <= 28606 else f"cp{codepage}"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode_html_body(message: _Message) -> str:
    html = message.html
    if isinstance(html, str):
        return html
    # Binary HTML is in the message's internet code page; a BOM still overrides it.
    if message.html_codec is not None and not sniff_bom(html):
        return html.decode(message.html_codec, "replace")
    return decode_html(html)


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- Compressed RTF ([MS-OXRTFCP]) ------------------------------------------------------

_LZFU, _MELA = 0x75465A4C, 0x414C454D
# The dictionary starts out holding these 207 bytes ([MS-OXRTFCP] 2.1.2.1).
_RTF_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
    b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
    b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)


def _decompress_rtf(data: bytes, limit: int) -> bytes:
    """The RTF held by a PR_RTF_COMPRESSED value (LZFu, or the uncompressed MELA form)."""
    if len(data) < 16:
        raise ExtractionError("corrupt Outlook message: compressed RTF body too short")
    comp_size, raw_size, comp_type, _crc = struct.unpack_from("<4I", data)
    if raw_size > limit:
        raise LimitExceeded(
            f"RTF body of {raw_size:,} bytes exceeds {limit:,} "
            f"({_BODY_BYTES_PER_CHAR} x max_text_chars)"
        )
    # COMPSIZE counts the 12 header bytes that follow it.
    contents = data[16:4 + comp_size]
    if comp_type == _MELA:
        return contents[:raw_size]
    if comp_type != _LZFU:
        raise ExtractionError("corrupt Outlook message: unknown RTF compression")
    # The CRC is not checked: a bad one still leaves text worth having, and the output
    # is bounded by raw_size whatever the input holds.
    window = bytearray(4096)
    window[: len(_RTF_PREBUF)] = _RTF_PREBUF
    write = len(_RTF_PREBUF)
    out = bytearray()
    at, end = 0, len(contents)
    while at < end and len(out) < raw_size:
        control = contents[at]
        at += 1
        for bit in range(8):
            if not control >> bit & 1:
                if at >= end:
                    break
                byte = contents[at]
                at += 1
                window[write] = byte
                write = (write + 1) & 0xFFF
                out.append(byte)
                continue
            if at + 2 > end:
                break
            reference = contents[at] << 8 | contents[at + 1]
            at += 2
            offset, length = reference >> 4, (reference & 0xF) + 2
            if offset == write:
                return bytes(out[:raw_size])  # the end marker
            if (offset - write) & 0xFFF <= 4096 - length and max(offset, write) <= 4096 - length:
                # Neither range wraps and the source is not what this copy overwrites.
                chunk = window[offset:offset + length]
                window[write:write + length] = chunk
                write = (write + length) & 0xFFF
                out += chunk
                continue
            # Byte by byte: the source may overlap what this very reference writes.
            for i in range(length):
                byte = window[(offset + i) & 0xFFF]
                window[write] = byte
                write = (write + 1) & 0xFFF
                out.append(byte)
    return bytes(out[:raw_size])


# --- RTF to text ------------------------------------------------------------------------

_RTF_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?[0-9]{1,10})? ?"  # control word, parameter, delimiter
    rb"|\\'([0-9a-fA-F]{2})"  # a byte in the current code page
    rb"|\\([\s\S])"  # control symbol
    rb"|([{}])"
    rb"|([^\\{}\r\n]+)"  # text
    rb"|[\s\S]"  # source line breaks (not text) and a stray backslash at the end
)
# Destinations whose content is not text: tables, metadata, pictures, field codes.
_SKIPPED_DESTINATIONS = frozenset(
    {"colortbl", "stylesheet", "info", "pict", "header", "headerl", "headerr", "headerf",
     "footer", "footerl", "footerr", "footerf", "fldinst", "xmlnstbl", "listtable",
     "listoverridetable", "revtbl", "rsidtbl", "filetbl", "pgdsctbl", "themedata",
     "colorschememapping", "datastore", "latentstyles", "objdata", "nonshppict", "private"}
)
_RTF_CHARACTERS = {
    "par": "\n", "line": "\n", "sect": "\n", "page": "\n", "row": "\n", "tab": "\t",
    "cell": "\t", "emdash": "\u2014", "endash": "\u2013", "bullet": "\u2022",
    "lquote": "\u2018", "rquote": "\u2019", "ldblquote": "\u201c", "rdblquote": "\u201d",
    "emspace": " ", "enspace": " ", "qmspace": " ",
}
_RTF_SYMBOLS = {"\\": "\\", "{": "{", "}": "}", "~": "\u00a0", "_": "-", "\n": "\n", "\r": "\n"}
# \fcharset values -> Windows code pages; 0 (ANSI) and 1 (default) use \ansicpg, as
# writers pair them with the document code page rather than always meaning 1252.
_CHARSET_CODEPAGES = {
    77: 10000, 128: 932, 129: 949, 130: 1361, 134: 936, 136: 950, 161: 1253, 162: 1254,
    163: 1258, 177: 1255, 178: 1256, 186: 1257, 204: 1251, 222: 874, 238: 1250, 254: 437,
    255: 850,
}
_MAX_RTF_DEPTH = 1000
_BLANK_LINES = re.compile(r"[ \t]*\n(?:[ \t]*\n){2,}")


@dataclass(slots=True)
class _RtfState:
    """What a group inherits from its parent and restores on leaving."""

    skip: bool = False  # inside a destination that is not text
    fonttbl: bool = False
    htmlrtf: bool = False  # RTF-only content of an HTML-encapsulating document
    uc: int = 1  # fallback characters after each \uN
    font_codec: str | None = None


def _rtf_to_text(rtf: bytes) -> tuple[str, bool]:
    """The text of an RTF document, or the HTML it encapsulates; True when HTML.

    A ``\\fromhtml`` document carries its original HTML in ``\\*\\htmltag`` groups plus
    the text between them, with ``\\htmlrtf`` marking what exists only for RTF readers
    ([MS-OXRTFEX] 2.2.3.2): that HTML is rebuilt. Otherwise the visible text is kept
    (in a ``\\fromtext`` document, without its ``\\htmlrtf`` parts either).
    """
    reader = _RtfReader()
    reader.read(rtf)
    # \uN escapes beyond the BMP arrive as surrogate pairs: join them, drop lone halves.
    joined = "".join(reader.out).encode("utf-16-le", "surrogatepass").decode(
        "utf-16-le", "replace")
    if reader.html:
        return joined, True
    lines = "\n".join(line.rstrip() for line in _normalize_newlines(joined).split("\n"))
    return _BLANK_LINES.sub("\n\n", lines).strip(), False


class _RtfReader:
    """One RTF document read token by token into :attr:`out`, one method per kind of
    token; :attr:`html` says whether ``out`` is encapsulated HTML."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.html = False
        self._pending = bytearray()  # \'hh bytes decoded together: DBCS characters span two
        self._pending_codec = "cp1252"
        self._default_codec = "cp1252"
        self._fonts: dict[int, str | None] = {}
        self._defining_font = 0
        self._encapsulated = False  # \fromhtml or \fromtext: \htmlrtf parts are not original
        self._state = _RtfState()
        self._stack: list[_RtfState] = []
        # Groups opened beyond _MAX_RTF_DEPTH, which share their parent's state.
        self._overflow = 0
        self._group_start = False  # the last token opened a group (or was the \* after "{")
        self._ignorable = False  # the group began with \*: skip it unless the destination is known
        self._skip_chars = 0

    def read(self, rtf: bytes) -> None:
        at, end = 0, len(rtf)
        while at < end:
            match = _RTF_TOKEN.match(rtf, at)
            assert match is not None  # the last alternative matches any byte
            at = match.end()
            word, param, hex_byte, symbol, brace, text = match.groups()
            starts_group, self._group_start = self._group_start, False
            state = self._state
            visible = not state.skip and not (self._encapsulated and state.htmlrtf)
            if hex_byte is not None:
                self._byte(int(hex_byte, 16), visible)
                continue
            self._flush()
            if brace is not None:
                self._brace(brace)
            elif text is not None:
                self._text(text, visible)
            elif symbol is not None:
                self._symbol(symbol.decode("latin-1"), starts_group, visible)
            elif word is not None:  # else a source line break
                name = word.decode("ascii")
                value = int(param) if param is not None else None
                if starts_group and self._destination(name):
                    continue
                if name == "bin":
                    at += max(value or 0, 0)  # raw bytes, not RTF
                else:
                    self._control(name, value, visible)
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.out.append(self._pending.decode(self._pending_codec, "replace"))
            self._pending.clear()

    def _byte(self, byte: int, visible: bool) -> None:
        if self._skip_chars:
            self._skip_chars -= 1
        elif visible:
            codec = self._state.font_codec or self._default_codec
            if codec != self._pending_codec:
                self._flush()
            self._pending_codec = codec
            self._pending.append(byte)

    def _brace(self, brace: bytes) -> None:
        self._skip_chars = 0
        if brace == b"{":
            if len(self._stack) < _MAX_RTF_DEPTH:
                self._stack.append(self._state)
                self._state = dataclasses.replace(self._state)
            else:
                self._overflow += 1
            self._group_start, self._ignorable = True, False
        elif self._overflow:
            self._overflow -= 1
        elif self._stack:
            self._state = self._stack.pop()

    def _text(self, text: bytes, visible: bool) -> None:
        if self._skip_chars:
            dropped = min(self._skip_chars, len(text))
            text, self._skip_chars = text[dropped:], self._skip_chars - dropped
        if visible and text:
            self.out.append(text.decode(self._state.font_codec or self._default_codec,
                                        "replace"))

    def _symbol(self, char: str, starts_group: bool, visible: bool) -> None:
        if char == "*":
            self._group_start = self._ignorable = starts_group
        elif self._skip_chars:
            self._skip_chars -= 1
        elif visible and char in _RTF_SYMBOLS:
            self.out.append(_RTF_SYMBOLS[char])

    def _destination(self, name: str) -> bool:
        """Handle the control word that opens a group; true when it names a
        destination, whose word is then consumed."""
        destination, self._ignorable = self._ignorable, False
        if destination and self.html and name == "htmltag":
            return True  # its content is HTML to copy; its parameter is not
        if destination or name in _SKIPPED_DESTINATIONS:
            self._state.skip = True
            return True
        if name == "fonttbl":
            self._state.skip = self._state.fonttbl = True
            return True
        return False

    def _control(self, name: str, value: int | None, visible: bool) -> None:
        state = self._state
        if self._skip_chars and name != "u":
            self._skip_chars -= 1
        elif name == "u" and value is not None:
            if visible:
                self.out.append(chr(value % 0x10000))
            self._skip_chars = state.uc
        elif name == "uc":
            state.uc = max(value or 0, 0)
        elif name == "htmlrtf":
            state.htmlrtf = value != 0
        elif name in ("fromhtml", "fromtext") and len(self._stack) <= 1 and value != 0:
            self.html = self.html or name == "fromhtml"
            self._encapsulated = True
        elif name == "ansicpg":
            self._default_codec = _codec(value) or self._default_codec
        elif name == "f" and value is not None:
            if state.fonttbl:
                self._defining_font = value
            else:
                state.font_codec = self._fonts.get(value)
        elif name == "fcharset" and state.fonttbl and value is not None:
            self._fonts[self._defining_font] = _codec(_CHARSET_CODEPAGES.get(value))
        elif visible and name in _RTF_CHARACTERS:
            self.out.append(_RTF_CHARACTERS[name])


EXTRACTORS = [MsgExtractor()]

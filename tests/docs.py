"""Builders for real sample documents, written into a test's ``tmp_path``.

Every builder writes a genuine file of its format (no network, nothing from outside the
repository) and returns its path. Output is deterministic: the same arguments give the
same bytes, so fixtures never differ between runs.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

__all__ = [
    "make_docx",
    "make_eml",
    "make_encrypted_pdf",
    "make_epub",
    "make_html",
    "make_pdf",
    "make_pptx",
    "make_xlsx",
    "make_zip_bomb",
]

# Fixed timestamps keep the archives byte-identical from one run to the next.
_EPOCH = dt.datetime(2024, 1, 2, 3, 4, 5)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_STAMP = _EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
_MODIFIED = re.compile(rb"(dcterms:modified[^>]*>)[^<]*(<)")

Rows = Sequence[Sequence[object]]


# --- PDF -------------------------------------------------------------------------------


def make_pdf(path: Path, pages: Sequence[str]) -> Path:
    """Write a PDF with one Helvetica page per string (``\\n`` starts a new line)."""
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        stream = _pdf_content(text)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    # Each xref entry must be exactly 20 bytes, hence the trailing space before \n.
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    path.write_bytes(bytes(out))
    return path


def make_encrypted_pdf(path: Path, text: str, password: str = "secret") -> Path:
    """Write a one-page PDF that needs ``password`` to open (RC4-128, standard handler)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, ByteStringObject

    plain = io.BytesIO(make_pdf(path, [text]).read_bytes())
    writer = PdfWriter(clone_from=PdfReader(plain))
    # pypdf draws a random file ID, and the first half feeds the key; fixing both halves
    # keeps the bytes stable.
    file_id = ByteStringObject(b"gristmill-fixture")
    writer._ID = ArrayObject([file_id, file_id])
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    writer._ID = ArrayObject([file_id, file_id])
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def _pdf_content(text: str) -> bytes:
    lines = text.split("\n")
    ops = [b"BT", b"/F1 12 Tf", b"14 TL", b"72 720 Td"]
    for index, line in enumerate(lines):
        if index:
            ops.append(b"T*")
        if line:
            ops.append(b"(%s) Tj" % _pdf_string(line))
    ops.append(b"ET")
    return b"\n".join(ops)


def _pdf_string(line: str) -> bytes:
    # WinAnsiEncoding is cp1252; anything outside it becomes "?".
    raw = line.encode("cp1252", errors="replace")
    out = bytearray()
    for byte in raw:
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte > 0x7E:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out)


# --- Office ----------------------------------------------------------------------------


def make_docx(
    path: Path,
    paragraphs: Sequence[str],
    headings: Mapping[int, str] | None = None,
    tables: Sequence[Rows] = (),
) -> Path:
    """Write a DOCX; ``headings[i]`` is a Heading 1 placed before ``paragraphs[i]``.

    Tables (first row is the header) follow the paragraphs.
    """
    import docx

    document = docx.Document()
    headings = headings or {}
    for index, text in enumerate(paragraphs):
        if index in headings:
            document.add_heading(headings[index], level=1)
        document.add_paragraph(text)
    for rows in tables:
        width = max(len(row) for row in rows)
        table = document.add_table(rows=len(rows), cols=width)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                table.cell(r, c).text = str(value)
    props = document.core_properties
    props.created = props.modified = props.last_printed = _EPOCH
    document.save(str(path))
    return _normalize_zip(path)


def make_pptx(
    path: Path,
    slides: Sequence[tuple[str, str]],
    notes: Mapping[int, str] | None = None,
    tables: Mapping[int, Rows] | None = None,
) -> Path:
    """Write a PPTX of (title, body) slides; optional notes and a table per slide index."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    layout = deck.slide_layouts[1]  # "Title and Content"
    for index, (title, body) in enumerate(slides):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = body
        if notes and index in notes:
            slide.notes_slide.notes_text_frame.text = notes[index]
        if tables and index in tables:
            rows = tables[index]
            width = max(len(row) for row in rows)
            shape = slide.shapes.add_table(
                len(rows), width, Inches(1), Inches(4), Inches(6), Inches(2)
            )
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    shape.table.cell(r, c).text = str(value)
    props = deck.core_properties
    props.created = props.modified = props.last_printed = _EPOCH
    deck.save(str(path))
    return _normalize_zip(path)


def make_xlsx(path: Path, sheets: Mapping[str, Rows]) -> Path:
    """Write an XLSX with one worksheet per entry, rows as given (first row = header)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(title=name)
        for row in rows:
            sheet.append(list(row))
    workbook.properties.created = workbook.properties.modified = _EPOCH
    workbook.save(str(path))
    return _normalize_zip(path)


# --- EPUB ------------------------------------------------------------------------------


def make_epub(path: Path, chapters: Sequence[tuple[str, str]]) -> Path:
    """Write an EPUB 3 of (title, body) chapters in spine order; blank lines split paragraphs."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("urn:uuid:00000000-0000-4000-8000-000000000000")
    book.set_title("Sample book")
    book.set_language("en")
    book.add_author("Gristmill Tests")
    items = []
    for index, (title, body) in enumerate(chapters, start=1):
        item = epub.EpubHtml(title=title, file_name=f"chap_{index:02d}.xhtml", lang="en")
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n") if p)
        item.content = f"<h1>{html.escape(title)}</h1>{paragraphs}"
        book.add_item(item)
        items.append(item)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    epub.write_epub(str(path), book)
    return _normalize_zip(path)


# --- E-mail and HTML -------------------------------------------------------------------


def make_eml(
    path: Path,
    subject: str,
    body: str,
    html_body: str | None = None,
    attachments: Mapping[str, bytes] | None = None,
    *,
    plain: bool = True,
) -> Path:
    """Write an RFC 5322 message; ``plain=False`` with ``html_body`` gives an HTML-only mail."""
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.org>"
    message["To"] = "Charles Babbage <charles@example.org>"
    message["Cc"] = "Mary Somerville <mary@example.org>"
    message["Date"] = format_datetime(_EPOCH.replace(tzinfo=dt.UTC))
    message["Subject"] = subject
    message["Message-ID"] = "<fixture@example.org>"
    if plain or html_body is None:
        message.set_content(body)
        if html_body is not None:
            message.add_alternative(html_body, subtype="html")
    else:
        message.set_content(html_body, subtype="html")
    for name, data in (attachments or {}).items():
        message.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=name
        )
    # The email package draws random MIME boundaries; fixed ones keep the bytes stable.
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"gristmill-boundary-{index}")
    path.write_bytes(message.as_bytes())
    return path


def make_html(
    path: Path, title: str, paragraphs: Sequence[str], encoding: str = "utf-8"
) -> Path:
    """Write an HTML page with a ``<title>``, an ``<h1>`` and one ``<p>`` per paragraph."""
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    charset = "utf-16" if encoding.lower().startswith("utf-16") else encoding
    document = (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta charset="{charset}">\n<title>{html.escape(title)}</title>\n'
        "</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n"
        "</body>\n</html>\n"
    )
    path.write_bytes(document.encode(encoding))
    return path


# --- Archives --------------------------------------------------------------------------


def make_zip_bomb(path: Path, megabytes: int = 200, member: str = "word/document.xml") -> Path:
    """Write a zip holding ``megabytes`` MB of zeros in one member (ratio about 1000:1)."""
    chunk = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(_zip_info(member), "w", force_zip64=True) as fh,
    ):
        for _ in range(megabytes):
            fh.write(chunk)
    return path


def _zip_info(member: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(member, _ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _normalize_zip(path: Path) -> Path:
    # Libraries stamp members with the current time; rewrite them with a fixed one,
    # keeping order and compression (EPUB needs "mimetype" first and stored).
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, _ZIP_EPOCH)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            if info.filename.endswith(("core.xml", ".opf")):
                # openpyxl and ebooklib stamp "modified" with the time of writing.
                data = _MODIFIED.sub(rb"\g<1>" + _STAMP + rb"\g<2>", data)
            target.writestr(fixed, data)
    return path

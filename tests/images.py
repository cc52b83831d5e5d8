"""Images and scanned PDFs for the OCR tests, drawn with Pillow (no files checked in)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None and not os.environ.get("CI"),
    reason="Tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng "
    "tesseract-ocr-deu)",
)

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # fonts-dejavu-core


def font(size: int = 32) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if DEJAVU.is_file():
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size=size)  # Pillow >= 10.1


def render(*lines: str, size: int = 32) -> Image.Image:
    """Black text on white, one line under another, in mode L."""
    face = font(size)
    width = int(max(face.getlength(line) for line in lines)) + 2 * size
    image = Image.new("L", (width, int(size * 1.6) * len(lines) + 2 * size), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size + i * int(size * 1.6)), line, font=face, fill=0)
    return image


def scan_page(*lines: str, dpi: int = 150) -> Image.Image:
    """A letter-size page at ``dpi`` with ``lines`` of 12-pt text near its top, as a
    flatbed scanner would give it."""
    page = Image.new("L", (int(8.5 * dpi), 11 * dpi), 255)
    page.paste(render(*lines, size=dpi // 6), (dpi // 2, dpi // 2))
    return page


def make_scanned_pdf(path: Path, pages: Sequence[Image.Image], dpi: int = 150) -> Path:
    """An image-only PDF, one picture per page, as a scanner writes it."""
    first, *rest = [page.convert("L") for page in pages]
    first.save(path, "PDF", resolution=float(dpi), save_all=True, append_images=rest)
    return path


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))

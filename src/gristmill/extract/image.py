"""Images, read by OCR: PNG, JPEG, TIFF, BMP, GIF and WebP.

Pillow decodes; an :class:`~gristmill.extract.ocr.OcrEngine` (Tesseract unless told
otherwise) reads the text. A TIFF is a document: every frame is a page, decoded and read
one at a time, with its 1-based number as the segment's ``page``. GIF, WebP and PNG
animations give their first frame only: their frames are moments of one picture, not
pages, so a caption repeats in every frame, and reading all of them would multiply the
cost (often by 50 or more) to produce duplicate chunks.

Hostile files are refused before any pixel is decoded: every frame's declared size is
checked against :data:`MAX_PIXELS`, and a TIFF's pages are counted up to
:data:`MAX_FRAMES` first.
"""

from __future__ import annotations

import contextlib
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import ExifTags, Image, UnidentifiedImageError

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment, ocr_options
from gristmill.extract.ocr import (
    OcrEngine,
    declared_dpi,
    engine,
    normalise_for_ocr,
    recognize_in_order,
)

__all__ = ["EXTRACTORS", "MAX_FRAMES", "MAX_PIXELS", "ImageExtractor"]

#: Pixels one frame may have. Decoded, a frame costs 1 to 4 bytes a pixel and the OCR
#: copies add as much again, so 100 megapixels is up to ~800 MB in the worker, within the
#: default 4 GB address-space cap with room to spare. Real pages are far smaller: an A4
#: page is 9 megapixels at 300 dpi and 35 at 600 dpi; an A0 poster at 300 dpi is 139
#: megapixels, and is refused. A few hundred bytes of PNG can declare 30000x30000 pixels.
MAX_PIXELS = 100_000_000

#: Pages read from one TIFF. A bound book scanned to a single file is rarely over 2,000
#: pages; a crafted file chains a hundred thousand tiny frames, each costing a header
#: parse, a decode and an OCR run.
MAX_FRAMES = 10_000

# Scans declared above _DOWNSCALE_ABOVE_DPI are read at _OCR_DPI, Tesseract's optimum:
# a 600-dpi A4 page took 3.4 s to read and 2.5 s (plus 0.2 s to resize) at 300 dpi, with
# the same words, and half the memory. Images without a trustworthy resolution are left
# alone: shrinking blindly takes small text below the ~20 px Tesseract needs (a page at
# a third of its size lost a third of its words).
_OCR_DPI = 300
_DOWNSCALE_ABOVE_DPI = 400

# Tesseract refuses an image with a side over 32,767 px ("Image too large"); a longer
# image is shrunk to fit, which keeps most text of, say, a tall full-page screenshot.
_MAX_SIDE = 32_767

# EXIF orientation -> the transposition that makes the picture upright (as ImageOps does).
_ORIENTATION_TAG = ExifTags.Base.Orientation
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}

_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP")
_PAGED = frozenset({"TIFF"})

# What Pillow raises for damaged data, besides OSError("image file is truncated ...").
_CORRUPT = (SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class ImageExtractor:
    """Text in images, by OCR; ``page`` is the TIFF page number (``None`` otherwise)."""

    name = "image"
    version = 1
    extensions = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif",
                            ".webp"})

    def __init__(self, engine: OcrEngine | None = None) -> None:
        """Args:
        engine: what reads the text; by default the one ``ocr_engine`` names.
        """
        self.engine = engine

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield the text of each frame (TIFF) or of the image, read by OCR; a TIFF's
        pages are read several at a time (see :func:`recognize_in_order`).

        Raises:
            ExtractionError: truncated or corrupt image; OCR failed or timed out.
            LimitExceeded: a frame over MAX_PIXELS, over MAX_FRAMES pages, or more text
                than ``limits.max_text_chars``.
            Unsupported: OCR found no text, or the OCR engine or a language is missing.
        """
        with _decoding(None):
            image = _open(path)
        try:
            paged = image.format in _PAGED
            with _decoding(None):
                frames = _count_frames(image) if paged else 1
            total = 0
            reader = self.engine or engine(ocr_options().engine)
            for index, text in recognize_in_order(_frames(image, frames, paged), reader):
                total += len(text)
                if total > limits.max_text_chars:
                    raise LimitExceeded(f"OCR text exceeds {limits.max_text_chars:,} "
                                        "characters (max_text_chars)")
                if text:
                    yield Segment(text, page=index + 1 if paged else None)
            if not total:
                raise Unsupported("no text found by OCR")
        finally:
            image.close()


def _frames(image: Image.Image, count: int, paged: bool) -> Iterator[tuple[int, Image.Image]]:
    """Each frame decoded for OCR, one at a time, in this (the caller's) thread."""
    for index in range(count):
        with _decoding(image):
            frame = _decode(image, index, paged)
        yield index, frame
        del frame


# --- Decoding --------------------------------------------------------------------------


@contextlib.contextmanager
def _decoding(image: Image.Image | None) -> Iterator[None]:
    """Pillow calls, with its errors turned into ours.

    Pillow has a bomb check of its own, one module-wide limit tested as a file is opened,
    before the caller sees the size, with a reason that names no dimensions. While a file
    is opened and its frames counted (``image`` is None) the check is lifted and
    :func:`_check_pixels` judges every frame by its declared size instead. While a
    checked frame is decoded Pillow's check stays on at MAX_PIXELS, its warning made an
    error, in case it meets something bigger than declared. Both settings are
    process-wide for the duration of the call only; only the worker's main thread decodes
    (OCR threads get decoded frames).
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None if image is None else MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(_too_big(image.size if image else None)) from exc
    except UnidentifiedImageError as exc:
        raise ExtractionError("truncated or corrupt image: not a PNG, JPEG, TIFF, BMP, GIF "
                              "or WebP image") from exc
    except OSError as exc:
        if exc.errno is not None:  # a real I/O error: the worker decides whether to retry
            raise
        raise ExtractionError(f"truncated or corrupt image: {_first_line(exc)}") from exc
    except _CORRUPT as exc:
        raise ExtractionError(f"truncated or corrupt image: {_first_line(exc)}") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _open(path: Path) -> Image.Image:
    # Only the formats this extractor claims: Pillow would also hand an .png that is
    # really an EPS file to Ghostscript.
    image = Image.open(path, formats=_FORMATS)
    try:
        _check_pixels(image, 1 if image.format in _PAGED else None)
    except BaseException:
        image.close()
        raise
    return image


def _count_frames(image: Image.Image) -> int:
    """The number of pages, each checked against MAX_PIXELS, before any is decoded."""
    count = 1  # the first was checked as the file was opened
    while True:
        try:
            image.seek(count)
        except EOFError:
            break
        count += 1
        if count > MAX_FRAMES:
            raise LimitExceeded(f"TIFF has more than {MAX_FRAMES:,} pages, over the "
                                f"{MAX_FRAMES:,}-page limit")
        _check_pixels(image, count)
    image.seek(0)
    return count


def _check_pixels(image: Image.Image, page: int | None) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise LimitExceeded(_too_big(image.size, page))


def _too_big(size: tuple[int, int] | None, page: int | None = None) -> str:
    what = "image" if page is None else f"page {page}"
    dimensions = f" is {size[0]}x{size[1]} pixels," if size else ""
    return f"{what}{dimensions} over the {MAX_PIXELS // 1_000_000}-megapixel limit"


def _decode(image: Image.Image, index: int, paged: bool) -> Image.Image:
    """Frame ``index``, upright, in a mode and at a resolution good for OCR."""
    if index:
        image.seek(index)
    width, height = image.size
    scale = _ocr_scale(image.size, image.info.get("dpi"))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1 and image.format in ("JPEG", "MPO"):
        # JPEG decodes at 1/2, 1/4 or 1/8 size for nearly free; the rest is resized below.
        image.draft(None, target)
    image.load()
    frame = normalise_for_ocr(image)
    if frame.size != target:
        if frame.mode == "1":  # resizing bilevel images ignores the filter
            frame = frame.convert("L")
        frame = frame.resize(target, Image.Resampling.LANCZOS)
    # The resolution the frame is read at (Tesseract guesses it otherwise, and a wrong
    # guess splits lines into false columns).
    if (resolution := declared_dpi(image.info.get("dpi"))) is not None:
        dpi = resolution * frame.width / width
        frame.info["dpi"] = (dpi, dpi)
    # TIFF applies its orientation as it loads; the others carry it in EXIF (phone photos).
    if not paged and (turn := _ORIENTATION.get(image.getexif().get(_ORIENTATION_TAG, 1))):
        frame = frame.transpose(turn)
    return frame


def _ocr_scale(size: tuple[int, int], dpi: object) -> float:
    """How much to shrink a frame for OCR (1.0: not at all)."""
    scale = 1.0
    resolution = declared_dpi(dpi)
    if resolution is not None and resolution > _DOWNSCALE_ABOVE_DPI:
        scale = _OCR_DPI / resolution
    longest = max(size)
    if longest * scale > _MAX_SIDE:
        scale = _MAX_SIDE / longest
    return scale


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


EXTRACTORS = [ImageExtractor()]

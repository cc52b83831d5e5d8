"""Images read by OCR: every format, TIFF pages, odd modes, and hostile or broken files.

Text is rendered with Pillow and read back by the real Tesseract; a checked word set
allows for small OCR slips. Limits and resolution choices are observed through a fake
engine that records what it is handed. Bombs are crafted headers: nothing is allocated.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image, features

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Extractor, Limits, OcrOptions, Segment, use_ocr_options
from gristmill.extract.image import EXTRACTORS, MAX_FRAMES, ImageExtractor
from images import needs_tesseract, render, words

HARVEST = ("Quarterly harvest report", "Millstone granary")
HARVEST_WORDS = {"quarterly", "harvest", "millstone", "granary"}


def extract(path: Path, extractor: ImageExtractor | None = None,
            limits: Limits | None = None) -> list[Segment]:
    return list((extractor or ImageExtractor()).extract(path, limits or Limits()))


@dataclass
class RecordingEngine:
    """A fake OCR engine: records what it is handed and answers with fixed text."""

    text: str = "recorded text"
    name: str = "recording"
    seen: list[tuple[tuple[int, int], str, str]] = field(default_factory=list)

    def recognize(self, image: Image.Image, languages: str) -> str:
        self.seen.append((image.size, image.mode, languages))
        return self.text


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def tiff_declaring(sizes: list[tuple[int, int]]) -> bytes:
    """An uncompressed grayscale TIFF with one frame per size, all sharing 64 white pixels
    (frames over 8x8 pixels declare more than the file holds)."""
    pixels = b"\xff" * 64
    out = bytearray(b"II*\x00" + struct.pack("<I", 8 + len(pixels)) + pixels)
    for i, (width, height) in enumerate(sizes):
        entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                   (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, width * height)]
        following = len(out) + 2 + 12 * len(entries) + 4 if i + 1 < len(sizes) else 0
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            out += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, 1, value,
                               *((0,) if kind == 3 else ()))
        out += struct.pack("<I", following)
    return bytes(out)


# --- The extractor ---------------------------------------------------------------------


def test_image_extractor_is_registered_by_its_module() -> None:
    """The module declares one extractor, ``image`` v1, for the usual image suffixes."""
    [extractor] = EXTRACTORS
    assert isinstance(extractor, Extractor)
    assert (extractor.name, extractor.version) == ("image", 1)
    assert extractor.extensions == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp",
                                    ".gif", ".webp"}


# --- Formats ---------------------------------------------------------------------------


@needs_tesseract
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".gif", ".webp"])
def test_each_format_is_read(tmp_path: Path, suffix: str) -> None:
    """PNG, JPEG, TIFF, BMP, GIF and WebP files give their rendered words back."""
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    path = tmp_path / f"scan{suffix}"
    render(*HARVEST).save(path)
    [segment] = extract(path)
    assert words(segment.text) >= HARVEST_WORDS
    assert segment.page == (1 if suffix == ".tif" else None)


@needs_tesseract
def test_tiff_pages_are_numbered_and_blank_ones_skipped(tmp_path: Path) -> None:
    """Each TIFF frame is a page with its 1-based number; a blank page yields nothing."""
    first, blank, third = render("Apple orchard"), Image.new("L", (300, 100), 255), render(
        "Walnut grove")
    path = tmp_path / "scan.tiff"
    first.save(path, save_all=True, append_images=[blank, third], compression="tiff_deflate")
    segments = extract(path)
    assert [s.page for s in segments] == [1, 3]
    assert {"apple", "orchard"} <= words(segments[0].text)
    assert {"walnut", "grove"} <= words(segments[1].text)


@needs_tesseract
def test_animated_gif_gives_its_first_frame_only(tmp_path: Path) -> None:
    """An animation's frames are one picture over time: only the first is read."""
    path = tmp_path / "banner.gif"
    render("Apple orchard").save(path, save_all=True, append_images=[render("Walnut grove")],
                                 duration=500)
    [segment] = extract(path)
    assert {"apple", "orchard"} <= words(segment.text)
    assert "walnut" not in words(segment.text)


# --- Modes -----------------------------------------------------------------------------


@needs_tesseract
def test_transparent_background_is_read_as_white(tmp_path: Path) -> None:
    """Black text on fully transparent black pixels (a common PNG export) is read."""
    text = render(*HARVEST)
    rgba = Image.new("RGBA", text.size, (0, 0, 0, 0))
    rgba.putalpha(text.point(lambda v: 255 - v))  # opaque where the text is
    path = tmp_path / "logo.png"
    rgba.save(path)
    with Image.open(path) as saved:
        assert saved.convert("RGB").getextrema() == ((0, 0), (0, 0), (0, 0))
    assert words(extract(path)[0].text) >= HARVEST_WORDS


@needs_tesseract
def test_palette_and_cmyk_images_are_read(tmp_path: Path) -> None:
    """A palette PNG and a CMYK JPEG give their words back."""
    palette, cmyk = tmp_path / "palette.png", tmp_path / "print.jpg"
    render(*HARVEST).convert("P").save(palette)
    render(*HARVEST).convert("CMYK").save(cmyk, quality=95)
    with Image.open(palette) as p, Image.open(cmyk) as c:
        assert (p.mode, c.mode) == ("P", "CMYK")
    for path in (palette, cmyk):
        assert words(extract(path)[0].text) >= HARVEST_WORDS, path.name


@needs_tesseract
def test_sixteen_bit_scan_with_twelve_bit_data_is_read(tmp_path: Path) -> None:
    """A 16-bit grayscale PNG holding 12-bit values (0-4080) is stretched, not clipped."""
    path = tmp_path / "scanner.png"
    render(*HARVEST).convert("I").point(lambda v: v * 16).convert("I;16").save(path)
    with Image.open(path) as saved:
        assert saved.mode.startswith("I;16")
    assert words(extract(path)[0].text) >= HARVEST_WORDS


@needs_tesseract
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored sideways with an EXIF orientation is read upright."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "photo.jpg"
    render(*HARVEST).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    assert words(extract(path)[0].text) >= HARVEST_WORDS


# --- Languages -------------------------------------------------------------------------


@pytest.fixture
def ocr_languages() -> Iterator[Callable[[str], None]]:
    """Sets this process's OCR languages as a worker does; restores the defaults."""
    yield lambda languages: use_ocr_options(OcrOptions(languages=languages))
    use_ocr_options(OcrOptions())


@needs_tesseract
def test_german_is_read_with_the_configured_language(
        tmp_path: Path, ocr_languages: Callable[[str], None]) -> None:
    """ocr_lang = "deu" brings back umlauts and the sharp s."""
    ocr_languages("deu")
    path = tmp_path / "brief.png"
    render("Größere Brücken über Flüsse").save(path)
    assert {"größere", "brücken", "über", "flüsse"} <= words(extract(path)[0].text)


def test_languages_default_to_english(tmp_path: Path,
                                      ocr_languages: Callable[[str], None]) -> None:
    """The engine is asked for the configured languages, ``eng`` by default."""
    path = tmp_path / "a.png"
    Image.new("L", (20, 20), 255).save(path)
    engine = RecordingEngine()
    extract(path, ImageExtractor(engine))
    ocr_languages("eng+deu")
    extract(path, ImageExtractor(engine))
    assert [languages for _, _, languages in engine.seen] == ["eng", "eng+deu"]


# --- Resolution ------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "dpi", "expected"), [
    (".png", (600, 600), (1000, 500)),   # a 600-dpi scan is read at 300 dpi
    (".jpg", (1200, 1200), (500, 250)),  # JPEG: decoded small, then resized
    (".png", (300, 300), (2000, 1000)),  # at 300 dpi already
    (".png", None, (2000, 1000)),        # no resolution: the text size is unknown
])
def test_high_resolution_scans_are_read_at_300_dpi(
        tmp_path: Path, suffix: str, dpi: tuple[int, int] | None,
        expected: tuple[int, int]) -> None:
    """Scans declared above 400 dpi are shrunk to 300 dpi; others are left alone."""
    path = tmp_path / f"scan{suffix}"
    Image.new("L", (2000, 1000), 255).save(path, **({"dpi": dpi} if dpi else {}))
    engine = RecordingEngine()
    extract(path, ImageExtractor(engine))
    assert engine.seen[0][0] == expected


def test_very_long_image_is_shrunk_to_tesseracts_side_limit(tmp_path: Path) -> None:
    """A 40,000-px strip is scaled to Tesseract's 32,767-px limit instead of failing."""
    path = tmp_path / "strip.png"
    Image.new("1", (40_000, 40), 1).save(path)
    engine = RecordingEngine()
    extract(path, ImageExtractor(engine))
    assert engine.seen == [((32_767, 33), "L", "eng")]


# --- Limits and broken files -----------------------------------------------------------


def test_decompression_bomb_is_refused_by_its_size(tmp_path: Path) -> None:
    """A tiny PNG declaring 30000x30000 pixels is refused before decoding, with its size."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(30_000, 30_000))
    engine = RecordingEngine()
    with pytest.raises(LimitExceeded) as raised:
        extract(path, ImageExtractor(engine))
    assert raised.value.reason == "image is 30000x30000 pixels, over the 100-megapixel limit"
    assert engine.seen == []


def test_the_limit_is_ours_not_pillows_default(tmp_path: Path) -> None:
    """95 megapixels passes the size check (Pillow's own default warns above 89.5) and
    110 megapixels does not."""
    allowed, refused = tmp_path / "allowed.png", tmp_path / "refused.png"
    allowed.write_bytes(png_declaring(9_500, 10_000))
    refused.write_bytes(png_declaring(11_000, 10_000))
    with pytest.raises(ExtractionError, match="truncated or corrupt image"):  # decoded
        extract(allowed, ImageExtractor(RecordingEngine()))
    with pytest.raises(LimitExceeded, match="11000x10000 pixels, over the 100-megapixel"):
        extract(refused, ImageExtractor(RecordingEngine()))


def test_tiff_page_bomb_is_refused_before_any_page_is_read(tmp_path: Path) -> None:
    """A huge later page stops the file before OCR starts on the first."""
    path = tmp_path / "scan.tif"
    path.write_bytes(tiff_declaring([(8, 8), (30_000, 30_000)]))
    engine = RecordingEngine()
    with pytest.raises(LimitExceeded) as raised:
        extract(path, ImageExtractor(engine))
    assert raised.value.reason == "page 2 is 30000x30000 pixels, over the 100-megapixel limit"
    assert engine.seen == []


def test_tiff_with_a_hundred_thousand_pages_is_refused(tmp_path: Path) -> None:
    """Absurd page counts are refused after counting past the limit, before any OCR."""
    path = tmp_path / "many.tif"
    path.write_bytes(tiff_declaring([(8, 8)] * 100_000))
    engine = RecordingEngine()
    with pytest.raises(LimitExceeded) as raised:
        extract(path, ImageExtractor(engine))
    assert raised.value.reason == (f"TIFF has more than {MAX_FRAMES:,} pages, over the "
                                   f"{MAX_FRAMES:,}-page limit")
    assert engine.seen == []


def test_crafted_tiff_pages_are_read_in_order(tmp_path: Path) -> None:
    """The crafted TIFF helper makes real pages: three 8x8 frames are three OCR calls."""
    path = tmp_path / "three.tif"
    path.write_bytes(tiff_declaring([(8, 8)] * 3))
    engine = RecordingEngine()
    assert [s.page for s in extract(path, ImageExtractor(engine))] == [1, 2, 3]
    assert len(engine.seen) == 3


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".tif"])
def test_truncated_image_fails_as_corrupt(tmp_path: Path, suffix: str) -> None:
    """A file cut in half fails with a reason saying so."""
    whole = tmp_path / f"whole{suffix}"
    render(*HARVEST).save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ExtractionError, match=r"^truncated or corrupt image: "):
        extract(cut, ImageExtractor(RecordingEngine()))


def test_other_content_under_an_image_name_is_refused(tmp_path: Path) -> None:
    """Random bytes, or an EPS file (which Pillow would hand to Ghostscript), named .png
    fail as not an image."""
    for name, data in [("noise.png", os.urandom(2000)),
                       ("vector.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ExtractionError) as raised:
            extract(path, ImageExtractor(RecordingEngine()))
        assert raised.value.reason == ("truncated or corrupt image: not a PNG, JPEG, TIFF, "
                                       "BMP, GIF or WebP image")


def test_text_over_the_limit_is_refused(tmp_path: Path) -> None:
    """OCR text beyond max_text_chars stops the item like any other extractor's."""
    path = tmp_path / "a.png"
    Image.new("L", (20, 20), 255).save(path)
    with pytest.raises(LimitExceeded, match="exceeds 1,000 characters"):
        extract(path, ImageExtractor(RecordingEngine("x" * 1001)), Limits(max_text_chars=1000))


@needs_tesseract
def test_blank_image_has_no_text_found(tmp_path: Path) -> None:
    """An image OCR finds nothing in is skipped with a reason, never silently empty."""
    path = tmp_path / "blank.png"
    Image.new("RGB", (400, 200), (255, 255, 255)).save(path)
    with pytest.raises(Unsupported) as raised:
        extract(path)
    assert raised.value.reason == "no text found by OCR"


def test_missing_tesseract_is_unsupported(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Tesseract on PATH an image is skipped with the install command."""
    path = tmp_path / "a.png"
    render("anything").save(path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unsupported, match=r"^Tesseract is not installed: apt-get install"):
        extract(path)


def test_the_resolution_read_at_is_handed_to_the_engine(tmp_path: Path) -> None:
    """A 600-dpi scan is shrunk to 300 dpi, and the engine is told 300; a file without
    a resolution is handed over without one."""
    seen: list[object] = []

    class Engine:
        name = "dpi"

        def recognize(self, image: Image.Image, languages: str) -> str:
            seen.append(image.info.get("dpi"))
            return "text"

    Image.new("L", (1200, 600), 255).save(tmp_path / "fine.png", dpi=(600, 600))
    Image.new("L", (1200, 600), 255).save(tmp_path / "plain.png")
    extract(tmp_path / "fine.png", ImageExtractor(Engine()))
    extract(tmp_path / "plain.png", ImageExtractor(Engine()))
    # PNG stores pixels per metre: 600 dpi comes back as 599.9988.
    assert [d and tuple(round(v) for v in d) for d in seen] == [(300, 300), None]

"""Scanned and mixed PDFs: each page decided on its own, scans read by real Tesseract."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from docs import make_pdf
from gristmill.errors import LimitExceeded, Unsupported
from gristmill.extract.base import Limits, OcrOptions, Segment, use_ocr_options
from gristmill.extract.pdf import PdfExtractor
from images import make_scanned_pdf, needs_tesseract, scan_page, words

PAGE_ONE = ("Quarterly harvest report", "Millstone granary ledger")
PAGE_TWO = ("Windmill sails need canvas", "Barley prices rose sharply")


@pytest.fixture(autouse=True)
def _default_ocr_options() -> Iterator[None]:
    yield
    use_ocr_options(OcrOptions())


def extract(path: Path, extractor: PdfExtractor | None = None) -> list[Segment]:
    return list((extractor or PdfExtractor()).extract(path, Limits()))


def merge(target: Path, *parts: Path) -> Path:
    writer = PdfWriter()
    for part in parts:
        for page in PdfReader(part).pages:
            writer.add_page(page)
    with target.open("wb") as fh:
        writer.write(fh)
    return target


@dataclass
class CountingEngine:
    """Answers with fixed text; counts calls and the most it saw at once."""

    delay: float = 0.0
    name: str = "counting"
    calls: int = 0
    running: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recognize(self, image: Image.Image, languages: str) -> str:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return f"ocr text {image.size[0]}"


@needs_tesseract
def test_scanned_pdf_is_read_by_ocr_with_page_numbers(tmp_path: Path) -> None:
    """An image-only PDF (a scan) is rendered and OCR'd page by page."""
    pdf = make_scanned_pdf(tmp_path / "scan.pdf", [scan_page(*PAGE_ONE), scan_page(*PAGE_TWO)])
    segments = extract(pdf)
    assert [s.page for s in segments] == [1, 2]
    assert {"quarterly", "harvest", "millstone", "granary"} <= words(segments[0].text)
    assert {"windmill", "canvas", "barley", "prices"} <= words(segments[1].text)


@needs_tesseract
def test_mixed_pdf_keeps_text_pages_and_reads_the_scanned_one(tmp_path: Path) -> None:
    """Born-digital pages keep their text layer; the scanned page between them is OCR'd,
    and every page keeps its true number."""
    digital = make_pdf(tmp_path / "digital.pdf", ["first page typed text", "third page typed"])
    scan = make_scanned_pdf(tmp_path / "scan.pdf", [scan_page(*PAGE_TWO)])
    reader = PdfReader(digital)
    writer = PdfWriter()
    writer.add_page(reader.pages[0])
    writer.add_page(PdfReader(scan).pages[0])
    writer.add_page(reader.pages[1])
    mixed = tmp_path / "mixed.pdf"
    with mixed.open("wb") as fh:
        writer.write(fh)
    segments = extract(mixed)
    assert [s.page for s in segments] == [1, 2, 3]
    assert segments[0].text == "first page typed text"
    assert {"windmill", "canvas", "barley"} <= words(segments[1].text)
    assert segments[2].text == "third page typed"


def test_born_digital_pages_never_reach_ocr(tmp_path: Path) -> None:
    """A PDF with a text layer on every page is never rendered or OCR'd."""
    engine = CountingEngine()
    pdf = make_pdf(tmp_path / "a.pdf", ["one page of text", "", "three"])
    assert [s.text for s in extract(pdf, PdfExtractor(engine))] == ["one page of text", "three"]
    assert engine.calls == 0


def test_scan_with_its_own_ocr_layer_keeps_that_layer(tmp_path: Path) -> None:
    """A searchable scan (a picture under an invisible text layer with real text) is not
    OCR'd again: its layer is kept."""
    layer = "an invisible text layer that a scanner's own OCR wrote over the picture"
    text = make_pdf(tmp_path / "text.pdf", [layer])
    scan = make_scanned_pdf(tmp_path / "scan.pdf", [scan_page("anything")])
    writer = PdfWriter(clone_from=scan)
    writer.pages[0].merge_page(PdfReader(text).pages[0])
    both = tmp_path / "searchable.pdf"
    with both.open("wb") as fh:
        writer.write(fh)
    engine = CountingEngine()
    assert [s.text for s in extract(both, PdfExtractor(engine))] == [layer]
    assert engine.calls == 0


def test_scanned_pages_are_read_in_parallel_and_in_order(tmp_path: Path) -> None:
    """With parallel=2, two pages are recognised at once; segments stay in page order."""
    pages = [scan_page(f"page {i}", dpi=40 + i) for i in range(6)]
    pdf = make_scanned_pdf(tmp_path / "scan.pdf", pages, dpi=40)
    use_ocr_options(OcrOptions(parallel=2, slots_dir=tmp_path / "slots", dpi=72))
    engine = CountingEngine(delay=0.2)
    segments = extract(pdf, PdfExtractor(engine))
    assert [s.page for s in segments] == [1, 2, 3, 4, 5, 6]
    assert engine.calls == 6
    assert engine.most == 2
    sizes = [int(s.text.split()[-1]) for s in segments]
    assert sizes == sorted(sizes)  # each page's own text, in order


@needs_tesseract
def test_parallel_ocr_runs_two_tesseracts_at_once(tmp_path: Path) -> None:
    """The real engine: a four-page scan with parallel=2 has two Tesseract processes
    running at the same moment, never more."""
    pages = [scan_page(*PAGE_ONE, *PAGE_TWO, dpi=200) for _ in range(4)]
    pdf = make_scanned_pdf(tmp_path / "scan.pdf", pages, dpi=200)
    use_ocr_options(OcrOptions(parallel=2, slots_dir=tmp_path / "slots", dpi=200))
    seen: list[int] = []
    done = threading.Event()

    def name(child: psutil.Process) -> str | None:
        try:
            return child.name()
        except (psutil.Error, OSError):  # it ended between the listing and the look
            return None

    def watch() -> None:
        while not done.is_set():
            seen.append(sum(1 for child in psutil.Process().children()
                            if name(child) == "tesseract"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        segments = extract(pdf)
    finally:
        done.set()
        watcher.join()
    assert len(segments) == 4
    assert max(seen) == 2


def test_scan_without_tesseract_is_skipped_with_the_install_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Tesseract: a PDF that needs OCR is skipped (not half-read), and the reason
    says what to install, so `reset --skipped` can bring it back later."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    digital = make_pdf(tmp_path / "digital.pdf", ["typed text"])
    scan = make_scanned_pdf(tmp_path / "scan.pdf", [scan_page(*PAGE_ONE)])
    for pdf in (scan, merge(tmp_path / "mixed.pdf", digital, scan)):
        with pytest.raises(Unsupported, match=r"Tesseract is not installed: apt-get install "
                                              r"tesseract-ocr"):
            extract(pdf)


def test_absurd_page_size_is_refused(tmp_path: Path) -> None:
    """A scanned page declared 400 x 400 inches is over the pixel limit even at 72 dpi."""
    pdf = make_scanned_pdf(tmp_path / "huge.pdf", [Image.new("L", (400, 400), 0)], dpi=1)
    with pytest.raises(LimitExceeded, match=r"page 1 is 400 x 400 in, over the "
                                            r"100-megapixel limit for OCR even at 72 dpi"):
        extract(pdf, PdfExtractor(CountingEngine()))


def test_large_page_is_rendered_at_a_lower_resolution(tmp_path: Path) -> None:
    """A 40 x 40 inch page is rendered below ocr_dpi, to stay within the pixel limit."""
    pdf = make_scanned_pdf(tmp_path / "poster.pdf", [Image.new("L", (400, 400), 0)], dpi=10)
    segments = extract(pdf, PdfExtractor(CountingEngine()))
    width = int(segments[0].text.split()[-1])
    assert 9_000 < width <= 10_000  # sqrt(100 MP): ~250 dpi instead of 300


def test_a_page_with_no_text_but_a_small_picture_is_read(tmp_path: Path) -> None:
    """A table pasted as a picture on an otherwise empty page (a tenth of the page) is
    OCR'd; with a typed caption of its own beside it, the caption is enough."""
    picture = Image.new("L", (468, 96), 0)
    page = Image.new("L", (612, 792), 255)
    page.paste(picture, (72, 300))
    pdf = make_scanned_pdf(tmp_path / "table.pdf", [page], dpi=72)
    engine = CountingEngine()
    assert [s.page for s in extract(pdf, PdfExtractor(engine))] == [1]
    assert engine.calls == 1

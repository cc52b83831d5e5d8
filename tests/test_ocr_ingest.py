"""OCR end to end: images and scanned PDFs through the runner, languages from the CLI,
and timeouts that measure progress, not age."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from docs import make_pdf
from gristmill.knowledge_base import KnowledgeBase
from images import make_scanned_pdf, needs_tesseract, render, scan_page
from process_tools import env_for, gristmill, gristmill_json

pytestmark = needs_tesseract


def _names(kb: KnowledgeBase, query: str) -> list[tuple[str, int | None]]:
    return [(Path(h.source).name, h.page) for h in kb.search(query, mode="keyword", k=50)]


def test_images_scans_and_typed_pdfs_are_all_searchable(tmp_path: Path) -> None:
    """A folder mixing a PNG, a JPEG, a two-page scan and a typed PDF: every one is
    indexed, and OCR'd words are found with their page numbers."""
    src = tmp_path / "src"
    src.mkdir()
    render("Invoice from the windmill cooperative").save(src / "invoice.png")
    render("Receipt for millstone repairs").convert("RGB").save(src / "receipt.jpg")
    make_scanned_pdf(src / "scan.pdf", [scan_page("Chapter one about barley"),
                                        scan_page("Chapter two about granaries")])
    make_pdf(src / "typed.pdf", ["typed notes about barley"])
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=2) as kb:
        report = kb.ingest([src])
        assert report.items["indexed"] == 4, kb.errors()
        assert ("invoice.png", None) in _names(kb, "windmill cooperative")
        assert ("receipt.jpg", None) in _names(kb, "millstone")
        assert set(_names(kb, "barley")) == {("scan.pdf", 1), ("typed.pdf", 1)}
        assert _names(kb, "granaries") == [("scan.pdf", 2)]


def test_ocr_language_comes_from_the_command_line(tmp_path: Path) -> None:
    """--ocr-lang deu reads umlauts that English OCR garbles."""
    src = tmp_path / "src"
    src.mkdir()
    render("Größere Brücken über Flüsse").save(src / "brief.png")
    env = env_for(tmp_path / "home")
    done = gristmill("ingest", str(src), "--ocr-lang", "deu", env=env)
    assert done.returncode == 0, done.stderr
    hits = gristmill_json("search", "Brücken", env=env)
    assert [Path(h["source"]).name for h in hits] == ["brief.png"]


def test_unknown_ocr_language_is_a_clear_skip(tmp_path: Path) -> None:
    """A language pack that is not installed skips the image, naming the package."""
    src = tmp_path / "src"
    src.mkdir()
    render("Some words").save(src / "a.png")
    env = env_for(tmp_path / "home", ocr_lang="zzz")
    assert gristmill("ingest", str(src), env=env).returncode == 0
    [group] = gristmill_json("errors", env=env)
    assert group["status"] == "skipped"
    assert "apt-get install tesseract-ocr-zzz" in group["examples"][0]["error"]


def test_a_long_scan_that_keeps_making_progress_is_not_timed_out(tmp_path: Path) -> None:
    """item_timeout bounds the time without progress, not the item's age: a scan whose
    pages take, together, several times the timeout is indexed whole."""
    src = tmp_path / "src"
    src.mkdir()
    # Enough pages that even a fast machine needs over twice the timeout for them.
    pages = [scan_page(f"Ledger page {i} of the granary accounts", dpi=150)
             for i in range(24)]
    make_scanned_pdf(src / "ledger.pdf", pages, dpi=150)
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1,
                            item_timeout=2.5) as kb:
        report = kb.ingest([src])
        assert report.seconds > 2 * 2.5, "the scan must take longer than the timeout"
        assert report.items["indexed"] == 1, kb.errors()
        assert sorted(page for _, page in _names(kb, "granary accounts")) == list(range(1, 25))


def test_an_image_without_progress_is_killed_and_quarantined(tmp_path: Path) -> None:
    """One huge page OCR'd in one go makes no progress for longer than item_timeout: its
    worker and Tesseract are killed, twice, and the item fails with a clear reason while
    the other file is indexed."""
    src = tmp_path / "src"
    src.mkdir()
    line = render("dense text that takes Tesseract a long while to read " * 3, size=20)
    page = Image.new("L", (line.width, line.height * 120), 255)
    for row in range(120):
        page.paste(line, (0, row * line.height))
    page.save(src / "wall.png")
    (src / "note.txt").write_text("a small note that is quick to read")
    started = time.time()
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1,
                            item_timeout=1.0) as kb:
        report = kb.ingest([src])
        assert report.items["indexed"] == 1 and report.items["failed"] == 1
        [group] = kb.errors()
        assert group.examples[0]["error"] == ("quarantined: timed out: no progress for 1 s "
                                              "(item_timeout) (2 times)")
    # The watchdog killed Tesseract with its worker: nothing is left reading the page.
    assert not [p for p in psutil.process_iter(["name", "cmdline", "create_time"])
                if p.info["name"] == "tesseract" and "stdin" in (p.info["cmdline"] or ())
                and p.info["create_time"] >= started and p.status() != psutil.STATUS_ZOMBIE]


def test_the_ocr_engine_setting_reaches_the_workers(tmp_path: Path) -> None:
    """ocr_engine = "rapidocr" reads images in the workers with RapidOCR's models."""
    pytest.importorskip("rapidocr_onnxruntime")
    src = tmp_path / "src"
    src.mkdir()
    render("Invoice from the windmill cooperative").save(src / "invoice.png")
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1,
                            ocr_engine="rapidocr") as kb:
        assert kb.ingest([src]).items["indexed"] == 1, kb.errors()
        assert _names(kb, "windmill cooperative") == [("invoice.png", None)]

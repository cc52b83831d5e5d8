"""The OCR engine: Tesseract reads rendered text; clear reasons when it cannot.

Images are rendered with Pillow in a TrueType font at a size Tesseract reads reliably,
and kept small: each recognition starts a Tesseract process (~0.1-0.3 s).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageDraw

from gristmill.errors import ConfigError, ExtractionError, Unsupported
from gristmill.extract import ocr
from gristmill.extract.ocr import OcrEngine, Tesseract, doctor, normalise_for_ocr
from images import needs_tesseract, render, words


def installed_languages() -> frozenset[str]:
    return ocr._installed_languages(shutil.which("tesseract") or "", None)


# --- Reading text ----------------------------------------------------------------------


@needs_tesseract
def test_tesseract_reads_rendered_english() -> None:
    """The words of a rendered line come back, one line per line."""
    text = Tesseract().recognize(render("Quarterly harvest report", "Millstone granary"), "eng")
    assert {"quarterly", "harvest", "report", "millstone", "granary"} <= words(text)
    assert len(text.splitlines()) >= 2


@needs_tesseract
def test_german_needs_and_gets_the_deu_pack() -> None:
    """With ``deu`` the umlauts and the sharp s come back."""
    if "deu" not in installed_languages():
        pytest.skip("tesseract-ocr-deu is not installed")
    image = render("Größere Brücken über Flüsse")
    assert {"größere", "brücken", "über", "flüsse"} <= words(
        Tesseract().recognize(image, "deu"))
    assert "brücken" in words(Tesseract().recognize(image, "eng+deu"))


@needs_tesseract
def test_blank_image_gives_empty_text() -> None:
    """An image without text is read as ``""``; deciding what that means is the caller's."""
    assert Tesseract().recognize(Image.new("L", (300, 120), 255), "eng") == ""


def test_tesseract_is_an_ocr_engine() -> None:
    """Tesseract satisfies the OcrEngine protocol the extractors depend on."""
    assert isinstance(Tesseract(), OcrEngine)
    assert Tesseract.name == "tesseract"


# --- Reasons ---------------------------------------------------------------------------


def test_missing_tesseract_says_what_to_install(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With no tesseract on PATH the reason is one line with the apt-get command."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unsupported) as raised:
        Tesseract().recognize(render("anything"), "eng")
    assert raised.value.reason == ("Tesseract is not installed: "
                                   "apt-get install tesseract-ocr tesseract-ocr-eng")


@needs_tesseract
def test_missing_language_pack_is_named() -> None:
    """A requested language that is not installed is named with its Debian package."""
    if "fra" in installed_languages():
        pytest.skip("tesseract-ocr-fra is installed here")
    with pytest.raises(Unsupported) as raised:
        Tesseract().recognize(render("bonjour"), "eng+fra")
    assert raised.value.reason == ("Tesseract language pack 'fra' is not installed: "
                                   "apt-get install tesseract-ocr-fra")


def test_malformed_language_list_is_a_config_error() -> None:
    """Anything but codes joined by '+' is refused before Tesseract is asked."""
    for bad in ("", "eng deu", "eng+", "-l", "eng;deu"):
        with pytest.raises(ConfigError, match="bad OCR language list"):
            ocr._check_languages("tesseract", bad)


@needs_tesseract
def test_tesseract_failure_reports_its_message() -> None:
    """When Tesseract fails, the reason carries its stderr in one line."""
    too_wide = Image.new("L", (33_000, 20), 255)  # over Tesseract's 32,767-px side limit
    with pytest.raises(ExtractionError) as raised:
        Tesseract().recognize(too_wide, "eng")
    assert raised.value.reason.startswith("Tesseract failed: Image too large: (33000, 20)")
    assert "\n" not in raised.value.reason


@needs_tesseract
def test_timeout_kills_tesseract_which_ran_in_our_group() -> None:
    """Past the timeout the process is killed and reaped; it ran with one OpenMP thread,
    in the caller's process group (so killing gristmill's group stops it too)."""
    page = render(*[f"line {i} of a page dense with words to read slowly" for i in range(100)],
                  size=24)
    installed_languages()  # so the only tesseract started below is the recognition
    # Children an earlier test left (a multiprocessing fork server lives as long as the
    # process that started it) are not this test's business.
    earlier = set(psutil.Process().children(recursive=True))
    seen: dict[int, tuple[str | None, int]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for child in set(psutil.Process().children(recursive=True)) - earlier:
                try:
                    if "stdin" in child.cmdline():
                        seen.setdefault(child.pid, (child.environ().get("OMP_THREAD_LIMIT"),
                                                    os.getpgid(child.pid)))
                except (psutil.Error, ProcessLookupError):
                    pass
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with pytest.raises(ExtractionError, match=r"^OCR timed out after 0\.3 s$"):
            Tesseract(timeout=0.3).recognize(page, "eng")
    finally:
        done.set()
        watcher.join()
    assert time.monotonic() - started < 5
    [(pid, (threads, group))] = seen.items()
    assert threads == "1"
    assert group == os.getpgid(0)
    assert not psutil.pid_exists(pid)
    assert not set(psutil.Process().children(recursive=True)) - earlier


# --- Doctor ----------------------------------------------------------------------------


@needs_tesseract
def test_doctor_reports_version_and_languages() -> None:
    """With Tesseract installed the report gives its path, version and languages."""
    status = doctor("eng")
    assert status.ok
    assert status.binary == shutil.which("tesseract")
    assert status.version is not None and re.match(r"\d+\.\d+", status.version)
    assert "eng" in status.languages
    lines = status.lines()
    assert lines[0] == f"OCR: Tesseract {status.version} at {status.binary}"
    assert lines[1].startswith("OCR languages: ") and "eng" in lines[1]


@needs_tesseract
def test_doctor_names_a_missing_configured_language() -> None:
    """A configured language that is missing is reported with the package to install."""
    if "fra" in installed_languages():
        pytest.skip("tesseract-ocr-fra is installed here")
    status = doctor("eng+fra")
    assert not status.ok
    assert status.problem is not None and "apt-get install tesseract-ocr-fra" in status.problem
    assert status.lines()[-1] == f"OCR problem: {status.problem}"


def test_doctor_without_tesseract_gives_the_install_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Tesseract the report is one line saying what to install."""
    monkeypatch.setenv("PATH", str(tmp_path))
    status = doctor()
    assert (status.binary, status.version, status.languages) == (None, None, ())
    assert status.lines() == ["OCR: Tesseract is not installed: "
                              "apt-get install tesseract-ocr tesseract-ocr-eng"]


# --- Image modes -----------------------------------------------------------------------


def text_mask() -> Image.Image:
    """A small L image: white, with one black bar where text would be."""
    image = Image.new("L", (40, 20), 255)
    ImageDraw.Draw(image).rectangle((5, 5, 30, 14), fill=0)
    return image


@pytest.mark.parametrize("mode", ["1", "L"])
def test_modes_tesseract_reads_are_passed_through(mode: str) -> None:
    """Bilevel and grayscale images are returned as they are, not copied."""
    image = text_mask().convert(mode)
    assert normalise_for_ocr(image) is image


def test_transparent_areas_become_white() -> None:
    """Black text on a transparent background stays black on white, not black on black."""
    rgba = Image.new("RGBA", (40, 20), (0, 0, 0, 0))  # invisible black
    ImageDraw.Draw(rgba).rectangle((5, 5, 30, 14), fill=(0, 0, 0, 255))
    for image in (rgba, rgba.convert("LA"), rgba.convert("PA"), rgba.convert("RGBa")):
        out = normalise_for_ocr(image)
        assert out.mode == "L", image.mode
        assert out.getpixel((1, 1)) == 255, image.mode
        assert out.getpixel((10, 10)) == 0, image.mode


def test_palette_with_transparent_index_becomes_white() -> None:
    """A GIF-style palette image whose background index is transparent reads as white."""
    image = text_mask().convert("P")
    image.info["transparency"] = image.getpixel((1, 1))
    out = normalise_for_ocr(image)
    assert out.mode == "L"
    assert (out.getpixel((1, 1)), out.getpixel((10, 10))) == (255, 0)


@pytest.mark.parametrize("mode", ["RGB", "P", "CMYK", "YCbCr", "HSV"])
def test_colour_becomes_grayscale(mode: str) -> None:
    """RGB, palette, CMYK and other colour spaces are handed to Tesseract as grayscale."""
    coloured = Image.new("RGB", (40, 20), (250, 240, 200))  # dark blue on cream
    ImageDraw.Draw(coloured).rectangle((5, 5, 30, 14), fill=(20, 30, 90))
    out = normalise_for_ocr(coloured.convert(mode))
    assert out.mode == "L"
    assert out.getpixel((10, 10)) < 60 and out.getpixel((1, 1)) > 200


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_deep_images_are_stretched_to_eight_bits(mode: str) -> None:
    """12-bit data in a 16-bit, 32-bit or float image spans black to white, not clipped."""
    twelve_bit = text_mask().convert("I").point(lambda v: v * 16 + 100)  # 100..4180
    out = normalise_for_ocr(twelve_bit.convert(mode))
    assert out.mode == "L"
    assert out.getextrema() == (0, 255)
    assert out.getpixel((10, 10)) == 0 and out.getpixel((1, 1)) == 255


def test_flat_deep_image_is_white() -> None:
    """A 16-bit image of one value has nothing to read and becomes a white page."""
    out = normalise_for_ocr(Image.new("I;16", (10, 10), 4000))
    assert out.mode == "L" and out.getextrema() == (255, 255)


# --- Slots and page parallelism --------------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from gristmill.extract.ocr import Slots
with Slots(Path(sys.argv[1]), int(sys.argv[2])).hold():
    print(time.monotonic(), flush=True)
    time.sleep(float(sys.argv[3]))
    print(time.monotonic(), flush=True)
"""


def _holder(folder: Path, count: int, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), str(count),
                             str(seconds)], stdout=subprocess.PIPE, text=True)


def test_slots_admit_at_most_their_count_across_processes(tmp_path: Path) -> None:
    """Four processes sharing two slots: never more than two inside at once, and all of
    them get in."""
    procs = [_holder(tmp_path, 2, 0.4) for _ in range(4)]
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=30)
        start, end = map(float, out.split())
        spans.append((start, end))
    for moment, _ in spans:
        inside = sum(1 for start, end in spans if start <= moment < end)
        assert inside <= 2
    assert max(end for _, end in spans) - min(start for start, _ in spans) >= 0.8


def test_slot_of_a_killed_process_is_freed_at_once(tmp_path: Path) -> None:
    """kill -9 of a holder frees its slot (the kernel drops its lock): no leak."""
    holder = _holder(tmp_path, 1, 60)
    assert holder.stdout is not None
    holder.stdout.readline()  # it is inside
    holder.kill()
    holder.communicate()
    started = time.monotonic()
    with ocr.Slots(tmp_path, 1).hold():
        assert time.monotonic() - started < 1


def test_pages_in_flight_are_bounded_by_the_parallelism(tmp_path: Path) -> None:
    """A slow engine never lets more than `parallel` images wait: the page source is
    not asked for the next page until one is done."""
    produced = 0
    finished = 0
    most_alive = 0
    lock = threading.Lock()

    class Slow:
        name = "slow"

        def recognize(self, image: Image.Image, languages: str) -> str:
            nonlocal finished
            time.sleep(0.05)
            with lock:
                finished += 1
            return str(image.size[0])

    def pages() -> Iterator[tuple[int, Image.Image | str]]:
        nonlocal produced, most_alive
        for i in range(20):
            with lock:
                most_alive = max(most_alive, produced - finished)
            if i % 3:
                produced += 1
                yield i, Image.new("L", (10 + i, 10), 255)
            else:
                yield i, f"text {i}"

    options = ocr.OcrOptions(parallel=3, slots_dir=tmp_path)
    got = list(ocr.recognize_in_order(pages(), Slow(), options))
    assert [key for key, _ in got] == list(range(20))
    assert [text for _, text in got][:3] == ["text 0", "11", "12"]
    assert most_alive <= 3


@needs_tesseract
def test_declared_resolution_is_passed_to_tesseract() -> None:
    """A page's known resolution reaches Tesseract (--dpi), which otherwise guesses it
    from the text height and can split lines into false columns."""
    page = render("a page with a known resolution", size=24)
    page.info["dpi"] = (200, 200)
    commands: list[list[str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    if "stdin" in (cmdline := child.cmdline()) and cmdline not in commands:
                        commands.append(cmdline)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert "resolution" in Tesseract().recognize(page, "eng")
    finally:
        done.set()
        watcher.join()
    assert commands and all(c[-2:] == ["--dpi", "200"] for c in commands)


@pytest.mark.parametrize(("dpi", "expected"), [
    ((300, 300), 300), ((300.0, 200.0), 200), ((1, 1), None), (None, None), ("x", None)])
def test_declared_dpi_ignores_what_files_do_not_mean(dpi: object, expected: float | None
                                                     ) -> None:
    assert ocr.declared_dpi(dpi) == expected


# --- Other engines ---------------------------------------------------------------------

needs_rapidocr = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None and not os.environ.get("CI"),
    reason="RapidOCR is not installed (pip install 'gristmill[rapidocr]'; dev extras have it)")


def test_engines_are_chosen_by_name() -> None:
    assert isinstance(ocr.engine("tesseract"), Tesseract)
    assert ocr.engine("tesseract") is ocr.engine("tesseract")  # built once per process
    with pytest.raises(ConfigError, match="unknown OCR engine 'abbyy': use one of tesseract, "
                                          "rapidocr"):
        ocr.engine("abbyy")


@needs_rapidocr
def test_rapidocr_reads_rendered_english_into_lines() -> None:
    """The PP-OCRv4 models shipped in the package load and read; boxes found word by word
    come back as the page's lines, in order."""
    page = render("Quarterly harvest report", "Millstone granary ledger").convert("RGB")
    engine = ocr.engine("rapidocr")
    assert isinstance(engine, OcrEngine)
    lines = engine.recognize(page, "eng").lower().splitlines()
    assert len(lines) == 2
    assert {"quarterly", "harvest", "report"} <= words(lines[0])
    assert {"millstone", "granary", "ledger"} <= words(lines[1])


def test_boxes_on_one_line_are_joined_left_to_right() -> None:
    def box(x: float, y: float, text: str) -> list[object]:
        return [[[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]], text, 0.9]

    boxes = [box(300, 102, "three"), box(0, 100, "one"), box(100, 98, "two"),
             box(0, 140, "next line")]
    assert ocr._lines(boxes) == "one two three\nnext line"

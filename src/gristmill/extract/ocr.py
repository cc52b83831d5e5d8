"""Optical character recognition behind one small interface.

:class:`OcrEngine` is what extractors call: an image in, its text out. :class:`Tesseract`
runs the ``tesseract`` program from the distribution (``apt-get install tesseract-ocr``);
:class:`RapidOcr` (PP-OCRv4 on onnxruntime, on CUDA where it has it) stands in for it
when the ``ocr_engine`` setting names it, without the extractors changing.

Each recognition is one short-lived ``tesseract`` process reading a PNG on stdin and
writing text on stdout, killed after :data:`OCR_TIMEOUT_S`. It stays in the worker's
process group, so stopping gristmill (Ctrl-C, or ``kill -9`` of the group) stops it too.

:func:`recognize_in_order` reads the pages of one item several at a time: the worker
renders or decodes pages in order while threads wait on Tesseract processes, and
:class:`Slots` holds every worker of a run to ``parallel`` such processes in all, so a
300-page scan uses every core when it is alone and shares them when it is not.

:func:`doctor` says whether OCR can run here and, when it cannot, what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import logging
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast, runtime_checkable

from PIL import Image

from gristmill.errors import ConfigError, ExtractionError, Unsupported
from gristmill.extract.base import OcrOptions, ocr_options

__all__ = ["ENGINES", "OCR_TIMEOUT_S", "OcrEngine", "OcrStatus", "RapidOcr", "Slots",
           "Tesseract", "declared_dpi", "doctor", "engine", "normalise_for_ocr",
           "recognize_in_order"]

log = logging.getLogger(__name__)

K = TypeVar("K")

#: Seconds one image may take before Tesseract is killed. A dense 300-dpi A4 page takes
#: about 3 s on one core; this is far above that, and below the default ``item_timeout``
#: (300 s) so the worker reports a stuck page instead of being killed itself.
OCR_TIMEOUT_S = 120.0

_INSTALL = "apt-get install tesseract-ocr tesseract-ocr-eng"
_NOT_INSTALLED = f"Tesseract is not installed: {_INSTALL}"

# One OpenMP thread per process: gristmill already runs one worker per core. With its
# default of one thread per core, Tesseract's threads spin-wait on each other: on a
# 2-core machine a 300-dpi page took 20 s with two threads against 2.9 s with one, and
# every worker running such a pair makes it worse.
_CHILD_ENV = {"OMP_THREAD_LIMIT": "1"}

# Tesseract's language codes ("eng", "chi_sim", "script/Latin"), joined by "+".
_CODE = r"[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)?"
_LANGUAGES = re.compile(rf"{_CODE}(?:\+{_CODE})*")

# Tesseract's routine chatter on stderr, not worth repeating in a reason.
_NOISE = re.compile(r"Estimating resolution|Warning: Invalid resolution|Detected \d+ diacritics"
                    r"|Empty page|Too few characters|^Error during processing")

# Tesseract inherits the worker's address-space cap. Measured with one thread: a 300-dpi
# A4 page runs under a 128 MB cap, a 600-dpi one needs 256 MB, and a 100-megapixel frame
# (the most image.py hands over) peaks at 400 MB resident. Under a cap below this, a
# failure is probably the cap, and the reason says so.
_TESSERACT_ADDRESS_SPACE = 1024**3

_LIST_TIMEOUT_S = 30.0


@runtime_checkable
class OcrEngine(Protocol):
    """Reads the text in an image.

    Attributes:
        name: short stable name (``"tesseract"``).
    """

    name: str

    def recognize(self, image: Image.Image, languages: str) -> str:
        """The text in ``image``, lines separated by newlines and blocks by blank lines;
        ``""`` when there is none.

        Args:
            image: any mode; see :func:`normalise_for_ocr`.
            languages: Tesseract language codes joined by ``+`` (``"eng+deu"``).

        Raises:
            gristmill.errors.Unsupported: the engine or a language is not installed.
            gristmill.errors.ExtractionError: recognition failed or timed out.
            gristmill.errors.ConfigError: ``languages`` is not a list of codes.
        """
        ...


class Tesseract:
    """The ``tesseract`` command-line program, one process per image."""

    name = "tesseract"

    def __init__(self, *, timeout: float = OCR_TIMEOUT_S, psm: int = 3) -> None:
        """Args:
        timeout: seconds per image before the process is killed.
        psm: page segmentation mode; 3 (automatic layout, no orientation detection)
            reads pages, columns and screenshots alike.
        """
        self.timeout = timeout
        self.psm = psm

    def recognize(self, image: Image.Image, languages: str) -> str:
        """The text Tesseract finds in ``image``; see :meth:`OcrEngine.recognize`.

        When automatic layout finds nothing on an image that is not blank (a label, a
        sparse form, a diagram with captions), it is read again as sparse text (psm 11),
        so such a page is not silently empty.
        """
        binary = _find_tesseract()
        _check_languages(binary, languages)
        dpi = declared_dpi(image.info.get("dpi"))
        gray = normalise_for_ocr(image)
        png = io.BytesIO()
        # Always a PNG we encoded: given anything it cannot decode, tesseract reads stdin as
        # a list of file names and opens those. Level 1: the bytes only cross a pipe.
        gray.save(png, "PNG", compress_level=1)
        text = self._run(binary, png.getvalue(), languages, self.psm, dpi)
        if not text and self.psm != _SPARSE and _has_ink(gray):
            text = self._run(binary, png.getvalue(), languages, _SPARSE, dpi)
        return text

    def _run(self, binary: str, png: bytes, languages: str, psm: int,
             dpi: float | None) -> str:
        command = [binary, "stdin", "stdout", "-l", languages, "--psm", str(psm)]
        if dpi is not None:
            # Tesseract estimates a missing resolution from the text height, and a wrong
            # estimate (242 for a 200-dpi page) split lines into false columns: one page
            # read at 0.57 character accuracy instead of 0.998.
            command += ["--dpi", str(round(dpi))]
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env={**os.environ, **_CHILD_ENV})
        except (PermissionError, FileNotFoundError) as exc:  # not the item's fault
            raise Unsupported(f"Tesseract does not run: {exc}; {_INSTALL}") from exc
        try:
            out, err = proc.communicate(png, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise ExtractionError(f"OCR timed out after {self.timeout:g} s") from None
        finally:
            if proc.returncode is None:  # interrupted: never leave tesseract running
                _kill(proc)
        if proc.returncode:
            raise ExtractionError(f"Tesseract failed: {_summary(err, proc.returncode)}")
        return _clean(out.decode("utf-8", "replace"))


class RapidOcr:
    """PP-OCRv4 detection and recognition (Chinese and English) on onnxruntime, from the
    ``rapidocr_onnxruntime`` package, which carries its models
    (``pip install 'gristmill[rapidocr]'``). On a machine whose onnxruntime has the CUDA
    provider (``onnxruntime-gpu``) it runs there; on CPUs Tesseract is the better choice
    for Latin-script pages. ``languages`` is ignored: the models read what they read.
    """

    name = "rapidocr"

    def __init__(self, *, cuda: bool | None = None) -> None:
        """Args:
        cuda: use the CUDA provider; by default, when onnxruntime offers it.
        """
        try:
            import onnxruntime
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise Unsupported("RapidOCR is not installed: pip install 'gristmill[rapidocr]', "
                              "or set ocr_engine = \"tesseract\"") from exc
        if cuda is None:
            cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        # One thread per model: gristmill runs one OCR slot per core already.
        self._engine = RapidOCR(det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda,
                                intra_op_num_threads=1, inter_op_num_threads=1)
        self._lock = threading.Lock()  # its pipeline keeps per-call state

    def recognize(self, image: Image.Image, languages: str) -> str:
        """The text RapidOCR finds, its boxes put back into lines in reading order."""
        import numpy as np

        with self._lock:
            boxes, _elapsed = self._engine(np.asarray(image.convert("RGB")))
        return _lines(boxes or [])


def _lines(boxes: list[list[object]]) -> str:
    """Words and phrases boxed separately, joined into lines: a box belongs to the line
    whose vertical middle it overlaps; lines top to bottom, boxes left to right."""
    found = []
    for corners, text, _score in boxes:
        ys = [float(y) for _x, y in corners]  # type: ignore[attr-defined]
        xs = [float(x) for x, _y in corners]  # type: ignore[attr-defined]
        found.append((min(ys), max(ys), min(xs), str(text)))
    lines: list[list[tuple[float, float, float, str]]] = []
    for box in sorted(found):
        top, bottom = box[0], box[1]
        for line in lines:
            middle = (line[0][0] + line[0][1]) / 2
            if top <= middle <= bottom:
                line.append(box)
                break
        else:
            lines.append([box])
    return "\n".join(" ".join(text for *_pos, text in sorted(line, key=lambda b: b[2]))
                     for line in lines).strip()


#: The engines ``ocr_engine`` can name.
ENGINES: dict[str, type[Tesseract] | type[RapidOcr]] = {"tesseract": Tesseract,
                                                         "rapidocr": RapidOcr}


@functools.cache
def engine(name: str) -> OcrEngine:
    """The engine called ``name``, built once per process (models load once).

    Raises:
        ConfigError: no engine has that name.
        Unsupported: its package is not installed.
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown OCR engine {name!r}: use one of {', '.join(ENGINES)}")
    return ENGINES[name]()


# Page segmentation mode "sparse text": finds words anywhere, in no particular order.
_SPARSE = 11

# A page is worth a second reading when this share of its pixels is dark: one line of
# 10-pt text on an A4 page is about 0.3 %; scanner speckle on a blank page is far less.
_INK_SHARE = 0.002


def _has_ink(gray: Image.Image) -> bool:
    histogram = gray.convert("L").histogram()
    dark = sum(histogram[:128])
    return dark > _INK_SHARE * gray.width * gray.height


class Slots:
    """At most ``count`` OCR runs at once among the processes sharing ``folder``.

    One lock file per slot, held with ``flock``: the kernel releases the lock of a
    process that dies, so a worker killed mid-page (timeout, ``kill -9``) never leaks
    its slot, which a counting semaphore would.
    """

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        self.count = max(1, count)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for a free slot and hold it for the ``with`` block."""
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = [self.folder / f"slot-{i}.lock" for i in range(self.count)]
        delay = 0.005
        while True:
            # A random first choice spreads the processes over the slots.
            start = random.randrange(self.count)
            for path in paths[start:] + paths[:start]:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield
                finally:
                    os.close(fd)  # closing the last descriptor releases the lock
                return
            # Pages take seconds; polling a few times a second costs nothing.
            time.sleep(delay)
            delay = min(0.1, delay * 2)


# Pages read but not yet handed on, at most: beyond this the reader waits for the oldest
# page being recognised, so a slow page cannot make the rest pile up in memory.
_MAX_WAITING = 64


def recognize_in_order(pages: Iterable[tuple[K, str | Image.Image]], engine: OcrEngine,
                       options: OcrOptions | None = None) -> Iterator[tuple[K, str]]:
    """Text of each page, in the order given, recognising images ``parallel`` at a time.

    ``pages`` yields ``(key, text)`` for a page whose text is known already and
    ``(key, image)`` for one to recognise; it is consumed in the calling thread, so it
    can render with a library that is not thread-safe (pdfium). At most ``parallel``
    images are alive at once besides the one being produced.

    Raises:
        Whatever :meth:`OcrEngine.recognize` raises, for the first failing page.
    """
    options = options or ocr_options()
    width = max(1, options.parallel)
    slots = Slots(options.slots_dir, width) if options.slots_dir is not None else None

    def read(image: Image.Image) -> str:
        with slots.hold() if slots is not None else contextlib.nullcontext():
            return engine.recognize(image, options.languages)

    if width == 1:
        for key, work in pages:
            yield key, work if isinstance(work, str) else read(work)
        return

    waiting: deque[tuple[K, str | Future[str]]] = deque()
    with ThreadPoolExecutor(width, thread_name_prefix="ocr") as pool:
        try:
            for key, work in pages:
                waiting.append((key, work if isinstance(work, str) else pool.submit(read, work)))
                del work
                while waiting and (_done(waiting[0][1]) or len(waiting) > _MAX_WAITING
                                   or _busy(waiting) >= width):
                    yield _result(waiting.popleft())
            while waiting:
                yield _result(waiting.popleft())
        finally:
            for _key, pending in waiting:  # stopped early or failed: skip pages not started
                if isinstance(pending, Future):
                    pending.cancel()


def _done(work: str | Future[str]) -> bool:
    return isinstance(work, str) or work.done()


def _busy(waiting: deque[tuple[K, str | Future[str]]]) -> int:
    return sum(1 for _key, work in waiting if not _done(work))


def _result(entry: tuple[K, str | Future[str]]) -> tuple[K, str]:
    key, work = entry
    return key, work if isinstance(work, str) else work.result()


def declared_dpi(dpi: object) -> float | None:
    """The lower of an image's declared horizontal and vertical resolutions (Pillow's
    ``info["dpi"]``), or ``None`` when absent or implausible (files that record 1 dpi
    do not mean it)."""
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return None
    try:
        low = min(float(dpi[0]), float(dpi[1]))
    except (TypeError, ValueError):
        return None
    return low if 50 <= low <= 4800 else None


def normalise_for_ocr(image: Image.Image) -> Image.Image:
    """``image`` as bilevel (``1``) or grayscale (``L``), the modes Tesseract reads best.

    Colour becomes grayscale: Tesseract recognises text on a grayscale copy anyway, and
    handed RGB it took 1.2 times as long on a 300-dpi page, and twice as long and 2.7
    times the memory (1 GB) on a 100-megapixel one. Transparent areas become white
    (their hidden colour is often black, which would hide black text). 16-bit and float
    images are stretched from their darkest to their lightest value, because clipping
    12-bit scanner data to 8 bits leaves a white page. Images already bilevel or
    grayscale are returned as they are.
    """
    mode = image.mode
    if mode in ("1", "L"):
        return image
    if mode.startswith("I") or mode == "F":
        return _stretch(image)
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        if mode not in ("LA", "RGBA"):  # premultiplied or palette: plain RGBA first
            image = image.convert("RGBA")
        page = Image.new("L", image.size, 255)
        page.paste(image.convert("L"), mask=image.getchannel("A"))
        return page
    if mode in ("RGB", "P"):
        return image.convert("L")
    return image.convert("RGB").convert("L")  # CMYK, YCbCr, LAB, HSV


def _stretch(image: Image.Image) -> Image.Image:
    if image.mode != "F":
        image = image.convert("I")  # I;16, I;16B, ... : point() maps I and F linearly
    # I and F have one band, so getextrema() is (low, high), not one pair per band.
    low, high = cast(tuple[float, float], image.getextrema())
    if high <= low:  # one flat value: nothing to read, whatever its level
        return Image.new("L", image.size, 255)
    scale = 255 / (high - low)
    return image.point(lambda v: v * scale - low * scale).convert("L")


def _clean(text: str) -> str:
    # Tesseract ends a page with a form feed and pads lines with spaces; blocks are
    # separated by one blank line, which is what a Segment's paragraphs are.
    lines = [line.rstrip() for line in text.replace("\f", "\n").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- Running Tesseract -----------------------------------------------------------------


def _find_tesseract() -> str:
    if found := shutil.which("tesseract"):
        return found
    raise Unsupported(_NOT_INSTALLED)


def _check_languages(binary: str, languages: str) -> None:
    if not _LANGUAGES.fullmatch(languages):
        raise ConfigError(f"bad OCR language list {languages!r}: use Tesseract's codes "
                          "joined by '+', such as 'eng' or 'eng+deu'")
    installed = _installed_languages(binary, os.environ.get("TESSDATA_PREFIX"))
    missing = [code for code in languages.split("+") if code not in installed]
    if missing:
        packages = " ".join(_package(code) for code in missing)
        names = ", ".join(repr(code) for code in missing)
        packs = "pack {} is" if len(missing) == 1 else "packs {} are"
        raise Unsupported(f"Tesseract language {packs.format(names)} not installed: "
                          f"apt-get install {packages}")


@functools.cache
def _installed_languages(binary: str, tessdata: str | None) -> frozenset[str]:
    """The languages ``binary`` can load, asked once per process (and data folder)."""
    del tessdata  # part of the cache key only: tesseract reads it from the environment
    proc = _run_quick([binary, "--list-langs"])
    if proc.returncode:
        raise Unsupported(f"Tesseract does not run: {_summary(proc.stderr, proc.returncode)}")
    # 'List of available languages in "/usr/share/tesseract-ocr/5/tessdata/" (3):'
    # then one code a line; older versions print it all on stderr.
    lines = (proc.stdout or proc.stderr).decode("utf-8", "replace").splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip())


def _package(code: str) -> str:
    """The Debian package holding a language: chi_sim -> tesseract-ocr-chi-sim."""
    return "tesseract-ocr-" + code.lower().replace("_", "-").replace("/", "-")


def _run_quick(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              env={**os.environ, **_CHILD_ENV}, timeout=_LIST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unsupported(f"Tesseract does not run: {command[1]} took over "
                          f"{_LIST_TIMEOUT_S:g} s") from None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()  # tesseract starts no children of its own
    proc.communicate()
    if proc.stdin is not None:  # a resumed communicate() leaves it open
        with contextlib.suppress(OSError):  # unsent bytes: the pipe is broken
            proc.stdin.close()


def _summary(stderr: bytes, returncode: int) -> str:
    """Tesseract's own words in one line, without its routine chatter."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not _NOISE.search(line)]
    text = "; ".join(lines) if lines else "no message"
    if returncode < 0:
        try:
            text += f" (killed by {signal.Signals(-returncode).name})"
        except ValueError:
            text += f" (killed by signal {-returncode})"
    else:
        text += f" (exit status {returncode})"
    text = " ".join(text.split())[:300]
    cap, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if cap != resource.RLIM_INFINITY and cap < _TESSERACT_ADDRESS_SPACE:
        text += (f" (it may need more than the worker's {cap // 2**20} MB address-space "
                 "limit: worker_memory_limit_mb)")
    return text


# --- Doctor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OcrStatus:
    """Whether OCR can run on this machine.

    Attributes:
        binary: where ``tesseract`` is, or ``None``.
        version: its version (``"5.3.0"``), or ``None``.
        languages: the installed language codes, sorted.
        problem: what is wrong and the command that fixes it; ``None`` when OCR works.
    """

    binary: str | None
    version: str | None
    languages: tuple[str, ...]
    problem: str | None

    @property
    def ok(self) -> bool:
        """Whether OCR in the requested languages will work."""
        return self.problem is None

    def lines(self) -> list[str]:
        """What ``gristmill doctor`` prints, one finding a line."""
        if self.binary is None:
            return [f"OCR: {self.problem}"]
        lines = [f"OCR: Tesseract {self.version or '(unknown version)'} at {self.binary}",
                 f"OCR languages: {', '.join(self.languages) or 'none'}"]
        if self.problem:
            lines.append(f"OCR problem: {self.problem}")
        return lines


def doctor(languages: str = "eng") -> OcrStatus:
    """Check that Tesseract is installed, runs, and has ``languages``."""
    binary = shutil.which("tesseract")
    if binary is None:
        return OcrStatus(None, None, (), _NOT_INSTALLED)
    version = None
    try:
        proc = _run_quick([binary, "--version"])
        # 'tesseract 5.3.0' on stdout (stderr before 4.1), then the libraries it uses.
        first = (proc.stdout or proc.stderr).decode("utf-8", "replace").strip().splitlines()
        if first and first[0].startswith("tesseract "):
            version = first[0].removeprefix("tesseract ").strip()
        _check_languages(binary, languages)
    except (Unsupported, ConfigError) as exc:
        installed = _languages_or_none(binary)
        return OcrStatus(binary, version, installed, str(exc))
    except OSError as exc:  # present but not executable, or a broken file
        return OcrStatus(binary, None, (), f"Tesseract does not run: {exc}; {_INSTALL}")
    return OcrStatus(binary, version, _languages_or_none(binary), None)


def _languages_or_none(binary: str) -> tuple[str, ...]:
    try:
        return tuple(sorted(_installed_languages(binary, os.environ.get("TESSDATA_PREFIX"))))
    except Unsupported:
        return ()

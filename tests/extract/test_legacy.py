"""Legacy and OpenDocument office files: converted by LibreOffice, read as DOCX/XLSX/PPTX.

The fixtures are real files: OOXML written with python-docx/openpyxl/python-pptx and
converted by soffice itself into .doc, .odt, .xls, .ods, .ppt and .odp; RTF written by hand;
password-protected files saved by soffice through a Basic macro (its command line cannot
set a password).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from docs import make_pptx, make_xlsx, make_zip_bomb
from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract import legacy
from gristmill.extract.base import Limits, Segment
from gristmill.extract.legacy import WriterExtractor

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "unstructured-example-docs"

needs_soffice = pytest.mark.skipif(
    shutil.which("soffice") is None and not os.environ.get("CI"),
    reason="LibreOffice is not installed (apt-get install libreoffice-writer-nogui "
    "libreoffice-calc-nogui libreoffice-impress-nogui)",
)

TABLE = [["Fruit", "Price"], ["Apple", "1.99"]]
MARKDOWN_TABLE = "| Fruit | Price |\n| --- | --- |\n| Apple | 1.99 |"
WORD_TEXT = f"Overview\n\nQuarterly report text.\n\n{MARKDOWN_TABLE}\n\nEnd of report."

# Written by hand: a Heading 1 style, a paragraph, a two-row table, a paragraph.
RTF = r"""{\rtf1\ansi\deff0{\fonttbl{\f0 Times New Roman;}}
{\stylesheet{\s0 Normal;}{\s1\outlinelevel0 heading 1;}}
{\pard\s1\outlinelevel0 Overview\par}
{\pard Quarterly report text.\par}
\trowd\cellx2000\cellx4000\pard\intbl Fruit\cell Price\cell\row
\trowd\cellx2000\cellx4000\pard\intbl Apple\cell 1.99\cell\row
{\pard End of report.\par}
}
"""

# Saves each "source|filter|target" job of $GM_JOBS with the password "secret".
ENCRYPT_MACRO = """\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1"
 script:language="StarBasic">
Sub Encrypt
  Dim hidden(0) As New com.sun.star.beans.PropertyValue
  hidden(0).Name = &quot;Hidden&quot;
  hidden(0).Value = True
  Dim store(1) As New com.sun.star.beans.PropertyValue
  store(0).Name = &quot;FilterName&quot;
  store(1).Name = &quot;Password&quot;
  store(1).Value = &quot;secret&quot;
  jobs = Split(Environ(&quot;GM_JOBS&quot;), &quot;;&quot;)
  For i = LBound(jobs) To UBound(jobs)
    parts = Split(jobs(i), &quot;|&quot;)
    doc = StarDesktop.loadComponentFromURL(ConvertToURL(parts(0)), &quot;_blank&quot;, 0, hidden())
    store(0).Value = parts(1)
    doc.storeToURL(ConvertToURL(parts(2)), store())
    doc.close(True)
  Next i
  StarDesktop.terminate()
End Sub
</script:module>
"""


def _soffice(profile: Path, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        ["soffice", "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
         *args],
        check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def _word_document(path: Path) -> Path:
    # Not make_docx: its tables end the document, and LibreOffice's .doc export drops a
    # table that nothing follows.
    import docx

    document = docx.Document()
    document.add_heading("Overview", level=1)
    document.add_paragraph("Quarterly report text.")
    table = document.add_table(rows=len(TABLE), cols=len(TABLE[0]))
    for r, row in enumerate(TABLE):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("End of report.")
    document.save(str(path))
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every format as a real file, keyed by suffix ('.doc', ...) or 'encrypted.doc', ..."""
    if shutil.which("soffice") is None:
        pytest.fail("soffice is not on PATH")
    root = tmp_path_factory.mktemp("legacy")
    profile = root / "profile"  # one profile, used by one soffice at a time
    docx = _word_document(root / "report.docx")
    xlsx = make_xlsx(root / "prices.xlsx", {"Prices": TABLE})
    pptx = make_pptx(root / "deck.pptx", [("Roadmap", "Ship the converter")],
                     tables={0: TABLE})
    for source, targets in ((docx, ["doc", "odt"]), (xlsx, ["xls", "ods"]),
                            (pptx, ["ppt", "odp"])):
        for target in targets:
            _soffice(profile, "--convert-to", target, "--outdir", str(root), str(source))
    files = {p.suffix: p for p in root.iterdir() if p.is_file()}
    files[".rtf"] = root / "report.rtf"
    files[".rtf"].write_text(RTF)

    # The profile now exists (a first start would have replaced the module).
    (profile / "user" / "basic" / "Standard" / "Module1.xba").write_text(ENCRYPT_MACRO)
    jobs = [(docx, "writer8", "odt"), (docx, "MS Word 97", "doc"),
            (xlsx, "MS Excel 97", "xls")]
    for _, _, suffix in jobs:
        files[f"encrypted.{suffix}"] = root / f"encrypted.{suffix}"
    _soffice(profile, "macro:///Standard.Module1.Encrypt", env={"GM_JOBS": ";".join(
        f"{source}|{name}|{root / f'encrypted.{suffix}'}" for source, name, suffix in jobs)})
    assert all(path.stat().st_size > 0 for path in files.values())
    return files


def _segments(path: Path, limits: Limits | None = None) -> list[Segment]:
    extractor = {ext: e for e in legacy.EXTRACTORS for ext in e.extensions}[path.suffix.lower()]
    return list(extractor.extract(path, limits or Limits()))


def _leftovers(folder: Path) -> list[psutil.Process]:
    """Running processes that mention ``folder`` on their command line."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(str(folder) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _ipc_socket(option: str) -> Path:
    """The socket soffice.bin listens on for ``-env:UserInstallation=URL``."""
    url = option.removeprefix("-env:UserInstallation=")
    digest = hashlib.md5(url.encode("utf-16-le"), usedforsecurity=False).digest()
    return Path("/tmp", f"OSL_PIPE_{os.getuid()}_SingleOfficeIPC_"
                        + "".join(f"{b:x}" for b in digest))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the extractor's temporary folders (and its soffice processes) findable."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


# --- Each format -----------------------------------------------------------------------


def test_extractors_claim_the_legacy_and_opendocument_suffixes() -> None:
    """Writer, Calc and Impress extractors together claim the seven suffixes, once each."""
    claimed = [ext for extractor in legacy.EXTRACTORS for ext in extractor.extensions]
    assert sorted(claimed) == [".doc", ".odp", ".ods", ".odt", ".ppt", ".rtf", ".xls"]
    assert [(e.name, e.version) for e in legacy.EXTRACTORS] == [
        ("writer", 1), ("calc", 1), ("impress", 1)]


@needs_soffice
@pytest.mark.parametrize("suffix", [".doc", ".odt", ".rtf"])
def test_word_processing_documents_give_headings_text_and_tables(
    fixtures: dict[str, Path], suffix: str, private_tmp: Path
) -> None:
    """A .doc, .odt or .rtf reads like the DOCX: heading-led section, Markdown table."""
    segments = _segments(fixtures[suffix])
    assert [s.heading for s in segments] == ["Overview"]
    assert segments[0].text == WORD_TEXT
    assert not list(private_tmp.iterdir()), "temporary folder left behind"


@needs_soffice
@pytest.mark.parametrize("suffix", [".xls", ".ods"])
def test_spreadsheets_give_a_table_per_sheet(fixtures: dict[str, Path], suffix: str) -> None:
    """A .xls or .ods sheet becomes a Markdown table; page is the sheet number."""
    assert _segments(fixtures[suffix]) == [Segment(MARKDOWN_TABLE, page=1, heading="Prices")]


@needs_soffice
@pytest.mark.parametrize("suffix", [".ppt", ".odp"])
def test_presentations_give_a_segment_per_slide(fixtures: dict[str, Path], suffix: str) -> None:
    """A .ppt or .odp slide gives its title, body text and table; page is the slide."""
    [segment] = _segments(fixtures[suffix])
    assert (segment.page, segment.heading) == (1, "Roadmap")
    assert segment.text == f"Roadmap\n\nShip the converter\n\n{MARKDOWN_TABLE}"


@needs_soffice
def test_stopping_early_still_removes_the_temporary_folder(
    fixtures: dict[str, Path], private_tmp: Path
) -> None:
    """Closing the generator after one segment removes the converted file's folder."""
    segments = WriterExtractor().extract(fixtures[".doc"], Limits())
    next(segments)
    assert list(private_tmp.iterdir())
    segments.close()
    assert not list(private_tmp.iterdir())


# --- Bad input -------------------------------------------------------------------------


@needs_soffice
def test_random_bytes_named_doc_are_refused_as_corrupt(tmp_path: Path) -> None:
    """Bytes LibreOffice would import as a text document of garbage are refused first."""
    path = tmp_path / "noise.doc"
    path.write_bytes(random.Random(0).randbytes(20_000))
    with pytest.raises(ExtractionError, match="corrupt or not a word-processing document"):
        _segments(path)


@needs_soffice
def test_truncated_doc_reports_what_libreoffice_said(
    fixtures: dict[str, Path], tmp_path: Path
) -> None:
    """soffice exits 0 without writing a file: its message becomes the reason."""
    path = tmp_path / "cut.doc"
    path.write_bytes(fixtures[".doc"].read_bytes()[:4096])
    with pytest.raises(ExtractionError) as failure:
        _segments(path)
    assert failure.value.reason == (
        "LibreOffice could not convert it: source file could not be loaded")


@needs_soffice
def test_odf_zip_bomb_is_refused_before_conversion(tmp_path: Path) -> None:
    """OpenDocument files pass the same zip-bomb checks as DOCX before soffice sees them."""
    path = make_zip_bomb(tmp_path / "bomb.odt", member="content.xml")
    with pytest.raises(LimitExceeded, match="zip bomb"):
        _segments(path)


@needs_soffice
@pytest.mark.timeout(60)
@pytest.mark.parametrize("suffix", [".odt", ".doc", ".xls"])
def test_password_protected_documents_get_a_clear_reason(
    fixtures: dict[str, Path], suffix: str
) -> None:
    """Encrypted ODT, DOC and XLS fail at once with a reason, instead of a password prompt."""
    started = time.monotonic()
    with pytest.raises(ExtractionError) as failure:
        _segments(fixtures[f"encrypted{suffix}"])
    assert failure.value.reason == "encrypted document: a password is needed"
    assert time.monotonic() - started < 30


# --- The LibreOffice process -----------------------------------------------------------


@needs_soffice
@pytest.mark.timeout(120)
def test_timeout_kills_every_soffice_process_and_removes_the_folder(
    tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion over the time limit is killed whole (oosplash and soffice.bin)."""
    # ~60 s of work for soffice on a quiet machine, against a limit of 8 s: soffice.bin
    # has started long before the limit (it takes 1-3 s) and the conversion ends long
    # after it, on a machine several times faster or slower than ours.
    path = tmp_path / "long.rtf"
    paragraphs = "".join(f"{{\\pard Paragraph {i} of a long report.\\par}}\n"
                         for i in range(450_000))
    path.write_text("{\\rtf1\\ansi{\\fonttbl{\\f0 Times;}}\n" + paragraphs + "}")
    monkeypatch.setattr(legacy, "CONVERT_TIMEOUT_S", 8.0)
    seen: set[str] = set()
    sockets: set[Path] = set()
    listening: set[Path] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for proc in _leftovers(private_tmp):
                seen.add(proc.info["name"])
                sockets.update(_ipc_socket(part) for part in proc.info["cmdline"]
                               if part.startswith("-env:UserInstallation="))
            listening.update(socket for socket in sockets if socket.exists())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(ExtractionError, match=r"^LibreOffice conversion timed out after 8 s"):
            _segments(path)
    finally:
        done.set()
        watcher.join()
    assert "soffice.bin" in seen
    assert _leftovers(private_tmp) == []
    # Its IPC socket (outside our folder) existed while it ran, and is gone.
    assert listening
    assert not any(socket.exists() for socket in sockets)
    assert [p.name for p in private_tmp.iterdir()] == ["long.rtf"]


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from gristmill.errors import ItemError
from gristmill.extract.base import Limits
from gristmill.extract.legacy import EXTRACTORS

path, soft, hard = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if soft:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard if hard else resource.RLIM_INFINITY))
extractor = next(e for e in EXTRACTORS if path.suffix in e.extensions)
print("ready", flush=True)
sys.stdin.readline()
started = time.time()
try:
    found = {"texts": [s.text for s in extractor.extract(path, Limits())]}
except ItemError as exc:
    found = {"error": exc.reason}
print(json.dumps({**found, "started": started, "ended": time.time()}))
"""


def _start_child(path: Path, soft: int = 0, hard: int = 0) -> subprocess.Popen[str]:
    """A fresh Python process that extracts ``path`` when told to on stdin."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(soft), str(hard)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n", child.stderr.read() if child.stderr else ""
    return child


def _go(child: subprocess.Popen[str]) -> None:
    """Tell ``child`` to start extracting."""
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def _finish(child: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for ``child`` (told to go) and return what it found."""
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return json.loads(out)


@needs_soffice
@pytest.mark.timeout(180)
def test_two_processes_convert_at_the_same_time(fixtures: dict[str, Path]) -> None:
    """Two workers converting at once do not collide (each has its own profile)."""
    children = [_start_child(fixtures[".doc"]), _start_child(fixtures[".xls"])]
    for child in children:  # both start converting now
        _go(child)
    word, sheet = (_finish(child) for child in children)
    assert word["texts"] == [WORD_TEXT]
    assert sheet["texts"] == [MARKDOWN_TABLE]
    assert word["started"] < sheet["ended"] and sheet["started"] < word["ended"]


@needs_soffice
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("soft_mb", "hard_mb"), [(4096, 4096), (320, 0)],
                         ids=["worker-default-cap", "low-soft-cap"])
def test_converts_under_a_worker_address_space_cap(
    fixtures: dict[str, Path], soft_mb: int, hard_mb: int
) -> None:
    """soffice inherits RLIMIT_AS: the worker's default cap is enough, and a low soft cap
    (under which soffice fails) is raised for the child when the hard cap allows."""
    child = _start_child(fixtures[".ppt"], soft_mb * 2**20, hard_mb * 2**20)
    _go(child)
    assert _finish(child)["texts"] == [
        f"Roadmap\n\nShip the converter\n\n{MARKDOWN_TABLE}"]


@needs_soffice
@pytest.mark.timeout(180)
def test_a_cap_too_low_for_soffice_is_named_in_the_reason(fixtures: dict[str, Path]) -> None:
    """When soffice fails under a low cap that cannot be raised, the reason names the
    setting to change."""
    child = _start_child(fixtures[".ppt"], 200 * 2**20, 200 * 2**20)
    _go(child)
    reason = _finish(child)["error"]
    assert reason.startswith("LibreOffice could not convert it: ")
    assert reason.endswith("(it may need more than the worker's 200 MB address-space limit: "
                           "worker_memory_limit_mb)")


def test_missing_libreoffice_is_unsupported_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without soffice on PATH the item is skipped, naming the packages to install."""
    monkeypatch.setenv("PATH", "")
    path = tmp_path / "a.rtf"
    path.write_text(RTF)
    with pytest.raises(Unsupported) as failure:
        _segments(path)
    assert failure.value.reason == (
        "LibreOffice is not installed (no soffice on PATH): install libreoffice-writer-nogui "
        "libreoffice-calc-nogui libreoffice-impress-nogui")


# --- The example corpus ----------------------------------------------------------------


def _corpus_files() -> Iterator[Path]:
    if CORPUS.is_dir():
        suffixes = {ext for e in legacy.EXTRACTORS for ext in e.extensions}
        yield from sorted(p for p in CORPUS.rglob("*") if p.suffix.lower() in suffixes)


_CORPUS = list(_corpus_files())


@needs_soffice
@pytest.mark.corpus
@pytest.mark.skipif(not _CORPUS, reason=f"example corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", _CORPUS or [CORPUS / "absent"],
                         ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_documents_give_text(path: Path) -> None:
    """Every .doc, .xls, .ppt, .rtf and .odt of the example corpus yields text."""
    segments = _segments(path)
    assert segments
    assert all(segment.text.strip() for segment in segments)

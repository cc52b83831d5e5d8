"""A new user's first hour, through the real ``gristmill`` command: without a terminal
(subprocesses with pipes) and on a pseudo-terminal of a chosen width, as a person runs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.cells import cell_len

from backends import ON_POSTGRES, url_for
from gate import Gate
from process_tools import env_for, gristmill, gristmill_json, start

ROOT = Path(__file__).resolve().parent.parent
CI = bool(os.environ.get("CI"))
UNWRITABLE = "cannot be created or written"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LONG_COLLECTION = "customer-support-2024"


def _run_in(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``gristmill ARGS`` run from ``cwd``, no terminal."""
    return subprocess.run([sys.executable, "-m", "gristmill", *args], env=env, cwd=cwd,
                          text=True, capture_output=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _on_terminal(*args: str, env: dict[str, str], columns: int) -> tuple[int, str]:
    """``gristmill ARGS`` on a pseudo-terminal ``columns`` wide: its exit status and
    what it showed (colours stripped)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in env.items()
           if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "gristmill", *args], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process on the terminal's side is gone
                    break
                if not data:
                    break
                shown += data
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = _ANSI.sub("", shown.decode("utf-8", "replace")).replace("\r\n", "\n")
    return code, text


# -- 1. a home that cannot be written ---------------------------------------------------


@contextlib.contextmanager
def _unwritable_home(kind: str, tmp_path: Path) -> Iterator[Path]:
    """A home folder root cannot write either: a file, a path under a file, a folder
    on a read-only mount, an immutable folder."""
    if kind == "file":
        home = tmp_path / "notes.txt"
        home.write_text("a file, not a folder\n")
        yield home
    elif kind == "under-a-file":
        (tmp_path / "notes.txt").write_text("a file, not a folder\n")
        yield tmp_path / "notes.txt" / "home"
    elif kind == "read-only-mount":
        home = tmp_path / "ro"
        home.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                                  str(home)], capture_output=True, text=True)
        if mounted.returncode != 0:
            if CI:
                pytest.fail(f"mount failed under CI: {mounted.stderr}")
            pytest.skip(f"cannot mount a read-only tmpfs here (needs root): {mounted.stderr}")
        try:
            yield home
        finally:
            subprocess.run(["umount", str(home)], check=True)
    else:
        home = tmp_path / "immutable"
        home.mkdir()
        set_flag = subprocess.run(["chattr", "+i", str(home)], capture_output=True, text=True)
        if set_flag.returncode != 0:
            if CI:
                pytest.fail(f"chattr +i failed under CI: {set_flag.stderr}")
            pytest.skip(f"chattr +i does not work on this file system: {set_flag.stderr}")
        try:
            yield home
        finally:
            subprocess.run(["chattr", "-i", str(home)], check=True)


@pytest.mark.parametrize("kind", ["file", "under-a-file", "read-only-mount", "immutable"])
def test_an_unwritable_home_is_one_line_from_every_command(kind: str,
                                                            tmp_path: Path) -> None:
    """ingest, search, status, errors, jobs and doctor all say in one line that the home
    cannot be created or written, naming --home; none prints a traceback."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("the lighthouse keeper\n")
    with _unwritable_home(kind, tmp_path) as home:
        env = env_for(home)
        for args in (["ingest", str(src)], ["search", "lighthouse"], ["status"],
                     ["errors"], ["jobs", "list"], ["doctor"]):
            done = gristmill(*args, env=env)
            said = done.stdout + done.stderr
            assert done.returncode == (1 if args == ["doctor"] else 2), (args, said)
            assert UNWRITABLE in said and "--home" in said, (args, said)
            assert "Traceback" not in said and 'File "' not in said, (args, said)
            if args != ["doctor"]:
                assert said.count("\n") == 1, (args, said)


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_log(
        tmp_path: Path) -> None:
    """A bug inside a command prints one line naming the log; the log has the traceback."""
    home = tmp_path / "home"
    env = env_for(home)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("the lighthouse keeper\n")
    gristmill_json("ingest", str(src), env=env)
    # A stand-in bug: status raises what no code path expects.
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(
        "from gristmill.knowledge_base import KnowledgeBase\n"
        "def broken(self):\n"
        "    raise ZeroDivisionError('the stand-in bug')\n"
        "KnowledgeBase.status = broken\n")
    path = os.pathsep.join(p for p in (str(patch), env.get("PYTHONPATH")) if p)
    done = gristmill("status", env={**env, "PYTHONPATH": path})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    log = home / "logs" / "gristmill.log"
    assert "ZeroDivisionError: the stand-in bug" in done.stderr and str(log) in done.stderr
    logged = log.read_text()
    assert "Traceback (most recent call last)" in logged and "the stand-in bug" in logged


# -- 2. commands that read never create a home -----------------------------------------


def test_read_only_commands_in_an_empty_folder_create_nothing_and_say_why(
        tmp_path: Path) -> None:
    """search, status, errors, jobs and reset in a folder with no knowledge base exit 1
    saying there is none and how to make one, and leave no ./.gristmill (on PostgreSQL:
    no tables) behind."""
    env = {k: v for k, v in env_for(tmp_path / "unused").items() if k != "GRISTMILL_HOME"}
    if ON_POSTGRES:
        env["GRISTMILL_DATABASE_URL"] = url_for(tmp_path / ".gristmill" / "gristmill.db")
    for args in (["search", "lighthouse"], ["status"], ["status", "--json"], ["errors"],
                 ["jobs", "list"], ["jobs", "show", "1"], ["reset", "--failed"]):
        done = _run_in(tmp_path, *args, env=env)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stdout == "" and "No results" not in done.stderr
        assert "no knowledge base" in done.stderr and "gristmill ingest" in done.stderr
        if ON_POSTGRES:
            assert "PostgreSQL database" in done.stderr and "--database" in done.stderr
        else:
            assert str(tmp_path / ".gristmill") in done.stderr and "--home" in done.stderr
        assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
    if ON_POSTGRES:
        import psycopg

        with psycopg.connect(env["GRISTMILL_DATABASE_URL"]) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = "
                                  "current_schema()").fetchone()
        assert tables == (0,)


def test_search_in_an_empty_knowledge_base_says_it_is_empty(tmp_path: Path) -> None:
    """Once a knowledge base exists but holds nothing, search says so besides "No results"."""
    env = env_for(tmp_path / "home")
    empty = tmp_path / "empty"
    empty.mkdir()
    gristmill_json("ingest", str(empty), env=env)
    done = gristmill("search", "lighthouse", env=env)
    assert done.returncode == 0 and done.stdout == "No results.\n"
    assert "is empty" in done.stderr and "gristmill ingest" in done.stderr


# -- 3. tables at 80 and 200 columns, and jobs show ---------------------------------------


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A knowledge base with two jobs: one of a long collection name and a deep source."""
    root = tmp_path_factory.mktemp("tables")
    deep = root / "home-of-someone" / "documents" / "customer support" / "2024 tickets"
    deep.mkdir(parents=True)
    for i in range(3):
        (deep / f"ticket-{i}.txt").write_text(f"ticket {i}: the printer is on fire\n")
    (deep / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    short = root / "notes"
    short.mkdir()
    (short / "a.md").write_text("# Notes\n\nlighthouse\n")
    env = env_for(root / "home")
    gristmill_json("ingest", str(deep), "--collection", LONG_COLLECTION, env=env)
    gristmill_json("ingest", str(short), env=env)
    return {"env": json.dumps(env), "deep": str(deep), "short": str(short)}


def _assert_fits(text: str, columns: int) -> None:
    """The table in ``text`` (its lines: cells apart by two spaces, or the rule) fits
    ``columns`` and cuts nothing short."""
    table = [line for line in text.splitlines() if "  " in line.strip() or "─" in line]
    assert table, text
    for line in table:
        assert cell_len(line) <= columns, f"wider than {columns}: {line!r}"
        assert "…" not in line and "..." not in line, text


@pytest.mark.parametrize("command", [["jobs", "list"], ["status"]])
def test_tables_fit_80_columns_without_cutting_states_or_names(
        two_jobs: dict[str, str], command: list[str]) -> None:
    """On an 80-column terminal, jobs list and status fit: states and collection names
    whole, long columns wrapped or left out, nothing ellipsised."""
    env = json.loads(two_jobs["env"])
    code, shown = _on_terminal(*command, env=env, columns=80)
    assert code == 0, shown
    _assert_fits(shown, 80)
    assert LONG_COLLECTION in shown and "default" in shown
    if command == ["jobs", "list"]:
        assert shown.count("succeeded") == 2
        assert "id" in shown and "state" in shown and "sources" in shown


def test_tables_use_a_wide_terminal_whole(two_jobs: dict[str, str]) -> None:
    """On a 200-column terminal, jobs list shows every column, each source on one line."""
    env = json.loads(two_jobs["env"])
    code, shown = _on_terminal("jobs", "list", env=env, columns=200)
    assert code == 0, shown
    _assert_fits(shown, 200)
    header = shown.splitlines()[0].split()
    assert header == ["id", "state", "collection", "sources", "done", "failed", "chunks",
                      "items/s", "started"]
    assert any(two_jobs["deep"] in line and LONG_COLLECTION in line
               for line in shown.splitlines())
    code, shown = _on_terminal("status", env=env, columns=200)
    assert shown.splitlines()[0].split() == ["collection", "pending", "processing",
                                             "extracted", "indexed", "skipped", "failed",
                                             "chunks"]


def test_tables_without_a_terminal_are_whole_rows(two_jobs: dict[str, str]) -> None:
    """Piped, jobs list and status print every column and each row on one line."""
    env = {k: v for k, v in json.loads(two_jobs["env"]).items() if k != "COLUMNS"}
    listed = gristmill("jobs", "list", env=env).stdout
    assert "…" not in listed and "..." not in listed
    rows = listed.splitlines()
    assert rows[0].split()[-3:] == ["chunks", "items/s", "started"]
    assert any(two_jobs["deep"] in row and LONG_COLLECTION in row and "succeeded" in row
               for row in rows)
    status = gristmill("status", env=env).stdout
    assert any(row.split()[:1] == [LONG_COLLECTION] for row in status.splitlines())


def test_jobs_show_prints_dates_durations_and_plain_lists(two_jobs: dict[str, str]) -> None:
    """jobs show prints local dates, a duration, plain lists and counts: no Python reprs."""
    env = json.loads(two_jobs["env"])
    shown = gristmill("jobs", "show", "1", env=env).stdout
    for repr_mark in ("('", "',)", "{'", "': ", "None"):
        assert repr_mark not in shown, shown
    assert f"sources: {two_jobs['deep']}\n" in shown
    assert f"collection: {LONG_COLLECTION}\n" in shown
    assert re.search(r"^started: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", shown, re.M), shown
    assert re.search(r"^finished: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d", shown, re.M), shown
    assert re.search(r"^items: 4 of 4 done \(3 indexed, 1 failed\)$", shown, re.M), shown


# -- 4. --version -------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    """gristmill --version prints the installed package's version and exits 0."""
    done = gristmill("--version", env=env_for(Path("unused")))
    assert done.returncode == 0 and done.stdout == f"gristmill {version('gristmill')}\n"


# -- 5. Ctrl-C without a terminal ---------------------------------------------------------


def test_ctrl_c_without_a_terminal_says_it_is_stopping_at_once(tmp_path: Path) -> None:
    """SIGINT to an ingest whose stderr is a pipe prints the line saying it is stopping
    (as the live view does on a terminal), not only the log."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"note-{i}.txt").write_text(f"note {i} about the harbour\n")
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(tmp_path / "home", workers="1"))
    proc = start("ingest", str(src), env=env)
    said: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            said.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        gate.admit(1)  # the run loop is going (signal handlers in place) once it is done
        deadline = time.monotonic() + 120
        while not any(job["done"] >= 1 for job in _running_jobs(env)):
            assert proc.poll() is None, "".join(said)
            assert time.monotonic() < deadline, "the first item never finished"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while not any("stopping" in line for line in said) and proc.poll() is None:
            assert time.monotonic() < deadline, f"no stopping line: {said}"
            time.sleep(0.1)
    finally:
        gate.open()
        proc.wait(timeout=120)
        reader.join(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 130
    assert any(line.startswith("stopping on SIGINT: finishing in-flight items") and
               "Ctrl-C again" in line for line in said), said


def _running_jobs(env: dict[str, str]) -> list[dict[str, object]]:
    """The running jobs; none while the ingest has not made its knowledge base yet."""
    listed = gristmill("jobs", "list", "--state", "running", "--json", env=env)
    if listed.returncode == 1 and "no knowledge base" in listed.stderr:
        return []
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


# -- 6. errors keeps identifiers whole ----------------------------------------------------


def test_errors_keeps_digits_in_extensions_and_folds_real_numbers(tmp_path: Path) -> None:
    """errors groups .mp3 and .mp4 apart (digits of a name are no number), and files too
    large by different sizes together."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "song.mp3").write_bytes(b"ID3\x03\x00" + b"\x00" * 64)
    (src / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    (src / "tune.mp3").write_bytes(b"ID3\x04\x00" + b"\x00" * 64)
    for name, size in (("big.txt", 2), ("bigger.txt", 3)):
        with open(src / name, "wb") as file:
            file.truncate(size * 2**20)
    env = env_for(tmp_path / "home", max_file_mb="1")
    gristmill_json("ingest", str(src), env=env)
    groups = {g["pattern"]: g["count"] for g in gristmill_json("errors", env=env)}
    assert groups["unsupported file type .mp3"] == 2, groups
    assert groups["unsupported file type .mp4"] == 1, groups
    assert groups["file is <n> MB, over the <n> MB limit (max_file_mb)"] == 2, groups
    assert not any("<n>" in pattern for pattern in groups if "unsupported" in pattern)


def test_error_patterns_keep_identifiers_with_digits() -> None:
    """utf-8, ISO-8859-1, h264, x86_64 and .7z stay as written; counts still fold."""
    from gristmill.ops.error_report import normalise

    for reason in ("cannot decode as utf-8", "not ISO-8859-1 text", "codec h264",
                   "built for x86_64", "unsupported file type .7z"):
        assert normalise(reason) == reason
    assert normalise("worker killed by SIGKILL (2 times)") == \
        normalise("worker killed by SIGKILL (13 times)") == \
        "worker killed by SIGKILL (<n> times)"
    assert normalise("page 12 of 1,024 is blank") == "page <n> of <n> is blank"


# -- 7. doctor's OCR languages ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tesseract") is None and not CI,
                    reason="Tesseract is not installed (CI installs it)")
def test_doctor_says_which_ocr_languages_it_uses_and_which_are_installed(
        tmp_path: Path) -> None:
    """doctor names the languages in use, then those installed, and osd for what it is."""
    env = env_for(tmp_path / "home")
    checks = {c["name"]: c for c in gristmill_json("doctor", env=env)}
    detail = checks["ocr"]["detail"]
    assert "OCR languages: using eng (installed: " in detail and " of " not in detail
    installed = detail.split("(installed: ", 1)[1]
    assert "eng" in installed
    if "osd" in detail:
        assert "osd is the orientation model" in detail
        assert "osd," not in installed and ", osd" not in installed.split(";")[0]
    assert not (tmp_path / "home").exists()  # doctor only looks


# -- 8. the README's test times -----------------------------------------------------------


def test_readme_gives_the_real_test_time_and_the_fast_path() -> None:
    """The quick start and the development section name `make test-fast`; the quick start
    gives the two passes' real time on 2 cores."""
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    development = readme.split("## Development", 1)[1].split("\n## ", 1)[0]
    assert "make test-fast" in quick and "make test-fast" in development
    assert "eight minutes" not in readme
    # The figure itself is measured, not pinned here: it changes as the suite grows.
    assert re.search(r"about\s+\d+(\.\d+)?\s+minutes\s+on\s+2\s+cores", quick), quick

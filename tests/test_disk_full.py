"""A disk that fills up under an ingest: one line saying what to free, no traceback, the
leases given back, the job left resumable, and a resume that finishes once there is room.

The full disk is a real one: a small tmpfs mounted for the test (root only; CI runs as
root). The unit tests below it need no mount.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gristmill.catalog.sqlite import SqliteDatabase
from gristmill.errors import (
    StoreFull,
    TransientError,
    translate_extraction_error,
    translate_store_error,
)
from gristmill.logfile import QuietRotatingFileHandler
from process_tools import env_for, gristmill

FILES = 60


def _mount(point: Path, size: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here ({done.stderr.strip()}): run as root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB file system of the test's own."""
    point = tmp_path / "disk"
    _mount(point, "8m")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _corpus(folder: Path) -> Path:
    # ~17 MB of distinct text: its chunks and full-text index do not fit in 8 MB.
    folder.mkdir()
    for n in range(FILES):
        words = " ".join(f"w{n}x{i}" for i in range(40_000))
        (folder / f"doc{n:02d}.txt").write_text(words)
    return folder


@pytest.mark.sqlite_only("fills the disk under the SQLite catalog in the home folder")
@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_line_and_a_resumable_job(
        small_disk: Path, tmp_path: Path) -> None:
    """The disk fills mid-run: exit 1 with "disk full in HOME: free N MB and re-run", no
    traceback, the reason in the log, no item left processing, the job interrupted; with
    room again, a resume indexes every item, each once."""
    corpus = _corpus(tmp_path / "corpus")
    home = small_disk / "home"
    env = env_for(home, workers="1")
    done = gristmill("ingest", str(corpus), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(rf"error: disk full in {re.escape(str(home))}: free \d+ MB and "
                        r"re-run", lines[0].strip()), lines
    assert "cannot rollback" not in done.stderr
    log = (home / "logs" / "gristmill.log").read_text()
    assert "disk full in" in log
    status = json.loads(gristmill("status", "--json", env=env).stdout)
    assert status["items"]["processing"] == 0
    assert 0 < status["items"]["indexed"] < FILES
    jobs = json.loads(gristmill("jobs", "list", "--json", env=env).stdout)
    assert [job["state"] for job in jobs] == ["interrupted"]

    subprocess.run(["mount", "-o", "remount,size=128m", str(small_disk)], check=True)
    resumed = gristmill("jobs", "resume", str(jobs[0]["id"]), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = json.loads(gristmill("status", "--json", env=env).stdout)
    assert status["items"]["indexed"] == FILES
    with sqlite3.connect(home / "gristmill.db") as conn:
        assert conn.execute("SELECT count(*) FROM (SELECT item_id, seq FROM chunks "
                            "GROUP BY item_id, seq HAVING count(*) > 1)").fetchone() == (0,)
        assert conn.execute("SELECT sum(chunk_count) FROM items").fetchone()[0] == \
            conn.execute("SELECT count(*) FROM chunks").fetchone()[0]


def test_a_full_database_file_is_store_full_not_a_rollback_error(tmp_path: Path) -> None:
    """SQLite rolls back itself on SQLITE_FULL; the transaction's own ROLLBACK must not
    replace that cause with "cannot rollback - no transaction is active"."""
    db = SqliteDatabase(tmp_path / "home" / "gristmill.db")
    try:
        db.conn.execute("CREATE TABLE blobs (data BLOB)")
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count = {pages + 5}")  # a file that cannot grow
        with pytest.raises(StoreFull) as caught, db.transaction() as txn:
            for _ in range(50):
                txn.execute("INSERT INTO blobs VALUES (?)", (os.urandom(50_000),))
        assert re.fullmatch(rf"disk full in {re.escape(str(tmp_path / 'home'))}: free \d+ "
                            r"MB and re-run", str(caught.value))
        assert not db.conn.in_transaction
        with db.transaction() as txn:  # still usable
            txn.execute("INSERT INTO blobs VALUES (x'00')")
    finally:
        db.close()


def test_a_full_postgres_disk_is_store_full_naming_the_server() -> None:
    """PostgreSQL's disk_full (53100, "could not extend file") is StoreFull too."""
    import psycopg

    error = translate_store_error(
        psycopg.errors.lookup("53100")('could not extend file "base/1/2": No space left on '
                                       "device"), "the PostgreSQL server db.example:5432", 100)
    assert type(error) is StoreFull
    assert str(error) == ("disk full in the PostgreSQL server db.example:5432: free 100 MB "
                          "and re-run")


def test_no_space_for_an_extractors_temporary_files_is_retried() -> None:
    """ENOSPC while extracting is the machine's state, not the file's: the item is
    retried later, not failed for good."""
    error = translate_extraction_error(OSError(errno.ENOSPC, "No space left on device"),
                                       "/data/big.pdf")
    assert isinstance(error, TransientError)


def test_the_log_file_on_a_full_disk_drops_lines_with_one_note(
        small_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log line that cannot be written is dropped, with one note on stderr, not a
    "--- Logging error ---" traceback per line."""
    (small_disk / "filler").write_bytes(b"\0" * (8 * 2**20 - 4096))
    with pytest.raises(OSError):
        (small_disk / "more").write_bytes(b"\0" * 2**20)
    handler = QuietRotatingFileHandler(small_disk / "gristmill.log", encoding="utf-8")
    logger = logging.getLogger("gristmill.test_disk_full")
    logger.addHandler(handler)
    try:
        for n in range(200):
            logger.warning("line %d %s", n, "x" * 200)
    finally:
        logger.removeHandler(handler)
        try:
            handler.close()
        except OSError:
            pass
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.count("cannot write") == 1, err

"""Ingest from any fsspec filesystem, against a real FTP server on loopback (pyftpdlib,
not a mock): the same knowledge base as from a folder, no password in any name, nothing
downloaded twice, changes and deletions, outages, kill -9."""

from __future__ import annotations

import datetime as dt
import ftplib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ftp_server import PASSWORD, USER, FtpServer, running_ftp

from backends import query
from corpus import build
from crashes import crash_by_progress
from docs import make_docx, make_pdf
from gate import Gate
from gristmill.api.problems import ApiError
from gristmill.api.security import resolve_source
from gristmill.config import Settings
from gristmill.errors import ConfigError, ExtractionError, SourceError, TransientError
from gristmill.knowledge_base import KnowledgeBase
from gristmill.sources.base import canonical_root, item_error, open_source
from gristmill.sources.fsspec_source import change_token, strip_userinfo
from gristmill.sources.roots import check_root, inside_url, real_roots
from process_tools import env_for, gristmill


@pytest.fixture()
def ftp(tmp_path: Path) -> Iterator[FtpServer]:
    """An FTP server over a fresh folder, with a user and password."""
    with running_ftp(tmp_path / "served") as server:
        yield server


def _kb(home: Path, **settings: object) -> KnowledgeBase:
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    return KnowledgeBase.open(home, **settings)


def _corpus(folder: Path) -> Path:
    """A text file, a PDF, a DOCX, a file in a subfolder and one in a hidden folder."""
    (folder / "notes").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / "readme.txt").write_text("The granary ledger lists every sack of barley.\n")
    make_pdf(folder / "report.pdf", ["Quarterly milling report: wheat flour output rose.",
                                     "Second page about the millstone maintenance."])
    make_docx(folder / "minutes.docx", ["Minutes of the miller guild meeting.",
                                         "The guild agreed on a new barley price."],
              headings={0: "Guild"})
    (folder / "notes" / "deep.txt").write_text("A nested note about the water wheel.\n")
    (folder / ".cache" / "hidden.txt").write_text("barley in a hidden folder\n")
    return folder


def _items(home: Path, collection: str, root: str) -> dict[str, tuple[Any, ...]]:
    """Each top-level item by its name below ``root``: status, sha256, chunks, size."""
    rows = query(home, "SELECT source, status, sha256, chunk_count, size FROM items "
                 "WHERE collection = ? AND parent_id IS NULL", (collection,))
    return {source.removeprefix(root): tuple(rest) for source, *rest in rows}


def _chunks(home: Path, collection: str, root: str) -> list[tuple[str, str]]:
    rows = query(home, "SELECT i.source, c.text FROM chunks c JOIN items i "
                 "ON i.id = c.item_id WHERE i.collection = ?", (collection,))
    return sorted((source.removeprefix(root), text) for source, text in rows)


def _plain(ftp: FtpServer, path: str = "") -> str:
    """The server's URL without the user and password (how items are named)."""
    return f"ftp://127.0.0.1:{ftp.port}/{path}"


def test_an_ftp_folder_gives_the_same_knowledge_base_as_the_same_files_in_a_folder(
        tmp_path: Path, ftp: FtpServer) -> None:
    """Items, chunks and search results from ftp://user:pw@host/docs/ are those of the
    same files ingested from a folder, named by their URL without the password."""
    folder = _corpus(tmp_path / "src")
    shutil.copytree(folder, ftp.folder / "docs")
    (ftp.folder / "docs2").mkdir()
    (ftp.folder / "docs2" / "elsewhere.txt").write_text("barley outside\n")
    root = _plain(ftp, "docs/")
    home = tmp_path / "home"
    with _kb(home) as kb:
        from_folder = kb.ingest([folder], collection="disk")
        from_ftp = kb.ingest([f"{ftp.url}/docs"], collection="ftp")  # no slash: a folder
        assert from_ftp.failed == 0
        assert from_ftp.discovered.new == from_folder.discovered.new == 4
        disk = _items(home, "disk", str(folder) + "/")
        remote = _items(home, "ftp", root)
        assert remote == disk
        assert sorted(remote) == ["minutes.docx", "notes/deep.txt", "readme.txt", "report.pdf"]
        assert all(status == "indexed" and sha256 for status, sha256, *_ in remote.values())
        assert _chunks(home, "ftp", root) == _chunks(home, "disk", str(folder) + "/")
        for question in ("barley", "millstone maintenance", "water wheel"):
            hits = kb.search(question, collection="ftp")
            expected = kb.search(question, collection="disk")
            assert hits, question
            assert [(h.source.removeprefix(root), h.text) for h in hits] == \
                [(h.source.removeprefix(str(folder) + "/"), h.text) for h in expected]
            assert all(h.source.startswith(root) for h in hits)
        assert [job.spec.sources for job in kb.jobs.recent(None, 10)
                if job.spec.collection == "ftp"] == [(root,)]
    recorded = query(home, "SELECT source, root FROM items") + \
        query(home, "SELECT sources FROM jobs")
    assert PASSWORD not in repr(recorded)
    assert f"{USER}@" not in repr(recorded)


def test_a_rerun_with_no_change_downloads_nothing(tmp_path: Path, ftp: FtpServer) -> None:
    """A second run lists the folder and compares change tokens: no RETR is sent."""
    _corpus(ftp.folder / "docs")
    root = f"{ftp.url}/docs/"
    with _kb(tmp_path / "home") as kb:
        first = kb.ingest([root])
        assert first.items["indexed"] == 4
        sent = len(ftp.retrieved)
        assert sent == 4  # the first run did download each file, once
        dry = kb.ingest([root], dry_run=True)
        assert (dry.discovered.unchanged, dry.discovered.changed) == (4, 0)
        again = kb.ingest([root])
        assert again.discovered.unchanged == 4
        assert again.discovered.new == again.discovered.changed == 0
        assert ftp.retrieved_since(sent) == []


def test_a_changed_file_is_read_again_and_a_deleted_one_loses_its_chunks(
        tmp_path: Path, ftp: FtpServer) -> None:
    """Only the changed file is downloaded again; the deleted one's item and chunks go."""
    docs = _corpus(ftp.folder / "docs")
    root = _plain(ftp, "docs/")
    home = tmp_path / "home"
    with _kb(home) as kb:
        kb.ingest([f"{ftp.url}/docs/"])
        (docs / "readme.txt").write_text("The ledger now counts oat sacks instead, all of "
                                         "them.\n")
        (docs / "notes" / "deep.txt").unlink()
        sent = len(ftp.retrieved)
        report = kb.ingest([f"{ftp.url}/docs/"])
        assert (report.discovered.changed, report.discovered.removed,
                report.discovered.unchanged) == (1, 1, 2)
        assert [Path(name).name for name in ftp.retrieved_since(sent)] == ["readme.txt"]
        assert [h.source for h in kb.search("oat sacks")] == [f"{root}readme.txt"]
        assert kb.search("granary") == []
        assert kb.search("water wheel") == []
        assert sorted(_items(home, "default", root)) == ["minutes.docx", "readme.txt",
                                                         "report.pdf"]


def test_an_unknown_or_refused_url_is_a_clear_source_error(tmp_path: Path,
                                                           ftp: FtpServer) -> None:
    """A scheme fsspec does not know names what to install; file:// is not read (a
    path is given as a path); a missing folder and a refused login say what to check,
    without the password."""
    with pytest.raises(SourceError, match=r"not a source gristmill reads.*fsspec"):
        open_source("nosuch://host/path")
    with pytest.raises(SourceError, match="not a source gristmill reads"):
        open_source(f"file://{tmp_path}")
    with pytest.raises(SourceError, match="does not exist"):
        canonical_root(f"{ftp.url}/missing/")
    with pytest.raises(SourceError, match="refused the login") as refused:
        canonical_root(f"ftp://{USER}:wrong-{PASSWORD}x@127.0.0.1:{ftp.port}/")
    assert "wrong" not in str(refused.value)


def test_failures_are_transient_or_permanent_by_what_they_mean() -> None:
    """Network errors and timeouts are retried; a missing or forbidden file is not; a
    refused login is the run's configuration."""
    url = "ftp://host/docs/a.txt"
    for exc in (ConnectionRefusedError(111, "refused"), TimeoutError("timed out"),
                EOFError(), ftplib.error_temp("421 too many connections")):
        assert isinstance(item_error(exc, url), TransientError), exc
    for exc in (FileNotFoundError("/docs/a.txt"), PermissionError(13, "denied"),
                ftplib.error_perm("550 no such file")):
        error = item_error(exc, url)
        assert isinstance(error, ExtractionError), exc
        assert not isinstance(error, TransientError)
    assert isinstance(item_error(ftplib.error_perm("530 login incorrect"), url), ConfigError)

    # Errors of the network libraries implementations use, judged by their module (the
    # classes are stand-ins: paramiko is not installed here).
    class SSHException(Exception):
        __module__ = "paramiko.ssh_exception"

    class AuthenticationException(SSHException):
        pass

    assert isinstance(item_error(SSHException("connection reset"), url), TransientError)
    assert isinstance(item_error(AuthenticationException("bad key"), url), ConfigError)
    assert type(item_error(ValueError("odd"), url)) is ExtractionError


def test_change_tokens_use_what_each_filesystem_reports() -> None:
    """An ETag, MD5 or generation wins over size and mtime, whatever the field is called;
    mtimes in every spelling become nanoseconds."""
    assert change_token({"ETag": '"abc"'}, 3, 0) == "etag:abc"
    assert change_token({"md5Checksum": "d41d", "mtime": 5}, 3, 0) == "md5checksum:d41d"
    assert change_token({"generation": 17}, 3, 0) == "generation:17"
    assert change_token({"content_md5": bytearray(b"\x01\x02")}, 3, 0) == "content_md5:0102"
    assert change_token({"name": "a"}, 3, 9) == "mtime:3:9"
    from gristmill.sources.fsspec_source import _mtime_ns

    second = 1_700_000_000
    ns = second * 1_000_000_000
    utc = dt.datetime.fromtimestamp(second, dt.UTC)
    for info in ({"mtime": second}, {"mtime": float(second)},
                 {"modificationTime": second * 1000}, {"LastModified": utc},
                 {"updated": utc.isoformat().replace("+00:00", "Z")},
                 {"modify": utc.strftime("%Y%m%d%H%M%S")}):
        assert _mtime_ns(info) == ns, info
    assert _mtime_ns({"name": "x"}) == 0


def test_a_password_is_never_part_of_a_name() -> None:
    """userinfo is stripped from roots and items; scheme and host are lower-cased."""
    assert strip_userinfo("FTP://u:p%40ss@Host:21/Docs/") == "ftp://host:21/Docs/"
    assert strip_userinfo("sftp://host/a") == "sftp://host/a"


def test_source_roots_accept_ftp_prefixes_at_slash_boundaries() -> None:
    """A URL prefix of any scheme (with a port) confines runs and jobs like an s3 one."""
    roots = real_roots(["ftp://127.0.0.1:2121/docs/"])
    assert inside_url("ftp://127.0.0.1:2121/docs/a/b.txt", roots)
    assert not inside_url("ftp://127.0.0.1:2121/docs-old/a.txt", roots)
    assert not inside_url("ftp://127.0.0.1:2122/docs/a.txt", roots)
    assert not inside_url("sftp://127.0.0.1:2121/docs/a.txt", roots)
    check_root("ftp://127.0.0.1:2121/docs/x/", roots)
    with pytest.raises(SourceError):
        check_root("ftp://127.0.0.1:2121/", roots)
    settings = Settings(source_roots="/data:ftp://127.0.0.1:2121/docs/:s3://bucket/")
    assert [str(root) for root in settings.source_roots] == [
        "/data", "ftp://127.0.0.1:2121/docs/", "s3://bucket/"]


def test_a_job_url_is_checked_and_may_not_carry_a_password(
        ftp: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /api/v1/jobs resolves an ftp:// URL under a root, with the login from
    fsspec's configuration (what FSSPEC_FTP_USERNAME and FSSPEC_FTP_PASSWORD set); one
    with a user and password in it is refused without echoing the password."""
    from fsspec import config

    monkeypatch.setitem(config.conf, "ftp", {"username": USER, "password": PASSWORD})
    roots = [_plain(ftp, "docs/")]
    (ftp.folder / "docs" / "2024").mkdir(parents=True)
    assert resolve_source(_plain(ftp, "docs/2024"), roots, remote=True) == \
        _plain(ftp, "docs/2024/")
    with pytest.raises(ApiError) as refused:
        resolve_source(f"{ftp.url}/docs/", roots, remote=True)
    assert refused.value.status == 400
    assert PASSWORD not in str(refused.value.detail)
    with pytest.raises(ApiError) as outside:
        resolve_source(_plain(ftp, "docs"), roots, remote=True)
    assert outside.value.status == 403


@pytest.mark.slow
def test_a_server_stopped_mid_run_gives_transient_failures_that_the_next_run_redoes(
        tmp_path: Path, ftp: FtpServer) -> None:
    """Files that cannot be fetched while the server is down fail as transient, with the
    reason; the next run, with the server back, fetches and indexes them."""
    many = ftp.folder / "many"
    many.mkdir()
    for i in range(80):
        (many / f"{i:03d}.txt").write_text(f"sack number {i} of rye\n")
    home = tmp_path / "home"
    root = f"{ftp.url}/many/"

    def stop_when_listed() -> None:
        # Once every file is in the catalog the listing (one folder) is over: the
        # server goes away while the workers fetch.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = query(home, "SELECT count(*) FROM items", missing_ok=True)
            if rows and rows[0][0] == 80:
                break
            time.sleep(0.005)
        ftp.stop()

    stopper = threading.Thread(target=stop_when_listed)
    try:
        with _kb(home, workers=1, max_attempts=1) as kb:
            stopper.start()
            first = kb.ingest([root])
            stopper.join()
            assert first.failed > 0
            reasons = {reason for _, _, reason in kb.catalog.problems()}
            assert all(f"cannot reach ftp://127.0.0.1:{ftp.port}" in reason
                       for reason in reasons), reasons
            assert PASSWORD not in repr(reasons)
            ftp.start()
            second = kb.ingest([root])
            assert second.discovered.unchanged == 80
            assert second.items["indexed"] == 80
            assert second.failed == 0
    finally:
        stopper.join()
        if not ftp.running:
            ftp.start()


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_ends_as_an_uninterrupted_run(
        tmp_path: Path, ftp: FtpServer) -> None:
    """Runs killed -9 mid-download or mid-extraction, then run again, leave the same
    items and chunks as one uninterrupted run, and no spool file behind."""
    build(ftp.folder / "c", 40, pdf_pages=2)
    root = f"{ftp.url}/c/"
    ref_env = env_for(tmp_path / "ref", workers="2")
    done = gristmill("ingest", root, env=ref_env)
    assert done.returncode == 0, done.stderr
    crash_env = env_for(tmp_path / "crash", workers="2", flush_seconds="0.3")
    kills = crash_by_progress(["ingest", root], crash_env, tmp_path / "crash",
                              Gate(tmp_path / "gate"), kills=3, step=8, seed=4)
    assert kills == 3

    def state(home: Path) -> tuple[object, ...]:
        return (sorted(query(home, "SELECT source, status, sha256, chunk_count FROM items")),
                sorted(query(home, "SELECT i.source, c.seq, c.text FROM chunks c "
                                   "JOIN items i ON i.id = c.item_id")))

    assert state(tmp_path / "crash") == state(tmp_path / "ref")
    assert len(state(tmp_path / "ref")[0]) == 40
    assert list((tmp_path / "crash" / "spool").iterdir()) == []

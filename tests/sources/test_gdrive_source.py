"""Google Drive behind the common Source interface, against the fake Drive server."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docx
import pytest
from gdrive_fake import DOCX, FakeDrive

from gristmill.errors import ExtractionError, LimitExceeded
from gristmill.sources.gdrive import DriveClient, DriveOptions, load_credentials
from gristmill.sources.gdrive_source import GdriveSource
from gristmill.sources.local import Matcher


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    with FakeDrive() as fake:
        yield fake


@pytest.fixture
def connect(tmp_path: Path, drive: FakeDrive) -> Iterator[DriveClient]:
    with connected(tmp_path, drive, "my-drive") as client:
        yield client


def connected(tmp_path: Path, drive: FakeDrive, root: str) -> DriveClient:
    path = tmp_path / "user.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                                "client_secret": "s", "refresh_token": "refresh-1"}))
    return DriveClient(load_credentials(path, drive.token_uri), root,
                       api_endpoint=drive.endpoint, page_size=3, chunk_bytes=4096,
                       backoff=0.01)


def test_entries_are_file_facts_with_change_tokens(tmp_path: Path, drive: FakeDrive) -> None:
    """The listing gives each file's URL, size, mtime and token; patterns see Drive names."""
    folder = drive.folder("Team docs")
    report = drive.file("report final.pdf", b"%PDF-1.4 report", folder)
    drive.file("notes.txt", b"notes", folder)
    plan = drive.google_file("Plan", {DOCX: b"docx bytes"}, folder)
    with connected(tmp_path, drive, folder) as client:
        source = GdriveSource(f"gdrive://{folder}/", client=client)
        assert source.canonical_root() == f"gdrive://{folder}"
        facts = {f.source: f for f in source.entries(Matcher(exclude=("*.txt",)))}
        planned = [f.source for f in source.entries(Matcher(include=("Plan.*",)))]

    assert set(facts) == {f"gdrive://{report}/report%20final.pdf", f"gdrive://{plan}/Plan.docx"}
    pdf = facts[f"gdrive://{report}/report%20final.pdf"]
    assert pdf.size == 15 and pdf.mtime_ns > 0
    assert pdf.change_token == "md5:" + hashlib.md5(b"%PDF-1.4 report").hexdigest()
    assert planned == [f"gdrive://{plan}/Plan.docx"]


def test_local_copy_spools_downloads_and_exports(tmp_path: Path, drive: FakeDrive,
                                                 connect: DriveClient) -> None:
    """An item is spooled (hashed, named with its suffix) and removed after use."""
    data = bytes(range(256)) * 100  # several 4 KiB chunks
    ident = drive.file("data.bin", data)
    document = docx.Document()
    document.add_paragraph("exported")
    document.save(tmp_path / "plan.docx")
    plan = drive.google_file("Plan", {DOCX: (tmp_path / "plan.docx").read_bytes()})
    source = GdriveSource("gdrive://my-drive", client=connect)
    spool = tmp_path / "spool"

    with source.local_copy(f"gdrive://{ident}/data.bin", spool, 10**6) as copy:
        assert copy.path.read_bytes() == data and copy.size == len(data)
        assert copy.sha256 == hashlib.sha256(data).hexdigest()
    assert not copy.path.exists()

    with source.local_copy(f"gdrive://{plan}/Plan.docx", spool, 10**6) as copy:
        assert copy.path.name == "Plan.docx"
        assert [p.text for p in docx.Document(str(copy.path)).paragraphs] == ["exported"]

    with pytest.raises(LimitExceeded), source.local_copy(f"gdrive://{ident}/data.bin",
                                                         spool, 1000):
        pass
    drive.delete(ident)
    with pytest.raises(ExtractionError, match="no longer in Google Drive"), \
            source.local_copy(f"gdrive://{ident}/data.bin", spool, 10**6):
        pass
    assert list(spool.iterdir()) == []


def test_open_streams_the_bytes(drive: FakeDrive, connect: DriveClient) -> None:
    """open() reads the item a chunk at a time, whatever the reader's block size."""
    data = bytes(range(256)) * 100
    ident = drive.file("data.bin", data)
    with GdriveSource("gdrive://my-drive", client=connect).open(f"gdrive://{ident}/x") as f:
        first = f.read(10)
        assert first + f.read() == data


def test_two_threads_list_one_root_at_once(tmp_path: Path, drive: FakeDrive) -> None:
    """Two threads of one process listing the same root with the same settings (two
    runs a library user started, say) each get a whole listing, their requests in flight
    at once: each thread has a client of its own (httplib2, under it, is not
    thread-safe)."""
    folder = drive.folder("Team")
    files = {drive.file(f"note-{i:02d}.txt", f"note {i}".encode(), folder) for i in range(10)}
    path = tmp_path / "user.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                                "client_secret": "s", "refresh_token": "refresh-1"}))
    options = DriveOptions(path, drive.token_uri, drive.endpoint, "office", gdrive_page_size=3,
                           gdrive_max_retries=0, gdrive_retry_backoff=0.01, gdrive_chunk_mb=1,
                           gdrive_timeout=20)

    def list_all() -> set[str]:
        source = GdriveSource(f"gdrive://{folder}", settings=options)
        return {facts.source.split("/")[2] for facts in source.entries(Matcher())}

    assert list_all() == files  # a listing done first, in this thread, as a run would
    before = len(drive.calls("files"))
    # Each thread's first page is held until the other's has come too (or 5 s have
    # passed: one client shared by both would not send the second while the first
    # waits).
    release = drive.hold(lambda seen: seen.path.endswith("/files")
                         and "pageToken" not in seen.params)
    with ThreadPoolExecutor(2) as pool:
        listings = [pool.submit(list_all) for _ in range(2)]
        deadline = time.monotonic() + 5
        while len(drive.calls("files")) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        both_at_once = len(drive.calls("files")) == before + 2
        release.set()
        assert [listing.result(timeout=30) for listing in listings] == [files, files]
    assert both_at_once

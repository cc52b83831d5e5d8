"""The Google Drive source, against the suite's fake Drive server (tests/sources/gdrive_fake.py).

The client is the real ``google-api-python-client`` over real HTTP on 127.0.0.1; only the
server is ours, built to the Drive v3 documentation.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gdrive_fake import DOCX, PDF, FakeDrive

from gristmill.config import Settings
from gristmill.errors import (
    ConfigError,
    CredentialError,
    ExtractionError,
    LimitExceeded,
    SourceError,
    TransientError,
    Unsupported,
)
from gristmill.sources.gdrive import DriveClient, DriveFile, load_credentials, parse_root


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    with FakeDrive() as fake:
        yield fake


_opened: list[DriveClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Each test's clients are closed after it (httplib2 keeps connections open)."""
    yield
    while _opened:
        _opened.pop().close()


def user_credentials(tmp_path: Path, drive: FakeDrive, refresh_token: str = "refresh-1"
                     ) -> Path:
    path = tmp_path / "user.json"
    path.write_text(json.dumps({
        "type": "authorized_user", "client_id": "client-1.apps.googleusercontent.com",
        "client_secret": "secret", "refresh_token": refresh_token}))
    return path


def client(tmp_path: Path, drive: FakeDrive, root: str = "my-drive", **options: Any
           ) -> DriveClient:
    options = {"page_size": 2, "backoff": 0.01, **options}
    credentials = load_credentials(user_credentials(tmp_path, drive), drive.token_uri)
    opened = DriveClient(credentials, root, api_endpoint=drive.endpoint, **options)
    _opened.append(opened)
    return opened


def paths(files: Iterator[DriveFile]) -> set[str]:
    return {f.path for f in files}


def docx_bytes(text: str) -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_listing_walks_nested_folders_page_by_page(tmp_path: Path, drive: FakeDrive) -> None:
    """Every file under the root is listed with its path, across pages and nested folders."""
    top = drive.folder("Reports")
    inner = drive.folder("2024", top)
    for n in range(5):
        drive.file(f"r{n}.txt", b"x" * n, top)
    ident = drive.file("q1 / summary.pdf", b"%PDF-1.4", inner)
    drive.file("outside.txt", b"o")  # in My Drive, beside the root folder
    trashed = drive.file("old.txt", b"old", top)
    drive.trash(trashed)

    found = list(client(tmp_path, drive, top).walk())

    assert paths(iter(found)) == {f"r{n}.txt" for n in range(5)} | {"2024/q1%20%2F%20summary.pdf"}
    pdf = next(f for f in found if f.id == ident)
    assert pdf.url == f"gdrive://{ident}/2024/q1%20%2F%20summary.pdf"
    assert pdf.size == 8 and pdf.change_token == f"md5:{hashlib.md5(b'%PDF-1.4').hexdigest()}"
    # Six children (a trashed one left out) at two a page: it followed nextPageToken.
    assert len([s for s in drive.calls("files") if f"'{top}' in parents" in s.params["q"]]) == 3


def test_my_drive_and_shared_drive_roots(tmp_path: Path, drive: FakeDrive) -> None:
    """my-drive lists My Drive; a shared drive's id lists that drive (and only it)."""
    drive.file("mine.txt", b"m")
    shared = drive.shared_drive("Team")
    drive.file("team.txt", b"t", drive.folder("Docs", shared))

    assert paths(client(tmp_path, drive).walk()) == {"mine.txt"}
    assert paths(client(tmp_path, drive, shared).walk()) == {"Docs/team.txt"}


def test_roots_are_parsed_or_refused() -> None:
    """gdrive:// roots name one id; anything else says how to write one."""
    assert parse_root("gdrive://my-drive") == "my-drive"
    assert parse_root("gdrive://1AbC_d-9/") == "1AbC_d-9"
    for bad in ("gdrive://", "s3://b/k", "gdrive://a/b"):
        with pytest.raises(ConfigError, match="gdrive://<folderId>"):
            parse_root(bad)


def test_a_missing_root_is_a_source_error(tmp_path: Path, drive: FakeDrive) -> None:
    """A root id Drive does not know ends the listing with a reason."""
    with pytest.raises(SourceError, match="HTTP 404 notFound"):
        list(client(tmp_path, drive, "1Fnothere").walk())


def test_shortcuts_are_followed_once_and_cycles_end(tmp_path: Path, drive: FakeDrive) -> None:
    """A shortcut to a file yields the target; shortcuts to folders are walked once, no loop."""
    root = drive.folder("Root")
    elsewhere = drive.folder("Elsewhere")
    target = drive.file("target.txt", b"t", elsewhere)
    drive.shortcut("link to target", target, root)
    other = drive.folder("Other")
    drive.file("o.txt", b"o", other)
    drive.shortcut("link to other", other, root)
    drive.shortcut("back to root", root, other)  # Root -> Other -> Root: a cycle
    drive.shortcut("self", root, root)
    gone = drive.file("gone.txt", b"g", elsewhere)
    drive.shortcut("dangling", gone, root)
    drive.delete(gone)
    gone_folder = drive.folder("Gone folder")
    drive.shortcut("dangling folder", gone_folder, root)
    drive.delete(gone_folder)

    found = list(client(tmp_path, drive, root).walk())

    assert sorted(f.path for f in found) == ["link%20to%20other/o.txt", "link%20to%20target"]
    assert next(f for f in found if f.path == "link%20to%20target").id == target


def test_google_docs_are_exported_as_docx_or_pdf(tmp_path: Path, drive: FakeDrive) -> None:
    """A Google Doc is listed as Name.docx and exported to a real DOCX (or PDF if configured)."""
    pdf = b"%PDF-1.4 fake export"
    ident = drive.google_file("Plan", {DOCX: docx_bytes("The wombat plan"), PDF: pdf})

    office = client(tmp_path, drive)
    (plan,) = office.walk()
    assert plan.path == "Plan.docx" and plan.export_mime == DOCX
    out = io.BytesIO()
    office.download(plan, out)
    out.seek(0)
    assert [p.text for p in docx.Document(out).paragraphs] == ["The wombat plan"]
    assert drive.calls(f"files/{ident}/export", mimeType=DOCX)

    as_pdf = client(tmp_path, drive, export_format="pdf")
    (plan_pdf,) = as_pdf.walk()
    assert plan_pdf.path == "Plan.pdf" and plan_pdf.change_token != plan.change_token
    out = io.BytesIO()
    as_pdf.download(plan_pdf, out)
    assert out.getvalue() == pdf


def test_export_limits_and_unexportable_types(tmp_path: Path, drive: FakeDrive) -> None:
    """Over Drive's 10 MB export limit, and Google types with no export, fail their item."""
    drive.google_file("Huge", {DOCX: b"x" * (10 * 2**20 + 1)})
    drive.file("Form", b"", mime="application/vnd.google-apps.form")
    source = client(tmp_path, drive)
    files = {f.name: f for f in source.walk()}
    with pytest.raises(LimitExceeded, match="10 MB"):
        source.download(files["Huge"], io.BytesIO())
    with pytest.raises(Unsupported, match="cannot export"):
        source.download(files["Form"], io.BytesIO())


def test_download_streams_in_ranged_chunks(tmp_path: Path, drive: FakeDrive) -> None:
    """A file is fetched in chunk-sized Range requests straight into the output."""
    data = bytes(range(256)) * 12_000  # ~3 MB
    ident = drive.file("big.bin", data)
    source = client(tmp_path, drive, chunk_bytes=2**20)
    (big,) = source.walk()
    out = io.BytesIO()
    assert source.download(big, out) == len(data)
    assert out.getvalue() == data
    ranges = [s.headers["range"] for s in drive.calls(f"files/{ident}", alt="media")]
    assert ranges == ["bytes=0-1048575", "bytes=1048576-2097151", "bytes=2097152-3145727"]


def test_download_size_cap(tmp_path: Path, drive: FakeDrive) -> None:
    """A file over max_bytes is refused before or while downloading, never held whole."""
    drive.file("big.bin", b"x" * 5000)
    source = client(tmp_path, drive, chunk_bytes=1024)
    (big,) = source.walk()
    with pytest.raises(LimitExceeded):
        source.download(big, io.BytesIO(), max_bytes=4000)
    unsized = DriveFile(big.id, big.name, big.mime_type, big.path)  # size unknown
    with pytest.raises(LimitExceeded):
        source.download(unsized, io.BytesIO(), max_bytes=4000)
    assert len(drive.calls(f"files/{big.id}", alt="media")) == 4  # stopped at the cap


def test_a_deleted_file_fails_its_item(tmp_path: Path, drive: FakeDrive) -> None:
    """A file deleted between listing and download is a permanent item error."""
    ident = drive.file("soon gone.txt", b"bye")
    source = client(tmp_path, drive)
    (gone,) = source.walk()
    drive.delete(ident)
    with pytest.raises(ExtractionError, match="no longer in Google Drive"):
        source.download(gone, io.BytesIO())


def test_changes_feed_reports_adds_edits_trash_and_deletion(tmp_path: Path,
                                                            drive: FakeDrive) -> None:
    """changes.list from a saved token: what changed under the root, deletions included."""
    root = drive.folder("Root")
    sub = drive.folder("Sub", root)
    edited = drive.file("edited.txt", b"v1", sub)
    trashed = drive.file("trashed.txt", b"t", root)
    deleted = drive.file("deleted.txt", b"d", root)
    moved_out = drive.file("moved.txt", b"m", root)
    drive.file("untouched.txt", b"u", root)
    source = client(tmp_path, drive, root)
    token = source.start_token()
    assert len(list(source.walk())) == 5

    added = drive.file("added.txt", b"new", sub)
    drive.update(edited, b"v2")
    drive.trash(trashed)
    drive.delete(deleted)
    away = drive.folder("Away")
    drive.update(moved_out, parent=away)
    unrelated = drive.file("unrelated.txt", b"x")  # outside the root: never a file

    pages = list(source.changes(token))
    assert [p.complete for p in pages] == [False] * (len(pages) - 1) + [True]
    assert len(pages) > 1  # two changes a page
    changes = {c.file_id: c for p in pages for c in p.changes}
    assert {i: c.file.path for i, c in changes.items() if c.file} == {
        added: "Sub/added.txt", edited: "Sub/edited.txt"}
    assert changes[edited].file is not None
    assert changes[edited].file.change_token == f"md5:{hashlib.md5(b'v2').hexdigest()}"
    # Gone, or outside the root (the caller holds no items for those: nothing to drop).
    assert {i for i, c in changes.items() if c.file is None} == {
        trashed, deleted, moved_out, unrelated, away}
    assert changes[away].folder and not changes[moved_out].folder

    # The final page's token starts the next read: nothing new, nothing reported.
    again = list(source.changes(pages[-1].token))
    assert [c for p in again for c in p.changes] == [] and again[-1].complete


def test_a_folder_moved_in_brings_its_files(tmp_path: Path, drive: FakeDrive) -> None:
    """A folder moved under the root is walked; one trashed is reported gone as a folder."""
    root = drive.folder("Root")
    outside = drive.folder("Outside")
    inner = drive.file("inner.txt", b"i", outside)
    leaving = drive.folder("Leaving", root)
    source = client(tmp_path, drive, root)
    token = source.start_token()
    drive.update(outside, parent=root)
    drive.trash(leaving)

    changes = [c for p in source.changes(token) for c in p.changes]
    assert [(c.file_id, c.file.path) for c in changes if c.file] == [(inner, "Outside/inner.txt")]
    assert [(c.file_id, c.folder) for c in changes if c.file is None] == [(leaving, True)]


@pytest.mark.parametrize(("status", "reason"), [
    (429, "rateLimitExceeded"), (403, "rateLimitExceeded"), (403, "userRateLimitExceeded"),
    (503, "backendError")])
def test_quota_and_server_errors_are_retried(tmp_path: Path, drive: FakeDrive, status: int,
                                             reason: str) -> None:
    """429, 403 rate limits and 5xx are retried with backoff, listing and downloading."""
    drive.file("a.txt", b"aaa")
    drive.fail(status, reason, times=2)
    source = client(tmp_path, drive)
    (a,) = source.walk()
    drive.fail(status, reason, times=2, retry_after="0")
    out = io.BytesIO()
    source.download(a, out)
    assert out.getvalue() == b"aaa"
    assert len([s for s in drive.seen if s.params.get("alt") == "media"]) == 3


def test_refusals_are_not_retried_and_exhausted_retries_say_so(tmp_path: Path,
                                                               drive: FakeDrive) -> None:
    """A plain 403 fails at once; quota errors past the retries fail with a clear reason."""
    drive.file("a.txt", b"aaa")
    source = client(tmp_path, drive, max_retries=2)
    (a,) = source.walk()
    before = len(drive.seen)
    drive.fail(403, "forbidden")
    with pytest.raises(SourceError, match="403 forbidden: check that the credentials"):
        list(source.walk())
    assert len(drive.seen) == before + 1  # asked once, not retried
    drive.fail(429, "rateLimitExceeded", times=3)
    with pytest.raises(TransientError, match="429 rateLimitExceeded after the retries"):
        source.download(a, io.BytesIO())
    drive.fail(503, times=3)
    with pytest.raises(SourceError, match="run again later"):
        list(client(tmp_path, drive, max_retries=2).walk())


def test_the_token_refreshes_during_a_long_listing(tmp_path: Path) -> None:
    """Access tokens that expire every few requests: the listing carries on, refreshing."""
    with FakeDrive(token_uses=3) as drive:
        folder = drive.folder("Many")
        for n in range(20):
            drive.file(f"f{n:02d}.txt", b"x", folder)
        found = list(client(tmp_path, drive, folder).walk())
    assert len(found) == 20
    assert drive.token_grants >= 4  # 11 requests, 3 per token


def test_a_token_past_its_expiry_is_refreshed_before_use(tmp_path: Path) -> None:
    """A token Drive says expires soon is renewed before the request, not after a 401."""
    with FakeDrive(expires_in=60) as drive:
        drive.file("a.txt", b"a")
        list(client(tmp_path, drive).walk())
    # google-auth renews a token within minutes of its expiry: one per request here.
    assert drive.token_grants == len(drive.seen) == 2


def test_service_account_credentials(tmp_path: Path) -> None:
    """A service-account key signs a JWT grant the token endpoint checks."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    with FakeDrive(service_account_key=public.decode()) as drive:
        drive.file("a.txt", b"a")
        path = tmp_path / "robot.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "p", "private_key_id": "k1",
            "private_key": private, "client_email": "robot@p.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": drive.token_uri}))
        with DriveClient(load_credentials(path), "my-drive",
                         api_endpoint=drive.endpoint) as source:
            assert paths(source.walk()) == {"a.txt"}
        assert drive.token_grants == 1


def test_revoked_credentials_and_bad_files(tmp_path: Path, drive: FakeDrive) -> None:
    """A revoked refresh token, a missing or foreign credentials file: each says what to do."""
    revoked = user_credentials(tmp_path, drive, refresh_token="revoked")
    source = DriveClient(load_credentials(revoked, drive.token_uri), "my-drive",
                         api_endpoint=drive.endpoint)
    _opened.append(source)
    with pytest.raises(CredentialError, match="renew"):
        list(source.walk())
    with pytest.raises(ConfigError, match="GRISTMILL_GDRIVE_CREDENTIALS_FILE"):
        load_credentials(tmp_path / "missing.json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"type": "external_account"}')
    with pytest.raises(ConfigError, match="'external_account'"):
        load_credentials(foreign)


def test_client_from_settings(tmp_path: Path, drive: FakeDrive,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The gdrive_* settings configure the client; without credentials it says which to set."""
    monkeypatch.setenv("GRISTMILL_GDRIVE_API_ENDPOINT", drive.endpoint)
    monkeypatch.setenv("GRISTMILL_GDRIVE_EXPORT_FORMAT", "pdf")
    monkeypatch.setenv("GRISTMILL_GDRIVE_TOKEN_URI", drive.token_uri)
    with pytest.raises(ConfigError, match="GRISTMILL_GDRIVE_CREDENTIALS_FILE"):
        DriveClient.from_settings(Settings.load(home=tmp_path / "kb"), "gdrive://my-drive")
    monkeypatch.setenv("GRISTMILL_GDRIVE_CREDENTIALS_FILE",
                       str(user_credentials(tmp_path, drive)))
    drive.google_file("Plan", {PDF: b"%PDF"})
    with DriveClient.from_settings(Settings.load(home=tmp_path / "kb"),
                                   "gdrive://my-drive") as source:
        assert paths(source.walk()) == {"Plan.pdf"}


def test_an_unreachable_drive_is_a_transient_listing_failure(tmp_path: Path) -> None:
    """Nothing listening (the token endpoint included): retried, then a run-again reason."""
    with FakeDrive() as drive:
        pass  # stopped: its port now refuses connections
    with pytest.raises(SourceError, match="run again later"):
        list(client(tmp_path, drive, max_retries=1).walk())


def test_changes_of_a_shared_drive(tmp_path: Path, drive: FakeDrive) -> None:
    """A shared drive's feed has that drive's changes, placed under its folders."""
    shared = drive.shared_drive("Team")
    docs = drive.folder("Docs", shared)
    source = client(tmp_path, drive, shared)
    token = source.start_token()
    added = drive.file("team.txt", b"t", docs)
    drive.file("mine.txt", b"m")  # My Drive: another feed

    changes = [c for p in source.changes(token) for c in p.changes]
    assert [(c.file_id, c.file.path) for c in changes if c.file] == [(added, "Docs/team.txt")]
    assert all(s.params.get("driveId") == shared for s in drive.calls("changes"))

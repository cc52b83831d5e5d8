"""The one source interface: names, local folders through it, spool files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gristmill.errors import LimitExceeded, SourceError
from gristmill.sources import Matcher, walk
from gristmill.sources.base import (
    LocalSource,
    canonical_root,
    is_remote,
    open_source,
    relative_name,
    spool,
    sweep_spool,
)
from gristmill.sources.s3 import S3Source, parse_url


def test_urls_are_remote_and_paths_are_not() -> None:
    """A URL with a scheme is remote; absolute, relative and drive paths are local."""
    assert is_remote("s3://bucket/prefix/")
    assert is_remote("gdrive://root")
    assert not is_remote("/data/s3:/x")
    assert not is_remote("docs/report.pdf")
    assert not is_remote("C:\\docs")
    assert not is_remote(Path("s3://bucket"))  # a Path has lost the URL's //


def test_roots_have_one_spelling_and_a_bad_url_is_a_source_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders canonicalise as today, prefixes end in /; a malformed s3:// URL names
    what is wrong."""
    monkeypatch.chdir(tmp_path)
    assert canonical_root("docs") == str(tmp_path / "docs")
    assert S3Source("s3://bucket", client=None).canonical_root() == "s3://bucket/"
    assert S3Source("s3://bucket/x/", client=None).canonical_root() == "s3://bucket/x/"
    with pytest.raises(SourceError, match="not a valid bucket name"):
        parse_url("s3://ab/prefix/")
    with pytest.raises(SourceError, match="not a source gristmill reads"):
        open_source("nosuch://host/path")


def test_names_below_a_root_are_what_patterns_match() -> None:
    """Include/exclude patterns see the same relative name for a key as for a file."""
    assert relative_name("s3://b1/docs/a/x.pdf", "s3://b1/docs/") == "a/x.pdf"
    assert relative_name("s3://b1/one.pdf", "s3://b1/one.pdf") == "one.pdf"
    assert relative_name("/data/docs/a/x.pdf", "/data/docs") == "a/x.pdf"


def test_a_local_source_lists_what_the_walk_lists(tmp_path: Path) -> None:
    """LocalSource is the folder walk: same entries, same size and mtime tokens, and the
    file itself as its local copy (nothing is copied)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "b.md").write_text("beta")
    source = LocalSource(str(tmp_path))
    matcher = Matcher(exclude=("*.md",))
    assert list(source.entries(matcher)) == list(walk(tmp_path, matcher))
    with source.local_copy(str(tmp_path / "a.txt"), tmp_path / "spool", 10) as copy:
        assert copy.path == tmp_path / "a.txt"
    with source.open(str(tmp_path / "a.txt")) as fh:
        assert fh.read() == b"alpha"
    assert isinstance(open_source(str(tmp_path)), LocalSource)


def test_a_spool_file_is_hashed_capped_and_always_removed(tmp_path: Path) -> None:
    """The copy keeps the key's suffix, carries its sha256, and is gone after the
    context, also when the stream is over the cap."""
    import hashlib

    blocks = [b"x" * 1000, b"y" * 1000]
    with spool(iter(blocks), tmp_path, "dir/report.PDF", 4000) as copy:
        assert copy.path.name == "report.PDF"
        assert copy.sha256 == hashlib.sha256(b"".join(blocks)).hexdigest()
        assert copy.size == 2000
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LimitExceeded, match="max_file_mb"), \
            spool(iter(blocks), tmp_path, "big.txt", 1500):
        pass
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_removes_copies_of_dead_processes_only(tmp_path: Path) -> None:
    """A copy left by a killed worker goes; one of a live process stays."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"{dead}-abc").mkdir()
    (tmp_path / f"{dead}-abc" / "x.pdf").write_bytes(b"%PDF")
    (tmp_path / f"{os.getpid()}-def").mkdir()
    sweep_spool(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{os.getpid()}-def"]


def test_botocore_errors_become_item_errors_by_who_must_act() -> None:
    """Busy or unreachable stores are transient, gone or refused objects permanent,
    missing credentials the run's configuration; listings say what to check."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    from gristmill.errors import ConfigError, ExtractionError, TransientError
    from gristmill.sources.s3 import item_error, listing_error

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    url = "s3://bucket/key.pdf"
    assert isinstance(item_error(client_error("SlowDown", 503), url), TransientError)
    assert isinstance(item_error(client_error("WeirdGatewayThing", 502), url),
                      TransientError)
    assert isinstance(item_error(EndpointConnectionError(endpoint_url="http://x"), url),
                      TransientError)
    assert isinstance(item_error(OSError(28, "No space left on device"), url),
                      TransientError)
    gone = item_error(client_error("NoSuchKey", 404), url)
    assert isinstance(gone, ExtractionError) and "no longer in the bucket" in str(gone)
    denied = item_error(client_error("AccessDenied", 403), url)
    assert isinstance(denied, ExtractionError) and "s3:GetObject" in str(denied)
    assert isinstance(item_error(NoCredentialsError(), url), ConfigError)
    assert "no bucket" in str(listing_error(client_error("NoSuchBucket", 404),
                                            "s3://bucket/docs/"))
    assert "s3:ListBucket" in str(listing_error(client_error("AccessDenied", 403),
                                                "s3://bucket/docs/"))
    assert "AWS_ACCESS_KEY_ID" in str(listing_error(NoCredentialsError(), "s3://bucket/"))

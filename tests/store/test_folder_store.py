"""The folder store of originals: layout, idempotent puts, refused wrong bytes, checked
read-back, and a put killed -9 mid-copy leaving no object under a wrong name."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from store_helpers import folder_objects, sha256_of

from gristmill.config import Settings
from gristmill.errors import ConfigError, TransientError
from gristmill.store import DigestMismatch, FolderStore, object_key, open_store, store_error

DATA = b"The granary ledger lists every sack of barley.\n"
SHA = sha256_of(DATA)


class _Unread(io.BytesIO):
    """A source that must not be read (the object is there already)."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the source was read although the object was stored")


def test_the_key_is_the_sha256_below_two_folders_of_its_first_hex_pairs() -> None:
    """``ab/cd/<sha256>``; anything but 64 lower-case hex digits is refused."""
    assert object_key(SHA) == f"{SHA[:2]}/{SHA[2:4]}/{SHA}"
    for bad in ("abc", SHA.upper(), SHA[:-1] + "g", "../" + SHA[3:]):
        with pytest.raises(ValueError):
            object_key(bad)


def test_put_stores_the_bytes_once_and_has_and_local_copy_find_them(tmp_path: Path) -> None:
    """The first put writes ``root/ab/cd/<sha256>`` with the bytes; a second writes and
    reads nothing; a local copy has the bytes, the sha256 and the name asked for."""
    store = FolderStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    assert not store.has(SHA)
    assert store.put(SHA, io.BytesIO(DATA), len(DATA)) is True
    path = tmp_path / "store" / SHA[:2] / SHA[2:4] / SHA
    assert path.read_bytes() == DATA
    assert store.has(SHA)
    before = path.stat().st_mtime_ns
    assert store.put(SHA, _Unread(), len(DATA)) is False
    assert path.stat().st_mtime_ns == before
    with store.local_copy(SHA, tmp_path / "spool", "ledger.txt", 1 << 20) as copy:
        assert copy.path.name == "ledger.txt"
        assert copy.path.read_bytes() == DATA
        assert (copy.size, copy.sha256) == (len(DATA), SHA)
    assert not copy.path.exists()
    assert list(folder_objects(tmp_path / "store")) == [SHA]
    assert list((tmp_path / "store" / ".incoming").iterdir()) == []


def test_an_empty_original_is_stored_too(tmp_path: Path) -> None:
    """Zero bytes have a sha256 like any other."""
    store = FolderStore(tmp_path)
    empty = sha256_of(b"")
    assert store.put(empty, io.BytesIO(b""), 0)
    assert (tmp_path / object_key(empty)).read_bytes() == b""


@pytest.mark.parametrize("given", [DATA + b"more", DATA[:-1], DATA.replace(b"barley", b"oats")])
def test_bytes_that_are_not_the_sha256_are_refused_and_nothing_is_stored(
        tmp_path: Path, given: bytes) -> None:
    """Longer, shorter or different bytes than the name promises: DigestMismatch, no
    object, no temporary file."""
    store = FolderStore(tmp_path)
    with pytest.raises(DigestMismatch):
        store.put(SHA, io.BytesIO(given), len(given))
    assert not store.has(SHA)
    assert folder_objects(tmp_path) == {}
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_bytes_appended_past_the_size_are_not_stored(tmp_path: Path) -> None:
    """A file appended to after it was hashed still begins with the bytes hashed: those
    (``size`` of them) are what is stored."""
    store = FolderStore(tmp_path)
    assert store.put(SHA, io.BytesIO(DATA + b"appended later"), len(DATA))
    assert (tmp_path / object_key(SHA)).read_bytes() == DATA


def test_a_damaged_object_is_refused_when_read_back(tmp_path: Path) -> None:
    """A stored object whose bytes changed on disk (bit rot, a hand edit) is not handed
    out: the copy is hashed as it is made."""
    store = FolderStore(tmp_path)
    store.put(SHA, io.BytesIO(DATA), len(DATA))
    (tmp_path / object_key(SHA)).write_bytes(DATA.replace(b"barley", b"oats!!"))
    with pytest.raises(DigestMismatch), \
            store.local_copy(SHA, tmp_path / "spool", "ledger.txt", 1 << 20):
        pass
    assert list((tmp_path / "spool").iterdir()) == []  # the bad copy is removed


def test_a_missing_store_folder_is_not_created_and_is_a_config_error(tmp_path: Path) -> None:
    """A NAS not mounted must not fill its mount point on the local disk: the folder must
    exist, and its absence is the configuration's, saying what to fix."""
    missing = tmp_path / "nas"
    store = FolderStore(missing)
    with pytest.raises(FileNotFoundError) as caught:
        store.put(SHA, io.BytesIO(DATA), len(DATA))
    assert not missing.exists()
    error = store_error(caught.value, store.location)
    assert isinstance(error, ConfigError)
    assert "does not exist" in str(error) and "store" in str(error)


def test_other_disk_failures_are_sorted_by_who_must_act(tmp_path: Path) -> None:
    """A full or read-only disk is the configuration's (the job pauses); an I/O hiccup is
    transient (the item is retried)."""
    import errno

    where = str(tmp_path)
    assert isinstance(store_error(OSError(errno.ENOSPC, "No space left"), where),
                      ConfigError)
    assert isinstance(store_error(OSError(errno.EROFS, "Read-only"), where), ConfigError)
    assert isinstance(store_error(OSError(errno.EIO, "I/O error"), where), TransientError)


def test_the_setting_takes_a_folder_or_an_s3_url_and_refuses_other_urls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``store``: an s3:// URL as written, a folder made absolute (relative to the home
    in the home's gristmill.toml), any other URL refused naming the setting."""
    assert Settings.load(home=tmp_path, store="s3://bucket/objects/").store == \
        "s3://bucket/objects/"
    (tmp_path / "gristmill.toml").write_text('store = "originals"\n')
    monkeypatch.chdir(tmp_path.parent)
    assert Settings.load(home=tmp_path).store == str(tmp_path / "originals")
    assert isinstance(open_store(str(tmp_path)), FolderStore)
    for bad in ("https://example.com/objects/", "gs://bucket/objects/", "s3://a/"):
        with pytest.raises(ConfigError, match="'store'"):
            Settings.load(home=tmp_path, store=bad)
    with pytest.raises(ConfigError, match="s3://"):
        open_store("ftp://host/objects/")


_SLOW_PUT = textwrap.dedent("""
    import io, sys, time
    from pathlib import Path
    from gristmill.store import FolderStore

    class Slow(io.RawIOBase):
        # 64 MB of one byte, in 1 MB reads with a pause: the copy takes seconds.
        def __init__(self):
            self.left = 64 << 20
        def readable(self):
            return True
        def read(self, n=-1):
            n = min(self.left, 1 << 20 if n is None or n < 0 else n)
            self.left -= n
            time.sleep(0.05)
            return b"x" * n

    FolderStore(Path(sys.argv[1])).put(sys.argv[2], Slow(), 64 << 20)
""")


@pytest.mark.slow
def test_a_put_killed_mid_copy_leaves_no_object_and_a_later_put_sweeps_its_file(
        tmp_path: Path) -> None:
    """kill -9 while the bytes are copied: only a temporary file is left, never an object
    under the sha256; the next put of this host removes it."""
    import hashlib

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    sha = hashlib.sha256(b"x" * (64 << 20)).hexdigest()
    process = subprocess.Popen([sys.executable, "-c", _SLOW_PUT, str(store_dir), sha],
                               start_new_session=True)
    incoming = store_dir / ".incoming"
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 4 << 20 for p in incoming.glob("*.part")) \
            if incoming.exists() else True:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert folder_objects(store_dir) == {}
    assert len(list(incoming.glob("*.part"))) == 1
    store = FolderStore(store_dir)
    assert not store.has(sha)
    assert store.put(SHA, io.BytesIO(DATA), len(DATA))
    assert list(incoming.iterdir()) == []
    assert list(folder_objects(store_dir)) == [SHA]

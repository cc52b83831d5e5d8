"""Zip archives as containers: members listed, unpacked one at a time, bombs refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from docs import make_zip_bomb
from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.archive import ZipExtractor
from gristmill.extract.base import Container, Limits, Member

ZIP = ZipExtractor()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.mkdir("empty-folder")
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_is_a_container_listing_its_files_in_order(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {"b/one.txt": b"1", "a.pdf": b"%PDF", "c.txt": b""})
    assert isinstance(ZIP, Container)
    assert list(ZIP.members(path, Limits())) == [
        Member("b/one.txt", 1), Member("a.pdf", 4), Member("c.txt", 0)]
    assert list(ZIP.extract(path, Limits())) == []  # its text is its members'


def test_unpack_writes_exactly_the_member(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    path = _zip(tmp_path / "a.zip", {"dir/blob.bin": data})
    ZIP.unpack(path, "dir/blob.bin", tmp_path / "out", Limits())
    assert (tmp_path / "out").read_bytes() == data
    with pytest.raises(ExtractionError, match=r"no member 'gone\.txt'"):
        ZIP.unpack(path, "gone.txt", tmp_path / "out2", Limits())


def test_empty_archive_is_skipped(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {})
    with pytest.raises(Unsupported, match="empty archive"):
        list(ZIP.extract(path, Limits()))


def test_bomb_and_garbage_are_refused_before_unpacking(tmp_path: Path) -> None:
    bomb = make_zip_bomb(tmp_path / "bomb.zip", megabytes=300, member="z.txt")
    with pytest.raises(LimitExceeded, match="zip bomb suspected"):
        list(ZIP.members(bomb, Limits()))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    with pytest.raises(ExtractionError, match="not a valid zip archive"):
        list(ZIP.extract(junk, Limits()))


def test_member_over_the_unpack_limit_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {"big.txt": b"x" * 5000})
    with pytest.raises(LimitExceeded, match="over the limit of 4,096"):
        ZIP.unpack(path, "big.txt", tmp_path / "out", Limits(max_unpacked_bytes=4096))

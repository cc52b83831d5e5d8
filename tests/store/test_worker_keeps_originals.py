"""A worker keeps a file's original only as the bytes it read: a sha256 that is not
theirs (the file is another version than discovery hashed) keeps nothing, and the item
is read again."""

from __future__ import annotations

from pathlib import Path

from store_helpers import folder_objects, sha256_of

from gristmill.config import Settings
from gristmill.runtime.worker import Outcome, WorkOptions, process_item

TEXT = b"The granary ledger lists every sack of barley.\n"


def _options(home: Path, store: Path) -> WorkOptions:
    return WorkOptions.from_settings(Settings.load(home=home, store=str(store)))


def test_a_file_is_kept_once_under_the_sha256_of_the_bytes_read(tmp_path: Path) -> None:
    """Extracted, then stored (``stored`` True); the same file again finds it there."""
    (tmp_path / "store").mkdir()
    path = tmp_path / "ledger.txt"
    path.write_bytes(TEXT)
    stat = path.stat()
    options = _options(tmp_path / "home", tmp_path / "store")
    first = process_item(str(path), options, expected=(stat.st_size, stat.st_mtime_ns),
                         sha256=sha256_of(TEXT))
    assert (first.outcome, first.stored) == (Outcome.EXTRACTED, True)
    again = process_item(str(path), options, expected=(stat.st_size, stat.st_mtime_ns),
                         sha256=sha256_of(TEXT))
    assert (again.outcome, again.stored) == (Outcome.EXTRACTED, False)
    assert list(folder_objects(tmp_path / "store")) == [sha256_of(TEXT)]


def test_bytes_that_are_not_the_recorded_sha256_are_not_kept(tmp_path: Path) -> None:
    """The file is another version than the sha256 the catalog holds for its size and
    mtime: nothing is stored and the item is `changed` (read again later)."""
    (tmp_path / "store").mkdir()
    path = tmp_path / "ledger.txt"
    path.write_bytes(TEXT)
    stat = path.stat()
    result = process_item(str(path), _options(tmp_path / "home", tmp_path / "store"),
                          expected=(stat.st_size, stat.st_mtime_ns),
                          sha256=sha256_of(b"the version discovery hashed"))
    assert result.outcome == Outcome.CHANGED
    assert folder_objects(tmp_path / "store") == {}


def test_a_file_of_another_version_than_discovery_hashed_is_kept_as_read(
        tmp_path: Path) -> None:
    """Rewritten between discovery and extraction: the worker hashes what it read, and
    that is what is stored (and recorded)."""
    (tmp_path / "store").mkdir()
    path = tmp_path / "ledger.txt"
    path.write_bytes(TEXT)
    result = process_item(str(path), _options(tmp_path / "home", tmp_path / "store"),
                          expected=(3, 1), sha256=sha256_of(b"old"))
    assert (result.outcome, result.sha256, result.stored) == \
        (Outcome.EXTRACTED, sha256_of(TEXT), True)
    assert list(folder_objects(tmp_path / "store")) == [sha256_of(TEXT)]


def test_unsupported_files_and_runs_without_a_store_keep_nothing(tmp_path: Path) -> None:
    """A file no extractor reads is not an original worth keeping; without ``store``
    nothing is kept at all."""
    (tmp_path / "store").mkdir()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    skipped = process_item(str(blob), _options(tmp_path / "home", tmp_path / "store"))
    assert (skipped.outcome, skipped.stored) == (Outcome.SKIPPED, None)
    text = tmp_path / "ledger.txt"
    text.write_bytes(TEXT)
    plain = WorkOptions.from_settings(Settings.load(home=tmp_path / "home"))
    assert process_item(str(text), plain).stored is None
    assert folder_objects(tmp_path / "store") == {}

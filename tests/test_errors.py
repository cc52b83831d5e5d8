"""The exception hierarchy and the one place third-party errors are translated."""

from __future__ import annotations

import errno
import sqlite3
import zipfile
import zlib
from pathlib import Path

import pytest

import gristmill.errors as errors_module
from gristmill.errors import (
    ConfigError,
    ExtractionError,
    GristmillError,
    ItemError,
    LimitExceeded,
    ModelError,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    TransientError,
    Unsupported,
    translate_extraction_error,
    translate_store_error,
)

PATH = "/data/report.pdf"


# -- extraction errors -------------------------------------------------------------


def test_memory_error_becomes_limit_exceeded() -> None:
    """Running out of memory on one file fails that item as over a safety limit."""
    error = translate_extraction_error(MemoryError(), PATH)
    assert type(error) is LimitExceeded
    assert "memory" in error.reason
    assert error.path == PATH


def test_recursion_error_becomes_limit_exceeded() -> None:
    """A structure nested too deeply to parse fails the item as over a limit."""
    error = translate_extraction_error(RecursionError("maximum recursion depth"), PATH)
    assert type(error) is LimitExceeded
    assert "nested" in error.reason


def test_permission_error_is_permanent() -> None:
    """A file gristmill may not read fails (no retry) with 'permission denied'."""
    error = translate_extraction_error(PermissionError(errno.EACCES, "Permission denied"), PATH)
    assert type(error) is ExtractionError
    assert error.reason == "permission denied"


def test_missing_file_is_permanent() -> None:
    """A file deleted between discovery and extraction fails with a plain reason."""
    error = translate_extraction_error(FileNotFoundError(errno.ENOENT, "No such file"), PATH)
    assert type(error) is ExtractionError
    assert "disappeared" in error.reason


@pytest.mark.parametrize("code", [errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT,
                                  errno.ESTALE, errno.EMFILE, errno.ENOMEM])
def test_transient_os_error_is_retried(code: int) -> None:
    """An I/O hiccup (EIO, EAGAIN, stale NFS handle, ...) is a TransientError, retried later."""
    error = translate_extraction_error(OSError(code, "device hiccup"), PATH)
    assert type(error) is TransientError
    assert error.reason == "I/O error: device hiccup"
    assert error.path == PATH


def test_os_error_about_the_file_is_permanent() -> None:
    """An OSError whose errno describes the file, not the machine, is not retried."""
    error = translate_extraction_error(OSError(errno.EISDIR, "Is a directory"), PATH)
    assert type(error) is ExtractionError


@pytest.mark.parametrize(
    "exc",
    [zipfile.BadZipFile("File is not a zip file"), zlib.error("invalid stored block lengths"),
     EOFError("compressed file ended early")],
)
def test_broken_archive_is_permanent(exc: Exception) -> None:
    """A corrupt or truncated archive (DOCX, EPUB, ...) fails with the library's message."""
    error = translate_extraction_error(exc, PATH)
    assert type(error) is ExtractionError
    assert error.reason.startswith("corrupt or truncated archive: ")
    assert str(exc) in error.reason


def test_unknown_exception_keeps_its_name_and_first_line() -> None:
    """An unexpected library error fails the item as 'TypeName: first line'."""
    error = translate_extraction_error(KeyError("word/document.xml"), PATH)
    assert type(error) is ExtractionError
    assert error.reason == "KeyError: 'word/document.xml'"

    multi = translate_extraction_error(ValueError("bad header\ntraceback noise"), PATH)
    assert multi.reason == "ValueError: bad header"


def test_unknown_exception_without_message_says_no_details() -> None:
    """An exception with an empty message still gives a readable reason."""
    assert translate_extraction_error(RuntimeError(), PATH).reason == "RuntimeError: no details"


def test_unknown_exception_reason_is_bounded() -> None:
    """A huge exception message is cut so one item cannot flood the catalog."""
    error = translate_extraction_error(ValueError("x" * 10_000), PATH)
    assert len(error.reason) <= 300


def test_pdfium_error_reads_as_unreadable_pdf() -> None:
    """pypdfium2's PdfiumError becomes 'unreadable PDF: ...' (matched by name, no import)."""
    pdfium_error = type("PdfiumError", (RuntimeError,), {})
    message = "Failed to load document (PDFium: Data format error)."
    error = translate_extraction_error(pdfium_error(message), PATH)
    assert type(error) is ExtractionError
    assert error.reason.startswith("unreadable PDF: Failed to load document")


def test_item_error_passes_through_and_gains_the_path() -> None:
    """An ItemError raised by an extractor is kept as is; its missing path is filled in."""
    original = Unsupported("no text in this file")
    error = translate_extraction_error(original, PATH)
    assert error is original
    assert error.path == PATH


def test_item_error_keeps_its_own_path() -> None:
    """A path already on an ItemError (a member inside an archive) is not overwritten."""
    original = ExtractionError("corrupt member", path="/data/a.zip!b.docx")
    assert translate_extraction_error(original, PATH).path == "/data/a.zip!b.docx"


# -- store errors ------------------------------------------------------------------


def test_locked_database_is_store_busy(tmp_path: Path) -> None:
    """A database locked by another writer translates to StoreBusy (retry later)."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as caught:
            waiter.execute("BEGIN IMMEDIATE")
        error = translate_store_error(caught.value)
    finally:
        holder.close()
        waiter.close()
    assert type(error) is StoreBusy
    assert "busy" in str(error)


def test_file_that_is_not_a_database_is_store_corrupt(tmp_path: Path) -> None:
    """Opening a file that is not SQLite translates to StoreCorrupt (restore or re-ingest)."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database at all" * 200)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError) as caught:
            conn.execute("SELECT * FROM sqlite_master").fetchall()
    finally:
        conn.close()
    error = translate_store_error(caught.value)
    assert type(error) is StoreCorrupt
    assert "damaged" in str(error)


def test_malformed_image_is_store_corrupt() -> None:
    """SQLite's 'database disk image is malformed' translates to StoreCorrupt."""
    error = translate_store_error(sqlite3.DatabaseError("database disk image is malformed"))
    assert type(error) is StoreCorrupt


def test_other_sqlite_errors_are_plain_store_errors() -> None:
    """Any other sqlite3 error becomes a StoreError carrying SQLite's message."""
    error = translate_store_error(sqlite3.IntegrityError("UNIQUE constraint failed: items.id"))
    assert type(error) is StoreError
    assert "UNIQUE constraint failed" in str(error)


@pytest.mark.parametrize("name", sorted(errors_module._PG_BUSY))
def test_postgres_conflicts_and_shutdowns_are_store_busy(name: str) -> None:
    """Each SQLSTATE that means "not now" (a lost deadlock, a serialization conflict, a
    lock timeout, a server shutting down or full) is StoreBusy: the write is retried."""
    import psycopg

    error_class = psycopg.errors.lookup(name)
    assert type(translate_store_error(error_class("try again"))) is StoreBusy


def test_a_broken_postgres_connection_is_store_busy() -> None:
    """Connection exceptions (SQLSTATE class 08) are temporary too: the server is away."""
    import psycopg

    error = translate_store_error(psycopg.errors.lookup("08006")("connection failure"))
    assert type(error) is StoreUnavailable


@pytest.mark.parametrize("name", sorted(errors_module._PG_CORRUPT))
def test_postgres_data_corruption_is_store_corrupt(name: str) -> None:
    """The server reporting damaged data or indexes translates to StoreCorrupt."""
    import psycopg

    error = translate_store_error(psycopg.errors.lookup(name)("invalid page in block 7"))
    assert type(error) is StoreCorrupt
    assert "restore a backup" in str(error)


def test_other_postgres_errors_are_plain_store_errors() -> None:
    """A constraint the data breaks is a StoreError with the server's message (the
    batcher then isolates the row that broke it)."""
    import psycopg

    error = translate_store_error(psycopg.errors.UniqueViolation("duplicate key value"))
    assert type(error) is StoreError
    assert "duplicate key value" in str(error)


def test_unreachable_and_misnamed_postgres_servers_say_what_to_check() -> None:
    """Failing to connect: unreachable is StoreUnavailable (a StoreBusy), a wrong name or
    password a plain StoreError; both name the setting to check."""
    import psycopg

    refused = translate_store_error(psycopg.OperationalError(
        'connection to server at "127.0.0.1", port 9 failed: Connection refused'))
    assert type(refused) is StoreUnavailable
    wrong = translate_store_error(psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "gm"'))
    assert type(wrong) is StoreError
    for error in (refused, wrong):
        assert "GRISTMILL_DATABASE_URL" in str(error)


def test_no_free_pooled_connection_is_store_busy() -> None:
    """A pool that has no connection to give within its timeout says how to get more."""
    from psycopg_pool import PoolTimeout

    error = translate_store_error(PoolTimeout("couldn't get a connection after 30.00 sec"))
    assert type(error) is StoreBusy
    assert "pool_size" in str(error)


# -- the hierarchy -----------------------------------------------------------------


def test_every_error_is_a_gristmill_error() -> None:
    """Catching GristmillError catches every error gristmill raises on purpose."""
    for cls in exported_exceptions():
        assert issubclass(cls, GristmillError)


def test_item_errors_carry_reason_and_path() -> None:
    """Every ItemError subclass carries the reason and the item's path."""
    for cls in (ItemError, ExtractionError, LimitExceeded, Unsupported, TransientError):
        error = cls("why", path="/x")
        assert (error.reason, error.path, str(error)) == ("why", "/x", "why")


def test_model_error_is_a_config_error() -> None:
    """A missing or wrong model is the user's config to fix, so it is a ConfigError."""
    assert issubclass(ModelError, ConfigError)


def test_docstring_tree_names_every_exported_exception() -> None:
    """The tree in errors.py's docstring lists every exception class in __all__."""
    drawn = {name for name, _ in docstring_tree()}
    assert drawn == {cls.__name__ for cls in exported_exceptions()}


def test_docstring_tree_matches_the_class_hierarchy() -> None:
    """Each class in the docstring tree is drawn under its real base class."""
    parents: list[str] = []
    for name, depth in docstring_tree():
        del parents[depth:]
        cls = getattr(errors_module, name)
        if parents:
            assert cls.__bases__ == (getattr(errors_module, parents[-1]),), name
        else:
            assert cls is GristmillError
        parents.append(name)


def exported_exceptions() -> list[type[BaseException]]:
    found = [getattr(errors_module, name) for name in errors_module.__all__]
    return [obj for obj in found if isinstance(obj, type) and issubclass(obj, BaseException)]


def docstring_tree() -> list[tuple[str, int]]:
    """``(class name, depth)`` for each node drawn in the module docstring."""
    assert errors_module.__doc__ is not None
    nodes: list[tuple[str, int]] = []
    root_column = 0
    for line in errors_module.__doc__.splitlines():
        if line.strip() == "GristmillError":
            root_column = line.find("GristmillError")
            nodes.append(("GristmillError", 0))
            continue
        for connector in ("├── ", "└── "):
            column = line.find(connector)
            if column >= 0:
                name = line[column + len(connector):].split()[0]
                # Each level is drawn 5 columns right of its parent's connector.
                nodes.append((name, (column - root_column - 1) // 5 + 1))
                break
    return nodes

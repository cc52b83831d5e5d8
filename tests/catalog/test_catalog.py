"""The catalog (on the suite's backend): migrations, discovery, leases, settling,
reaping, counts."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backends import open_catalog
from gristmill.catalog import (
    Catalog,
    CatalogDatabase,
    FileFacts,
    Item,
    Status,
    lease_owner_token,
)
from gristmill.catalog.migrations import postgres as pg_migrations
from gristmill.catalog.migrations.sqlite import MIGRATIONS
from gristmill.catalog.sqlite import SqliteDatabase
from gristmill.errors import StoreCorrupt, StoreError
from gristmill.index import StoredChunk, make_index

COLLECTION = "docs"
ROOT = "/data"


class CountingHasher:
    """A hasher that returns a digest per path from a table and counts its calls."""

    def __init__(self, digests: dict[str, str] | None = None) -> None:
        self.digests = digests or {}
        self.calls: list[str] = []

    def __call__(self, source: str) -> str:
        self.calls.append(source)
        return self.digests.get(source, "sha-" + source)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CatalogDatabase]:
    database = open_catalog(tmp_path / "home" / "gristmill.db")
    yield database
    database.close()


def latest_schema(db: CatalogDatabase) -> int:
    return len(MIGRATIONS if db.backend == "sqlite" else pg_migrations.MIGRATIONS)


@pytest.fixture
def catalog(db: CatalogDatabase) -> Catalog:
    return Catalog(db)


def facts(name: str, size: int = 10, mtime_ns: int = 1) -> FileFacts:
    return FileFacts(f"{ROOT}/{name}", size=size, mtime_ns=mtime_ns)


def discover(catalog: Catalog, *names: str, run_id: int = 1, root: str = ROOT,
             collection: str = COLLECTION) -> None:
    batch = [FileFacts(f"{root}/{n}", size=10, mtime_ns=1) for n in names]
    catalog.record_discovered(collection, root, batch, run_id, CountingHasher())


def row(db: CatalogDatabase, source: str, *columns: str) -> tuple[object, ...]:
    found = db.conn.execute(
        f"SELECT {', '.join(columns)} FROM items WHERE source = ?", (source,)).fetchone()
    assert found is not None, source
    return tuple(found)


def status_of(db: CatalogDatabase, source: str) -> str:
    return str(row(db, source, "status")[0])


def claim_all(catalog: Catalog, owner: str, lease_seconds: float = 60.0) -> list[Item]:
    return catalog.claim(owner, COLLECTION, [ROOT], 1_000, lease_seconds)


# -- migrations --------------------------------------------------------------------


def test_new_database_is_migrated_to_the_latest_schema(db: CatalogDatabase) -> None:
    """Opening a fresh database creates the schema and records its version."""
    assert db.schema_version == latest_schema(db) >= 1
    for table in ("items", "jobs", "runs", "chunks", "embeddings"):
        assert db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    if db.backend == "sqlite":
        assert db.conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 0


def test_reopening_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    """Reopening a migrated file changes nothing and loses nothing."""
    path = tmp_path / "g.db"
    first = open_catalog(path)
    discover(Catalog(first), "a.txt")
    first.close()
    second = open_catalog(path)
    try:
        assert second.schema_version == latest_schema(second)
        assert Catalog(second).counts()["pending"] == 1
    finally:
        second.close()


def test_two_processes_opening_a_fresh_file_both_succeed(tmp_path: Path) -> None:
    """Several SqliteDatabase objects racing to migrate the same new file all open it cleanly."""
    path = tmp_path / "race.db"
    start = threading.Barrier(4)
    opened: list[CatalogDatabase] = []
    failures: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(open_catalog(path))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert {d.schema_version for d in opened} == {latest_schema(opened[0])}
        discover(Catalog(opened[0]), "a.txt")
        assert Catalog(opened[1]).counts()["pending"] == 1
    finally:
        for database in opened:
            database.close()


def test_file_from_a_newer_gristmill_is_refused(tmp_path: Path) -> None:
    """A catalog written by a newer schema raises StoreError telling the user to upgrade."""
    path = tmp_path / "new.db"
    db = open_catalog(path)
    newer = latest_schema(db) + 5
    if db.backend == "sqlite":
        db.conn.execute(f"PRAGMA user_version = {newer}")
    else:
        db.conn.execute("UPDATE gristmill_schema SET version = ?", (newer,))
    db.close()
    with pytest.raises(StoreError, match="newer gristmill"):
        open_catalog(path)


@pytest.mark.sqlite_only("a damaged SQLite file")
def test_file_that_is_not_a_database_raises_store_corrupt(tmp_path: Path) -> None:
    """Opening a damaged or foreign file says it is damaged (StoreCorrupt)."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"definitely not sqlite " * 500)
    with pytest.raises(StoreCorrupt):
        SqliteDatabase(path)  # the SQLite class itself


def test_failed_transaction_is_rolled_back(db: CatalogDatabase) -> None:
    """An exception inside a transaction leaves no partial write behind."""
    with pytest.raises(RuntimeError), db.transaction() as txn:
        txn.execute("INSERT INTO jobs (collection, sources, state, started_at) "
                    "VALUES ('c', '[]', 'running', 0)")
        raise RuntimeError("crash mid-write")
    assert db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


# -- discovery ---------------------------------------------------------------------


def test_new_files_are_hashed_and_pending(catalog: Catalog, db: CatalogDatabase) -> None:
    """New files are hashed once each and queued as pending with their facts."""
    hasher = CountingHasher()
    counts = catalog.record_discovered(
        COLLECTION, ROOT, [facts("a.txt", 5, 7), facts("b.txt")], 1, hasher)
    assert (counts.new, counts.seen) == (2, 2)
    assert sorted(hasher.calls) == [f"{ROOT}/a.txt", f"{ROOT}/b.txt"]
    assert row(db, f"{ROOT}/a.txt", "status", "size", "mtime_ns", "sha256", "seen_run") == (
        "pending", 5, 7, f"sha-{ROOT}/a.txt", 1)


def test_unchanged_files_are_not_rehashed(catalog: Catalog, db: CatalogDatabase) -> None:
    """A file with the same size and mtime is never re-read, only marked as seen."""
    catalog.record_discovered(COLLECTION, ROOT, [facts("a.txt")], 1, CountingHasher())
    hasher = CountingHasher()
    counts = catalog.record_discovered(COLLECTION, ROOT, [facts("a.txt")], 2, hasher)
    assert (counts.unchanged, counts.new, counts.changed) == (1, 0, 0)
    assert hasher.calls == []
    assert row(db, f"{ROOT}/a.txt", "seen_run") == (2,)


def test_touched_file_with_same_bytes_keeps_its_work(catalog: Catalog, db: CatalogDatabase) -> None:
    """A file whose mtime changed but bytes did not is hashed and keeps its status."""
    source = f"{ROOT}/a.txt"
    catalog.record_discovered(COLLECTION, ROOT, [facts("a.txt")], 1, CountingHasher())
    db.conn.execute("UPDATE items SET status = 'indexed' WHERE source = ?", (source,))
    hasher = CountingHasher()
    counts = catalog.record_discovered(
        COLLECTION, ROOT, [facts("a.txt", mtime_ns=99)], 2, hasher)
    assert (counts.unchanged, counts.changed) == (1, 0)
    assert hasher.calls == [source]
    assert row(db, source, "status", "mtime_ns", "seen_run") == ("indexed", 99, 2)


def test_changed_file_is_requeued_with_fresh_attempts(catalog: Catalog,
                                                      db: CatalogDatabase) -> None:
    """A file whose bytes changed goes back to pending with its errors and attempts reset."""
    source = f"{ROOT}/a.txt"
    catalog.record_discovered(COLLECTION, ROOT, [facts("a.txt")], 1, CountingHasher())
    db.conn.execute("UPDATE items SET status = 'failed', attempts = 3, crashes = 2, "
                    "error = 'boom' WHERE source = ?", (source,))
    hasher = CountingHasher({source: "new-digest"})
    counts = catalog.record_discovered(
        COLLECTION, ROOT, [facts("a.txt", size=11, mtime_ns=5)], 2, hasher)
    assert counts.changed == 1
    assert hasher.calls == [source]
    assert row(db, source, "status", "sha256", "size", "attempts", "crashes", "error") == (
        "pending", "new-digest", 11, 0, 0, None)


def test_skip_reason_is_stored(catalog: Catalog, db: CatalogDatabase) -> None:
    """A path discovery skips (symlink, special file) is recorded skipped with its reason."""
    hasher = CountingHasher()
    counts = catalog.record_discovered(
        COLLECTION, ROOT, [FileFacts(f"{ROOT}/fifo", skip_reason="not a regular file: fifo")],
        1, hasher)
    assert counts.skipped == 1
    assert hasher.calls == []
    assert row(db, f"{ROOT}/fifo", "status", "error") == ("skipped", "not a regular file: fifo")


def test_known_file_that_becomes_skipped_keeps_the_new_reason(
    catalog: Catalog, db: CatalogDatabase
) -> None:
    """A file replaced by something skippable is marked skipped with the new reason."""
    catalog.record_discovered(COLLECTION, ROOT, [facts("a.txt")], 1, CountingHasher())
    catalog.record_discovered(
        COLLECTION, ROOT, [FileFacts(f"{ROOT}/a.txt", skip_reason="now a symlink")], 2,
        CountingHasher())
    assert row(db, f"{ROOT}/a.txt", "status", "error", "sha256") == (
        "skipped", "now a symlink", None)


def test_unreadable_file_fails_with_a_reason(catalog: Catalog, db: CatalogDatabase) -> None:
    """A file that cannot be read while hashing is recorded failed with why, not raised."""
    def denied(source: str) -> str:
        raise PermissionError(13, "Permission denied", source)

    counts = catalog.record_discovered(COLLECTION, ROOT, [facts("secret.pdf")], 1, denied)
    assert counts.seen == 1
    assert row(db, f"{ROOT}/secret.pdf", "status", "error") == (
        "failed", "cannot read: Permission denied")


def test_unreadable_file_is_retried_once_readable(catalog: Catalog, db: CatalogDatabase) -> None:
    """A file unreadable at discovery is hashed and queued on the next pass once readable."""
    def denied(source: str) -> str:
        raise PermissionError(13, "Permission denied", source)

    catalog.record_discovered(COLLECTION, ROOT, [facts("secret.pdf")], 1, denied)
    # chmod fixes the permission without changing size or mtime.
    catalog.record_discovered(COLLECTION, ROOT, [facts("secret.pdf")], 2, CountingHasher())
    assert status_of(db, f"{ROOT}/secret.pdf") == "pending"


def test_large_discovery_batch(catalog: Catalog) -> None:
    """Batches larger than SQLite's parameter chunk (500) are recorded completely."""
    batch = [facts(f"f{i}.txt") for i in range(1_234)]
    assert catalog.record_discovered(COLLECTION, ROOT, batch, 1, CountingHasher()).new == 1_234
    hasher = CountingHasher()
    again = catalog.record_discovered(COLLECTION, ROOT, batch, 2, hasher)
    assert (again.unchanged, hasher.calls) == (1_234, [])


def test_same_path_in_two_collections_is_two_items(catalog: Catalog) -> None:
    """A path ingested into two collections is tracked separately in each."""
    discover(catalog, "a.txt", collection="one")
    discover(catalog, "a.txt", collection="two")
    assert catalog.collections() == ["one", "two"]
    assert catalog.counts("one")["pending"] == 1


# -- removal -----------------------------------------------------------------------


def test_remove_unseen_deletes_only_unseen_in_scope_items(
    catalog: Catalog, db: CatalogDatabase
) -> None:
    """Files gone from the source are removed with their chunks; out-of-scope ones stay."""
    discover(catalog, "keep.txt", "gone.txt", "other.md", run_id=1)
    discover(catalog, "x.txt", run_id=1, root="/elsewhere")
    discover(catalog, "gone.txt", run_id=1, collection="other")
    gone_id = row(db, f"{ROOT}/gone.txt", "id")[0]
    assert isinstance(gone_id, int)
    with db.transaction() as txn:
        make_index(db).replace_chunks(txn, gone_id, COLLECTION, [
            StoredChunk(0, "vanishing words", "h0", None, None),
            StoredChunk(1, "more vanishing words", "h1", None, None)])

    discover(catalog, "keep.txt", run_id=2)
    removed = catalog.remove_unseen(COLLECTION, ROOT, 2, lambda s: s.endswith(".txt"))

    assert removed == 1
    sources = {s for (s,) in db.conn.execute(
        "SELECT source FROM items WHERE collection = ?", (COLLECTION,))}
    assert sources == {f"{ROOT}/keep.txt", f"{ROOT}/other.md", "/elsewhere/x.txt"}
    assert db.conn.execute(
        "SELECT count(*) FROM items WHERE collection = 'other'").fetchone()[0] == 1
    assert db.conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    assert make_index(db).keyword("vanishing", None, 10) == []


def test_remove_unseen_with_nothing_gone_removes_nothing(catalog: Catalog) -> None:
    """A pass that saw every file removes nothing."""
    discover(catalog, "a.txt", "b.txt", run_id=1)
    discover(catalog, "a.txt", "b.txt", run_id=2)
    assert catalog.remove_unseen(COLLECTION, ROOT, 2, lambda _s: True) == 0


# -- leases ------------------------------------------------------------------------


def test_claim_leases_at_most_limit_items(catalog: Catalog, db: CatalogDatabase) -> None:
    """claim hands out at most `limit` pending items, marked processing under the owner."""
    discover(catalog, *(f"{i}.txt" for i in range(5)))
    items = catalog.claim("owner-a", COLLECTION, [ROOT], 3, 60)
    assert len(items) == 3
    assert [i.id for i in items] == sorted(i.id for i in items)
    for item in items:
        assert row(db, item.source, "status", "lease_owner") == ("processing", "owner-a")
        assert item.attempts == 0 and item.sha256 == "sha-" + item.source
    assert catalog.counts()["pending"] == 2
    assert catalog.claim("owner-a", COLLECTION, [ROOT], 0, 60) == []


def test_claim_never_gives_an_item_to_two_owners(catalog: Catalog) -> None:
    """Successive claims by different owners get disjoint items until none are left."""
    discover(catalog, *(f"{i}.txt" for i in range(5)))
    first = catalog.claim("a", COLLECTION, [ROOT], 3, 60)
    second = catalog.claim("b", COLLECTION, [ROOT], 3, 60)
    assert len(second) == 2
    assert {i.id for i in first}.isdisjoint(i.id for i in second)
    assert catalog.claim("c", COLLECTION, [ROOT], 3, 60) == []


def test_concurrent_claims_are_disjoint(tmp_path: Path) -> None:
    """Drivers claiming at once through separate connections never share an item."""
    path = tmp_path / "shared.db"
    setup = open_catalog(path)
    discover(Catalog(setup), *(f"{i}.txt" for i in range(60)))
    setup.close()
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(3)

    def drive(owner: str) -> None:
        database = open_catalog(path)
        mine: list[int] = []
        try:
            start.wait()
            while batch := Catalog(database).claim(owner, COLLECTION, [ROOT], 2, 60):
                mine.extend(item.id for item in batch)
        finally:
            database.close()
        claimed[owner] = mine

    threads = [threading.Thread(target=drive, args=(f"o{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [item_id for ids in claimed.values() for item_id in ids]
    assert len(every) == len(set(every)) == 60


def test_claim_respects_not_before(catalog: Catalog, db: CatalogDatabase) -> None:
    """An item backing off after a transient error is not claimed before its time."""
    discover(catalog, "later.txt", "now.txt")
    later = time.time() + 3600
    db.conn.execute("UPDATE items SET not_before = ? WHERE source = ?",
                    (later, f"{ROOT}/later.txt"))
    items = claim_all(catalog, "a")
    assert [i.source for i in items] == [f"{ROOT}/now.txt"]
    assert catalog.has_pending(COLLECTION, [ROOT]) == (True, later)


def test_claim_only_takes_the_named_collection_and_roots(catalog: Catalog) -> None:
    """A job claims items of its own collection and roots, nothing else."""
    discover(catalog, "a.txt")
    discover(catalog, "b.txt", root="/other")
    discover(catalog, "c.txt", collection="elsewhere")
    assert [i.source for i in claim_all(catalog, "a")] == [f"{ROOT}/a.txt"]


def test_settle_succeeds_only_for_the_lease_owner(catalog: Catalog, db: CatalogDatabase) -> None:
    """Only the process holding the lease can record the item's result."""
    discover(catalog, "a.txt")
    [item] = claim_all(catalog, "owner-a")
    with db.transaction() as txn:
        assert not Catalog.settle(txn, item.id, "owner-b", Status.EXTRACTED, chunk_count=9)
    assert status_of(db, item.source) == "processing"
    with db.transaction() as txn:
        assert Catalog.settle(txn, item.id, "owner-a", Status.EXTRACTED, chunk_count=2)
    assert row(db, item.source, "status", "chunk_count", "lease_owner", "lease_expires") == (
        "extracted", 2, None, None)


def test_settle_twice_is_refused(catalog: Catalog, db: CatalogDatabase) -> None:
    """A second settle of the same lease (a duplicate result) changes nothing."""
    discover(catalog, "a.txt")
    [item] = claim_all(catalog, "owner-a")
    with db.transaction() as txn:
        assert Catalog.settle(txn, item.id, "owner-a", Status.FAILED, error="corrupt")
    with db.transaction() as txn:
        assert not Catalog.settle(txn, item.id, "owner-a", Status.INDEXED)
    assert row(db, item.source, "status", "error") == ("failed", "corrupt")


def test_settle_after_lease_reaped_and_reclaimed_is_refused(
    catalog: Catalog, db: CatalogDatabase
) -> None:
    """A slow worker whose lease expired cannot overwrite the new owner's work."""
    discover(catalog, "a.txt")
    [item] = claim_all(catalog, "slow", lease_seconds=-1)
    assert catalog.reap_expired() == 1
    [again] = claim_all(catalog, "fresh")
    assert again.id == item.id
    with db.transaction() as txn:
        assert not Catalog.settle(txn, item.id, "slow", Status.EXTRACTED)
        assert Catalog.settle(txn, item.id, "fresh", Status.EXTRACTED)


def test_settle_with_the_claimed_bytes_is_refused_once_the_file_changed(
    catalog: Catalog, db: CatalogDatabase
) -> None:
    """A result of bytes the catalog no longer records (a watch saw a new save while
    the item was in flight) is refused, though the lease is still held."""
    discover(catalog, "a.txt")
    [item] = claim_all(catalog, "owner-a")
    assert item.sha256 == f"sha-{ROOT}/a.txt"
    with db.transaction() as txn:
        txn.execute("UPDATE items SET sha256 = 'newer' WHERE id = ?", (item.id,))
    with db.transaction() as txn:
        assert not Catalog.settle(txn, item.id, "owner-a", Status.EXTRACTED,
                                  claimed_sha256=item.sha256, chunk_count=2)
    assert status_of(db, item.source) == "processing"
    with db.transaction() as txn:
        assert Catalog.settle(txn, item.id, "owner-a", Status.EXTRACTED,
                              claimed_sha256="newer", chunk_count=2)
    assert status_of(db, item.source) == "extracted"


def test_a_claim_finds_each_items_twin(catalog: Catalog, db: CatalogDatabase) -> None:
    """Asked for twins, a claim names for each item an item with the same bytes whose
    chunks are stored (indexed with the model first), and none for unique bytes."""
    digests = {f"{ROOT}/{name}": "same" for name in ("a.txt", "b.txt", "c.txt", "d.txt")}
    digests[f"{ROOT}/u.txt"] = "unique"
    catalog.record_discovered(COLLECTION, ROOT, [facts("a.txt"), facts("b.txt")], 1,
                              CountingHasher(digests))
    first, second = claim_all(catalog, "w")
    with db.transaction() as txn:
        Catalog.settle(txn, first.id, "w", Status.EXTRACTED, chunk_count=3)
        Catalog.settle(txn, second.id, "w", Status.INDEXED, chunk_count=3,
                       embed_model="minilm")
    catalog.record_discovered(COLLECTION, ROOT, [facts(n) for n in ("c.txt", "d.txt", "u.txt")],
                              1, CountingHasher(digests))
    claimed = catalog.claim("w", COLLECTION, [ROOT], 2, 60, twins_for="minilm")
    assert [(i.source, i.twin) for i in claimed] == [
        (f"{ROOT}/c.txt", second.id), (f"{ROOT}/d.txt", second.id)]
    [unique] = catalog.claim("w", COLLECTION, [ROOT], 5, 60, twins_for="other-model")
    assert (unique.source, unique.twin) == (f"{ROOT}/u.txt", None)
    with db.transaction() as txn:
        txn.execute("UPDATE items SET status = 'pending' WHERE id IN (?, ?)",
                    (claimed[0].id, claimed[1].id))
    # Without the model's vectors anywhere, an extracted twin is as good as another.
    again = catalog.claim("w", COLLECTION, [ROOT], 5, 60, twins_for="other-model")
    assert {i.twin for i in again} <= {first.id, second.id} and None not in {
        i.twin for i in again}
    with db.transaction() as txn:
        txn.execute("UPDATE items SET status = 'pending' WHERE id IN (?, ?)",
                    (again[0].id, again[1].id))
    assert [i.twin for i in claim_all(catalog, "w")] == [None, None]  # not asked: none


def test_reap_frees_expired_leases(catalog: Catalog, db: CatalogDatabase) -> None:
    """A processing item whose lease expired returns to pending and can be claimed again."""
    discover(catalog, "a.txt")
    [item] = claim_all(catalog, "gone-host:1:1.00", lease_seconds=-1)
    assert catalog.reap_expired() == 1
    assert row(db, item.source, "status", "lease_owner", "lease_expires") == (
        "pending", None, None)
    assert [i.id for i in claim_all(catalog, "next")] == [item.id]


def test_reap_frees_leases_of_a_dead_local_process(catalog: Catalog, db: CatalogDatabase) -> None:
    """After kill -9 of a driver on this host, its unexpired leases are freed at once."""
    discover(catalog, "a.txt")
    child = subprocess.Popen(["true"])
    child.wait()
    dead_owner = f"{socket.gethostname()}:{child.pid}:1234567890.12"
    [item] = claim_all(catalog, dead_owner, lease_seconds=3600)
    assert catalog.reap_expired() == 1
    assert status_of(db, item.source) == "pending"


def test_reap_keeps_live_leases(catalog: Catalog, db: CatalogDatabase) -> None:
    """Unexpired leases of a live local process or another host are left alone."""
    discover(catalog, "mine.txt", "remote.txt", "odd.txt")
    catalog.claim(lease_owner_token(), COLLECTION, [ROOT], 1, 3600)
    catalog.claim("another-host:4242:1.00", COLLECTION, [ROOT], 1, 3600)
    catalog.claim("not-a-token", COLLECTION, [ROOT], 1, 3600)
    assert catalog.reap_expired() == 0
    assert catalog.counts()["processing"] == 3


def test_renewed_lease_is_not_reaped(catalog: Catalog) -> None:
    """A heartbeat (renew_leases) keeps an owner's items from expiring."""
    discover(catalog, "a.txt")
    claim_all(catalog, "other-host:1:1.00", lease_seconds=-1)
    catalog.renew_leases("other-host:1:1.00", 3600)
    assert catalog.reap_expired() == 0


def test_lease_owner_token_names_this_host_and_process() -> None:
    """The owner token is host:pid:start-time of the calling process."""
    host, pid, started = lease_owner_token().rsplit(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert float(started) > 0


# -- failures, counts, promotion ---------------------------------------------------


def test_reset_failed_requeues_failed_items(catalog: Catalog, db: CatalogDatabase) -> None:
    """--retry-failed puts failed items back to pending with attempts and errors cleared."""
    discover(catalog, "bad.txt", "good.txt")
    db.conn.execute("UPDATE items SET status = 'failed', attempts = 3, crashes = 1, "
                    "error = 'timeout', error_type = 'timeout', not_before = 9e9 "
                    "WHERE source = ?", (f"{ROOT}/bad.txt",))
    db.conn.execute("UPDATE items SET status = 'indexed' WHERE source = ?",
                    (f"{ROOT}/good.txt",))
    assert catalog.reset_failed() == 1
    assert row(db, f"{ROOT}/bad.txt", "status", "attempts", "crashes", "error", "error_type",
               "not_before") == ("pending", 0, 0, None, None, None)
    assert status_of(db, f"{ROOT}/good.txt") == "indexed"


def test_reset_failed_can_be_limited_to_a_collection(catalog: Catalog, db: CatalogDatabase) -> None:
    """Resetting one collection's failures leaves other collections' failures alone."""
    discover(catalog, "a.txt", collection="one")
    discover(catalog, "a.txt", collection="two")
    db.conn.execute("UPDATE items SET status = 'failed'")
    assert catalog.reset_failed("one") == 1
    assert catalog.counts("two")["failed"] == 1


def test_counts_include_every_status(catalog: Catalog, db: CatalogDatabase) -> None:
    """counts() reports all six statuses, zeros included, per collection or overall."""
    assert catalog.counts() == {s.value: 0 for s in Status}
    discover(catalog, *(f"{i}.txt" for i in range(6)))
    discover(catalog, "x.txt", collection="other")
    for i, status in enumerate(Status):
        db.conn.execute("UPDATE items SET status = ? WHERE source = ?",
                        (status.value, f"{ROOT}/{i}.txt"))
    assert catalog.counts(COLLECTION) == {s.value: 1 for s in Status}
    overall = catalog.counts()
    assert overall["pending"] == 2
    assert sum(overall.values()) == 7


def test_problems_lists_failed_and_skipped_with_reasons(catalog: Catalog,
                                                        db: CatalogDatabase) -> None:
    """problems() yields (status, source, reason) for failed and skipped items only."""
    discover(catalog, "a.txt", "b.txt", "c.txt")
    db.conn.execute("UPDATE items SET status = 'failed', error = 'corrupt' "
                    "WHERE source LIKE '%a.txt'")
    db.conn.execute("UPDATE items SET status = 'skipped' WHERE source LIKE '%b.txt'")
    assert list(catalog.problems()) == [
        ("failed", f"{ROOT}/a.txt", "corrupt"),
        ("skipped", f"{ROOT}/b.txt", "no reason recorded")]


def extracted_item(catalog: Catalog, db: CatalogDatabase, name: str, texts: list[str]) -> int:
    discover(catalog, name)
    [item] = [i for i in claim_all(catalog, "w") if i.source.endswith(name)]
    with db.transaction() as txn:
        make_index(db).replace_chunks(txn, item.id, COLLECTION, [
            StoredChunk(n, t, "hash-" + t, None, None) for n, t in enumerate(texts)])
        Catalog.settle(txn, item.id, "w", Status.EXTRACTED, chunk_count=len(texts))
    return item.id


def store_vector(db: CatalogDatabase, model: str, text: str) -> None:
    with db.transaction() as txn:
        make_index(db).store_vectors(txn, model, ["hash-" + text],
                                    np.ones((1, 4), np.float32))


def test_promote_waits_for_every_chunk_vector(catalog: Catalog, db: CatalogDatabase) -> None:
    """An extracted item becomes indexed only once each of its chunks has a vector."""
    item_id = extracted_item(catalog, db, "a.txt", ["one", "two"])
    store_vector(db, "m", "one")
    with db.transaction() as txn:
        assert Catalog.promote(txn, "m") == 0
    store_vector(db, "other-model", "two")
    with db.transaction() as txn:
        assert Catalog.promote(txn, "m") == 0
    store_vector(db, "m", "two")
    with db.transaction() as txn:
        assert Catalog.promote(txn, "m") == 1
    assert db.conn.execute("SELECT status, embed_model FROM items WHERE id = ?",
                           (item_id,)).fetchone() == ("indexed", "m")


def test_promote_can_be_limited_to_items(catalog: Catalog, db: CatalogDatabase) -> None:
    """promote(item_ids=...) only looks at the named items."""
    first = extracted_item(catalog, db, "a.txt", ["one"])
    second = extracted_item(catalog, db, "b.txt", ["two"])
    store_vector(db, "m", "one")
    store_vector(db, "m", "two")
    with db.transaction() as txn:
        assert Catalog.promote(txn, "m", [second]) == 1
    statuses = dict(db.conn.execute("SELECT id, status FROM items"))
    assert statuses == {first: "extracted", second: "indexed"}


def test_promote_ignores_items_not_extracted(catalog: Catalog, db: CatalogDatabase) -> None:
    """Pending, processing or failed items are never promoted."""
    discover(catalog, "a.txt", "b.txt")
    claim_all(catalog, "w")
    db.conn.execute("UPDATE items SET status = 'failed' WHERE source LIKE '%b.txt'")
    with db.transaction() as txn:
        assert Catalog.promote(txn, "m") == 0


def _settle_as(db: CatalogDatabase, source: str, status: str, extractor: str | None,
               version: int | None, error_type: str | None = None) -> None:
    with db.transaction() as txn:
        txn.execute("UPDATE items SET status = ?, extractor = ?, extractor_version = ?, "
                    "error_type = ?, attempts = 2 WHERE source = ?",
                    (status, extractor, version, error_type, f"{ROOT}/{source}"))


def test_items_of_an_older_extractor_version_are_requeued(
        catalog: Catalog, db: CatalogDatabase) -> None:
    """Bumping one extractor's version redoes exactly the items it produced, whatever
    their outcome, and only under the roots of the run."""
    discover(catalog, "a.pdf", "b.pdf", "c.txt", "d.pdf", "e.pdf")
    _settle_as(db, "a.pdf", "indexed", "pdf", 1)
    _settle_as(db, "b.pdf", "skipped", "pdf", 1, "unsupported")  # e.g. no text layer
    _settle_as(db, "c.txt", "indexed", "text", 1)
    _settle_as(db, "d.pdf", "indexed", "pdf", 2)  # already by the new version
    _settle_as(db, "e.pdf", "failed", "pdf", 1, "ExtractionError")
    assert catalog.requeue_outdated("docs", ["/elsewhere"], {"pdf": 2}, lambda s: True) == 0
    assert catalog.requeue_outdated("docs", [ROOT], {"pdf": 2, "text": 1},
                                    lambda s: True) == 3
    assert {s: status_of(db, f"{ROOT}/{s}")
            for s in ("a.pdf", "b.pdf", "c.txt", "d.pdf", "e.pdf")} == {
        "a.pdf": "pending", "b.pdf": "pending", "c.txt": "indexed", "d.pdf": "indexed",
        "e.pdf": "pending"}
    assert row(db, f"{ROOT}/e.pdf", "attempts", "error_type") == (0, None)


def test_files_of_a_type_that_became_readable_are_requeued(
        catalog: Catalog, db: CatalogDatabase) -> None:
    """A file skipped as an unsupported type is picked up once an extractor reads it."""
    discover(catalog, "data.json", "image.xyz")
    _settle_as(db, "data.json", "skipped", None, None, "unsupported")
    _settle_as(db, "image.xyz", "skipped", None, None, "unsupported")
    readable = catalog.requeue_outdated("docs", [ROOT], {}, lambda s: s.endswith(".json"))
    assert readable == 1
    assert (status_of(db, f"{ROOT}/data.json"), status_of(db, f"{ROOT}/image.xyz")) == (
        "pending", "skipped")

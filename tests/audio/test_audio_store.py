"""The audio store (on the suite's backend: ``GRISTMILL_TEST_DATABASE=postgresql`` runs
it on PostgreSQL): a recording's scan replaced whole, its events going with its item,
re-scans asked for by model or settings, the events listed by user and date."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import open_catalog
from gristmill.catalog import Catalog, CatalogDatabase, FileFacts, Status, lease_owner_token
from gristmill.catalog.audio import AudioStore, EventRow, ScannedRecording

COLLECTION = "audio"
ROOT = "/uploads/alice"
SETTINGS = '{"threshold": 0.3}'


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CatalogDatabase]:
    database = open_catalog(tmp_path / "home" / "gristmill.db")
    yield database
    database.close()


def recording(model: str = "sha-a", settings: str = SETTINGS, *starts: float,
              user: str = "alice", clips: bool = False) -> ScannedRecording:
    return ScannedRecording(
        user=user, model=model, settings=settings, duration=30.0, sample_rate=44_100,
        channels=2, codec="mp3float", compute_seconds=0.2,
        events=[EventRow("Laughter", 13, start, start + 1.5, 0.9, 0.7,
                         f"/home/clips/{user}/{start}.wav" if clips else None)
                for start in starts])


def scanned(db: CatalogDatabase, names: dict[str, int], user_recording: ScannedRecording,
            root: str = ROOT) -> dict[str, int]:
    """Discover ``names`` (name -> mtime_ns) under ``root``, claim them, and settle each
    as a scan would (indexed, with ``user_recording``); their item ids by name."""
    catalog = Catalog(db)
    catalog.record_discovered(COLLECTION, root, [
        FileFacts(f"{root}/{name}", size=10, mtime_ns=mtime) for name, mtime in names.items()],
        1, lambda source: "sha-" + source)
    owner = lease_owner_token()
    items = catalog.claim(owner, COLLECTION, [root], 100, 60.0)
    with db.transaction() as txn:
        for item in items:
            assert Catalog.settle(txn, item.id, owner, Status.INDEXED, chunk_count=0)
            AudioStore.replace(txn, item.id, user_recording)
    return {item.source.rsplit("/", 1)[1]: item.id for item in items}


def count(db: CatalogDatabase, table: str) -> int:
    return int(db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_a_scan_written_again_replaces_the_old_one(db: CatalogDatabase) -> None:
    """Writing a recording's scan twice leaves one row and one set of events; the clip
    paths no new event names are returned for deletion."""
    ids = scanned(db, {"a.mp3": 1}, recording("sha-a", SETTINGS, 1.0, 5.0, clips=True))
    with db.transaction() as txn:
        stale = AudioStore.replace(txn, ids["a.mp3"],
                                   recording("sha-a", SETTINGS, 5.0, 9.0, clips=True))
    assert stale == ["/home/clips/alice/1.0.wav"]
    with db.transaction() as txn:
        assert AudioStore.replace(txn, ids["a.mp3"],
                                  recording("sha-a", SETTINGS, 5.0, 9.0, clips=True)) == []
    assert (count(db, "audio_recordings"), count(db, "audio_events")) == (1, 2)
    events = AudioStore(db).events()
    assert [(e.start, e.clip) for e in events] == [
        (5.0, "/home/clips/alice/5.0.wav"), (9.0, "/home/clips/alice/9.0.wav")]
    with db.transaction() as txn:  # the recording became unreadable: no events any more
        assert len(AudioStore.replace(txn, ids["a.mp3"], None)) == 2
    assert (count(db, "audio_recordings"), count(db, "audio_events")) == (0, 0)


def test_events_go_with_their_item(db: CatalogDatabase) -> None:
    """A recording removed from its folder (its item deleted by discovery) loses its
    scan and events by the foreign keys' cascade; one that became unreadable too."""
    scanned(db, {"a.mp3": 1, "b.mp3": 1, "c.mp3": 1}, recording("sha-a", SETTINGS, 2.0))
    catalog = Catalog(db)
    # Run 2 sees b (unchanged) and finds c no longer a regular file; a is gone.
    catalog.record_discovered(COLLECTION, ROOT, [
        FileFacts(f"{ROOT}/b.mp3", size=10, mtime_ns=1),
        FileFacts(f"{ROOT}/c.mp3", skip_reason="not a regular file (named pipe)")],
        2, lambda source: "sha-" + source)
    assert catalog.remove_unseen(COLLECTION, ROOT, 2, lambda source: True) == 1
    assert [e.source for e in AudioStore(db).events()] == [f"{ROOT}/b.mp3"]
    assert count(db, "audio_recordings") == 1


def test_other_model_or_settings_requeue_the_users_recordings(db: CatalogDatabase) -> None:
    """Recordings scanned with another model, other settings or for another user go
    back to pending; those scanned with these stay; ``modified_since_ns`` keeps to
    the files a --since run looks at."""
    store = AudioStore(db)
    scanned(db, {"old.wav": 100, "new.wav": 5_000}, recording("sha-a", SETTINGS, 1.0))
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", "sha-a", SETTINGS) == 0
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", "sha-b", SETTINGS,
                                 modified_since_ns=1_000) == 1
    statuses = dict(db.conn.execute("SELECT source, status FROM items").fetchall())
    assert statuses == {f"{ROOT}/old.wav": "indexed", f"{ROOT}/new.wav": "pending"}
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", "sha-a",
                                 '{"threshold": 0.5}') == 1
    assert store.requeue_rescans(COLLECTION, [ROOT], "bob", "sha-a", SETTINGS) == 0
    # Their events stay until the new scan replaces them.
    assert count(db, "audio_events") == 2


def test_events_are_listed_by_user_recording_and_time(db: CatalogDatabase) -> None:
    """Events come sorted, filtered by user and by file date, in the contract's shape."""
    scanned(db, {"b.wav": 2_000, "a.wav": 1_000}, recording("sha-a", SETTINGS, 7.0, 3.0))
    scanned(db, {"x.wav": 3_000}, recording("sha-a", SETTINGS, 1.0, user="bob"),
            root="/uploads/bob")
    store = AudioStore(db)
    listed = [(e.user, e.source.rsplit("/", 1)[1], e.start) for e in store.events()]
    assert listed == [("alice", "a.wav", 3.0), ("alice", "a.wav", 7.0),
                      ("alice", "b.wav", 3.0), ("alice", "b.wav", 7.0), ("bob", "x.wav", 1.0)]
    assert {e.source for e in store.events(user="alice", modified_since_ns=1_500)} == {
        f"{ROOT}/b.wav"}
    assert store.events(user="carol") == []
    assert store.events(collection="elsewhere") == []
    first = store.events(user="bob")[0].to_dict()
    assert first == {"user": "bob", "source": "/uploads/bob/x.wav", "start": 1.0,
                     "end": 2.5, "label": "Laughter", "score": 0.9, "clip": None}
    assert store.totals(user="alice") == {"recordings": 2, "events": 4,
                                          "audio_seconds": 60.0}

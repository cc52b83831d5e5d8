"""The audio store (on the suite's backend: ``GRISTMILL_TEST_DATABASE=postgresql`` runs
it on PostgreSQL): a recording's scan replaced whole per model revision, revisions of
other models kept beside it until the content changes, its events going with its item,
re-scans asked for by model or settings, the events listed by user, date and revision,
and a catalog of the older schema upgraded in place."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import ON_POSTGRES, open_catalog, url_for
from gristmill.audio.events import Event
from gristmill.catalog import Catalog, CatalogDatabase, FileFacts, Status, lease_owner_token
from gristmill.catalog.audio import AudioStore, ScannedRecording
from gristmill.errors import ConfigError

COLLECTION = "audio"
ROOT = "/uploads/alice"
SETTINGS = '{"threshold": 0.3}'
# Models are named by their file's sha256.
MODEL_A = "a" * 64
MODEL_B = "b" * 64


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CatalogDatabase]:
    database = open_catalog(tmp_path / "home" / "gristmill.db")
    yield database
    database.close()


def recording(model: str = MODEL_A, settings: str = SETTINGS, *starts: float,
              user: str = "alice", clips: bool = False) -> ScannedRecording:
    return ScannedRecording(
        user=user, model=model, settings=settings, duration=30.0, sample_rate=44_100,
        channels=2, codec="mp3float", compute_seconds=0.2,
        events=[Event("Laughter", 13, start, start + 1.5, 0.9, 0.7,
                      f"/home/clips/{user}/{model[:8]}-{start}.wav" if clips else None)
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
    ids = scanned(db, {"a.mp3": 1}, recording(MODEL_A, SETTINGS, 1.0, 5.0, clips=True))
    with db.transaction() as txn:
        stale = AudioStore.replace(txn, ids["a.mp3"],
                                   recording(MODEL_A, SETTINGS, 5.0, 9.0, clips=True))
    assert stale == [f"/home/clips/alice/{MODEL_A[:8]}-1.0.wav"]
    with db.transaction() as txn:
        assert AudioStore.replace(txn, ids["a.mp3"],
                                  recording(MODEL_A, SETTINGS, 5.0, 9.0, clips=True)) == []
    assert (count(db, "audio_recordings"), count(db, "audio_events")) == (1, 2)
    events = AudioStore(db).events()
    assert [(e.start, e.clip) for e in events] == [
        (5.0, f"/home/clips/alice/{MODEL_A[:8]}-5.0.wav"),
        (9.0, f"/home/clips/alice/{MODEL_A[:8]}-9.0.wav")]
    with db.transaction() as txn:  # the recording became unreadable: no events any more
        assert len(AudioStore.replace(txn, ids["a.mp3"], None)) == 2
    assert (count(db, "audio_recordings"), count(db, "audio_events")) == (0, 0)


def test_events_go_with_their_item(db: CatalogDatabase) -> None:
    """A recording removed from its folder (its item deleted by discovery) loses its
    scan and events by the foreign keys' cascade; one that became unreadable too."""
    scanned(db, {"a.mp3": 1, "b.mp3": 1, "c.mp3": 1}, recording(MODEL_A, SETTINGS, 2.0))
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
    scanned(db, {"old.wav": 100, "new.wav": 5_000}, recording(MODEL_A, SETTINGS, 1.0))
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", MODEL_A, SETTINGS) == 0
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", MODEL_B, SETTINGS,
                                 modified_since_ns=1_000) == 1
    statuses = dict(db.conn.execute("SELECT source, status FROM items").fetchall())
    assert statuses == {f"{ROOT}/old.wav": "indexed", f"{ROOT}/new.wav": "pending"}
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", MODEL_A,
                                 '{"threshold": 0.5}') == 1
    assert store.requeue_rescans(COLLECTION, [ROOT], "bob", MODEL_A, SETTINGS) == 0
    # Their events stay until the new scan replaces them.
    assert count(db, "audio_events") == 2


def test_events_are_listed_by_user_recording_and_time(db: CatalogDatabase) -> None:
    """Events come sorted, filtered by user and by file date, in the contract's shape."""
    scanned(db, {"b.wav": 2_000, "a.wav": 1_000}, recording(MODEL_A, SETTINGS, 7.0, 3.0))
    scanned(db, {"x.wav": 3_000}, recording(MODEL_A, SETTINGS, 1.0, user="bob"),
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


def rescan(db: CatalogDatabase, item_id: int, scan: ScannedRecording | None) -> list[str]:
    """Write ``scan`` for an item already settled (the clip paths to delete)."""
    with db.transaction() as txn:
        return AudioStore.replace(txn, item_id, scan)


def revisions(db: CatalogDatabase) -> list[tuple[str, int]]:
    """(model, events) of every stored revision."""
    return [(str(model), int(events)) for model, events in db.conn.execute(
        "SELECT r.model, (SELECT count(*) FROM audio_events e WHERE e.item_id = r.item_id "
        "AND e.model = r.model) FROM audio_recordings r ORDER BY r.model").fetchall()]


def test_another_model_adds_its_revision_beside_the_first(db: CatalogDatabase) -> None:
    """A scan by a new model keeps the older model's row and events; scanning again with
    either model replaces only that model's, the same rows again."""
    ids = scanned(db, {"a.mp3": 1}, recording(MODEL_A, SETTINGS, 1.0, 5.0, clips=True))
    assert rescan(db, ids["a.mp3"], recording(MODEL_B, SETTINGS, 2.0, clips=True)) == []
    assert revisions(db) == [(MODEL_A, 2), (MODEL_B, 1)]
    # Re-run of model A with other settings and one event fewer: B's revision stays.
    stale = rescan(db, ids["a.mp3"], recording(MODEL_A, '{"threshold": 0.5}', 5.0,
                                               clips=True))
    assert stale == [f"/home/clips/alice/{MODEL_A[:8]}-1.0.wav"]
    assert revisions(db) == [(MODEL_A, 1), (MODEL_B, 1)]
    assert rescan(db, ids["a.mp3"], recording(MODEL_A, '{"threshold": 0.5}', 5.0,
                                              clips=True)) == []
    assert revisions(db) == [(MODEL_A, 1), (MODEL_B, 1)]
    assert AudioStore(db).clips("alice") == {f"/home/clips/alice/{MODEL_A[:8]}-5.0.wav",
                                             f"/home/clips/alice/{MODEL_B[:8]}-2.0.wav"}
    # Every revision asks for no re-scan by its own model and settings.
    store = AudioStore(db)
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", MODEL_B, SETTINGS) == 0
    assert store.requeue_rescans(COLLECTION, [ROOT], "alice", MODEL_A,
                                 '{"threshold": 0.5}') == 0


def test_changed_content_drops_every_older_revision(db: CatalogDatabase) -> None:
    """A recording whose bytes changed loses every model's revision of the old bytes,
    their clips returned for deletion; only the new scan stays. Unreadable now: none."""
    ids = scanned(db, {"a.mp3": 1}, recording(MODEL_A, SETTINGS, 1.0, clips=True))
    rescan(db, ids["a.mp3"], recording(MODEL_B, SETTINGS, 2.0, clips=True))
    catalog = Catalog(db)
    catalog.record_discovered(COLLECTION, ROOT, [FileFacts(f"{ROOT}/a.mp3", size=11,
                                                           mtime_ns=2)],
                              2, lambda source: "new-" + source)
    owner = lease_owner_token()
    [item] = catalog.claim(owner, COLLECTION, [ROOT], 100, 60.0)
    with db.transaction() as txn:
        assert Catalog.settle(txn, item.id, owner, Status.INDEXED, chunk_count=0)
        stale = AudioStore.replace(txn, item.id, recording(MODEL_A, SETTINGS, 1.0, 8.0,
                                                           clips=True))
    # Model A's clip at 1.0 s was written over by the new scan: it stays.
    assert stale == [f"/home/clips/alice/{MODEL_B[:8]}-2.0.wav"]
    assert revisions(db) == [(MODEL_A, 2)]
    assert db.conn.execute("SELECT sha256 FROM audio_recordings").fetchone()[0] == (
        f"new-{ROOT}/a.mp3")
    rescan(db, item.id, recording(MODEL_B, SETTINGS, 3.0, clips=True))
    assert sorted(rescan(db, item.id, None)) == [
        f"/home/clips/alice/{MODEL_A[:8]}-1.0.wav", f"/home/clips/alice/{MODEL_A[:8]}-8.0.wav",
        f"/home/clips/alice/{MODEL_B[:8]}-3.0.wav"]
    assert (count(db, "audio_recordings"), count(db, "audio_events")) == (0, 0)


def test_the_listing_shows_the_configured_models_revision_else_the_latest(
        db: CatalogDatabase) -> None:
    """By default each recording lists the events of the configured model where it has
    them, else of its most recent scan; ``model`` (a sha256 prefix) lists one model's;
    the totals count what the default listing shows."""
    ids = scanned(db, {"a.wav": 1, "b.wav": 1}, recording(MODEL_A, SETTINGS, 1.0, 2.0))
    rescan(db, ids["b.wav"], recording(MODEL_B, SETTINGS, 9.0))
    store = AudioStore(db)

    def listed(**kwargs: str | None) -> list[tuple[str, float, str]]:
        return [(e.source.rsplit("/", 1)[1], e.start, e.model[:1])
                for e in store.events(**kwargs)]

    # b's latest scan is model B's.
    assert listed() == [("a.wav", 1.0, "a"), ("a.wav", 2.0, "a"), ("b.wav", 9.0, "b")]
    assert listed(current_model=MODEL_A) == [("a.wav", 1.0, "a"), ("a.wav", 2.0, "a"),
                                             ("b.wav", 1.0, "a"), ("b.wav", 2.0, "a")]
    # A model neither recording has: each one's latest.
    assert listed(current_model="c" * 64) == listed()
    assert listed(model="BBB") == [("b.wav", 9.0, "b")]
    assert listed(model=MODEL_A[:6]) == listed(current_model=MODEL_A)
    assert listed(model="c" * 12) == []
    assert store.totals(current_model=MODEL_A) == {"recordings": 2, "events": 4,
                                                   "audio_seconds": 60.0}
    assert store.totals() == {"recordings": 2, "events": 3, "audio_seconds": 60.0}


def test_a_model_prefix_must_name_one_model(db: CatalogDatabase) -> None:
    """A prefix that is not hexadecimal, or that two stored models share, is refused
    with what to give instead."""
    ids = scanned(db, {"a.wav": 1}, recording("ab12" + "0" * 60, SETTINGS, 1.0))
    rescan(db, ids["a.wav"], recording("ab34" + "0" * 60, SETTINGS, 2.0))
    store = AudioStore(db)
    with pytest.raises(ConfigError, match="names 2 models"):
        store.events(model="ab")
    with pytest.raises(ConfigError, match="not a model's sha256"):
        store.events(model="yamnet")
    assert [e.start for e in store.events(model="AB3")] == [2.0]


def _schema_9_catalog(path: Path) -> None:
    """A catalog at the schema before model revisions (SQLite 9, PostgreSQL 6), with
    one scanned recording and its two events."""
    now = time.time()
    rows = [
        ("INSERT INTO items (id, collection, source, root, size, mtime_ns, sha256, status, "
         "created_at, updated_at) VALUES (1, 'audio', '/u/alice/a.wav', '/u/alice', 10, 1, "
         "'content-1', 'indexed', ?, ?)", (now, now)),
        ("INSERT INTO audio_recordings (item_id, user_name, model, settings, duration, "
         "scanned_at) VALUES (1, 'alice', ?, '{}', 30.0, ?)", (MODEL_A, now)),
        ("INSERT INTO audio_events (item_id, model, label, class_index, start_s, end_s, "
         "peak, mean, clip) VALUES (1, ?, 'Laughter', 13, ?, ?, 0.5, 0.4, ?)",
         (MODEL_A, 4.0, 5.0, "/h/clips/alice/1-aaaaaaaa-4000-13.wav")),
        ("INSERT INTO audio_events (item_id, model, label, class_index, start_s, end_s, "
         "peak, mean, clip) VALUES (1, ?, 'Laughter', 13, ?, ?, 0.5, 0.4, NULL)",
         (MODEL_A, 9.0, 9.5)),
    ]
    if ON_POSTGRES:
        import psycopg

        from gristmill.catalog.migrations import postgres
        from gristmill.catalog.postgres import to_pyformat

        with psycopg.connect(url_for(path)) as conn, conn.transaction():
            conn.execute("CREATE TABLE gristmill_schema (one BOOLEAN PRIMARY KEY "
                         "DEFAULT true CHECK (one), version INTEGER NOT NULL)")
            for step in postgres.MIGRATIONS[:6]:
                step(conn)
            conn.execute("INSERT INTO gristmill_schema (version) VALUES (6)")
            for sql, params in rows:
                conn.execute(to_pyformat(sql), params)
        return
    from gristmill.catalog.migrations import sqlite

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for step in sqlite.MIGRATIONS[:9]:
        conn.execute("BEGIN")
        step(conn)
        conn.execute("COMMIT")
    conn.execute("PRAGMA user_version = 9")
    for sql, params in rows:
        conn.execute(sql, params)
    conn.close()


def test_a_catalog_of_the_older_schema_keeps_its_events(tmp_path: Path) -> None:
    """Upgraded in place, a catalog keeps its recordings and events, each revision
    taking its item's sha256, and takes a second model's revision beside them."""
    path = tmp_path / "home" / "gristmill.db"
    path.parent.mkdir()
    _schema_9_catalog(path)
    db = open_catalog(path)
    try:
        store = AudioStore(db)
        assert [e.to_dict() for e in store.events()] == [
            {"user": "alice", "source": "/u/alice/a.wav", "start": 4.0, "end": 5.0,
             "label": "Laughter", "score": 0.5,
             "clip": "/h/clips/alice/1-aaaaaaaa-4000-13.wav"},
            {"user": "alice", "source": "/u/alice/a.wav", "start": 9.0, "end": 9.5,
             "label": "Laughter", "score": 0.5, "clip": None}]
        assert db.conn.execute("SELECT sha256 FROM audio_recordings").fetchone()[0] == (
            "content-1")
        assert rescan(db, 1, recording(MODEL_B, SETTINGS, 2.0)) == []
        assert revisions(db) == [(MODEL_A, 2), (MODEL_B, 1)]
    finally:
        db.close()

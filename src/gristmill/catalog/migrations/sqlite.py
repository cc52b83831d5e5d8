"""The SQLite file's schema history: one function per version, applied in order.

Each migration runs in its own transaction (see ``SqliteDatabase._migrate``); the applied
version is SQLite's ``user_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS"]

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next schema version; each runs in its own transaction."""
    MIGRATIONS.append(fn)
    return fn


@migration
def _m001_initial(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE items (
            id              INTEGER PRIMARY KEY,
            collection      TEXT NOT NULL,
            source          TEXT NOT NULL,
            root            TEXT NOT NULL,
            size            INTEGER,
            mtime_ns        INTEGER,
            sha256          TEXT,
            status          TEXT NOT NULL DEFAULT 'pending',
            attempts        INTEGER NOT NULL DEFAULT 0,
            crashes         INTEGER NOT NULL DEFAULT 0,
            not_before      REAL,
            lease_owner     TEXT,
            lease_expires   REAL,
            error           TEXT,
            error_type      TEXT,
            extractor       TEXT,
            extractor_version INTEGER,
            embed_model     TEXT,
            pages           INTEGER,
            chunk_count     INTEGER,
            seen_run        INTEGER,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            UNIQUE (collection, source)
        );
        CREATE INDEX items_status ON items (status, collection);
        CREATE INDEX items_sha256 ON items (sha256);
        CREATE INDEX items_root ON items (collection, root);

        CREATE TABLE jobs (
            id              INTEGER PRIMARY KEY,
            collection      TEXT NOT NULL,
            sources         TEXT NOT NULL,
            state           TEXT NOT NULL,
            owner           TEXT,
            started_at      REAL NOT NULL,
            finished_at     REAL,
            heartbeat_at    REAL,
            summary         TEXT
        );

        CREATE TABLE chunks (
            id          INTEGER PRIMARY KEY,
            item_id     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            collection  TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            text        TEXT NOT NULL,
            text_hash   TEXT NOT NULL,
            page        INTEGER,
            heading     TEXT,
            UNIQUE (item_id, seq)
        );
        CREATE INDEX chunks_hash ON chunks (text_hash);
        CREATE INDEX chunks_collection ON chunks (collection);

        CREATE VIRTUAL TABLE chunks_fts USING fts5 (
            text, heading,
            content = 'chunks', content_rowid = 'id',
            tokenize = 'porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts (rowid, text, heading)
            VALUES (new.id, new.text, new.heading);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text, heading)
            VALUES ('delete', old.id, old.text, old.heading);
        END;

        -- The embedding cache and the vector store at once: one vector per distinct
        -- chunk text per model, shared by every chunk, item and collection with that text.
        CREATE TABLE embeddings (
            model       TEXT NOT NULL,
            text_hash   TEXT NOT NULL,
            vector      BLOB NOT NULL,
            PRIMARY KEY (model, text_hash)
        ) WITHOUT ROWID;
        """
    )


@migration
def _m002_fts_rows_written_by_index(conn: sqlite3.Connection) -> None:
    # An FTS5 insert fired from a row trigger runs inside a statement savepoint, and
    # FTS5 flushes its pending terms at every savepoint: one tiny segment per chunk,
    # then merges. Measured on 15,041 chunks: 1.1 s by trigger, 0.3 s when the index
    # inserts an item's rows in one INSERT ... SELECT. The delete trigger stays: rows
    # deleted by ON DELETE CASCADE must leave the FTS index too.
    conn.execute("DROP TRIGGER IF EXISTS chunks_ai")


@migration
def _m003_child_items(conn: sqlite3.Connection) -> None:
    # Attachments and archive members are items of their own, under their container:
    # `member` is the name inside the parent; deleting a parent deletes its children
    # (and, through chunks' own cascade, their chunks and full-text rows).
    conn.execute("ALTER TABLE items ADD COLUMN parent_id INTEGER "
                 "REFERENCES items (id) ON DELETE CASCADE")
    conn.execute("ALTER TABLE items ADD COLUMN member TEXT")
    conn.execute("CREATE INDEX items_parent ON items (parent_id)")


@migration
def _m004_job_runs(conn: sqlite3.Connection) -> None:
    # A job can be resumed, and each driver that works on it is a run with its own id
    # for discovery to mark items with (a reused id would hide files removed between
    # runs). Existing jobs become their own first run, so run ids stay unique.
    conn.execute("ALTER TABLE jobs ADD COLUMN spec TEXT")
    _run_script(conn, """
        CREATE TABLE runs (
            id          INTEGER PRIMARY KEY,
            job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            started_at  REAL NOT NULL
        );
        CREATE INDEX runs_job ON runs (job_id);
        CREATE INDEX items_seen ON items (seen_run);
        INSERT INTO runs (id, job_id, started_at) SELECT id, id, started_at FROM jobs;
        """)


@migration
def _m005_problem_feed_and_run_stats(conn: sqlite3.Connection) -> None:
    # A job's event stream asks "failures and skips newer than X" twice a second; this
    # index answers it from the few problem rows instead of the job's every item.
    conn.execute("CREATE INDEX items_problems ON items (status, updated_at)")
    # A run's batcher figures (flushes, rows, flush and commit latency), JSON, written
    # every few seconds by its driver: the API's /metrics reads them from here.
    conn.execute("ALTER TABLE runs ADD COLUMN stats TEXT")


@migration
def _m006_run_holds_its_job(conn: sqlite3.Connection) -> None:
    # A job's state belongs to the run that holds it (jobs.run_id): a superseded driver's
    # late writes are ignored. A run's own liveness (its driver, heartbeat, end) tells
    # a resume whether the previous driver is still finishing its in-flight items.
    conn.execute("ALTER TABLE jobs ADD COLUMN run_id INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN heartbeat_at REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN ended_at REAL")


@migration
def _m007_code_entities(conn: sqlite3.Connection) -> None:
    # A code chunk says what it is: language, kind, qualified name, parent entity, line
    # range; `terms` holds its identifiers split into words (applyDiscount: apply
    # discount), keyword-indexed beside the text. FTS5 cannot add a column, so its table
    # is made again and rebuilt from the chunks: one pass over the text, once.
    for column in ("language TEXT", "kind TEXT", "entity TEXT", "parent_entity TEXT",
                   "line_start INTEGER", "line_end INTEGER", "terms TEXT"):
        conn.execute(f"ALTER TABLE chunks ADD COLUMN {column}")
    _run_script(conn, """
        DROP TRIGGER chunks_ad;
        DROP TABLE chunks_fts;
        CREATE VIRTUAL TABLE chunks_fts USING fts5 (
            text, heading, terms,
            content = 'chunks', content_rowid = 'id',
            tokenize = 'porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text, heading, terms)
            VALUES ('delete', old.id, old.text, old.heading, old.terms);
        END;
        INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');
        CREATE INDEX chunks_code ON chunks (language, kind) WHERE language IS NOT NULL;
        """)


@migration
def _m008_git_heads(conn: sqlite3.Connection) -> None:
    # Sources in git work trees: the commit each item's text was read at, and the
    # commit each source root was last discovered at (with the include/exclude scope it
    # was walked with), from which the next run asks git what changed.
    conn.execute("ALTER TABLE items ADD COLUMN git_commit TEXT")
    conn.execute("""CREATE TABLE source_heads (
                        collection  TEXT NOT NULL,
                        root        TEXT NOT NULL,
                        head        TEXT NOT NULL,
                        scope       TEXT NOT NULL,
                        updated_at  REAL NOT NULL,
                        PRIMARY KEY (collection, root))""")


@migration
def _m009_audio_events(conn: sqlite3.Connection) -> None:
    # A scanned recording (an item of an audio scan): whose it is, which model (sha256)
    # and detection settings (JSON) found its events, and what its audio track is. Its
    # events, with the model that found them, and their clip files. Both go with their
    # item (ON DELETE CASCADE: foreign keys are on in every connection). `user_name`,
    # `start_s` and `end_s`, not `user`, `start` and `end`: PostgreSQL reserves those.
    _run_script(conn, """
        CREATE TABLE audio_recordings (
            item_id     INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
            user_name   TEXT NOT NULL,
            model       TEXT NOT NULL,
            settings    TEXT NOT NULL,
            duration    REAL,
            sample_rate INTEGER,
            channels    INTEGER,
            codec       TEXT,
            compute_seconds REAL,
            scanned_at  REAL NOT NULL
        );
        CREATE INDEX audio_recordings_user ON audio_recordings (user_name, model);
        CREATE TABLE audio_events (
            id          INTEGER PRIMARY KEY,
            item_id     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            model       TEXT NOT NULL,
            label       TEXT NOT NULL,
            class_index INTEGER NOT NULL,
            start_s     REAL NOT NULL,
            end_s       REAL NOT NULL,
            peak        REAL NOT NULL,
            mean        REAL NOT NULL,
            clip        TEXT
        );
        CREATE INDEX audio_events_item ON audio_events (item_id, start_s);
        """)



@migration
def _m010_audio_revisions(conn: sqlite3.Connection) -> None:
    # A recording keeps one scan per model revision: keyed by (item_id, model), with the
    # sha256 of the content the scan read, so that a changed file's older revisions are
    # known stale. SQLite cannot change a primary key: the table is rebuilt, its rows
    # copied, each taking its item's sha256 (the content it was scanned from: a changed
    # file was scanned again, or is pending and will be). No table refers to this one,
    # so dropping it breaks no foreign key.
    _run_script(conn, """
        CREATE TABLE audio_recordings_new (
            item_id     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
            model       TEXT NOT NULL,
            sha256      TEXT,
            user_name   TEXT NOT NULL,
            settings    TEXT NOT NULL,
            duration    REAL,
            sample_rate INTEGER,
            channels    INTEGER,
            codec       TEXT,
            compute_seconds REAL,
            scanned_at  REAL NOT NULL,
            PRIMARY KEY (item_id, model)
        );
        INSERT INTO audio_recordings_new (item_id, model, sha256, user_name, settings,
            duration, sample_rate, channels, codec, compute_seconds, scanned_at)
        SELECT r.item_id, r.model, i.sha256, r.user_name, r.settings, r.duration,
            r.sample_rate, r.channels, r.codec, r.compute_seconds, r.scanned_at
        FROM audio_recordings r JOIN items i ON i.id = r.item_id;
        DROP TABLE audio_recordings;
        ALTER TABLE audio_recordings_new RENAME TO audio_recordings;
        CREATE INDEX audio_recordings_user ON audio_recordings (user_name, model);
        DROP INDEX audio_events_item;
        CREATE INDEX audio_events_item ON audio_events (item_id, model, start_s);
        """)


@migration
def _m011_sink_files(conn: sqlite3.Connection) -> None:
    # What each sink (an OpenAI vector store) holds of each item: the sha256 of the
    # content uploaded, the remote file, and the files of an unfinished upload
    # (`pending_file_id`) or a replaced version (`stale_file_id`) still to remove.
    # The item reference is SET NULL, not CASCADE: a deleted item's row must outlive it
    # until the sync has removed its file from the store (a NULL item_id says "gone").
    _run_script(conn, """
        CREATE TABLE sink_files (
            id              INTEGER PRIMARY KEY,
            sink            TEXT NOT NULL,
            store_id        TEXT NOT NULL,
            item_id         INTEGER REFERENCES items (id) ON DELETE SET NULL,
            collection      TEXT NOT NULL,
            source          TEXT NOT NULL,
            sha256          TEXT,
            file_id         TEXT,
            state           TEXT NOT NULL,
            pending_file_id TEXT,
            pending_sha256  TEXT,
            stale_file_id   TEXT,
            error           TEXT,
            updated_at      REAL NOT NULL,
            UNIQUE (sink, store_id, item_id)
        );
        CREATE INDEX sink_files_item ON sink_files (item_id);
        """)


@migration
def _m012_change_tokens(conn: sqlite3.Connection) -> None:
    # A remote object's change token (its S3 ETag): equal to the listing's, with the same
    # size, the object is unchanged and not downloaded. NULL for local files, whose
    # size and mtime are their token.
    conn.execute("ALTER TABLE items ADD COLUMN change_token TEXT")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the migration's transaction first; run the
    # statements one by one instead (complete_statement knows trigger bodies).
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        conn.execute(statement)

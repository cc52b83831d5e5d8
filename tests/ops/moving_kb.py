"""Knowledge bases to move, and a way to compare two catalogs table by table."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from gristmill.audio.events import Event
from gristmill.catalog import CatalogDatabase, SqliteDatabase
from gristmill.catalog.audio import AudioStore, ScannedRecording
from gristmill.catalog.transfer import catalog_tables

WORDS = ("heron river stone mill grain wheel water flour bread night lantern harbour "
         "copper meadow thunder orchard violin glacier saffron compass").split()


def write_texts(folder: Path, files: int, paragraphs: int = 4, seed: int = 7) -> Path:
    """``files`` text files of ``paragraphs`` paragraphs of random words."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        body = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(90))
                           for _ in range(paragraphs))
        (folder / f"note{n:04d}.txt").write_text(f"Note {n}\n\n{body}\n")
    return folder


def fill_catalog(path: Path, items: int, chunks_per_item: int, seed: int = 3) -> None:
    """A finished catalog of ``items`` items with their chunks, written with SQL (fast:
    what a kill test needs is many rows, not a real ingest's minutes)."""
    rng = random.Random(seed)
    db = SqliteDatabase(path)
    now = time.time()
    try:
        with db.transaction() as txn:
            txn.execute("INSERT INTO jobs (id, collection, sources, state, started_at) "
                        "VALUES (1, 'default', '[]', 'succeeded', ?)", (now,))
            txn.execute("INSERT INTO runs (id, job_id, started_at) VALUES (1, 1, ?)", (now,))
            for i in range(1, items + 1):
                txn.execute("INSERT INTO items (id, collection, source, root, size, sha256, "
                            "status, chunk_count, seen_run, created_at, updated_at) VALUES "
                            "(?, 'default', ?, '/src', 100, ?, 'indexed', ?, 1, ?, ?)",
                            (i, f"/src/f{i:05d}.txt", hashlib.sha256(b"%d" % i).hexdigest(),
                             chunks_per_item, now, now))
                rows = []
                for seq in range(chunks_per_item):
                    text = " ".join(rng.choice(WORDS) for _ in range(60)) + f" item{i}"
                    rows.append((i, seq, text, hashlib.sha256(text.encode()).hexdigest()))
                txn.executemany("INSERT INTO chunks (item_id, collection, seq, text, "
                                "text_hash) VALUES (?, 'default', ?, ?, ?)", rows)
            txn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild')")
    finally:
        db.close()


def add_audio(db: CatalogDatabase, home: Path, item_id: int, user: str = "ada") -> Path:
    """Store a scanned recording with two events on item ``item_id``, one with a clip
    file in the home's clips folder; the clip's path."""
    clip = home.absolute() / "clips" / user / f"laugh-{item_id}.wav"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(os.urandom(4000))
    recording = ScannedRecording(
        user=user, model="f" * 64, settings='{"threshold":0.5}', duration=1800.0,
        sample_rate=16000, channels=1, codec="pcm_s16le", compute_seconds=3.5,
        events=(Event("Laughter", 13, 12.5, 14.25, 0.91, 0.7, str(clip)),
                Event("Giggle", 14, 100.0, 101.5, 0.61, 0.55, None)))
    with db.transaction() as txn:
        AudioStore.replace(txn, item_id, recording)
    return clip


def dump(*, path: Path | None = None, url: str | None = None,
         skip: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """Every catalog table's rows (as dicts, in primary-key order; PostgreSQL's
    generated ``tsv`` left out), of the SQLite file ``path`` or the database ``url``."""
    out: dict[str, list[dict[str, Any]]] = {}
    if url is not None:
        import psycopg

        with psycopg.connect(url) as conn:
            for table in catalog_tables():
                if table in skip:
                    continue
                cursor = conn.execute(f"SELECT * FROM {table}")
                names = [d.name for d in cursor.description or []]
                rows = [{n: bytes(v) if isinstance(v, memoryview) else v
                         for n, v in zip(names, row, strict=True) if n != "tsv"}
                        for row in cursor.fetchall()]
                out[table] = sorted(rows, key=_order)
        return out
    assert path is not None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for table in catalog_tables():
            if table in skip:
                continue
            cursor = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            out[table] = sorted((dict(zip(names, row, strict=True)) for row in cursor),
                                key=_order)
    finally:
        conn.close()
    return out


def _order(row: dict[str, Any]) -> tuple[tuple[int, Any], ...]:
    return tuple((0, row[k]) if isinstance(row[k], int) else (1, str(row[k]))
                 for k in ("id", "model", "text_hash", "item_id", "collection", "root")
                 if k in row)


def fts_rows(path: Path) -> int:
    """Rows in a SQLite catalog's keyword index (each chunk once, when it is whole)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM chunks_fts_docsize").fetchone()[0])
    finally:
        conn.close()

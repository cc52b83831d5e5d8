"""The PostgreSQL index's write path and keyword search, on chunks of real text.

Two measurements, each in fresh databases made by the real migrations (dropped after):

1. ``copy``: one item's chunks written by ``COPY`` against a pipelined ``executemany``
   INSERT, for items of 1 to 4,096 chunks (DELETE + insert + COMMIT, the way the runner
   replaces an item's chunks), into the chunks table with its generated ``tsvector`` and
   GIN index (the first ``--gin`` setting), and into the same table without the
   ``tsvector`` column (what the transfer alone costs). Figures: ms per item and chunks/s,
   medians of ``--repeat`` with the two ways alternating.
2. ``gin``: ``--chunks`` chunks ingested item by item, one transaction per ~500 chunks
   (a batcher flush), while a thread runs two-word keyword searches
   (:meth:`PostgresIndex.keyword`, AND first) ``--search-rate`` times a second; once per
   GIN setting in ``--gin``: ``on`` / ``off`` (``fastupdate``), ``on/256`` (on, with
   ``gin_pending_list_limit`` 256 kB). Figures: ingest chunks/s, median and slowest
   flush, search p50/p95/max during the ingest, the same after it (with whatever pending
   list is left: autovacuum may be off or slow) and after a ``VACUUM``.

The text: files under ``/usr/share/doc`` (changelogs, READMEs, copyright files;
gzip-compressed ones decompressed), chunked by :func:`gristmill.chunking.chunk_segments`.
The server: ``--admin`` (default the local PostgreSQL, trust auth).

Example::

    python benchmarks/bench_pg_index.py --chunks 50000 --out BENCH/pg_index.json \
        --gin off on on/1024 on/256 on/256 on/1024 on off
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from gristmill.catalog.postgres import PostgresDatabase, PostgresTransaction
from gristmill.chunking import chunk_segments
from gristmill.errors import StoreError
from gristmill.extract.base import Segment
from gristmill.index.postgres import PostgresIndex
from gristmill.index.sqlite import StoredChunk

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN = DEFAULT_ADMIN  # --admin
_WORD = re.compile(r"[a-z]{4,}")


@contextmanager
def scratch_database(gin: str) -> Iterator[PostgresDatabase]:
    """A fresh catalog (the real migrations) whose GIN index has the settings ``gin``
    names: ``on`` / ``off`` (fastupdate), ``on/256`` (and gin_pending_list_limit in kB)."""
    name = f"bench_pg_index_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(ADMIN)
    db = PostgresDatabase(urllib.parse.urlunsplit(parts._replace(path=f"/{name}")))
    try:
        fastupdate, _, limit = gin.partition("/")
        options = f"fastupdate = {fastupdate}" + (
            f", gin_pending_list_limit = {int(limit)}" if limit else "")
        db.conn.execute(f"ALTER INDEX chunks_tsv SET ({options})")
        yield db
    finally:
        db.close()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# -- the corpus ---------------------------------------------------------------------


def corpus(limit: int) -> list[list[StoredChunk]]:
    """Items (lists of chunks) of real text, ``limit`` chunks in all."""
    items: list[list[StoredChunk]] = []
    total = 0
    for path in sorted(Path("/usr/share/doc").rglob("*")):
        if total >= limit:
            break
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            continue
        if "\x00" in text:
            continue
        chunks = [StoredChunk(c.seq, c.text, c.text_hash, c.page, c.heading)
                  for c in chunk_segments([Segment(text, None, path.parent.name)])]
        if chunks:
            items.append(chunks[: limit - total])
            total += len(items[-1])
    return items


def queries(items: list[list[StoredChunk]], n: int, seed: int = 7) -> list[str]:
    """Two-word queries of words neither rare nor everywhere (in 0.1 % to 3 % of chunks)."""
    df: Counter[str] = Counter()
    texts = [c.text for chunks in items for c in chunks]
    for text in texts:
        df.update(set(_WORD.findall(text.lower())))
    lo, hi = len(texts) * 0.001, len(texts) * 0.03
    pool = sorted(w for w, f in df.items() if lo <= f <= hi)
    rng = random.Random(seed)
    return [f"{rng.choice(pool)} {rng.choice(pool)}" for _ in range(n)]


def _add_item(conn: PostgresTransaction, i: int) -> int:
    now = time.time()
    return int(conn.execute(
        "INSERT INTO items (collection, source, root, status, created_at, updated_at) "
        "VALUES ('bench', ?, '/doc', 'extracted', ?, ?) RETURNING id",
        (f"/doc/{i}", now, now)).fetchone()[0])


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
            "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95)], 2),
            "max_ms": round(1000 * ordered[-1], 2)}


# -- 1. COPY against executemany ------------------------------------------------------


def bench_copy(items: list[list[StoredChunk]], repeat: int, gin: str
               ) -> list[dict[str, Any]]:
    import gristmill.index.postgres as pg

    pool = [c for chunks in items for c in chunks]
    out = []
    default = pg._COPY_FROM
    # "plain": the chunks table without its tsvector column, to show what the transfer
    # alone costs either way.
    for table in ("full-text", "plain"):
        with scratch_database(gin) as db:
            if table == "plain":
                db.conn.execute("ALTER TABLE chunks DROP COLUMN tsv")
            index = PostgresIndex(db)
            for size in (1, 4, 16, 64, 256, 1024, 4096):
                times: dict[str, list[float]] = {"executemany": [], "copy": []}
                for r in range(repeat):
                    modes = [("executemany", 10**9), ("copy", 0)]
                    for mode, threshold in modes if r % 2 else modes[::-1]:
                        pg._COPY_FROM = threshold
                        start = (r * size) % max(1, len(pool) - size)
                        chunks = [StoredChunk(k, c.text, c.text_hash, c.page, c.heading)
                                  for k, c in enumerate(pool[start:start + size])]
                        with db.transaction() as txn:
                            item = _add_item(txn, hash((table, size, mode, r)))
                        began = time.perf_counter()
                        with db.transaction() as txn:
                            index.replace_chunks(txn, item, "bench", chunks)
                        times[mode].append(time.perf_counter() - began)
                row: dict[str, Any] = {"table": table, "chunks": size}
                for mode, values in times.items():
                    median = statistics.median(values)
                    row[f"{mode}_ms"] = round(1000 * median, 2)
                    row[f"{mode}_chunks_per_s"] = round(size / median)
                row["copy_speedup"] = round(row["executemany_ms"] / row["copy_ms"], 2)
                out.append(row)
                print(json.dumps(row), file=sys.stderr)
    pg._COPY_FROM = default
    return out


# -- 2. GIN fastupdate on / off --------------------------------------------------------


def bench_gin(items: list[list[StoredChunk]], gin: str, qs: list[str],
              flush_chunks: int, search_rate: float) -> dict[str, Any]:
    with scratch_database(gin) as writer:
        index = PostgresIndex(writer)
        reader_db = PostgresDatabase(writer.url, readonly=True)
        reader = PostgresIndex(reader_db)
        stop = threading.Event()
        during: list[float] = []

        def search() -> None:
            # Paced, as users search: back-to-back searches would mostly measure how
            # the two compete for the machine's cores.
            k = 0
            while not stop.wait(1 / search_rate):
                began = time.perf_counter()
                reader.keyword(qs[k % len(qs)], None, 50)
                during.append(time.perf_counter() - began)
                k += 1

        thread = threading.Thread(target=search)
        thread.start()
        flushes: list[float] = []
        total = 0
        began = time.perf_counter()
        batch: list[list[StoredChunk]] = []
        pending = 0
        for n, chunks in enumerate(items):
            batch.append(chunks)
            pending += len(chunks)
            if pending >= flush_chunks or n == len(items) - 1:
                t0 = time.perf_counter()
                with writer.transaction() as txn:
                    for offset, item_chunks in enumerate(batch):
                        item = _add_item(txn, n * 1000 + offset)
                        index.replace_chunks(txn, item, "bench", item_chunks)
                flushes.append(time.perf_counter() - t0)
                total += pending
                batch, pending = [], 0
        seconds = time.perf_counter() - began
        stop.set()
        thread.join()
        pending_pages = writer.conn.execute(
            "SELECT pending_pages FROM pgstatginindex('chunks_tsv')").fetchone()[0] \
            if _has_pgstattuple(writer) else None
        after = [_timed(reader, q) for q in qs]
        t0 = time.perf_counter()
        writer.conn.execute("VACUUM chunks")  # what autovacuum would do, some time
        vacuum = time.perf_counter() - t0
        vacuumed = [_timed(reader, q) for q in qs]
        size = writer.conn.execute(
            "SELECT pg_relation_size('chunks_tsv')").fetchone()[0]
        result = {
            "gin": gin, "chunks": total,
            "ingest_chunks_per_s": round(total / seconds),
            "flushes": len(flushes), "flush_p50_ms": round(1000 * statistics.median(flushes), 1),
            "flush_max_ms": round(1000 * max(flushes), 1),
            "search_during": _percentiles(during),
            "pending_pages_after": pending_pages,
            "search_after": _percentiles(after),
            "vacuum_s": round(vacuum, 2), "search_after_vacuum": _percentiles(vacuumed),
            "gin_mb": round(size / 2**20, 1),
        }
        reader_db.close()
        print(json.dumps(result), file=sys.stderr)
        return result


def _timed(index: PostgresIndex, query: str) -> float:
    began = time.perf_counter()
    index.keyword(query, None, 50)
    return time.perf_counter() - began


def _has_pgstattuple(db: PostgresDatabase) -> bool:
    try:
        db.conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    except StoreError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--flush-chunks", type=int, default=500)
    parser.add_argument("--search-rate", type=float, default=5.0,
                        help="keyword searches per second during the ingest")
    parser.add_argument("--only", choices=["copy", "gin"])
    parser.add_argument("--gin", nargs="+", default=["on", "off", "off", "on"],
                        help="GIN settings to compare, in this order: on, off, on/256 "
                        "(fastupdate, and gin_pending_list_limit in kB)")
    parser.add_argument("--admin", default=DEFAULT_ADMIN,
                        help="URL of a database on the server, for CREATE/DROP DATABASE")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    global ADMIN
    ADMIN = args.admin
    items = corpus(args.chunks)
    print(f"corpus: {sum(map(len, items))} chunks in {len(items)} files", file=sys.stderr)
    result: dict[str, Any] = {"chunks": sum(map(len, items)), "files": len(items)}
    with psycopg.connect(ADMIN) as conn:
        result["server"] = conn.execute("SELECT version()").fetchone()[0]
        result["autovacuum"] = conn.execute("SHOW autovacuum").fetchone()[0]
    if args.only in (None, "copy"):
        result["copy"] = bench_copy(items, args.repeat, args.gin[0])
    if args.only in (None, "gin"):
        qs = queries(items, args.queries)
        # Give a setting twice, in mirrored order, so none always runs on a warmer
        # machine.
        result["gin"] = [bench_gin(items, setting, qs, args.flush_chunks, args.search_rate)
                         for setting in args.gin]
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

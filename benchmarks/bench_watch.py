"""`gristmill watch` under a storm of saves: 10,000 saves within 10 s into a watched
folder, then the time until every file is indexed and searchable with its last content.

    python benchmarks/bench_watch.py --work BENCH/watch
    python benchmarks/bench_watch.py --work BENCH/watch --files 2000   # 5 saves a file

A real `gristmill watch` runs in a subprocess (its own home, `--embedder none` unless
asked). Once it has caught up with the empty folder, a writer process makes `--saves`
saves of small text files at an even pace over `--seconds`, spread over `--folders`
sub-folders: every other save is an atomic save (a `.NAME.tmp` file renamed over the
target, as editors and atomic writers do), the rest plain writes. With `--files` below
`--saves`, later saves overwrite earlier files (a random one each), so only the last
write of each file may survive. Each save writes a unique token; the check is that each
file's indexed text holds the token of its last save, and that no other item exists.

Reported: time from the first save to every file indexed with its last content
(``seconds_to_all_indexed``) and from the last save (``lag_after_last_save_s``);
items indexed against files written; an FTS5 search for a sample of last tokens; the
watcher tree's peak RSS (parent + workers, sampled every 50 ms); the most SQLite
connections the tree held open at once (descriptors on ``gristmill.db-wal``, one per
connection; those on ``gristmill.db`` itself too, see :class:`DbFds`); rescans after
lost events; the stop on SIGTERM (exit status, seconds); and the cores the machine had
busy, since on a shared machine a test suite running beside the benchmark slows it.

With ``--database postgresql://.../NAME`` the watcher keeps its catalog in PostgreSQL
instead (the database is dropped and made afresh), and the connections counted are the
server's own count of sessions on that database (``pg_stat_activity``, sampled every
50 ms), to compare with the pool size (``--pool-size``, default 3).

    python benchmarks/bench_watch.py --work BENCH/watch-pg \
        --database postgresql://postgres@127.0.0.1:5432/gristmill_bench_watch
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psutil
from _rss import PeakRSS

WRITER = r"""
import json, os, random, sys, time
folder, saves, files, folders, seconds, seed = sys.argv[1:7]
saves, files, folders, seconds = int(saves), int(files), int(folders), float(seconds)
rng = random.Random(int(seed))
last = {}
start = time.monotonic()
for i in range(saves):
    target = start + i * seconds / saves
    delay = target - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    n = i if i < files else rng.randrange(files)
    path = os.path.join(folder, f"d{n % folders:02d}", f"f{n:05d}.txt")
    text = f"file f{n:05d} save zs{i:06d} of the storm\n"
    if i % 2:
        temp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        with open(temp, "w") as fh:
            fh.write(text)
        os.replace(temp, path)
    else:
        with open(path, "w") as fh:
            fh.write(text)
    last[path] = f"zs{i:06d}"
print(json.dumps({"seconds": time.monotonic() - start, "last": last}))
"""


class DbFds:
    """Samples the descriptors a process tree holds open on a SQLite file.

    Each open connection holds one on the database and, in WAL mode, one on its
    ``-wal`` file. The first count can run one above the live connections: SQLite's unix
    VFS defers the close() of a closed connection's database descriptor while the
    process holds locks on that file (closing it would drop them).
    """

    def __init__(self, pid: int, path: Path, every: float = 0.05) -> None:
        self.pid, self.path, self.every = pid, str(path), every
        self.peak = 0  # descriptors on the database file, whole tree
        self.wal_peak = 0  # descriptors on its -wal file: open connections
        self.by_process_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = wal = 0
            for proc in procs:
                try:
                    paths = [f.path for f in proc.open_files()]
                except psutil.Error:
                    continue
                n = paths.count(self.path)
                total += n
                wal += paths.count(self.path + "-wal")
                self.by_process_peak = max(self.by_process_peak, n)
            self.peak = max(self.peak, total)
            self.wal_peak = max(self.wal_peak, wal)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class PgSessions:
    """Samples how many sessions PostgreSQL has open on one database (its own view:
    every client connection, whichever process holds it), less this sampler's."""

    def __init__(self, url: str, every: float = 0.05) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True)
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            row = self._conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid != pg_backend_pid()").fetchone()
            self.peak = max(self.peak, int(row[0]) if row else 0)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()


def _fresh_pg_database(url: str) -> None:
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"--database: use a plain database name, not {name!r}")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


class Catalog:
    """The benchmark's own read of the catalog (not gristmill's code under test)."""

    def __init__(self, home: Path, url: str | None) -> None:
        self.path, self.url = home / "gristmill.db", url

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url:
            import psycopg

            try:
                with psycopg.connect(self.url) as conn:
                    return conn.execute(sql).fetchall()
            except psycopg.errors.UndefinedTable:
                return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def check(self, last: dict[str, str]) -> tuple[int, int, int, int]:
        """(indexed with the last content, stale or missing, extra items, not finished)."""
        concat = "string_agg(c.text, ' ')" if self.url else "group_concat(c.text, ' ')"
        rows = self._rows(
            f"SELECT i.source, i.status, coalesce({concat}, '') FROM items i "
            f"LEFT JOIN chunks c ON c.item_id = i.id GROUP BY i.id, i.source, i.status")
        good = stale = extra = unfinished = 0
        for source, status, text in rows:
            if status in ("pending", "processing", "extracted"):
                unfinished += 1
            token = last.get(source)
            if token is None:
                extra += 1
            elif status == "indexed" and token in text:
                good += 1
            else:
                stale += 1
        return good, len(last) - good, extra, unfinished

    def count_indexed(self) -> int:
        rows = self._rows("SELECT count(*) FROM items WHERE status = 'indexed'")
        return int(rows[0][0]) if rows else 0


def _cpu_busy() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _tree_cpu(pid: int) -> float:
    total = 0.0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work.resolve()
    home, folder, log_path = work / "home", work / "watched", work / "watch.log"
    shutil.rmtree(work, ignore_errors=True)
    for i in range(args.folders):
        (folder / f"d{i:02d}").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    env.update(GRISTMILL_HOME=str(home), GRISTMILL_EMBEDDER=args.embedder,
               GRISTMILL_WORKERS=str(args.workers),
               GRISTMILL_WATCH_DEBOUNCE=str(args.debounce))
    if args.window:
        env["GRISTMILL_WINDOW"] = str(args.window)
    if args.database:
        _fresh_pg_database(args.database)
        env.update(GRISTMILL_DATABASE_URL=args.database,
                   GRISTMILL_POOL_SIZE=str(args.pool_size))
    catalog = Catalog(home, args.database)
    log = open(log_path, "wb")  # noqa: SIM115 - closed after the watcher exits
    watcher = subprocess.Popen([sys.executable, "-m", "gristmill", "watch", str(folder)],
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    db_path = home / "gristmill.db"
    sessions: PgSessions | None = None
    try:
        deadline = time.monotonic() + 120
        while b"Caught up" not in log_path.read_bytes():
            if watcher.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the watcher did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        fds = DbFds(watcher.pid, db_path)
        sessions = PgSessions(args.database) if args.database else None
        busy0, total0 = _cpu_busy()
        cpu0 = _tree_cpu(watcher.pid)
        with PeakRSS(watcher.pid) as rss:
            started = time.monotonic()
            writer = subprocess.run(
                [sys.executable, "-c", WRITER, str(folder), str(args.saves), str(args.files),
                 str(args.folders), str(args.seconds), str(args.seed)],
                capture_output=True, text=True, check=True)
            written = json.loads(writer.stdout)
            wrote_at = time.monotonic()
            last: dict[str, str] = written["last"]
            deadline = time.monotonic() + args.timeout
            indexed_at = None
            while time.monotonic() < deadline:
                # The cheap count first; the full check of every text once it adds up.
                if catalog.count_indexed() >= len(last):
                    good, missing, extra, unfinished = catalog.check(last)
                    if missing == 0 and extra == 0 and unfinished == 0:
                        indexed_at = time.monotonic()
                        break
                time.sleep(0.1)
            cpu1 = _tree_cpu(watcher.pid)
            busy1, total1 = _cpu_busy()
        fds.stop()
        if sessions is not None:
            sessions.stop()
        good, missing, extra, unfinished = catalog.check(last)
        searchable = _search_sample(home, env, last, args.search_sample, args.seed)
        stop_started = time.monotonic()
        watcher.send_signal(signal.SIGTERM)
        exit_code = watcher.wait(timeout=120)
        stop_seconds = time.monotonic() - stop_started
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait()
        log.close()
    text = log_path.read_text(errors="replace")
    cpus = os.cpu_count() or 1
    wall = (indexed_at or time.monotonic()) - started
    machine_busy = (busy1 - busy0) / max(total1 - total0, 1e-9) * cpus  # cores in use
    return {
        "saves": args.saves, "files": len(last), "seconds_writing": round(written["seconds"], 2),
        "saves_per_s": round(args.saves / written["seconds"], 1),
        "all_indexed": indexed_at is not None,
        "seconds_to_all_indexed": None if indexed_at is None else round(indexed_at - started, 2),
        "lag_after_last_save_s": None if indexed_at is None else round(indexed_at - wrote_at, 2),
        "files_per_s_end_to_end": round(len(last) / wall, 1),
        "indexed_with_last_content": good, "missing_or_stale": missing, "extra_items": extra,
        "unfinished_items": unfinished,
        "search_sample": searchable,
        "peak_rss_tree_mib": round(rss.peak_tree_bytes / 2**20, 1),
        "peak_rss_process_mib": round(rss.peak_process_bytes / 2**20, 1),
        "max_db_fds_tree": fds.peak, "max_db_fds_one_process": fds.by_process_peak,
        "max_db_connections_tree": (sessions.peak if sessions is not None else fds.wal_peak),
        "database": "postgresql" if args.database else "sqlite",
        "pool_size": args.pool_size if args.database else None,
        "rescans": text.count("events were lost"),
        "sigterm_exit_code": exit_code, "sigterm_seconds": round(stop_seconds, 2),
        "watcher_tree_cpu_s": round(cpu1 - cpu0, 1),
        "machine_cores_busy": round(machine_busy, 2), "cpu_count": cpus,
        "workers": args.workers, "debounce": args.debounce, "embedder": args.embedder,
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }


def _search_sample(home: Path, env: dict[str, str], last: dict[str, str], n: int,
                   seed: int) -> dict[str, int]:
    """Search for ``n`` files' last tokens: each must find exactly its own file."""
    from gristmill import KnowledgeBase

    rng = random.Random(seed)
    sample = rng.sample(sorted(last), min(n, len(last)))
    right = 0
    settings = {"embedder": env["GRISTMILL_EMBEDDER"],
                "database_url": env.get("GRISTMILL_DATABASE_URL")}
    with KnowledgeBase.open(home, **settings) as kb:
        for source in sample:
            hits = kb.search(last[source], mode="keyword", k=5)
            right += [hit.source for hit in hits] == [source]
    return {"queries": len(sample), "exactly_right": right}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (wiped)")
    parser.add_argument("--saves", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=10_000,
                        help="distinct files; fewer than --saves means re-saves")
    parser.add_argument("--seconds", type=float, default=10.0, help="time the saves span")
    parser.add_argument("--folders", type=int, default=20)
    parser.add_argument("-p", "--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--debounce", type=float, default=0.5)
    parser.add_argument("--window", type=int, help="items in flight at most (default: the "
                        "setting's, 4 x workers)")
    parser.add_argument("--embedder", default="none", choices=["none", "minilm"])
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds after the last save to wait for everything")
    parser.add_argument("--search-sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database", help="a PostgreSQL URL for the catalog (its database "
                        "is dropped and made afresh); default: SQLite in the home")
    parser.add_argument("--pool-size", type=int, default=3,
                        help="connections per process at most, with --database")
    parser.add_argument("--out", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.files > args.saves:
        parser.error("--files cannot exceed --saves")
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if not summary["all_indexed"] or summary["missing_or_stale"] or summary["extra_items"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

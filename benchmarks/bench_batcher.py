"""The batch writer against one INSERT + one COMMIT per row, in the same run.

Each round makes a fresh PostgreSQL database (dropped afterwards) and a fresh SQLite file,
then runs every mode for ``--seconds`` in a rotated order, each into its own table of
small rows (id bigint, ts double precision, payload text of ``--payload`` bytes):

- ``batch-pg``: :class:`gristmill.batching.BatchWriter` (COPY, ``--pool-size``
  connections), ``--producers`` threads inserting as fast as backpressure lets them;
- ``row-pg-1`` / ``row-pg-3``: the old way, one INSERT + one COMMIT per row, on 1 and on
  3 connections (one thread each);
- ``batch-sqlite`` / ``row-sqlite-1``: the same on a SQLite file (WAL, synchronous=FULL),
  for reference.

``--rate`` paces the batcher's producers to a total offered load (latency below
saturation); by default they insert as fast as backpressure lets them.

Figures per mode: rows durably committed per second (rows in the table at the end over
the time from the first insert to the last commit, the final drain included); the time
from the producer's call to the moment the row's commit returned (p50, p99; every 10th
row for the batcher, every row for the old way), which for the batcher includes any wait
for room in its queue; the most connections to the database seen in pg_stat_activity
(sampled every 20 ms). The markdown table gives medians over rounds, and the ratios of
the batcher to the old way are taken within each round before the median.

Example::

    python benchmarks/bench_batcher.py --rounds 3 --seconds 10 --out BENCH/batcher.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg

from gristmill.batching import BatchWriter

TABLE = "CREATE TABLE {name} (id bigint NOT NULL, ts double precision NOT NULL, payload text)"
MODES = ["batch-pg", "row-pg-1", "row-pg-3", "batch-sqlite", "row-sqlite-1"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


class ConnectionSampler:
    """The most client connections to one database seen in pg_stat_activity, and the CPU
    seconds their server processes used (last seen), every 20 ms."""

    def __init__(self, admin_url: str, dbname: str) -> None:
        self.max_seen = 0
        self.backend_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(admin_url, dbname))

    def _run(self, admin_url: str, dbname: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            while not self._stop.is_set():
                pids = [pid for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_type = 'client backend'", (dbname,))]
                self.max_seen = max(self.max_seen, len(pids))
                for pid in pids:
                    try:
                        times = psutil.Process(pid).cpu_times()
                    except psutil.Error:
                        continue
                    self.backend_cpu[pid] = times.user + times.system
                self._stop.wait(0.02)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_batcher(target: str, table: str, args: argparse.Namespace) -> dict[str, Any]:
    """Producers insert through one BatchWriter until the deadline; then close (drain)."""
    payload = "p" * args.payload
    latencies: list[float] = []  # list.append is atomic: callbacks run on flushers
    writer = BatchWriter(target, max_rows=args.max_rows, max_delay=args.max_delay,
                         max_queue=args.max_queue, pool_size=args.pool_size,
                         handle_signals=False, name="bench")
    started = time.perf_counter()
    deadline = started + args.seconds

    def produce(k: int) -> None:
        n = args.producers
        clock, insert = time.perf_counter, writer.insert
        interval = n / args.rate if args.rate else 0.0  # --rate: paced producers
        i = 0
        while True:
            t0 = clock()
            if t0 >= deadline:
                return
            if interval and t0 < started + i * interval:
                time.sleep(started + i * interval - t0)
                t0 = clock()
            ticket = insert(table, {"id": k + i * n, "ts": time.time(), "payload": payload})
            if i % 10 == 0:
                ticket.add_done_callback(lambda _t, t0=t0: latencies.append(clock() - t0))
            i += 1

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(args.producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats_before_close = writer.stats()
    writer.close()
    elapsed = time.perf_counter() - started
    final = writer.stats()
    return {"elapsed": elapsed, "latencies": latencies,
            "writer": {**final, "rows_per_second_while_producing":
                       stats_before_close["rows_per_second"]}}


def run_row_commits(connect: Callable[[], Any], table: str, connections: int,
                    args: argparse.Namespace, placeholder: str) -> dict[str, Any]:
    """The old way: each thread its own connection, one INSERT + one COMMIT per row."""
    payload = "p" * args.payload
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statement = f"INSERT INTO {table} (id, ts, payload) VALUES ({placeholder})"
    conns = [connect() for _ in range(connections)]
    started = time.perf_counter()
    deadline = started + args.seconds

    def produce(k: int) -> None:
        conn, mine, clock = conns[k], latencies[k], time.perf_counter
        i = 0
        while True:
            t0 = clock()
            if t0 >= deadline:
                return
            conn.execute(statement, (k + i * connections, time.time(), payload))
            conn.commit()
            mine.append(clock() - t0)
            i += 1

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return {"elapsed": elapsed, "latencies": [x for part in latencies for x in part]}


def sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)  # implicit BEGIN before INSERT
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # what BatchWriter uses: durable commits
    return conn


def run_mode(mode: str, pg_url: str, admin_url: str, dbname: str, sqlite_path: str,
             args: argparse.Namespace) -> dict[str, Any]:
    table = mode.replace("-", "_")
    busy0, self0, wall0 = _busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    server_cpu = 0.0
    if "sqlite" in mode:
        conn = sqlite3.connect(sqlite_path)
        conn.execute(TABLE.format(name=table))
        conn.close()
        if mode == "batch-sqlite":
            out = run_batcher(sqlite_path, table, args)
        else:
            out = run_row_commits(lambda: sqlite_connect(sqlite_path), table, 1, args, "?, ?, ?")
        conn = sqlite3.connect(sqlite_path)
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        conn.close()
        max_connections = 1
    else:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(TABLE.format(name=table))
        with ConnectionSampler(admin_url, dbname) as sampler:
            if mode == "batch-pg":
                out = run_batcher(pg_url, table, args)
            else:
                out = run_row_commits(lambda: psycopg.connect(pg_url), table,
                                      int(mode.rsplit("-", 1)[1]), args, "%s, %s, %s")
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        max_connections = sampler.max_seen
        server_cpu = sum(sampler.backend_cpu.values())
    wall = time.perf_counter() - wall0
    ours = _own_cpu_seconds() - self0 + server_cpu
    other = max(0.0, _busy_seconds() - busy0 - ours)
    lat, elapsed = out.pop("latencies"), out.pop("elapsed")
    return {"mode": mode, "rows": rows, "seconds": round(elapsed, 3),
            "rows_per_second": round(rows / elapsed, 1), **out,
            "latency_samples": len(lat), "latency_p50_ms": round(percentile(lat, 50) * 1e3, 2),
            "latency_p99_ms": round(percentile(lat, 99) * 1e3, 2),
            "max_connections": max_connections, "cpu_s": round(ours, 2),
            "other_cpu_share": round(other / (wall * (os.cpu_count() or 1)), 3)}


def _busy_seconds() -> float:
    # Everything but idle and iowait: time any process (ours or not) had a CPU.
    times = psutil.cpu_times()._asdict()
    return sum(v for k, v in times.items() if k not in ("idle", "iowait", "guest",
                                                          "guest_nice"))


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_round(index: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    dbname = f"gm_bench_{uuid.uuid4().hex[:10]}"
    base = args.admin_url.rsplit("/", 1)[0]
    pg_url = f"{base}/{dbname}"
    order = MODES[index % len(MODES):] + MODES[:index % len(MODES)]  # rotate: no order bias
    results = []
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
        try:
            with tempfile.TemporaryDirectory(dir=args.sqlite_dir) as tmp:
                sqlite_path = str(Path(tmp) / "bench.db")
                for mode in order:
                    if mode not in args.modes:
                        continue
                    load = os.getloadavg()[0]
                    result = run_mode(mode, pg_url, args.admin_url, dbname, sqlite_path, args)
                    result["loadavg_1m_before"] = round(load, 2)
                    result["round"] = index
                    results.append(result)
                    print(f"round {index} {mode:13s} {result['rows_per_second']:>10,.0f} rows/s "
                          f"p50 {result['latency_p50_ms']:8.2f} ms  p99 "
                          f"{result['latency_p99_ms']:8.2f} ms  max conns "
                          f"{result['max_connections']}  other cpu "
                          f"{result['other_cpu_share']:.2f}", file=sys.stderr, flush=True)
        finally:
            admin.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
    return results


def summarise(results: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    by_mode: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        mine = [r for r in results if r["mode"] == mode]
        if not mine:
            continue
        by_mode[mode] = {key: statistics.median(r[key] for r in mine) for key in (
            "rows_per_second", "latency_p50_ms", "latency_p99_ms", "max_connections",
            "other_cpu_share")}
        by_mode[mode]["max_connections"] = max(r["max_connections"] for r in mine)
    ratios: dict[str, float] = {}
    for batch, row in (("batch-pg", "row-pg-1"), ("batch-pg", "row-pg-3"),
                       ("batch-sqlite", "row-sqlite-1")):
        per_round = []
        for i in range(rounds):
            a = [r for r in results if r["round"] == i and r["mode"] == batch]
            b = [r for r in results if r["round"] == i and r["mode"] == row]
            if a and b:
                per_round.append(a[0]["rows_per_second"] / b[0]["rows_per_second"])
        if per_round:
            ratios[f"{batch} / {row}"] = round(statistics.median(per_round), 1)
    return {"modes": by_mode, "ratios": ratios}


def markdown(summary: dict[str, Any], args: argparse.Namespace) -> str:
    offered = f"offered {args.rate:,.0f} rows/s" if args.rate else "unpaced"
    lines = [f"{args.rounds} rounds x {args.seconds:g} s per mode; batcher ({offered}): max_rows "
             f"{args.max_rows}, max_delay {args.max_delay:g} s, max_queue {args.max_queue}, "
             f"pool_size {args.pool_size}, {args.producers} producer threads; medians over "
             "rounds (max connections: the most seen in any round)", "",
             "| mode | rows/s | enqueue -> commit p50 | p99 | max connections "
             "| other_cpu_share |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for mode, m in summary["modes"].items():
        lines.append(f"| `{mode}` | {m['rows_per_second']:,.0f} | {m['latency_p50_ms']:.1f} ms "
                     f"| {m['latency_p99_ms']:.1f} ms | {m['max_connections']} "
                     f"| {m['other_cpu_share']:.2f} |")
    lines.append("")
    for name, ratio in summary["ratios"].items():
        lines.append(f"- `{name}`: {ratio}x rows/s (median of per-round ratios)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "GRISTMILL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--producers", type=int, default=4, help="batcher producer threads")
    parser.add_argument("--max-rows", type=int, default=500)
    parser.add_argument("--max-delay", type=float, default=1.0)
    parser.add_argument("--max-queue", type=int, default=10_000)
    parser.add_argument("--pool-size", type=int, default=3)
    parser.add_argument("--payload", type=int, default=100, help="payload bytes per row")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="rows/s offered to the batcher modes, all producers together "
                             "(default 0: as fast as backpressure allows)")
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--sqlite-dir", help="folder for the SQLite file (default: $TMPDIR)")
    parser.add_argument("--out", type=Path, help="write the summary and every round as JSON")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    for index in range(args.rounds):
        results.extend(one_round(index, args))
    summary = summarise(results, args.rounds)
    report = {"summary": summary, "rounds": results, "settings": vars(args) | {
        "out": str(args.out) if args.out else None},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()}}
    with psycopg.connect(args.admin_url) as conn:
        report["machine"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        report["machine"]["synchronous_commit"] = conn.execute(
            "SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
    print(markdown(summary, args))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

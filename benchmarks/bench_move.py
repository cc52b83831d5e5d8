"""Moving a knowledge base (issue 16): export, import and migrate, against the floors.

Builds knowledge bases of real text at two sizes (``--files N`` and four times that:
paragraphs of the Debian copyright files under /usr/share/doc, drawn with a seed, one
text file each, ingested with MiniLM), then, for each size, runs every case as a
subprocess of its own and samples the peak RSS of its whole tree (``_rss.PeakRSS``):

- ``export``: ``gristmill export`` of the SQLite home;
- ``import-sqlite``: ``gristmill import`` of that archive into a new SQLite home;
- ``import-pg``: the same into a fresh PostgreSQL database (``--admin-url``);
- ``migrate-pg``: ``gristmill migrate --to`` a fresh PostgreSQL database;
- floor ``sqlite-backup+zstd``: SQLite's online backup of the catalog file, then zstd
  (level 3, as the archive) over the copy: the least work a consistent compressed copy
  of a SQLite home costs;
- peer ``pg_dump -Fc`` / ``pg_restore``: what the seeds' runbooks did on PostgreSQL
  (with ``--pg-peer``, after ``import-pg`` filled a database to dump).

Rounds are interleaved (``--rounds``), and medians reported. Memory must not grow with
the knowledge base: the table shows each case's peak at both sizes and their ratio.

    python benchmarks/bench_move.py --work BENCH/move --files 2000 --rounds 3 \\
        --admin-url postgresql://postgres@127.0.0.1:5432/postgres --pg-peer
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard
from _rss import PeakRSS

GRISTMILL = [sys.executable, "-m", "gristmill"]


def _paragraphs() -> list[str]:
    """Real English prose: the paragraphs of the Debian copyright files on this machine."""
    found: list[str] = []
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for block in text.split("\n\n"):
            words = block.split()
            if len(words) >= 20:
                found.append(" ".join(words))
    return found


def make_files(folder: Path, files: int, seed: int) -> None:
    """``files`` text files of 6-12 paragraphs each (about three chunks), seeded."""
    folder.mkdir(parents=True, exist_ok=True)
    paragraphs = _paragraphs()
    rng = random.Random(seed)
    for number in range(files):
        picked = rng.sample(paragraphs, rng.randint(6, 12))
        (folder / f"note-{number:06d}.txt").write_text(
            f"Note {number}\n\n" + "\n\n".join(picked) + "\n", encoding="utf-8")


def _env(home: Path, database: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    env["GRISTMILL_HOME"] = str(home)
    if database is not None:
        env["GRISTMILL_DATABASE_URL"] = database
    return env


def _measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``command``; its wall time and the peak RSS of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as rss:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"seconds": round(wall, 3), "peak_mib": round(rss.peak_tree_bytes / 2**20, 1),
            "stdout": stdout}


def build_kb(work: Path, files: int, seed: int) -> Path:
    """A home with ``files`` ingested text files (kept between runs of the benchmark)."""
    home = work / f"kb-{files}" / "home"
    if (home / "gristmill.db").is_file():
        return home
    docs = work / f"kb-{files}" / "docs"
    make_files(docs, files, seed)
    env = _env(home)
    done = subprocess.run([*GRISTMILL, "ingest", str(docs), "--json"], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"ingest failed:\n{done.stderr[-3000:]}")
    return home


def replicate(home: Path, copies: int) -> Path:
    """A home holding ``copies`` copies of ``home``'s items and chunks, each copy a
    collection of its own (``copy1``...; the vectors are shared, as the embedding cache
    shares them for equal texts): a large catalog in seconds instead of hours of
    embedding. Written with SQL here, a benchmark's fixture, never by the product."""
    target = home.parent.parent / f"{home.parent.name}-x{copies}" / "home"
    if (target / "gristmill.db").is_file():
        return target
    target.mkdir(parents=True)
    source = sqlite3.connect(home / "gristmill.db")
    copy = sqlite3.connect(target / "gristmill.db")
    source.backup(copy)
    source.close()
    item_cols = [r[1] for r in copy.execute("PRAGMA table_info(items)")]
    chunk_cols = [r[1] for r in copy.execute("PRAGMA table_info(chunks)")]
    items_span = copy.execute("SELECT max(id) FROM items").fetchone()[0]
    chunks_span = copy.execute("SELECT max(id) FROM chunks").fetchone()[0]
    shifted = {"id": "id + :i", "parent_id": "parent_id + :i", "item_id": "item_id + :i",
               "collection": "'copy' || :k", "source": "source || '#copy' || :k"}
    with copy:
        for k in range(1, copies):
            params = {"i": k * items_span, "k": k}
            copy.execute(f"INSERT INTO items ({', '.join(item_cols)}) SELECT "
                         + ", ".join(shifted.get(c, c) for c in item_cols)
                         + " FROM items WHERE id <= :span", {**params, "span": items_span})
            chunk_shift = {**shifted, "id": "id + :c"}
            copy.execute(f"INSERT INTO chunks ({', '.join(chunk_cols)}) SELECT "
                         + ", ".join(chunk_shift.get(c, c) for c in chunk_cols)
                         + " FROM chunks WHERE id <= :span",
                         {**params, "c": k * chunks_span, "span": chunks_span})
        copy.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild')")
    copy.close()
    return target


class _Postgres:
    """Fresh databases on the server at ``admin_url``, dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.made: list[str] = []

    def fresh(self) -> str:
        import psycopg

        name = f"gm_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for name in self.made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.clear()


def _floor_backup(home: Path, out: Path) -> dict[str, Any]:
    """SQLite's online backup of the catalog, then zstd level 3 over the copy."""
    started = time.perf_counter()
    copy = out.with_suffix(".db")
    source = sqlite3.connect(home / "gristmill.db")
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    with copy.open("rb") as raw, out.open("wb") as packed:
        zstandard.ZstdCompressor(level=3).copy_stream(raw, packed)
    seconds = time.perf_counter() - started
    copy.unlink()
    return {"seconds": round(seconds, 3), "bytes": out.stat().st_size}


def _cases(home: Path, work: Path, pg: _Postgres | None, pg_peer: bool
           ) -> Iterator[tuple[str, dict[str, Any]]]:
    archive = work / "kb.gristmill"
    archive.unlink(missing_ok=True)
    result = _measure([*GRISTMILL, "export", str(archive), "--json"], _env(home))
    result["bytes"] = archive.stat().st_size
    yield "export", result
    target = work / "imported"
    shutil.rmtree(target, ignore_errors=True)
    yield "import-sqlite", _measure([*GRISTMILL, "import", str(archive), "--json"],
                                    _env(target))
    floor = work / "floor.db.zst"
    floor_result = _floor_backup(home, floor)
    floor.unlink()
    yield "floor sqlite-backup+zstd", floor_result
    if pg is None:
        return
    url = pg.fresh()
    yield "import-pg", _measure([*GRISTMILL, "import", str(archive), "--json"],
                                _env(work / "pg-home", url))
    yield "migrate-pg", _measure([*GRISTMILL, "migrate", "--to", pg.fresh(), "--json"],
                                 _env(home))
    if pg_peer:
        dump = work / "peer.dump"
        yield "peer pg_dump -Fc", _measure(["pg_dump", "-Fc", "-f", str(dump), url],
                                           dict(os.environ))
        restored = pg.fresh()
        yield "peer pg_restore", _measure(
            ["pg_restore", "--no-owner", "-d", restored, str(dump)], dict(os.environ))
        dump.unlink()
    pg.drop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--files", type=int, default=2000,
                        help="files of the small knowledge base (the large has 4x)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--admin-url", help="PostgreSQL server to make databases on")
    parser.add_argument("--pg-peer", action="store_true",
                        help="also pg_dump -Fc / pg_restore the imported database")
    parser.add_argument("--replicate", type=int, default=0, metavar="N",
                        help="also a catalog of N copies of the large one (SQL-made)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    pg = _Postgres(args.admin_url) if args.admin_url else None
    sizes = [args.files, 4 * args.files]
    homes = {size: build_kb(args.work, size, args.seed + size) for size in sizes}
    if args.replicate > 1:
        big = args.replicate * sizes[-1]
        homes[big] = replicate(homes[sizes[-1]], args.replicate)
        sizes.append(big)
    results: dict[int, dict[str, list[dict[str, Any]]]] = {s: {} for s in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            work = args.work / f"kb-{size}" / "runs"
            work.mkdir(parents=True, exist_ok=True)
            for name, result in _cases(homes[size], work, pg, args.pg_peer):
                result.pop("stdout", None)
                results[size].setdefault(name, []).append(result)
    report = _report(homes, results)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_table(report)


def _chunks(home: Path) -> int:
    with sqlite3.connect(f"file:{home / 'gristmill.db'}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])


def _report(homes: dict[int, Path], results: dict[int, dict[str, list[dict[str, Any]]]]
            ) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                              "sizes": {}}
    for size, cases in results.items():
        home = homes[size]
        entry: dict[str, Any] = {"files": size, "chunks": _chunks(home),
                                 "catalog_bytes": (home / "gristmill.db").stat().st_size,
                                 "cases": {}}
        for name, runs in cases.items():
            entry["cases"][name] = {
                "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
                "peak_mib_median": (round(statistics.median(r["peak_mib"] for r in runs), 1)
                                    if "peak_mib" in runs[0] else None),
                "bytes": runs[-1].get("bytes"), "rounds": len(runs)}
        report["sizes"][str(size)] = entry
    return report


def _print_table(report: dict[str, Any]) -> None:
    sizes = list(report["sizes"].values())
    print("| case | " + " | ".join(f"{s['files']} files ({s['chunks']} chunks): s, peak MiB"
                                   for s in sizes) + " | peak ratio |")
    print("| --- " * (len(sizes) + 2) + "|")
    for name in sizes[0]["cases"]:
        cells = []
        peaks = []
        for s in sizes:
            case = s["cases"].get(name, {})
            peak = case.get("peak_mib_median")
            peaks.append(peak)
            cells.append(f"{case.get('seconds_median')} s, {peak if peak is not None else '-'}")
        ratio = (f"{peaks[-1] / peaks[0]:.2f}x" if all(p for p in peaks) else "-")
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()

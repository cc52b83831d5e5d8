"""gristmill's own figures: ingest to keyword-searchable, a no-change re-run, and the
embedding stage against the raw onnxruntime floor on the same chunks and batches.

    python benchmarks/bench_ingest.py --files-from LIST --work BENCH/gm --out result.json
    python benchmarks/bench_ingest.py CORPUS_DIR --work BENCH/gm --embed-chunks 1500

The ingest runs the real CLI in a subprocess (peak RSS of its whole tree sampled by
``_rss.PeakRSS``); the files are presented as a folder of symlinks, which gristmill
follows, so any file list can be ingested without copying.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import add_selection_args, select_files
from _rss import PeakRSS


def _link_farm(files: list[Path], folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, path in enumerate(files):
        # Keep the extension (it picks the extractor); the index keeps names unique.
        os.symlink(path.resolve(), folder / f"{i:06d}-{path.name}")


def _ingest(folder: Path, home: Path, embedder: str, workers: int) -> dict[str, Any]:
    env = {**os.environ, "GRISTMILL_HOME": str(home), "GRISTMILL_EMBEDDER": embedder,
           "GRISTMILL_WORKERS": str(workers)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gristmill", "ingest", str(folder), "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    with PeakRSS(proc.pid) as rss:
        out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"gristmill ingest failed with exit {proc.returncode}")
    report = json.loads(out)
    db = sqlite3.connect(home / "gristmill.db")
    pages = db.execute("SELECT coalesce(sum(pages), 0) FROM items "
                       "WHERE status IN ('indexed', 'extracted')").fetchone()[0]
    db.close()
    return {"seconds": seconds, "seconds_to_searchable": report["seconds_to_searchable"],
            "items": report["items"], "chunks": report["chunks"], "pages": pages,
            "peak_rss_mb": rss.peak_tree_bytes / 2**20}


def _embedding_vs_floor(folder: Path, work: Path, max_chunks: int, rounds: int
                        ) -> dict[str, Any]:
    """Engine: KnowledgeBase.embed_pending() over extracted chunks. Floor: session.run on
    exactly the batches the engine forms from the same texts."""
    from gristmill import KnowledgeBase

    home = work / "embed-home"
    shutil.rmtree(home, ignore_errors=True)
    with KnowledgeBase.open(home, embedder="minilm") as kb:
        kb.ingest([folder], embed=False)
        texts = [row[0] for row in kb.db.conn.execute(
            "SELECT text FROM chunks GROUP BY text_hash ORDER BY min(id)")]
    keep = set(texts[:max_chunks])
    engine_runs, floor_runs = [], []
    for _ in range(rounds):
        shutil.rmtree(home / "copy", ignore_errors=True)
        with KnowledgeBase.open(home, embedder="minilm") as kb:
            # Drop chunks beyond the sample and any vectors from an earlier round.
            kb.db.conn.execute("DELETE FROM embeddings")
            placeholders = ",".join("?" * len(keep))
            kb.db.conn.execute(
                "UPDATE items SET status = 'extracted' WHERE status = 'indexed'")
            kb.db.conn.execute(
                f"DELETE FROM chunks WHERE text NOT IN ({placeholders})", list(keep))
            started = time.perf_counter()
            kb.embed_pending()
            engine_runs.append(time.perf_counter() - started)
            embedder = kb.embedder
            assert embedder is not None
            sample = sorted(keep)
            ids = embedder.tokenize(sample)  # type: ignore[attr-defined]
            batches = embedder.batches(ids)  # type: ignore[attr-defined]
            started = time.perf_counter()
            for batch in batches:
                embedder.run_batch([ids[i] for i in batch])  # type: ignore[attr-defined]
            floor_runs.append(time.perf_counter() - started)
    n = len(keep)
    engine, floor = statistics.median(engine_runs), statistics.median(floor_runs)
    return {"chunks": n, "engine_seconds": engine, "floor_seconds": floor,
            "engine_chunks_per_s": n / engine, "floor_chunks_per_s": n / floor,
            "engine_over_floor": engine / floor, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_selection_args(parser, default_pattern="*")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("-p", "--workers", type=int, default=2)
    parser.add_argument("--embed-chunks", type=int, default=0,
                        help="also time the embedding stage on this many distinct chunks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    files = list(select_files(args))
    farm = args.work / "files"
    _link_farm(files, farm)
    home = args.work / "home"
    shutil.rmtree(home, ignore_errors=True)
    result: dict[str, Any] = {"files": len(files), "workers": args.workers}
    first = _ingest(farm, home, "none", args.workers)
    result["ingest_keyword"] = first
    result["ingest_keyword"]["files_per_s"] = len(files) / first["seconds_to_searchable"]
    result["ingest_keyword"]["pages_per_s"] = first["pages"] / first["seconds_to_searchable"]
    result["ingest_keyword"]["chunks_per_s"] = first["chunks"] / first["seconds_to_searchable"]
    rerun = _ingest(farm, home, "none", args.workers)
    result["rerun_no_change_seconds"] = rerun["seconds"]
    if args.embed_chunks:
        result["embedding"] = _embedding_vs_floor(farm, args.work, args.embed_chunks,
                                                  args.rounds)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

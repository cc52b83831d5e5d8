"""gristmill's own figures: ingest to keyword-searchable against the pypdfium2 floor
(interleaved rounds, both timed as whole commands), a no-change re-run, and the embedding
stage against the raw onnxruntime floor on the same chunks.

    python benchmarks/bench_ingest.py --files-from LIST --work BENCH/gm --rounds 5
    python benchmarks/bench_ingest.py --files-from LIST --work BENCH/gm --embed-chunks 2000

The ingest runs the real CLI in a subprocess (peak RSS of its whole tree sampled by
``_rss.PeakRSS``); the files are presented as a folder of symlinks, which gristmill
follows, so any file list can be ingested without copying. Each round runs the floor
(``floor_pdf.py`` on the same list, when every file is a PDF) and then a fresh gristmill
ingest, so both see the same machine; the report gives medians and the median of the
per-round ratios. Both are timed from process launch to exit: gristmill's figure
includes its interpreter start, discovery with a sha256 of every file, extraction,
chunking, FTS5 indexing and the commits.
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


def _floor(files_from: Path, workers: int) -> dict[str, Any]:
    script = Path(__file__).with_name("floor_pdf.py")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, str(script), "--files-from", str(files_from),
                          "-p", str(workers), "--json"], check=True, capture_output=True,
                         text=True).stdout
    seconds = time.perf_counter() - started
    summary = json.loads(out)
    return {"seconds": seconds, "seconds_in_pool": summary["seconds"],
            "pages": summary["pages"], "peak_rss_mb": summary["peak_rss_tree_mib"],
            "other_cpu_share": summary["other_cpu_share"]}


# The console script, as users run it (it starts workers differently from `python -m`:
# see gristmill.cli._present_script_as_package_main); `-m` when it is not installed.
_SCRIPT = Path(sys.executable).with_name("gristmill")
_GRISTMILL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gristmill"]


def _ingest(folder: Path, home: Path, embedder: str, workers: int) -> dict[str, Any]:
    env = {**os.environ, "GRISTMILL_HOME": str(home), "GRISTMILL_EMBEDDER": embedder,
           "GRISTMILL_WORKERS": str(workers)}
    started = time.perf_counter()
    proc = subprocess.Popen([*_GRISTMILL, "ingest", str(folder), "--json"],
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
    vectors = db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    db.close()
    return {"seconds": seconds, "seconds_to_searchable": report["seconds_to_searchable"],
            "items": report["items"], "chunks": report["chunks"], "pages": pages,
            "vectors": vectors,
            "peak_rss_mb": rss.peak_tree_bytes / 2**20}


def _embedding_vs_floor(folder: Path, work: Path, max_chunks: int, rounds: int
                        ) -> dict[str, Any]:
    """Engine: KnowledgeBase.embed_pending() over extracted chunks, timed whole (backlog
    queries, model load, tokenization, the stage's thread, vector writes, promotion).
    Floor: session.run alone on the same texts, tokenized beforehand and cut into
    batches after one global length sort, which pads less than the engine's per-unit
    sort can: the least work onnxruntime can be given."""
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
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved floor/gristmill rounds (and embedding rounds)")
    parser.add_argument("--embedder", default="none", choices=["none", "minilm"],
                        help="minilm: the rounds run to fully indexed (no floor ratio)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    files = list(select_files(args))
    farm = args.work / "files"
    _link_farm(files, farm)
    listing = args.work / "files.txt"
    listing.write_text("".join(f"{f.resolve()}\n" for f in files))
    all_pdf = args.embedder == "none" and all(f.suffix.lower() == ".pdf" for f in files)
    home = args.work / "home"
    result: dict[str, Any] = {"files": len(files), "workers": args.workers, "rounds": []}
    for _ in range(args.rounds):
        round_: dict[str, Any] = {}
        if all_pdf:
            round_["floor"] = _floor(listing, args.workers)
        shutil.rmtree(home, ignore_errors=True)
        round_["gristmill"] = _ingest(farm, home, args.embedder, args.workers)
        if all_pdf:
            round_["ratio"] = round_["gristmill"]["seconds"] / round_["floor"]["seconds"]
        result["rounds"].append(round_)
    gm = [r["gristmill"] for r in result["rounds"]]
    seconds = statistics.median(g["seconds"] for g in gm)
    result["ingest_keyword"] = {
        "seconds_median": seconds,
        "seconds_in_process_median": statistics.median(g["seconds_to_searchable"] for g in gm),
        "pages": gm[0]["pages"], "chunks": gm[0]["chunks"], "items": gm[0]["items"],
        "files_per_s": len(files) / seconds, "pages_per_s": gm[0]["pages"] / seconds,
        "chunks_per_s": gm[0]["chunks"] / seconds,
        "peak_rss_mb_max": max(g["peak_rss_mb"] for g in gm),
    }
    if all_pdf:
        fl = [r["floor"] for r in result["rounds"]]
        floor_seconds = statistics.median(f["seconds"] for f in fl)
        result["floor"] = {
            "seconds_median": floor_seconds,
            "seconds_in_pool_median": statistics.median(f["seconds_in_pool"] for f in fl),
            "pages": fl[0]["pages"], "pages_per_s": fl[0]["pages"] / floor_seconds,
            "peak_rss_mb_max": max(f["peak_rss_mb"] for f in fl),
            "other_cpu_share_max": max(f["other_cpu_share"] for f in fl),
        }
        result["gristmill_over_floor"] = {
            "median_of_ratios": statistics.median(r["ratio"] for r in result["rounds"]),
            "ratio_of_medians": seconds / floor_seconds,
        }
    rerun = _ingest(farm, home, args.embedder, args.workers)
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

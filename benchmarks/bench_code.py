"""Code repositories: full ingest to keyword-searchable (and optionally fully embedded),
re-index after the next 10/50/300 commits, search latency, and LlamaIndex's CodeSplitter
on the same files in the same run.

    python benchmarks/bench_code.py BENCH/commons-lang --work BENCH/run-cl \\
        --peer-venv BENCH/peer-venv --out BENCH/results/code-cl.json
    python benchmarks/bench_code.py BENCH/commons-lang --work BENCH/run-cl --embed \\
        --max-chunks 2000 --peer-venv BENCH/peer-venv
    python benchmarks/bench_code.py BENCH/jdk-src --work BENCH/run-jdk --max-files 2000

Every ingest runs the real ``gristmill`` console script in a subprocess, timed from launch
to exit, with the peak RSS of its whole tree (``_rss.PeakRSS``) and ``other_cpu_share``
(compare only runs where it is near 0). The history step clones the repository into the
work folder (the original is never moved), ingests it at ``HEAD~N`` and, for each step S,
starts again from a copy of that index with the clone checked out at ``HEAD~(N-S)``: each
step is measured from the same base, as a user re-running after S new commits would see it.
``--windows W`` then carries one index from the base to the tip W commits at a time, as a
user re-indexing after every W commits would, and reports the cache hit rate per window.
A folder that is not a git work tree (the JDK's ``src.zip``) has no history step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import psutil
from _harness import _cpu_report, environment
from _rss import PeakRSS
from bench_ingest import _GRISTMILL, _embedding_vs_floor

# The notes gristmill's code extractor logs for a file it could not cut into entities.
_FALLBACK_NOTE = re.compile(r"(source does not parse|has syntax errors|no grammar for)")
SearchMode = Literal["hybrid", "keyword", "vector"]
_MODEL_TOKENS = 256  # MiniLM truncates beyond this: the tokens past it are not embedded


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- ingest


def _ingest(source: Path, home: Path, embedder: str, workers: int,
            max_files: int | None) -> dict[str, Any]:
    """One ``gristmill ingest --json`` as a user runs it: wall, tree RSS, CPU share."""
    env = {**os.environ, "GRISTMILL_HOME": str(home), "GRISTMILL_EMBEDDER": embedder,
           "GRISTMILL_WORKERS": str(workers)}
    command = [*_GRISTMILL, "ingest", str(source), "--json"]
    if max_files:
        command += ["--max-files", str(max_files)]
    cpu0 = psutil.cpu_times()
    ru0 = (resource.getrusage(resource.RUSAGE_SELF),
           resource.getrusage(resource.RUSAGE_CHILDREN))
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as rss:
        out, err = proc.communicate()
    seconds = time.perf_counter() - started
    ru1 = (resource.getrusage(resource.RUSAGE_SELF),
           resource.getrusage(resource.RUSAGE_CHILDREN))
    if proc.returncode != 0:
        raise SystemExit(f"gristmill ingest {source} failed with exit {proc.returncode}:\n"
                         f"{err[-2000:]}")
    report = json.loads(out)
    progress = report.get("progress") or {}
    embed = progress.get("embed") or {}
    discovered = report["discovered"]
    return {
        "seconds": seconds,
        "keyword_searchable_after": progress.get("keyword_searchable_after"),
        "seconds_in_process": report["seconds"],
        "embedding_seconds": report["timings"].get("embedding"),
        "items": report["items"], "chunks": report["chunks"],
        "files_reread": discovered["new"] + discovered["changed"],
        "discovered": discovered,
        "cache": embed.get("cache"),
        "peak_rss_mib": round(rss.peak_tree_bytes / 2**20, 1),
        **_cpu_report(cpu0, psutil.cpu_times(), ru0, ru1, seconds),
    }


def _index_figures(home: Path) -> dict[str, Any]:
    """What the index holds: chunks by language and kind, chunks over the budget (by
    gristmill's own estimate and by MiniLM's real WordPiece count), and the files that
    failed, were skipped or fell back to line windows."""
    from gristmill.chunking import estimate_code_tokens, estimate_tokens
    from gristmill.config import Settings

    budget = Settings.load(home=home).chunk_tokens
    db = sqlite3.connect(home / "gristmill.db")
    chunks = db.execute("SELECT c.text, c.language, c.kind, i.source FROM chunks c "
                        "JOIN items i ON i.id = c.item_id").fetchall()
    by_status = dict(db.execute("SELECT status, count(*) FROM items GROUP BY status"))
    problems = db.execute("SELECT source, status, error FROM items "
                          "WHERE status IN ('failed', 'skipped') ORDER BY source").fetchall()
    db.close()
    texts = [row[0] for row in chunks]
    lines_files = sorted({row[3] for row in chunks if row[2] == "lines"})
    log = home / "logs" / "gristmill.log"
    noted = [line.strip() for line in log.read_text(errors="replace").splitlines()
             if _FALLBACK_NOTE.search(line)] if log.exists() else []
    return {
        "items_by_status": by_status,
        "chunks": len(chunks),
        "chunks_by_language": dict(Counter(str(r[1]) for r in chunks).most_common()),
        "chunks_by_kind": dict(Counter(str(r[2]) for r in chunks).most_common()),
        "chunk_budget_tokens": budget,
        # Each chunk by the estimate it was cut with: code's for code, prose's else.
        "chunks_over_budget_estimate": sum(
            (estimate_code_tokens(row[0]) if row[1] else estimate_tokens(row[0])) > budget
            for row in chunks),
        "chunks_over_model_tokens": _over_model_tokens(texts),
        "files_with_line_windows": len(lines_files),
        "line_window_files": lines_files[:20],
        "fallback_notes": len(noted), "fallback_note_lines": noted[:20],
        "files_failed_or_skipped": len(problems),
        "problems": [{"source": s, "status": st, "error": e} for s, st, e in problems[:30]],
    }


def _over_model_tokens(texts: list[str]) -> int:
    """Chunks MiniLM would truncate (its tokenizer, untruncated, [CLS]/[SEP] included)."""
    from importlib import resources

    from tokenizers import Tokenizer

    data = resources.files("gristmill.embed").joinpath("data/tokenizer.json")
    tokenizer = Tokenizer.from_str(data.read_text(encoding="utf-8"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    over = 0
    for start in range(0, len(texts), 1000):
        encoded = tokenizer.encode_batch(texts[start:start + 1000])
        over += sum(len(e.ids) > _MODEL_TOKENS for e in encoded)
    return over


def _full(repo: Path, home: Path, embedder: str, args: argparse.Namespace
          ) -> dict[str, Any]:
    shutil.rmtree(home, ignore_errors=True)
    run = _ingest(repo, home, embedder, args.workers, args.max_files)
    figures = _index_figures(home)
    files = sum(run["items"].values())
    searchable = run["keyword_searchable_after"] or run["seconds"]
    run.update({
        "files": files,
        # Both rates from the in-process "keyword searchable" mark and from the wall of
        # the whole command (interpreter start and exit included).
        "files_per_s_to_searchable": files / searchable,
        "entities_per_s_to_searchable": run["chunks"] / searchable,
        "files_per_s_wall": files / run["seconds"],
        "entities_per_s_wall": run["chunks"] / run["seconds"],
        "index": figures,
    })
    if embedder != "none":
        db = sqlite3.connect(home / "gristmill.db")
        distinct = db.execute("SELECT count(DISTINCT text_hash) FROM chunks").fetchone()[0]
        db.close()
        run["distinct_texts"] = distinct
        run["seconds_to_fully_embedded"] = run["seconds"]
        if run["embedding_seconds"]:
            run["entities_embedded_per_s"] = distinct / run["embedding_seconds"]
    return run


# --------------------------------------------------------------------------- history


def _history(repo: Path, work: Path, embedder: str, args: argparse.Namespace
             ) -> dict[str, Any]:
    """Clone, ingest at HEAD~N, then each step from a copy of that base index."""
    depth = args.history
    base_sha = _git(repo, "rev-parse", f"HEAD~{depth}")
    clone = work / "history-tree"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo), str(clone)],
                   check=True)
    _git(clone, "checkout", "-q", "--detach", base_sha)
    base_home = work / "history-base"
    shutil.rmtree(base_home, ignore_errors=True)
    base = _ingest(clone, base_home, embedder, args.workers, args.max_files)
    result: dict[str, Any] = {"depth": depth, "base_commit": base_sha, "embedder": embedder,
                              "base": base, "steps": []}
    for step in args.steps:
        if step > depth:
            continue
        target = _git(repo, "rev-parse", f"HEAD~{depth - step}")
        _git(clone, "checkout", "-q", "--detach", base_sha)
        home = work / f"history-step-{step}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(base_home, home)
        _git(clone, "checkout", "-q", "--detach", target)
        changed = _git(repo, "diff", "--name-only", base_sha, target).splitlines()
        run = _ingest(clone, home, embedder, args.workers, args.max_files)
        run.update({"commits": step, "commit": target, "files_changed_by_git": len(changed),
                    "removed": run["discovered"]["removed"],
                    "share_of_full_time": run["seconds"] / base["seconds"]})
        result["steps"].append(run)
    if args.windows:
        result["windows"] = _rolling(repo, clone, base_home, work, embedder, args)
    return result


def _rolling(repo: Path, clone: Path, base_home: Path, work: Path, embedder: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """A user who re-indexes every W commits: one index carried forward from the base,
    window after window to the tip; the cache holds everything embedded before."""
    width, depth = args.windows, args.history
    home = work / "history-rolling"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base_home, home)
    runs: list[dict[str, Any]] = []
    for ahead in range(width, depth + 1, width):
        target = _git(repo, "rev-parse", f"HEAD~{depth - ahead}")
        _git(clone, "checkout", "-q", "--detach", target)
        run = _ingest(clone, home, embedder, args.workers, args.max_files)
        cache = run["cache"] or {}
        runs.append({"to": target, "commits_from_base": ahead, "seconds": run["seconds"],
                     "files_reread": run["files_reread"],
                     "removed": run["discovered"]["removed"],
                     "hits": cache.get("hits", 0), "misses": cache.get("misses", 0),
                     "hit_rate": cache.get("hit_rate")})
    rates = [r["hit_rate"] for r in runs if r["hits"] + r["misses"]]  # windows with code
    hits, misses = sum(r["hits"] for r in runs), sum(r["misses"] for r in runs)
    return {"width": width, "runs": runs,
            "hit_rate_median": statistics.median(rates) if rates else None,
            "hit_rate_pooled": hits / (hits + misses) if hits + misses else None,
            "windows_at_or_over_90": sum(r >= 0.9 for r in rates),
            "seconds_median": statistics.median(r["seconds"] for r in runs) if runs else None}


# --------------------------------------------------------------------------- search


def _words(name: str) -> str:
    from gristmill.identifiers import split_identifier

    return " ".join(split_identifier(name)).lower()


def _identifier_queries(home: Path, count: int, seed: int) -> list[tuple[str, str, str]]:
    """(form, query, expected ``Class.method``) from the index's own methods: the bare
    name, the name split into words, and ``Class.method``, rotating."""
    db = sqlite3.connect(home / "gristmill.db")
    names = [row[0] for row in db.execute(
        "SELECT DISTINCT entity FROM chunks WHERE kind IN ('method', 'function') "
        "AND entity IS NOT NULL ORDER BY entity")]
    db.close()
    pairs = sorted({m.group(1) for n in names
                    if (m := re.search(r"([A-Za-z_$][\w$]*\.[A-Za-z_$][\w$]*)\(?[^.]*$", n))})
    random.Random(seed).shuffle(pairs)
    queries = []
    for i, pair in enumerate(pairs[:count]):
        method = pair.split(".")[1]
        form = ("name", "words", "qualified")[i % 3]
        query = {"name": method, "words": _words(method), "qualified": pair}[form]
        queries.append((form, query, pair))
    return queries


def _found(hits: list[Any], expected: str) -> bool:
    return any(h.entity and (f"{expected}(" in h.entity or h.entity.endswith(expected))
               for h in hits)


def _search_latency(home: Path, embedder: str, mode: SearchMode,
                    queries: list[tuple[str, str, str]]) -> dict[str, Any]:
    from gristmill import KnowledgeBase

    with KnowledgeBase.open(home, create=False, embedder=embedder) as kb:
        started = time.perf_counter()
        kb.search(queries[0][1], mode=mode)  # loads the model (hybrid) and warms the cache
        first = time.perf_counter() - started
        times: list[float] = []
        found: Counter[str] = Counter()
        forms: Counter[str] = Counter()
        for form, query, expected in queries:
            started = time.perf_counter()
            hits = kb.search(query, mode=mode, k=10)
            times.append(time.perf_counter() - started)
            forms[form] += 1
            found[form] += _found(hits, expected)
    return {"mode": mode, "queries": len(times), "first_query_ms": first * 1000,
            "p50_ms": _percentile(times, 0.5) * 1000,
            "p95_ms": _percentile(times, 0.95) * 1000,
            "max_ms": max(times) * 1000,
            "found_at_10": {f: f"{found[f]}/{forms[f]}" for f in sorted(forms)}}


def _cli_search(home: Path, embedder: str, mode: str,
                queries: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The CLI as a user runs it, process start and model load included."""
    env = {**os.environ, "GRISTMILL_HOME": str(home), "GRISTMILL_EMBEDDER": embedder}
    times = []
    for _, query, _ in queries:
        started = time.perf_counter()
        subprocess.run([*_GRISTMILL, "search", query, "--mode", mode, "--json"], env=env,
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return {"mode": mode, "queries": len(times),
            "p50_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


# --------------------------------------------------------------------------- peer


def _peer(home: Path, venv: Path, work: Path) -> dict[str, Any]:
    """CodeSplitter over the .java files gristmill discovered, RSS taken from outside."""
    db = sqlite3.connect(home / "gristmill.db")
    files = [row[0] for row in db.execute(
        "SELECT source FROM items WHERE source LIKE '%.java' ORDER BY source")]
    db.close()
    listing = work / "peer-java-files.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    python = venv / "bin" / "python"
    script = Path(__file__).with_name("peer_codesplitter.py")
    started = time.perf_counter()
    texts = work / "peer-chunks.jsonl"
    proc = subprocess.Popen([str(python), str(script), "--files-from", str(listing),
                             "--chunks-out", str(texts)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as rss:
        out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {err[-1500:]}"}
    result: dict[str, Any] = json.loads(out)
    chunks = [json.loads(line) for line in texts.read_text().splitlines()]
    result.update({"seconds_wall": seconds,
                   "peak_rss_mib": round(rss.peak_tree_bytes / 2**20, 1),
                   # Cut by size in characters, its chunks meet an embedding model's
                   # token limit only by chance: the tail of a longer one is not embedded.
                   "chunks_over_model_tokens": _over_model_tokens(chunks)})
    return result


def _gristmill_java(home: Path) -> dict[str, Any]:
    """gristmill's chunks of the same .java files, for the side-by-side row."""
    db = sqlite3.connect(home / "gristmill.db")
    texts = [row[0] for row in db.execute(
        "SELECT c.text FROM chunks c JOIN items i ON i.id = c.item_id "
        "WHERE i.source LIKE '%.java'")]
    files, chunks, lines = db.execute(
        "SELECT count(DISTINCT i.id), count(c.id), "
        "coalesce(sum(c.kind = 'lines'), 0) FROM items i "
        "LEFT JOIN chunks c ON c.item_id = i.id WHERE i.source LIKE '%.java'").fetchone()
    db.close()
    return {"files": files, "chunks": chunks, "line_window_chunks": lines,
            "chunks_over_model_tokens": _over_model_tokens(texts)}


# --------------------------------------------------------------------------- report


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _markdown(result: dict[str, Any]) -> str:
    rows = ["| measure | value |", "| --- | --- |"]

    def add(name: str, value: Any) -> None:
        if isinstance(value, float):
            value = f"{value:,.3g}" if value < 100 else f"{value:,.0f}"
        rows.append(f"| {name} | {value} |")

    full = result.get("full_keyword")  # absent with --history-only
    if full is not None:
        idx = full["index"]
        add("files / entities (chunks)", f"{full['files']} / {full['chunks']}")
        add("wall s (keyword searchable after s)",
            f"{full['seconds']:.1f} ({full['keyword_searchable_after']})")
        add("files/s, entities/s to searchable",
            f"{full['files_per_s_to_searchable']:.1f}, {full['entities_per_s_to_searchable']:.0f}")
        add("peak RSS MiB (tree)", full["peak_rss_mib"])
        add("other_cpu_share", full["other_cpu_share"])
        add("chunks over budget (estimate / MiniLM 256)",
            f"{idx['chunks_over_budget_estimate']} / {idx['chunks_over_model_tokens']}")
        add("files failed or skipped / with line windows / fallback notes",
            f"{idx['files_failed_or_skipped']} / {idx['files_with_line_windows']} / "
            f"{idx['fallback_notes']}")
    if "full_embed" in result:
        emb = result["full_embed"]
        add("minilm: wall s to fully embedded", emb["seconds"])
        add("minilm: entities embedded/s", emb.get("entities_embedded_per_s", "-"))
        floor = result.get("embedding_vs_onnxruntime", {})
        if floor:
            add("engine / raw onnxruntime chunks/s",
                f"{floor['engine_chunks_per_s']:.1f} / {floor['floor_chunks_per_s']:.1f} "
                f"(x{floor['engine_over_floor']:.2f}, {floor['chunks']} chunks)")
    hist = result.get("history")
    if hist:
        add(f"history base (HEAD~{hist['depth']}) wall s", hist["base"]["seconds"])
        for step in hist["steps"]:
            cache = step["cache"] or {}
            add(f"+{step['commits']} commits: s / re-read / removed / hit rate / share",
                f"{step['seconds']:.1f} / {step['files_reread']} / {step['removed']} / "
                f"{cache.get('hit_rate', '-')} / {step['share_of_full_time']:.0%}")
        rolling = hist.get("windows")
        if rolling and rolling["runs"]:
            add(f"every {rolling['width']} commits, {len(rolling['runs'])} windows: "
                "hit rate median / pooled / windows >= 90 % / median s",
                f"{_share(rolling['hit_rate_median'])} / {_share(rolling['hit_rate_pooled'])} / "
                f"{rolling['windows_at_or_over_90']} / {rolling['seconds_median']:.1f}")
    for search in result.get("search", []):
        add(f"search {search['mode']} p50/p95 ms ({search['queries']} q)",
            f"{search['p50_ms']:.1f} / {search['p95_ms']:.1f}")
    for cli in result.get("cli_search", []):
        add(f"CLI search {cli['mode']} p50 ms ({cli['queries']} runs)", cli["p50_ms"])
    peer = result.get("peer")
    if peer and "error" not in peer:
        add("CodeSplitter: files / chunks / failed",
            f"{peer['files']} / {peer['chunks']} / {peer['files_failed']}")
        add("CodeSplitter: wall s / peak RSS MiB",
            f"{peer['seconds_wall']:.1f} / {peer['peak_rss_mib']}")
        add("CodeSplitter: chunks at max_chars / over MiniLM 256 tokens / coverage",
            f"{peer['chunks_at_max_chars']} / {peer['chunks_over_model_tokens']} / "
            f"{peer['coverage']:.3f}")
        gm = result["gristmill_java"]
        add("gristmill, same .java: chunks / line-window chunks / over MiniLM 256",
            f"{gm['chunks']} / {gm['line_window_chunks']} / {gm['chunks_over_model_tokens']}")
    elif peer:
        add("CodeSplitter", peer["error"].splitlines()[0])
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a git work tree (or any folder)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("-p", "--workers", type=int, default=2)
    parser.add_argument("--max-files", type=int, help="ingest at most N files")
    parser.add_argument("--embed", action="store_true",
                        help="also ingest with minilm (and the history step with it)")
    parser.add_argument("--max-chunks", type=int, default=2000,
                        help="chunks for the engine vs raw onnxruntime comparison")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the onnxruntime comparison")
    parser.add_argument("--history", type=int, default=300,
                        help="start the re-index step this many commits before the tip "
                             "(0: no history step)")
    parser.add_argument("--steps", default="10,50,300",
                        help="commits to move forward, each from the base")
    parser.add_argument("--windows", type=int, default=0,
                        help="also re-index every N commits from the base to the tip, "
                             "one index carried forward (hit rate per window)")
    parser.add_argument("--history-only", action="store_true",
                        help="run only the history steps (and windows)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cli-queries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-venv", type=Path,
                        help="venv with llama-index-core + tree-sitter-language-pack")
    parser.add_argument("--out", type=Path, help="write the JSON summary here")
    parser.add_argument("--json", action="store_true",
                        help="print the JSON summary instead of the Markdown table")
    args = parser.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",") if s]
    repo, work = args.repo.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    is_git = (repo / ".git").exists()

    result: dict[str, Any] = {"repo": str(repo), "environment": environment(),
                              "workers": args.workers, "max_files": args.max_files}
    if is_git:
        result["commit"] = _git(repo, "rev-parse", "HEAD")
    began = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[bench_code {time.perf_counter() - began:7.1f}s] {msg}", file=sys.stderr,
              flush=True)

    keyword_home, embed_home = work / "full-keyword", work / "full-embed"
    if not args.history_only:
        log("full ingest, --embedder none")
        result["full_keyword"] = _full(repo, keyword_home, "none", args)
        if args.embed:
            log("full ingest, --embedder minilm")
            result["full_embed"] = _full(repo, embed_home, "minilm", args)
            log("embedding stage against raw onnxruntime")
            result["embedding_vs_onnxruntime"] = _embedding_vs_floor(
                repo, work, args.max_chunks, args.rounds)
    if is_git and args.history:
        try:
            _git(repo, "rev-parse", f"HEAD~{args.history}")
        except subprocess.CalledProcessError:
            result["history"] = None
            log(f"no HEAD~{args.history}: history step skipped")
        else:
            log(f"history: HEAD~{args.history} then {args.steps}")
            result["history"] = _history(repo, work, "minilm" if args.embed else "none",
                                         args)
    if not args.history_only:
        log("search latency")
        queries = _identifier_queries(keyword_home, args.queries, args.seed)
        result["search"], result["cli_search"] = [], []
        if not queries:
            log("no method or function entities: no search queries")
        else:
            result["search"].append(_search_latency(keyword_home, "none", "keyword", queries))
            result["cli_search"].append(_cli_search(keyword_home, "none", "keyword",
                                                    queries[:args.cli_queries]))
        if args.embed and queries:
            result["search"].append(_search_latency(embed_home, "minilm", "hybrid", queries))
            result["cli_search"].append(_cli_search(embed_home, "minilm", "hybrid",
                                                    queries[:args.cli_queries]))
        if args.peer_venv:
            log("peer: llama-index CodeSplitter")
            result["peer"] = _peer(keyword_home, args.peer_venv, work)
            result["gristmill_java"] = _gristmill_java(keyword_home)
    log("done")
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text if args.json else _markdown(result))


if __name__ == "__main__":
    main()

"""Retrieval quality: hit@1, hit@5 and MRR of keyword, vector and hybrid search on real
documents, per kind of query (exact phrases, questions, identifiers and names). Every
change to search runs it; the targets are hybrid >= max(keyword, vector) - 1 point on
every kind and hybrid hit@5 >= 0.98 on phrases.

    python benchmarks/bench_retrieval.py --home BENCH/retrieval
    python benchmarks/bench_retrieval.py --home BENCH/retrieval --seed 2 --queries 300
    benchmarks/fetch_corpus.sh BENCH/debian git-doc debian-reference-en
    python benchmarks/bench_retrieval.py --home BENCH/retrieval --debian BENCH/debian

The corpus (default ``../shared/corpus/unstructured-example-docs`` beside the checkout)
is ingested with the real library and MiniLM into ``HOME/<corpus name>``; a re-run finds
it indexed and only searches (an ingest of unchanged files takes a second). Queries are
generated from the knowledge base's own chunks and labelled with the files that hold
their text (``_retrieval_queries.py``); the hand-written questions are
``retrieval_questions.tsv``. A hit counts when its chunk comes from a labelled file;
MRR is over the first ``-k`` (10) hits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _harness import environment
from _retrieval_queries import Corpus, Passage, Query, first_relevant, generate, kinds

from gristmill import KnowledgeBase
from gristmill.knowledge_base import Searcher

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpus" / "unstructured-example-docs"
MODES = ("keyword", "vector", "hybrid")
#: The issue's examples: (query, the file that must be found).
EXAMPLES = (("face painting petting zoo", "eml/family-day.eml"),
            ("maleficar hideous laughter", "pdf/DA-1p.pdf"))


class _MemoEmbedder:
    """The knowledge base's embedder, remembering query vectors: vector and hybrid
    search of one query embed it once, not twice."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for text, vector in zip(missing, self.inner.embed(missing), strict=True):
                self._memo[text] = vector
        return np.stack([self._memo[t] for t in texts])


def build(home: Path, corpus: Path, collection: str, include: Sequence[str], workers: int,
          database: str | None) -> tuple[KnowledgeBase, dict[str, Any]]:
    """Open the knowledge base of ``corpus`` under ``home``, ingesting what is new into
    ``collection`` (one per corpus, so a shared PostgreSQL catalog keeps them apart)."""
    settings: dict[str, Any] = {"embedder": "minilm", "workers": workers}
    if database:
        settings["database_url"] = database
    kb = KnowledgeBase.open(home, **settings)
    started = time.monotonic()
    report = kb.ingest([corpus], collection=collection, include=include)
    return kb, {"corpus": str(corpus), "seconds": round(time.monotonic() - started, 1),
                "items": report.items, "chunks": report.chunks,
                "vectors": kb.status().get("vectors")}


def passages(kb: KnowledgeBase, root: Path, collection: str) -> list[Passage]:
    """Every chunk of ``collection``, its file named relative to ``root``."""
    prefix = str(root.resolve()) + os.sep
    rows = kb.db.conn.execute(
        "SELECT c.id, i.source, c.text, c.heading FROM chunks c "
        "JOIN items i ON i.id = c.item_id WHERE c.collection = ? ORDER BY c.id",
        (collection,)).fetchall()
    return [Passage(int(cid), source.removeprefix(prefix), text, heading)
            for cid, source, text, heading in rows]


def evaluate(searcher: Searcher, queries: Sequence[Query], root: Path, collection: str,
             k: int) -> list[dict[str, Any]]:
    """Each query's rank of the first relevant file under each mode (None: not in k)."""
    prefix = str(root.resolve()) + os.sep
    out = []
    for query in queries:
        record: dict[str, Any] = {"kind": query.kind, "query": query.text,
                                  "split": query.split, "relevant": sorted(query.relevant)}
        for mode in MODES:
            hits = searcher.search(query.text, collection=collection, k=k,
                                   mode=mode)  # type: ignore[arg-type]
            record[mode] = first_relevant([h.source.removeprefix(prefix) for h in hits],
                                          query.relevant)
        out.append(record)
    return out


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """hit@1, hit@5 and MRR of a list of first-relevant ranks."""
    n = len(ranks) or 1
    return {"hit@1": sum(r == 1 for r in ranks) / n,
            "hit@5": sum(r is not None and r <= 5 for r in ranks) / n,
            "mrr": sum(1 / r for r in ranks if r is not None) / n}


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind of query (and over all), each mode's metrics; a kind of hand-written
    questions also per half (``KIND: dev``, seen while tuning; ``KIND: test``, held out)."""
    out: dict[str, dict[str, Any]] = {}

    def row(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        return {"queries": len(chosen),
                **{mode: metrics([r[mode] for r in chosen]) for mode in MODES}}

    for kind in [*kinds(Query(r["kind"], "", frozenset()) for r in records), "all"]:
        chosen = [r for r in records if kind in ("all", r["kind"])]
        out[kind] = row(chosen)
        splits = sorted({r.get("split") or "" for r in chosen} - {""})
        if kind != "all" and len(splits) > 1:
            for split in splits:
                out[f"{kind}: {split}"] = row([r for r in chosen if r.get("split") == split])
    return out


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    """The table: one row per kind, hit@1 / hit@5 / MRR for each mode; the best MRR of
    keyword and vector against hybrid's, and whether hybrid meets the target."""
    lines = ["| kind | queries | keyword h@1 / h@5 / MRR | vector h@1 / h@5 / MRR "
             "| hybrid h@1 / h@5 / MRR | hybrid - best |",
             "|---|---:|---|---|---|---:|"]
    for kind, row in summary.items():
        cells = [" / ".join(f"{row[m][key]:.3f}" for key in ("hit@1", "hit@5", "mrr"))
                 for m in MODES]
        best = max(row["keyword"]["mrr"], row["vector"]["mrr"])
        lines.append(f"| {kind} | {row['queries']} | {' | '.join(cells)} "
                     f"| {100 * (row['hybrid']['mrr'] - best):+.1f} |")
    return "\n".join(lines)


def examples(searcher: Searcher, root: Path, collection: str) -> list[dict[str, Any]]:
    """The issue's two examples: the expected file's rank in the top 10 of each mode."""
    prefix = str(root.resolve()) + os.sep
    out = []
    for query, expected in EXAMPLES:
        row: dict[str, Any] = {"query": query, "expected": expected}
        for mode in MODES:
            hits = searcher.search(query, collection=collection, k=10,
                                   mode=mode)  # type: ignore[arg-type]
            row[mode] = first_relevant([h.source.removeprefix(prefix) for h in hits],
                                       frozenset({expected}))
        out.append(row)
    return out


def run_corpus(args: argparse.Namespace, name: str, root: Path, include: Sequence[str],
               questions: Path | None) -> dict[str, Any]:
    """Build (or reopen) one corpus's knowledge base, query it, and print its table."""
    # The main corpus goes in the `default` collection, as `gristmill ingest CORPUS
    # --home HOME/<name>` puts it: a knowledge base built by hand is reused.
    collection = "default" if name == DEFAULT_CORPUS.name else name
    kb, built = build(args.home / name, root, collection, include, args.workers,
                      args.database)
    vectors = kb.vector_cache()
    try:
        corpus = Corpus(passages(kb, root, collection))
        queries = generate(corpus, args.queries, args.seed, questions)
        if vectors is not None:  # vectors in memory, as `gristmill serve` keeps them
            vectors.start()
            deadline = time.monotonic() + 600
            while vectors.status == "building" and time.monotonic() < deadline:
                time.sleep(0.2)
        searcher = Searcher(kb.index, _MemoEmbedder(kb.embedder),  # type: ignore[arg-type]
                            vectors)
        started = time.monotonic()
        records = evaluate(searcher, queries, root, collection, args.k)
        seconds = time.monotonic() - started
        summary = summarise(records)
        result: dict[str, Any] = {"corpus": name, "build": built, "seed": args.seed,
                                  "queries_per_kind": args.queries, "k": args.k,
                                  "search_seconds": round(seconds, 1), "summary": summary,
                                  "records": records}
        print(f"\n### {name}: {built['chunks']} chunks, {len(corpus.by_source)} files "
              f"with text, seed {args.seed}\n")
        print(markdown(summary))
        if name == DEFAULT_CORPUS.name:
            result["examples"] = examples(searcher, root, collection)
            print()
            for row in result["examples"]:
                ranks = ", ".join(f"{m} {row[m] or '-'}" for m in MODES)
                print(f"- `{row['query']}` -> {row['expected']}: rank {ranks}")
        return result
    finally:
        if vectors is not None:
            vectors.close()
        kb.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True,
                        help="folder for the knowledge bases (kept: re-runs reuse them)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="documents to search (default: %(default)s)")
    parser.add_argument("--questions", type=Path, default=HERE / "retrieval_questions.tsv",
                        help="hand-written questions for --corpus (TSV)")
    parser.add_argument("--debian", type=Path,
                        help="also a folder made by fetch_corpus.sh (its HTML pages)")
    parser.add_argument("--queries", type=int, default=200,
                        help="queries of each generated kind (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=10, help="hits per search (default 10)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", help="a postgresql:// URL: the catalog there")
    parser.add_argument("--out", type=Path, help="write every query's ranks here (JSON)")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus} is not a folder: pass --corpus")
    questions = args.questions if args.corpus.resolve() == DEFAULT_CORPUS.resolve() else None
    results = [run_corpus(args, args.corpus.name, args.corpus, (), questions)]
    if args.debian is not None:
        results.append(run_corpus(args, "debian", args.debian, ("*.html", "*.htm"), None))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"environment": environment(), "results": results},
                                       indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

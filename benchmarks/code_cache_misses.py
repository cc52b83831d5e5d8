"""Why the embedding cache misses when a repository moves on: every window of W commits,
each chunk of the changed files sorted into hit (its text was seen before), miss on a new
entity, miss on an entity whose text changed, or miss on an unchanged entity (a part cut
elsewhere than before: the only avoidable kind).

    python benchmarks/code_cache_misses.py BENCH/commons-lang --depth 300 --width 10

The chunks are gristmill's own (``code_entities`` then ``chunk_segments``, as the worker
makes them), read from git objects (``git show REV:PATH``): no index, no model, so the
figures are exact and take seconds. The cache is every text seen from the base on, as
for a user who re-indexes after every W commits. ``bench_code.py --windows`` measures
the same through the engine, with the model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from gristmill.chunking import Chunk, chunk_segments
from gristmill.extract.base import Segment
from gristmill.extract.code import code_entities, language_for


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def _chunks(repo: Path, rev: str, path: str) -> list[Chunk]:
    language = language_for(Path(path))
    shown = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"],
                           capture_output=True)
    if language is None or shown.returncode != 0:
        return []
    parsed = code_entities(shown.stdout.decode("utf-8", "replace"), language)
    return list(chunk_segments(
        Segment(p.text, language=language, kind=p.kind, entity=p.entity, parent=p.parent,
                lines=p.lines) for p in parsed.entities))


def _entity_texts(chunks: list[Chunk]) -> dict[str | None, str]:
    texts: dict[str | None, list[str]] = defaultdict(list)
    for chunk in chunks:
        texts[chunk.entity].append(chunk.text)
    return {entity: "\n".join(parts) for entity, parts in texts.items()}


def _window(repo: Path, old: str, new: str, seen: set[str]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    files = [f for f in _git(repo, "diff", "--name-only", old, new).split()
             if language_for(Path(f))]
    for path in files:
        before = _entity_texts(_chunks(repo, old, path))
        after_chunks = _chunks(repo, new, path)
        after = _entity_texts(after_chunks)
        for chunk in after_chunks:
            if chunk.text_hash in seen:
                counts["hit"] += 1
            elif chunk.entity not in before:
                counts["new entity"] += 1
            elif before[chunk.entity] != after[chunk.entity]:
                counts["changed entity"] += 1
            else:
                counts["unchanged entity, cut differently"] += 1
        seen.update(chunk.text_hash for chunk in after_chunks)
    total = sum(counts.values())
    return {"from": old, "to": new, "files": len(files), "chunks": total, **counts,
            "hit_rate": counts["hit"] / total if total else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--depth", type=int, default=300, help="start at HEAD~DEPTH")
    parser.add_argument("--width", type=int, default=10, help="commits per window")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    revs = [_git(args.repo, "rev-parse", f"HEAD~{d}").strip()
            for d in range(args.depth, -1, -args.width)]
    seen = {chunk.text_hash for path in _git(args.repo, "ls-tree", "-r", "--name-only",
                                             revs[0]).split()
            for chunk in _chunks(args.repo, revs[0], path)}
    windows = [_window(args.repo, old, new, seen) for old, new in itertools.pairwise(revs)]
    rates = [w["hit_rate"] for w in windows if w["hit_rate"] is not None]
    pooled = Counter[str]()
    for window in windows:
        pooled.update({k: v for k, v in window.items() if isinstance(v, int)
                       and k not in ("files", "chunks")})
    summary = {"windows": windows, "hit_rate_median": statistics.median(rates),
               "windows_at_or_over_90": sum(r >= 0.9 for r in rates), "pooled": pooled}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print("| window | files | chunks | hit | new entity | changed entity "
          "| unchanged, cut differently | hit rate |")
    print("|---|---|---|---|---|---|---|---|")
    for w in windows:
        print(f"| {w['from'][:8]}..{w['to'][:8]} | {w['files']} | {w['chunks']} | "
              f"{w.get('hit', 0)} | {w.get('new entity', 0)} | {w.get('changed entity', 0)} "
              f"| {w.get('unchanged entity, cut differently', 0)} | "
              f"{'-' if w['hit_rate'] is None else format(w['hit_rate'], '.0%')} |")
    print(f"\nmedian hit rate {summary['hit_rate_median']:.1%}; "
          f"{summary['windows_at_or_over_90']} of {len(rates)} windows >= 90 %; "
          f"pooled {dict(pooled)}")


if __name__ == "__main__":
    main()

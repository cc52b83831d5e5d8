"""The peer for bench_code.py: LlamaIndex's ``CodeSplitter`` over a list of source files.

Runs in the peer's own venv (never the project's):

    python3 -m venv BENCH/peer-venv
    BENCH/peer-venv/bin/pip install llama-index-core tree-sitter-language-pack
    BENCH/peer-venv/bin/python benchmarks/peer_codesplitter.py --files-from LIST --language java

Prints one JSON object: chunks, seconds (splitter construction included: it loads the
grammar), files it failed on (with the exception), chunks at or over its ``max_chars``
(a cut made by size, not by syntax), empty chunks, and how much of the files' non-blank
text its chunks hold (below 1.0: something was dropped). ``--chunks-out`` keeps the
texts, so the caller can count those an embedding model would truncate. Peak RSS is
taken from outside by bench_code.py, interpreter start included, as for gristmill.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any


def _non_blank(text: str) -> Counter[str]:
    return Counter(c for c in text if not c.isspace())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files-from", type=Path, required=True, help="one path a line")
    parser.add_argument("--language", default="java")
    parser.add_argument("--max-chars", type=int, default=1500, help="CodeSplitter default")
    parser.add_argument("--chunks-out", type=Path,
                        help="write the chunk texts here, one JSON string a line")
    args = parser.parse_args(argv)
    files = [Path(p) for p in args.files_from.read_text().splitlines() if p]

    started = time.perf_counter()
    from llama_index.core.node_parser import CodeSplitter

    splitter = CodeSplitter(language=args.language, max_chars=args.max_chars)
    chunks = at_limit = over_limit = empty = 0
    sizes: list[int] = []
    texts: list[str] = []
    failed: list[dict[str, str]] = []
    file_chars = chunk_chars = missing = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            parts = splitter.split_text(text)
        except Exception as exc:  # the peer's failure is a result, not a crash
            failed.append({"path": str(path), "error": f"{type(exc).__name__}: {exc}"})
            continue
        chunks += len(parts)
        texts.extend(parts)
        for part in parts:
            sizes.append(len(part))
            at_limit += len(part) >= args.max_chars
            over_limit += len(part) > args.max_chars
            empty += not part.strip()
        # A multiset of non-blank characters: overlap counts extra, a drop shows as missing.
        have, want = _non_blank("".join(parts)), _non_blank(text)
        file_chars += sum(want.values())
        chunk_chars += sum(have.values())
        missing += sum((want - have).values())
    seconds = time.perf_counter() - started
    if args.chunks_out:
        args.chunks_out.write_text("".join(json.dumps(t) + "\n" for t in texts))
    sizes.sort()
    result: dict[str, Any] = {
        "peer": "llama-index CodeSplitter",
        "versions": {name: metadata.version(name) for name in
                     ("llama-index-core", "tree-sitter", "tree-sitter-language-pack")},
        "language": args.language, "max_chars": args.max_chars,
        "files": len(files), "files_failed": len(failed), "failures": failed[:20],
        "chunks": chunks, "seconds": seconds,
        "files_per_s": len(files) / seconds if seconds else 0.0,
        "chunks_per_s": chunks / seconds if seconds else 0.0,
        "chunks_at_max_chars": at_limit, "chunks_over_max_chars": over_limit,
        "empty_chunks": empty,
        "chunk_chars_median": sizes[len(sizes) // 2] if sizes else 0,
        "non_blank_chars_in_files": file_chars, "non_blank_chars_in_chunks": chunk_chars,
        "non_blank_chars_missing": missing,
        "coverage": chunk_chars / file_chars if file_chars else 0.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

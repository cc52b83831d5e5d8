"""Peer: `unstructured.partition.auto.partition` over files, N processes.

Run it with the peer's own interpreter (a venv with unstructured[pdf,...] and the spaCy
model shim from shared/peers), never the project's. Usage:

    PEER_VENV/bin/python benchmarks/peer_unstructured.py --files-from LIST --out RESULT.json
    PEER_VENV/bin/python benchmarks/peer_unstructured.py DOCS_DIR --strategy fast --json

`fast` reads the PDF text layer with pdfminer; `hi_res` needs layout models from a hub
that is unreachable offline. A file that "succeeds" with 0 elements is counted apart:
that is how the missing-spaCy-model trap shows. unstructured 0.27 also returns 0
elements, silently, for PDFs its `is_pdf_too_complex` heuristic flags (graphics-heavy
pages, e.g. TikZ manuals): it skips the text layer and, under `fast`, finds nothing.

`pages` is the largest page_number among a file's elements, so files with 0 elements
and trailing empty pages count less than their real length: for pages/s on PDFs,
divide the floor's page count for the same list by this run's seconds
(compare_results.py does).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import signal
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from _harness import (
    FileTimeout,
    Record,
    add_run_args,
    add_selection_args,
    emit,
    environment,
    run_pool,
    select_files,
)

# Set before unstructured is imported in the workers: no usage ping (offline it only
# costs a failed connection) and no banner in the logs. Neither changes the output.
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

STRATEGY = "fast"  # replaced in each worker by _init_worker


def _init_worker(strategy: str) -> None:
    """Import unstructured once per worker, before its first file, as a user's app would."""
    global STRATEGY
    STRATEGY = strategy
    import unstructured.partition.auto  # noqa: F401


class _PartitionTimeout(BaseException):
    """The per-file alarm, raised as a BaseException while unstructured runs.

    unstructured wraps its PDF text-layer pass in `except Exception` and, when that
    "fails", silently switches `auto` to OCR: the harness's FileTimeout (an Exception)
    fired there was swallowed, and a 619-page PDF with a text layer was OCRed page by
    page long past its limit.
    """


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _PartitionTimeout


def partition_file(path: str) -> Record:
    """Partition one file; return element, character and page counts."""
    from unstructured.partition.auto import partition

    # _run_one armed the alarm; its handler is back in place before this returns.
    harness_handler = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        elements = partition(filename=path, strategy=STRATEGY)
    except _PartitionTimeout:
        raise FileTimeout from None
    finally:
        signal.signal(signal.SIGALRM, harness_handler)
    pages = [e.metadata.page_number for e in elements if e.metadata.page_number]
    return {
        "elements": len(elements),
        # Elements holding more than whitespace: "returned some text" (bench_coverage.py).
        "text_elements": sum(bool((e.text or "").strip()) for e in elements),
        "chars": sum(len(e.text or "") for e in elements),
        "pages": max(pages, default=0),
    }


def _file_type(path: str) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix or "(none)"


def _check_spacy_model() -> None:
    # Without en_core_web_sm unstructured tries to download it at run time; offline that
    # fails silently for PDFs (0 elements, no error) and the peer looks 10x faster.
    if importlib.util.find_spec("en_core_web_sm") is None:
        raise SystemExit(
            "en_core_web_sm is not installed in this interpreter: run the spaCy model shim "
            "(shared/peers/install_spacy_model_shim.sh) or pass --skip-spacy-check"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_selection_args(parser, default_pattern="*")
    add_run_args(parser)
    parser.add_argument(
        "--strategy", default="fast", help="partition strategy: fast, auto, hi_res, ocr_only"
    )
    parser.add_argument(
        "--skip-spacy-check", action="store_true", help="run even without en_core_web_sm"
    )
    args = parser.parse_args(argv)
    if not args.skip_spacy_check:
        _check_spacy_model()

    files = select_files(args)
    run = run_pool(
        partition_file,
        files,
        args.processes,
        args.timeout,
        initializer=functools.partial(_init_worker, args.strategy),
        progress=args.progress,
    )
    records, seconds = run.records, run.seconds
    for r in records:
        r["type"] = _file_type(r["path"])
    ok = [r for r in records if r["ok"]]
    pages = sum(r["pages"] for r in ok)

    by_type: dict[str, dict[str, int]] = {}
    for r in records:
        t = by_type.setdefault(r["type"], {"files": 0, "ok": 0, "failed": 0, "zero_elements": 0})
        t["files"] += 1
        t["ok" if r["ok"] else "failed"] += 1
        t["zero_elements"] += bool(r["ok"] and r["elements"] == 0)
    errors = Counter(str(r["error"]).split(":")[0] for r in records if not r["ok"])

    summary: dict[str, Any] = {
        "tool": f"unstructured partition(strategy={args.strategy!r})",
        "unstructured": version("unstructured"),
        "strategy": args.strategy,
        "processes": args.processes,
        "files": len(records),
        "files_ok": len(ok),
        "files_failed": len(records) - len(ok),
        "files_zero_elements": sum(r["elements"] == 0 for r in ok),
        "files_zero_chars": sum(r["chars"] == 0 for r in ok),
        "elements": sum(r["elements"] for r in ok),
        "chars": sum(r["chars"] for r in ok),
        "pages": pages,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 2) if seconds else None,
        **run.measures(),
        "by_type": dict(sorted(by_type.items())),
        "error_kinds": dict(errors.most_common()),
        "env": environment(),
    }
    emit(summary, records, args)


if __name__ == "__main__":
    main()

"""Floor for PDF text extraction: plain pypdfium2, every page's text, N processes.

This is the least work any PDF ingester must do (open, load each page, read its text
layer), done by the fastest library we have; gristmill's PDF throughput is judged
against it. Usage:

    python benchmarks/floor_pdf.py CORPUS_DIR --pattern '*.pdf' --limit 300 --json
    python benchmarks/floor_pdf.py --files-from LIST -p 2 --out RESULT.json
"""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pypdfium2 as pdfium
from _harness import (
    Record,
    add_run_args,
    add_selection_args,
    emit,
    environment,
    run_pool,
    select_files,
)


def extract(path: str) -> Record:
    """Text of every page of one PDF; returns page and character counts."""
    pages = chars = 0
    pdf = pdfium.PdfDocument(path)
    try:
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            chars += len(textpage.get_text_range())
            # Close explicitly: relying on GC keeps every page of a big PDF alive.
            textpage.close()
            page.close()
            pages += 1
    finally:
        pdf.close()
    return {"pages": pages, "chars": chars}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_selection_args(parser, default_pattern="*.pdf")
    add_run_args(parser)
    args = parser.parse_args(argv)

    files = select_files(args)
    run = run_pool(extract, files, args.processes, args.timeout, progress=args.progress)
    records, seconds = run.records, run.seconds
    ok = [r for r in records if r["ok"]]
    pages = sum(r["pages"] for r in ok)
    summary = {
        "tool": "floor_pdf (pypdfium2 get_text_range, every page)",
        "pypdfium2": version("pypdfium2"),
        "processes": args.processes,
        "files": len(records),
        "files_ok": len(ok),
        "files_failed": len(records) - len(ok),
        "files_zero_chars": sum(r["chars"] == 0 for r in ok),
        "pages": pages,
        "chars": sum(r["chars"] for r in ok),
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 1) if seconds else None,
        **run.measures(),
        "env": environment(),
    }
    emit(summary, records, args)


if __name__ == "__main__":
    main()

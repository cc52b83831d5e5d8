"""Print the PDFs none of whose pages gristmill would OCR: born-digital throughout.

The pypdfium2 floor reads text layers only, so gristmill's time is comparable with it on
these; a PDF with a scanned or picture-only page costs gristmill OCR time the floor
never spends. Uses gristmill's own per-page decision (``page_needs_ocr``), without
rendering anything. Usage:

    python benchmarks/born_digital.py CORPUS_DIR --pattern '*.pdf' > BENCH/born.txt
    python benchmarks/born_digital.py --files-from BENCH/allpdf.txt -p 2 > BENCH/born.txt
"""

from __future__ import annotations

import argparse
import sys
from multiprocessing import Pool

import pypdfium2 as pdfium
from _harness import add_selection_args, select_files

from gristmill.extract.pdf import page_needs_ocr


def ocr_pages(path: str) -> tuple[str, int | None]:
    """How many pages of ``path`` gristmill would OCR (None: the PDF does not open)."""
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError:
        return path, None
    try:
        count = 0
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                raw = textpage.get_text_range()
                textpage.close()
                count += page_needs_ocr(page, raw)
            finally:
                page.close()
        return path, count
    except pdfium.PdfiumError:
        return path, None
    finally:
        document.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_selection_args(parser, default_pattern="*.pdf")
    parser.add_argument("-p", "--processes", type=int, default=2)
    args = parser.parse_args(argv)
    files = [str(f) for f in select_files(args)]
    kept = needing = broken = 0
    with Pool(args.processes) as pool:
        for path, pages in pool.imap(ocr_pages, files, chunksize=8):
            if pages == 0:
                print(path)
                kept += 1
            elif pages is None:
                broken += 1
            else:
                needing += 1
    print(f"{kept} born-digital, {needing} with pages to OCR, {broken} unreadable",
          file=sys.stderr)


if __name__ == "__main__":
    main()

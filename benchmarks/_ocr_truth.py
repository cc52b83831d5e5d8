"""Ground truth and scoring for the OCR benchmark.

Pages of born-digital PDFs are rendered to images with pypdfium2; the page's own text
layer is what OCR of the image should give back. Scoring is pure Python: the character
edit distance uses Hyyrö's bit-vector form of Myers' algorithm on Python integers, about
``len(b) * len(a) / 64`` machine-word operations, so a 3,000-character page scores in
tens of milliseconds where the plain dynamic programme takes seconds.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- normalising

# Typographic variants that a text layer and an OCR engine spell differently for the same
# glyph: quotes and dashes fold to ASCII; the soft hyphen and U+FFFE/U+FFFF (pdfium's
# markers) go. U+0002 is pdfium's mark of a hyphen at a line end, which OCR reads as "-".
_FOLD = str.maketrans({
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    "\u0002": "-",
    **dict.fromkeys("\u00ad\ufffe\uffff", None),
})
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """NFKC (folds ligatures and full-width forms), quotes and dashes folded, control and
    format characters dropped, every run of whitespace one space."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n")).translate(_FOLD)
    text = "".join(c for c in text if c.isprintable() or c.isspace())
    return " ".join(text.split())


def words(normalised: str) -> list[str]:
    """Word tokens (runs of letters and digits): punctuation does not make a word wrong."""
    return _WORD.findall(normalised)


# --------------------------------------------------------------------------- edit distance


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance (insert, delete, substitute: cost 1) between two sequences (strings,
    or lists of words), by the bit-parallel algorithm (Hyyrö 2003, global distance)."""
    if len(a) > len(b):
        a, b = b, a  # the shorter one is the bit vector
    m = len(a)
    if m == 0:
        return len(b)
    peq: dict[Hashable, int] = {}
    for i, item in enumerate(a):
        peq[item] = peq.get(item, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for item in b:
        eq = peq.get(item, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = (ph << 1) | 1  # row 0 of the global table grows by one per column
        mh <<= 1
        pv = (mh | ~(xv | ph)) & mask
        mv = ph & xv & mask
    return score


def _levenshtein_dp(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """The plain dynamic programme, to check the fast one against (``--self-test``)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def self_test(rounds: int = 300) -> None:
    """Check ``levenshtein`` against the dynamic programme on random strings."""
    rng = random.Random(1)
    for _ in range(rounds):
        a = "".join(rng.choice("abc ") for _ in range(rng.randrange(0, 150)))
        b = "".join(rng.choice("abcd") for _ in range(rng.randrange(0, 150)))
        assert levenshtein(a, b) == _levenshtein_dp(a, b), (a, b)
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein(["a", "b"], ["b"]) == 1


# --------------------------------------------------------------------------- scoring


def score_page(truth: str, ocr: str) -> dict[str, Any]:
    """Counts for one page; both texts are normalised here. Ratios come from ``totals``."""
    t, o = normalise(truth), normalise(ocr)
    tw, ow = words(t), words(o)
    common = sum((Counter(tw) & Counter(ow)).values())
    return {
        "truth_chars": len(t), "ocr_chars": len(o), "char_edits": levenshtein(t, o),
        "truth_words": len(tw), "ocr_words": len(ow), "word_edits": levenshtein(tw, ow),
        "bag_common_words": common,
        # Empty, or so little that the page was as good as lost.
        "empty": len(o) < 0.05 * len(t),
    }


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def totals(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracies over all pages, weighted by page length (micro averages), plus the
    unweighted mean of the per-page character accuracy."""
    s = {k: sum(p[k] for p in scores) for k in
         ("truth_chars", "ocr_chars", "char_edits", "truth_words", "ocr_words",
          "word_edits", "bag_common_words")}
    per_page = [max(0.0, 1 - p["char_edits"] / p["truth_chars"]) for p in scores
                if p["truth_chars"]]
    cer = _ratio(s["char_edits"], s["truth_chars"])
    wer = _ratio(s["word_edits"], s["truth_words"])
    return {
        **s,
        "pages": len(scores),
        "cer": cer,
        "char_accuracy": None if cer is None else round(max(0.0, 1 - cer), 4),
        "char_accuracy_page_mean": round(sum(per_page) / len(per_page), 4) if per_page
        else None,
        "char_accuracy_page_min": round(min(per_page), 4) if per_page else None,
        "wer": wer,
        "word_accuracy_ordered": None if wer is None else round(max(0.0, 1 - wer), 4),
        "word_bag_recall": _ratio(s["bag_common_words"], s["truth_words"]),
        "word_bag_precision": _ratio(s["bag_common_words"], s["ocr_words"]),
        "empty_pages": sum(p["empty"] for p in scores),
    }


# --------------------------------------------------------------------------- selection


@dataclass
class Page:
    """One chosen page: where it comes from and what its text layer says."""

    pdf: Path
    index: int  # 0-based
    truth: str  # the raw text layer (\r\n made \n)
    key: str = ""  # file-name stem of its image, set once chosen

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "pdf": str(self.pdf), "page": self.index + 1,
                "truth_chars": len(normalise(self.truth))}


def _latin_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    latin = sum(1 for c in letters if ord(c) < 0x250 or 0x1E00 <= ord(c) < 0x1F00)
    return latin / len(letters)


def _invisible_share(page: Any) -> float:
    """Share of text objects drawn in render mode 3 (invisible): an OCR layer over a
    scan, so its text is some earlier OCR's output, not the truth."""
    import pypdfium2.raw as raw

    total = invisible = 0
    for obj in page.get_objects(max_depth=4):
        if obj.type == raw.FPDF_PAGEOBJ_TEXT:
            total += 1
            invisible += raw.FPDFTextObj_GetTextRenderMode(obj.raw) == \
                raw.FPDF_TEXTRENDERMODE_INVISIBLE
    return invisible / total if total else 0.0


def text_layer(page: Any) -> str:
    textpage = page.get_textpage()
    try:
        return str(textpage.get_text_range()).replace("\r\n", "\n").replace("\r", "\n")
    finally:
        textpage.close()


def choose_pages(pdfs: Sequence[Path], count: int, seed: int, min_chars: int,
                 min_latin: float = 0.9) -> tuple[list[Page], dict[str, int]]:
    """``count`` pages, spread over the documents: each document's pages in a seeded
    shuffle, then one page per document per round (documents in the given order), so a
    619-page manual does not crowd out the one-page memos. A page qualifies when its
    normalised text layer has ``min_chars`` characters, at least ``min_latin`` of its
    letters are Latin script (what eng/deu OCR reads), most of its text is visible (not
    an OCR layer over a scan), and no earlier page had the same text (duplicate files).
    Returns the pages and the reasons pages were passed over."""
    import pypdfium2 as pdfium

    docs: list[tuple[Path, Any, Iterator[int]]] = []
    skipped: Counter[str] = Counter()
    for path in pdfs:
        try:
            doc = pdfium.PdfDocument(str(path))
        except Exception:  # password, damaged: not a page source
            skipped["pdf does not open"] += 1
            continue
        order = list(range(len(doc)))
        random.Random(f"{seed}:{path.name}:{len(doc)}").shuffle(order)
        docs.append((path, doc, iter(order)))
    chosen: list[Page] = []
    seen: set[str] = set()
    try:
        while docs and len(chosen) < count:
            for entry in list(docs):
                if len(chosen) >= count:
                    break
                path, doc, order = entry
                page = _next_page(path, doc, order, min_chars, min_latin, seen, skipped)
                if page is None:
                    docs.remove(entry)
                    doc.close()
                else:
                    chosen.append(page)
    finally:
        for _path, doc, _order in docs:
            doc.close()
    return chosen, dict(skipped)


def _next_page(path: Path, doc: Any, order: Iterator[int], min_chars: int, min_latin: float,
               seen: set[str], skipped: Counter[str]) -> Page | None:
    for index in order:
        page = doc[index]
        try:
            truth = text_layer(page)
            norm = normalise(truth)
            if len(norm) < min_chars:
                skipped[f"under {min_chars} characters"] += 1
                continue
            if _latin_share(norm) < min_latin:
                skipped["not Latin script"] += 1
                continue
            if _invisible_share(page) > 0.5:
                skipped["invisible text (OCR layer)"] += 1
                continue
            digest = hashlib.sha256(norm.encode()).hexdigest()
            if digest in seen:
                skipped["duplicate text"] += 1
                continue
            seen.add(digest)
            return Page(path, index, truth)
        finally:
            page.close()
    return None


def render(page: Page, dpi: int, out: Path) -> tuple[int, int]:
    """Render ``page`` to a grayscale PNG at ``dpi`` (recorded in the file); its size."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(page.pdf))
    try:
        pdf_page = doc[page.index]
        bitmap = pdf_page.render(scale=dpi / 72, grayscale=True, may_draw_forms=True)
        image = bitmap.to_pil()
        if image.mode != "L":
            image = image.convert("L")
        image.save(out, "PNG", dpi=(dpi, dpi))
        size = image.size
        bitmap.close()
        pdf_page.close()
        return size
    finally:
        doc.close()


# --------------------------------------------------------------------------- scanned PDF


def write_scanned_pdf(jpegs: Sequence[tuple[bytes, int, int]], count: int, dpi: int,
                      out: Path) -> None:
    """An image-only PDF of ``count`` pages, page ``i`` the grayscale JPEG
    ``jpegs[i % len(jpegs)]`` (``(data, width, height)``), each page with its own copy as
    in a real scan. Written object by object, the JPEG bytes as they are (DCTDecode):
    memory stays at the source pages whatever the page count, which Pillow's
    ``save_all`` does not promise."""
    n = count
    offsets: list[int] = []
    with out.open("wb") as f:
        def obj(number: int, body: bytes, stream: bytes | None = None) -> None:
            assert number == len(offsets) + 1
            offsets.append(f.tell())
            f.write(b"%d 0 obj\n" % number + body)
            if stream is not None:
                f.write(b"\nstream\n" + stream + b"\nendstream")
            f.write(b"\nendobj\n")

        f.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        kids = b" ".join(b"%d 0 R" % (3 + 3 * i) for i in range(n))
        obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        obj(2, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n))
        for i in range(n):
            data, width, height = jpegs[i % len(jpegs)]
            page_no = 3 + 3 * i
            w_pt, h_pt = width * 72 / dpi, height * 72 / dpi
            content = b"q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q" % (w_pt, h_pt)
            obj(page_no, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] "
                b"/Resources << /XObject << /Im0 %d 0 R >> >> /Contents %d 0 R >>"
                % (w_pt, h_pt, page_no + 1, page_no + 2))
            obj(page_no + 1, b"<< /Type /XObject /Subtype /Image /Width %d /Height %d "
                b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode "
                b"/Length %d >>" % (width, height, len(data)), data)
            obj(page_no + 2, b"<< /Length %d >>" % len(content), content)
        xref = f.tell()
        f.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        for offset in offsets:
            f.write(b"%010d 00000 n \n" % offset)
        f.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                % (len(offsets) + 1, xref))

"""A deterministic mixed corpus for end-to-end tests: real PDF, DOCX, HTML, text files.

Every file carries a unique marker word (``marker(i)``) so a test can check that each
one became searchable.
"""

from __future__ import annotations

import random
from pathlib import Path

from docs import make_docx, make_html, make_pdf

_WORDS = (
    "lease batch window worker chunk index vector keyword token page heading catalog "
    "embedding ingest resume crash memory bounded stream archive scan document folder "
    "search query fusion rank cache model status retry backoff timeout recycle signal "
    "transaction commit rollback journal schema migration driver executor pipeline"
).split()


def marker(i: int) -> str:
    """The word only file ``i`` contains."""
    return f"zqmark{i:05d}"


def _sentences(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def build(folder: Path, n: int, *, seed: int = 0, pdf_pages: int = 3) -> list[Path]:
    """Write ``n`` files cycling through PDF, DOCX, HTML, Markdown and plain text."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        sub = folder / f"part{i % 7}"
        sub.mkdir(exist_ok=True)
        kind = i % 5
        body = [f"{marker(i)} {_sentences(rng, 6)}", _sentences(rng, 8), _sentences(rng, 5)]
        if kind == 0:
            path = make_pdf(sub / f"doc{i}.pdf",
                            [f"{marker(i)} {_sentences(rng, 5)}" for _ in range(pdf_pages)])
        elif kind == 1:
            path = make_docx(sub / f"doc{i}.docx", body)
        elif kind == 2:
            path = make_html(sub / f"doc{i}.html", f"Document {i}", body)
        elif kind == 3:
            path = sub / f"doc{i}.md"
            path.write_text(f"# Document {i}\n\n" + "\n\n".join(body) + "\n", encoding="utf-8")
        else:
            path = sub / f"doc{i}.txt"
            path.write_text("\n\n".join(body) + "\n", encoding="utf-8")
        paths.append(path)
    return paths

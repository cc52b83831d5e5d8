"""Every registered extractor over the shared example corpus: text or a clean ItemError.

The corpus (real-world files, many of them odd) lives beside the checkout in
``../shared/corpus/unstructured-example-docs``; the tests skip when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.errors import ItemError
from gristmill.extract import extractor_for
from gristmill.extract.base import Container, Limits

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "unstructured-example-docs"


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and extractor_for(p) is not None)


_FILES = _corpus_files()

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not _FILES, reason=f"example corpus not found at {CORPUS}"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "path",
    _FILES or [CORPUS / "absent"],
    ids=lambda p: str(p.relative_to(CORPUS)) if _FILES else "absent",
)
def test_extractor_yields_text_or_an_item_error(path: Path) -> None:
    """Each corpus file either yields non-blank text (or, for a container such as a zip,
    members) or fails with an ItemError."""
    extractor = extractor_for(path)
    assert extractor is not None
    try:
        segments = list(extractor.extract(path, Limits()))
    except ItemError as exc:
        assert exc.reason.strip()
        return
    if isinstance(extractor, Container):
        assert segments or list(extractor.members(path, Limits()))
    else:
        assert segments
    assert all(segment.text.strip() for segment in segments)

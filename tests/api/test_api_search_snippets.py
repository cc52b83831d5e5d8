"""`GET /api/v1/search` answers each hit with the passage around the query's words and
where they are in it (``snippet``, ``highlights``), as `search --json` does."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gristmill.api import create_app
from gristmill.config import Settings
from gristmill.knowledge_base import KnowledgeBase

FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
PASSAGE = "🐦 At dusk the grey Herons left the <b>marsh</b>. "


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_search_hits_carry_the_snippet_and_highlights(tmp_path: Path) -> None:
    """Each hit keeps the whole chunk in ``text`` and adds the passage around the query's
    words (far from the chunk's start, emoji and markup kept as text) with ``[start,
    end]`` code-point offsets of those words in it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "birds.txt").write_text(FILLER * 9 + PASSAGE + FILLER * 3 + "\n", encoding="utf-8")
    settings = Settings.load(home=tmp_path / "home", embedder="none")
    kb = KnowledgeBase(settings)
    try:
        kb.ingest([src])
    finally:
        kb.close()

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://127.0.0.1:8000") as client:
            answer = await client.get("/api/v1/search",
                                      params={"q": "heron MARSH", "mode": "keyword"})
    assert answer.status_code == 200, answer.text
    [hit] = answer.json()
    assert hit["text"] == (FILLER * 9 + PASSAGE + FILLER * 3).strip()
    assert PASSAGE.strip() in hit["snippet"] and hit["snippet"].startswith("…")
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["Herons", "marsh"]

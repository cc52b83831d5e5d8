"""``/api/v1/search``: the best chunks for a query, each with the passage around its
words, answered by the server's search threads (see :mod:`gristmill.api.search_pool`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from gristmill.api.params import Text
from gristmill.api.problems import ApiError
from gristmill.api.security import Caller
from gristmill.api.state import State

__all__ = ["router"]

router = APIRouter()


@router.get("/search")
async def search(
    request: Request,
    q: Text,
    state: State,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    mode: Literal["hybrid", "keyword", "vector"] = "hybrid",
    collection: Text | None = None,
    language: Text | None = None,
    kind: Text | None = None,
    path: Text | None = None,
) -> list[dict[str, object]]:
    """The ``k`` best chunks for ``q``, each with the passage around its words; code
    chunks only with ``language``, ``kind`` or ``path`` (a glob over the file's path)."""
    settings = state.settings
    if len(q) > settings.max_query_chars:
        raise ApiError(422, f"query.q: at most {settings.max_query_chars} characters "
                            "(max_query_chars)")
    # Per token where there are tokens; per address where anyone may call.
    client = request.client.host if request.client else "unknown"
    who: Caller = request.state.caller
    state.throttle.check(who.name if state.tokens.enabled else client)
    # A ConfigError (vector search without an embedder) is a 400, as its class says.
    return await state.searchers.results(q, collection=collection, k=k, mode=mode,
                                         language=language, kind=kind, path=path)

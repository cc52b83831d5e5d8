"""``/api/v1/errors``: failed and skipped items grouped by the pattern of their reason
(the API's ``gristmill errors``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gristmill.api.params import JobIdQuery, Text
from gristmill.api.state import State

__all__ = ["router"]

router = APIRouter()


@router.get("/errors")
def errors(state: State, collection: Text | None = None, job: JobIdQuery = None
           ) -> list[dict[str, Any]]:
    """Failed and skipped items grouped by the pattern of their reason, of one
    collection or one job if asked."""
    return state.run(lambda kb: [group.to_dict() for group in kb.errors(collection, job)])
